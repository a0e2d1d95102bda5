"""Screenshot the demo's HTML report in headless Chromium, to look at it as a reader would.

Usage (from the checkout, after ``pip install -e '.[dev]'``)::

    python scripts/screenshot_report.py                     # demo in ~/cot-ground-demo
    python scripts/screenshot_report.py --demo-dir /tmp/d --out /tmp/shots --height 3000

Runs ``cot-ground demo``'s code into ``--demo-dir`` when its run folder is missing (about a
minute on a CPU, offline), rewrites ``run/report/`` with the installed code, then writes two
PNG files into ``--out``: ``report_top.png`` (the page from the top: the "how to read this"
box, the run facts, the score tables, the charts) and ``report_examples.png`` (the example
cards: the same page with the part above ``<h2 id="examples">`` left out, written next to the
screenshots as ``report_examples.html``, because headless Chromium does not paint a page
scrolled to an anchor). Each is one browser viewport of ``--width`` × ``--height`` pixels.
Needs a Chromium binary (Debian: ``apt-get install -y chromium``); the browser runs with
networking, sync, updates and GPU off, and loads nothing but the local files.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)
EXAMPLES_HEADING = '<h2 id="examples">'


def find_browser() -> str:
    """Path of the first Chromium-family binary on PATH; SystemExit naming them if none."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit(f"no browser found (tried {', '.join(BROWSERS)}); apt-get install chromium")


def screenshot(browser: str, url: str, png: Path, width: int, height: int) -> Path:
    """One viewport of ``url`` as ``png``; raises RuntimeError with the browser's output."""
    png.unlink(missing_ok=True)
    done = subprocess.run(
        [browser, *CHROMIUM_FLAGS, f"--window-size={width},{height}", f"--screenshot={png}", url],
        capture_output=True,
        text=True,
        timeout=180,
    )
    if not png.is_file():
        raise RuntimeError(f"{browser} wrote no screenshot (exit {done.returncode}): {done.stderr}")
    return png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--demo-dir", type=Path, default=None, help="default: as cot-ground demo's --out"
    )
    parser.add_argument("--out", type=Path, default=None, help="default: DEMO_DIR/screenshots")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=2400)
    args = parser.parse_args(argv)

    from cot_ground.analysis.report import build_report
    from cot_ground.demo import default_demo_dir, run_demo

    demo_dir = (args.demo_dir or default_demo_dir()).resolve()
    run_dir = demo_dir / "run"
    if not (run_dir / "run.json").is_file():
        run_demo(demo_dir)
    page = build_report(run_dir).files["report.html"].resolve()
    out = (args.out or demo_dir / "screenshots").resolve()
    out.mkdir(parents=True, exist_ok=True)
    examples = out / "report_examples.html"
    examples.write_text(examples_page(page.read_text(encoding="utf-8")), encoding="utf-8")
    browser = find_browser()
    for name, source in (("report_top", page), ("report_examples", examples)):
        png = screenshot(browser, source.as_uri(), out / f"{name}.png", args.width, args.height)
        print(png)
    return 0


def examples_page(html: str) -> str:
    """The report page without the part between ``<body>`` and the examples heading."""
    body = html.index("<body>") + len("<body>")
    start = html.find(EXAMPLES_HEADING)
    if start < 0:
        raise SystemExit(f"the report has no {EXAMPLES_HEADING} heading")
    return html[:body] + html[start:]


if __name__ == "__main__":
    sys.exit(main())
