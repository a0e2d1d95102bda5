"""Piped CLI output is not cut to 80 columns."""

from __future__ import annotations

import subprocess
import sys

import pytest
from rich.console import Console
from rich.table import Table

from cot_ground.cli.common import PIPED_WIDTH, widen_piped_output


def test_piped_output_gets_the_wide_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "0")  # restored after the test, whatever widen_... sets
    monkeypatch.delenv("COLUMNS")
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    widen_piped_output()
    console = Console(force_terminal=False)
    assert console.width == PIPED_WIDTH
    long_name = "cot_tiny_qwen2vl_reasoner_with_gdino_hf_grounder_agent_mode_structured_prompts"
    table = Table("pipeline", "examples", "written", "failed", "ex/s")
    table.add_row(long_name, "120", "120", "0", "3.10")
    with console.capture() as captured:
        console.print(table)
    assert long_name in captured.get()


def test_an_explicit_columns_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "123")
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    widen_piped_output()
    assert Console().width == 123


def test_console_script_help_is_wide_when_piped() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.argv=['cot-ground','--help'];"
            "from cot_ground.cli.app import main; main()",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert max(len(line) for line in done.stdout.splitlines()) > 80
