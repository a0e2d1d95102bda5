"""`cot-ground run`, `merge` and `show` through the real typer app."""

from __future__ import annotations

from pathlib import Path

import pytest
import runner_fakes as rf
import yaml
from typer.testing import CliRunner

from cot_ground.cli.app import _register_commands, app
from cot_ground.runner.store import RunFolder

_register_commands()


pytestmark = pytest.mark.usefixtures("fakes")


def _write_config(tmp_path: Path, **overrides) -> Path:
    bench = rf.make_benchmark(tmp_path / "bench", n=8)
    data = rf.experiment(bench, tmp_path / "run", tmp_path / "cache", **overrides)
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_run_resume_show_and_merge_from_the_command_line(tmp_path: Path) -> None:
    config = _write_config(tmp_path)
    cli = CliRunner()
    done = cli.invoke(app, ["run", str(config), "--limit", "6", "--batch-size", "3"])
    assert done.exit_code == 0, done.output
    assert "cot: 6/6 (100.0%)" in done.output  # plain progress lines when not a terminal
    assert "report" in done.output
    assert len(RunFolder(tmp_path / "run").read_predictions("cot")) == 6

    again = cli.invoke(app, ["run", str(config), "--limit", "6"])
    assert again.exit_code == 0 and "6 of 6 examples already done" in again.output

    example = RunFolder(tmp_path / "run").read_examples()[0]
    shown = cli.invoke(app, ["show", str(tmp_path / "run"), example["id"][:8]])
    assert shown.exit_code == 0, shown.output
    for text in ("select_and_describe", "the red square", "pipeline e2e", example["task"]):
        assert text in shown.output
    assert "(strict " in shown.output  # both IoUs, from cot_ground.scoring.score_row
    missing = cli.invoke(app, ["show", str(tmp_path / "run"), "zzzz"])
    assert missing.exit_code == 2 and "not in this run folder" in missing.output

    for k in (1, 2):
        out = tmp_path / f"shard{k}"
        res = cli.invoke(app, ["run", str(config), "--shard", f"{k}/2", "--out", str(out)])
        assert res.exit_code == 0, res.output
    merged = cli.invoke(
        app,
        ["merge", str(tmp_path / "shard1"), str(tmp_path / "shard2"), "--out", str(tmp_path / "m")],
    )
    assert merged.exit_code == 0, merged.output
    assert "8 examples" in merged.output
    assert len(RunFolder(tmp_path / "m").read_predictions("e2e")) == 8


def test_cli_errors_are_one_clear_message(tmp_path: Path) -> None:
    cli = CliRunner()
    config = _write_config(tmp_path, batchsize=2)
    res = cli.invoke(app, ["run", str(config)])
    assert res.exit_code == 2 and "batchsize: unknown key" in res.output
    assert "Traceback" not in res.output

    config = _write_config(tmp_path)
    res = cli.invoke(app, ["run", str(config), "--shard", "3/2"])
    assert res.exit_code == 2 and "--shard" in res.output

    data = yaml.safe_load(config.read_text())
    data["models"]["grounder"]["path"] = str(tmp_path / "no-model")
    config.write_text(yaml.safe_dump(data))
    res = cli.invoke(app, ["run", str(config)])
    assert res.exit_code == 2 and "model folder not found" in res.output
    assert rf.CALLS == []


def test_every_command_has_help() -> None:
    cli = CliRunner()
    for command in ("run", "merge", "show"):
        res = cli.invoke(app, [command, "--help"])
        assert res.exit_code == 0 and "Usage" in res.output
    assert "--batch-size" in cli.invoke(app, ["run", "--help"]).output
