"""`cot-ground demo` through the real typer app: MIG-Lite, the classical pipeline, the report."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cot_ground.cli.app import _register_commands, app
from cot_ground.paths import experiments_dir

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


@pytest.mark.parametrize("env", [True, False])
def test_demo_default_folder_is_the_notebooks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: bool
) -> None:
    """Without --out the demo writes where experiments/analysis_example.ipynb looks:
    $COT_GROUND_DEMO_DIR, else ~/cot-ground-demo (not the current folder)."""
    import cot_ground.demo

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    if env:
        monkeypatch.setenv("COT_GROUND_DEMO_DIR", str(tmp_path / "chosen"))
    else:
        monkeypatch.delenv("COT_GROUND_DEMO_DIR", raising=False)
    seen: list[Path] = []

    def record(out_dir, **_kw):
        seen.append(Path(out_dir))
        raise RuntimeError("stop after choosing the folder")

    monkeypatch.setattr(cot_ground.demo, "run_demo", record)
    CliRunner().invoke(app, ["demo"])
    expected = tmp_path / "chosen" if env else tmp_path / "home" / "cot-ground-demo"
    assert seen == [expected] == [cot_ground.demo.default_demo_dir()]
    notebook = experiments_dir() / "analysis_example.ipynb"
    assert "default_demo_dir()" in notebook.read_text(encoding="utf-8")  # the same default


@pytest.mark.slow
def test_demo_rebuilds_mig_lite_for_another_per_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--per-task N after a demo of another size rebuilds MIG-Lite and starts a new run folder:
    the run holds the new build's examples only, never the old run's records."""
    import json

    from cot_ground.lite.builders import LITE_TASKS

    monkeypatch.chdir(tmp_path)
    for var in ("MIG_LITE_DIR", "COT_GROUND_TINY_DIR"):
        monkeypatch.delenv(var, raising=False)
    out = tmp_path / "demo"
    base = ["demo", "--out", str(out), "--no-tiny-models", "--per-task"]
    first = CliRunner().invoke(app, [*base, "2"])
    assert first.exit_code == 0, first.output

    again = CliRunner().invoke(app, [*base, "1"], env={"COLUMNS": "300"})

    assert again.exit_code == 0, again.output
    assert "has 2 items per task, 1 asked for: rebuilding it" in again.output
    assert "removed the earlier run folder" in again.output
    info = json.loads((out / "mig-lite" / "lite_info.json").read_text())
    assert info["per_task"] == 1 and sum(info["counts"].values()) == len(LITE_TASKS)
    run = out / "run"
    examples = [json.loads(x)["id"] for x in (run / "examples.jsonl").read_text().splitlines()]
    records = (run / "predictions" / "classical_cot.jsonl").read_text().splitlines()
    assert len(examples) == len(LITE_TASKS)
    assert sorted(json.loads(x)["example_id"] for x in records) == sorted(examples)
    assert len(json.loads((run / "run.json").read_text())["sessions"]) == 1  # a new run


def test_demo_never_replaces_a_folder_that_is_not_its_own(tmp_path: Path) -> None:
    """Another --per-task with a foreign run folder (or a MIG-Lite folder the user added to)
    is refused before anything is touched."""
    import json

    from cot_ground.lite import generate_lite

    out = tmp_path / "demo"
    generate_lite(out / "mig-lite", per_task=1, tasks=["diff"])
    (out / "run").mkdir()
    (out / "run" / "notes.txt").write_text("mine")
    args = ["demo", "--out", str(out), "--no-tiny-models", "--per-task", "2"]

    refused = CliRunner().invoke(app, args, env={"COLUMNS": "300"})

    assert refused.exit_code == 2, refused.output
    assert "is not a run folder of the demo" in refused.output
    assert (out / "run" / "notes.txt").read_text() == "mine"
    assert json.loads((out / "mig-lite" / "lite_info.json").read_text())["per_task"] == 1

    (out / "run" / "notes.txt").unlink()
    (out / "run").rmdir()
    (out / "mig-lite" / "mine.txt").write_text("mine")
    refused = CliRunner().invoke(app, args, env={"COLUMNS": "300"})
    assert refused.exit_code == 2, refused.output
    assert "is not a MIG-Lite folder" in refused.output and "mine.txt" in refused.output
    assert (out / "mig-lite" / "mine.txt").is_file()


def test_a_second_demo_leaves_a_running_demo_alone(tmp_path: Path) -> None:
    """While a demo holds its folder (or a `run` writes the demo's run folder), a demo of
    another --per-task is refused before it rebuilds MIG-Lite or deletes the run folder."""
    import json
    import os

    from cot_ground.lite import generate_lite
    from cot_ground.runner.store import RunFolder

    out = tmp_path / "demo"
    generate_lite(out / "mig-lite", per_task=1, tasks=["diff"])
    manifest = {"name": "demo", "sessions": []}
    (out / "run").mkdir()
    (out / "run" / "run.json").write_text(json.dumps(manifest))
    args = ["demo", "--out", str(out), "--no-tiny-models", "--per-task", "2"]

    for held, message in (
        (out, f"the demo folder {out} is in use by pid {os.getpid()}"),
        (out / "run", f"run folder {out / 'run'} is in use by pid {os.getpid()}"),
    ):
        with RunFolder(held).locked():  # as the running demo (or `run`) holds it
            refused = CliRunner().invoke(app, args, env={"COLUMNS": "400"})
        assert refused.exit_code == 2, refused.output
        assert message in " ".join(refused.output.split())
        assert json.loads((out / "run" / "run.json").read_text()) == manifest
        assert json.loads((out / "mig-lite" / "lite_info.json").read_text())["per_task"] == 1
