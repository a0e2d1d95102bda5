"""The README's Python snippet runs as written (on the tiny random-weight models)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from repo_paths import REPO

README = REPO / "README.md"


def python_blocks(text: str) -> list[str]:
    """The fenced ```python blocks of a markdown text."""
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_first_screen_has_the_two_commands_ci_runs():
    text = README.read_text(encoding="utf-8")
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    test_cmd = next(line for line in ci.splitlines() if "pytest" in line)
    head = text[: text.index("## With real weights")]
    assert test_cmd in head
    assert "cot-ground demo" in head


@pytest.mark.slow
def test_readme_python_snippet_runs(tmp_path: Path):
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    snippet = next(b for b in blocks if "build_cot_graph" in b)
    done = subprocess.run(
        [sys.executable, "-c", snippet],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert any(line.startswith("select_and_describe") for line in lines)
    assert any(line.startswith("['predict', 'finalize']") for line in lines)
