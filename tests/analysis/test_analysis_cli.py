"""`cot-ground report` and `cot-ground compare` on a small run folder."""

from __future__ import annotations

import json

import pytest
import typer
from analysis_fixtures import standard_run
from typer.testing import CliRunner

from cot_ground.cli import report_cmds


@pytest.fixture(scope="module")
def cli():
    app = typer.Typer()
    report_cmds.register(app)
    return app


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return standard_run(tmp_path_factory.mktemp("cli"))


def test_report_command(cli, run_dir, tmp_path):
    result = CliRunner().invoke(
        cli, ["report", str(run_dir), "--out", str(tmp_path / "r"), "--sample-per-category", "1"]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r" / "report.html").is_file()
    assert "cot-oracle" in result.output and "75.00" in result.output
    assert "stated %" in result.output and "warning" not in result.output
    assert "spont." in result.output and "refer." in result.output


def test_compare_json(cli, run_dir):
    args = ["compare", str(run_dir), "--a", "cot-oracle", "--b", "cot-agent", "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    rows = {r["task"]: r for r in json.loads(result.output)}
    assert rows["POOLED"]["only_a"] == 2 and rows["POOLED"]["only_b"] == 0
    assert rows["POOLED"]["p_value"] == pytest.approx(0.5)  # 2 * (1/2)^2
    assert rows["TASK_MEAN"]["p_value"] is None  # no test for the task mean
    table = CliRunner(env={"COLUMNS": "80"}).invoke(cli, args[:-1])
    assert table.exit_code == 0 and "POOLED" in table.output and "4/2/0/2" in table.output
    assert "TASK_MEAN" in table.output


def test_partial_runs_warn_in_report_and_block_compare(cli, tmp_path):
    run = standard_run(tmp_path)
    file = run / "predictions" / "migician.jsonl"
    lines = file.read_text(encoding="utf-8").splitlines(keepends=True)
    file.write_text("".join(lines[:3]), encoding="utf-8")  # 3 of 8 examples
    report = CliRunner().invoke(cli, ["report", str(run), "--sample-per-category", "0"])
    assert report.exit_code == 0, report.output
    assert "different example sets" in report.output and "migician 3 (lacks 5)" in report.output
    scores = json.loads((run / "report" / "scores.json").read_text())
    # the 3 examples are all common_object: migician's AVERAGE is over 1 of the 2 tasks
    assert len(scores["warnings"]) == 2
    assert "migician has no records for 1 of the run's 2 tasks" in scores["warnings"][1]
    assert "its AVERAGE is over 1 of 2 tasks" in scores["warnings"][1]
    assert "different example sets" in (run / "report" / "scores.md").read_text()
    page = (run / "report" / "report.html").read_text()
    assert "different example sets" in page and "&lt;NA&gt;" not in page
    args = ["compare", str(run), "--a", "cot-agent", "--b", "migician", "--json"]
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 1 and "--allow-partial" in refused.output
    allowed = CliRunner().invoke(cli, [*args, "--allow-partial"])
    assert allowed.exit_code == 0, allowed.output
    rows = {r["task"]: r for r in json.loads(allowed.stdout)}
    assert rows["POOLED"]["n"] == 3  # only the examples both pipelines finished
    # two pipelines that ran the same examples are compared without the flag
    same = CliRunner().invoke(cli, ["compare", str(run), "--a", "cot-agent", "--b", "cot-oracle"])
    assert same.exit_code == 0, same.output


def test_compare_unknown_pipeline_is_a_clear_error(cli, run_dir):
    result = CliRunner().invoke(cli, ["compare", str(run_dir), "--a", "nope", "--b", "cot-agent"])
    assert result.exit_code == 1
    assert "nope" in result.output


def test_help_is_complete(cli):
    for command in ("report", "compare"):
        result = CliRunner().invoke(cli, [command, "--help"])
        assert result.exit_code == 0
    assert "--sample-per-category" in CliRunner().invoke(cli, ["report", "--help"]).output
