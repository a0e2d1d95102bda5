"""``python -m benchmarks.adversarial_parsing``: CPU time of the box and selection parsers on long
adversarial answers (nested brackets, unclosed boxes, repeated tags), where a regular expression
that backtracks badly would take seconds.

Each text is parsed by :func:`cot_ground.parsing.parse_box` (``qwen1000``) and
:func:`cot_ground.parsing.parse_selection` (4 images); the script prints the CPU milliseconds
of each and exits with status 1 when one takes longer than ``--budget-ms`` (default 500). The
unit tests check what these texts parse to (tests/test_parsing.py), not how long it takes.
"""

from __future__ import annotations

import argparse
import sys
import time

from cot_ground.boxes import Frame
from cot_ground.parsing import parse_box, parse_selection

TEXTS: dict[str, str] = {
    "corner words": "top left (1,1) " * 500 + "\n" + "bottom right (1, " * 500,
    "open brackets": "[" * 5000,
    "open pairs": "(1," * 3000,
    "think tags": "<think>" * 2000,
    "nested braces": "{" * 3000 + "}" * 3000,
    "ordinals": "1th image " * 2000,
    "numbered": "image 2 " * 3000,
    "counts": "the image 2 birds " * 2000,
    "negations": "not in in in in in in in in image 2 " * 1000,
    "long list": "[1, " + "1, " * 5000,
    "box tags": "<box>1 " * 3000,
}


def cpu_ms(text: str) -> float:
    """CPU milliseconds of reading ``text`` as a box answer and as a step-1 selection."""
    start = time.process_time()
    parse_box(text, Frame.QWEN1000)
    parse_selection(text, n_images=4)
    return 1000 * (time.process_time() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-ms", type=float, default=500.0)
    args = parser.parse_args(argv)
    slow = 0
    for name, text in TEXTS.items():
        ms = cpu_ms(text)
        slow += ms > args.budget_ms
        print(f"{name:<14} {len(text):>6} chars {ms:8.1f} ms CPU")
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
