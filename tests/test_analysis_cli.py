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


def test_compare_json(cli, run_dir):
    args = ["compare", str(run_dir), "--a", "cot-oracle", "--b", "cot-agent", "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    rows = {r["task"]: r for r in json.loads(result.output)}
    assert rows["OVERALL"]["only_a"] == 2 and rows["OVERALL"]["only_b"] == 0
    assert rows["OVERALL"]["p_value"] == pytest.approx(0.5)  # 2 * (1/2)^2
    table = CliRunner(env={"COLUMNS": "80"}).invoke(cli, args[:-1])
    assert table.exit_code == 0 and "OVERALL" in table.output and "4/2/0/2" in table.output


def test_compare_unknown_pipeline_is_a_clear_error(cli, run_dir):
    result = CliRunner().invoke(cli, ["compare", str(run_dir), "--a", "nope", "--b", "cot-agent"])
    assert result.exit_code == 1
    assert "nope" in result.output


def test_help_is_complete(cli):
    for command in ("report", "compare"):
        result = CliRunner().invoke(cli, [command, "--help"])
        assert result.exit_code == 0
    assert "--sample-per-category" in CliRunner().invoke(cli, ["report", "--help"]).output
