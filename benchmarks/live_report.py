"""Results that survive a killed run: one printed line and one JSON rewrite per measurement.

:class:`LiveReport` holds the whole result document and rewrites its JSON file after every
measurement (written to a temporary file beside it, then renamed over it, so the file is always
complete, valid JSON with everything measured so far). :class:`Budget` decides whether the next
measurement still fits in the wall-clock budget of the run, from an estimate of its length.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


class LiveReport:
    """A result document (``dict``) whose sections grow one measurement at a time.

    ``add(section, record, line)`` appends ``record`` to ``document[section]`` (a list), saves
    the file and prints ``line`` prefixed with the seconds since the start, flushed at once.
    """

    def __init__(self, path: str | Path | None, document: dict[str, Any]) -> None:
        self.path = Path(path) if path is not None else None
        self.document = document
        self.t0 = time.perf_counter()
        self.save()

    def elapsed(self) -> float:
        """Seconds since the report was opened."""
        return time.perf_counter() - self.t0

    def say(self, line: str) -> None:
        """Print ``line`` with the elapsed time (stdout, flushed)."""
        print(f"[{self.elapsed():7.1f}s] {line}", flush=True)

    def add(self, section: str, record: dict[str, Any], line: str) -> None:
        """Append ``record`` to ``section``, save the file, print ``line``."""
        record = {**record, "at_s": round(self.elapsed(), 1)}
        self.document.setdefault(section, []).append(record)
        self.save()
        self.say(line)

    def set(self, key: str, value: Any) -> None:
        """Set a top-level ``key`` and save."""
        self.document[key] = value
        self.save()

    def save(self) -> None:
        """Write the document (temporary file + rename: never a half-written file)."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.document, indent=2, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)


class Budget:
    """A wall-clock budget in seconds, counted from ``report``'s start."""

    def __init__(self, report: LiveReport, seconds: float) -> None:
        self.report = report
        self.seconds = seconds

    def left(self) -> float:
        """Seconds left (negative when spent)."""
        return self.seconds - self.report.elapsed()

    def allows(self, what: str, estimate_s: float | None) -> bool:
        """True when ``estimate_s`` seconds fit in what is left (an unknown estimate fits while
        any time is left); otherwise records ``what`` as skipped and says so."""
        left = self.left()
        fits = left > 0 and (estimate_s is None or estimate_s <= left)
        if not fits:
            guess = "?" if estimate_s is None else f"{estimate_s:.0f}"
            self.report.add(
                "skipped",
                {"what": what, "estimate_s": estimate_s, "left_s": round(left, 1)},
                f"skip {what}: needs ~{guess} s, {max(0.0, left):.0f} s left of the budget",
            )
        return fits
