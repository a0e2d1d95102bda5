"""`cot-ground demo` through the real typer app: MIG-Lite, the classical pipeline, the report."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cot_ground.cli.app import _register_commands, app

_register_commands()


def test_demo_without_tiny_models_writes_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # nothing may land outside the demo folder
    for var in ("MIG_LITE_DIR", "COT_GROUND_TINY_DIR"):  # the demo sets them; restored after
        monkeypatch.delenv(var, raising=False)
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--per-task", "2", "--no-tiny-models"]

    done = CliRunner().invoke(app, args)

    assert done.exit_code == 0, done.output
    report = out / "run" / "report"
    assert f"report: {report / 'report.html'}" in done.output.replace("\n", "")
    for name in ("report.html", "scores.md", "scores.csv", "attribution.csv", "paired.json"):
        assert (report / name).is_file(), name
    scores = pd.read_csv(report / "scores.csv")
    assert set(scores["pipeline"]) == {"classical_cot"}
    average = scores[scores["task"] == "AVERAGE"].set_index("mode")
    assert set(average.index) == {"official", "strict"}
    assert average["acc@0.5"].between(0, 100).all() and (average["n"] > 0).all()
    assert "Acc@0.5 (official)" in done.output  # the score table is printed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]

    again = CliRunner().invoke(app, args)  # a re-run reuses the benchmark and resumes
    assert again.exit_code == 0, again.output
    assert "MIG-Lite already built" in again.output
