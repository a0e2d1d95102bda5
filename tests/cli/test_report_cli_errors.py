"""`report` and `leaderboard` name a missing or non-run folder as such; `python -m
cot_ground.cli` is the `cot-ground` command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import Result
from typer.testing import CliRunner

from cot_ground.cli.app import _register_commands, app

_register_commands()


def _said(result: Result) -> str:
    """The output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def test_report_on_a_missing_folder_or_a_folder_without_run_json(tmp_path: Path) -> None:
    missing = CliRunner().invoke(app, ["report", str(tmp_path / "nope")])
    assert missing.exit_code == 1
    assert f"run folder not found: {tmp_path / 'nope'}" in _said(missing)
    (tmp_path / "empty").mkdir()
    empty = CliRunner().invoke(app, ["report", str(tmp_path / "empty")])
    assert empty.exit_code == 1
    assert "is not a run folder (no run.json)" in _said(empty)
    assert "finished" not in empty.output  # unfinished run folders are reported on too


def test_leaderboard_on_a_missing_folder_says_it_does_not_exist(tmp_path: Path) -> None:
    for target, named in (
        (tmp_path / "nope", tmp_path / "nope"),
        (f"{tmp_path / 'nope'}:cot", tmp_path / "nope"),
    ):
        done = CliRunner().invoke(app, ["leaderboard", str(target)])
        assert done.exit_code == 1
        assert f"run folder not found: {named} " in _said(done)
        assert "expected RUN_DIR:PIPELINE" not in _said(done)


def test_python_m_cot_ground_cli_runs_the_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cot_ground.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    for command in ("report", "leaderboard", "compare", "run"):
        assert command in done.stdout
