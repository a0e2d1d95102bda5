"""`cot-ground run` refuses a bad option value with one line naming the option (exit 2), before
it reads the benchmark or loads a model."""

from __future__ import annotations

from pathlib import Path

import pytest
import runner_fakes as rf
import yaml
from typer.testing import CliRunner

from cot_ground.cli.app import _register_commands, app
from cot_ground.runner.config import parse_config

_register_commands()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    bench = rf.make_benchmark(tmp_path / "bench", n=2)
    data = {
        "name": "options",
        "benchmark": {"file": str(bench), "answer_frame": "unit"},
        "models": {"r": {"adapter": "rule-reasoner"}, "g": {"adapter": "classical-grounder"}},
        "pipelines": {"cot": {"kind": "cot", "reasoner": "r", "grounder": "g"}},
        "output": str(tmp_path / "run"),
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--unit-floats", "maybe"],
            "error: --unit-floats: unknown value 'maybe' (allowed: reject, fraction, migician)",
        ),
        (
            ["--limit", "2", "--per-task", "1"],
            "error: give at most one of --limit, --per-task and --sample (got --limit --per-task)",
        ),
        (["--seed", "3"], "error: --seed applies to --sample only"),
        (
            ["--tasks", ","],
            "error: --tasks names no task (','); give a comma-separated list, e.g. diff,region",
        ),
        (["--shard", "5/4"], "error: --shard 5/4: K must be between 1 and N (N >= 1)"),
        (["--out", "{file}/run"], "error: run folder {file}/run: {file} exists and is not a"),
    ],
)
def test_a_bad_option_value_is_one_line_naming_the_option(
    config: Path, args: list[str], message: str
) -> None:
    file = config  # a file where --out would need a folder
    args = [a.format(file=file) for a in args]
    message = message.format(file=file)
    done = CliRunner().invoke(app, ["run", str(config), *args], env={"COLUMNS": "400"})

    assert done.exit_code == 2, done.output
    assert done.output.strip().splitlines()[0].startswith(message)
    assert len(done.output.strip().splitlines()) == 1
    assert "pydantic" not in done.output and "Traceback" not in done.output
    assert not (config.parent / "run").exists()  # nothing ran


def test_a_negative_seed_is_refused_by_the_option(config: Path) -> None:
    done = CliRunner().invoke(app, ["run", str(config), "--sample", "1", "--seed", "-1"])
    assert done.exit_code == 2 and "--seed" in done.output
    assert "Traceback" not in done.output and not (config.parent / "run").exists()


def test_with_unit_floats_names_the_allowed_values(config: Path) -> None:
    cfg = parse_config(yaml.safe_load(config.read_text(encoding="utf-8")))
    with pytest.raises(ValueError, match=r"^unit_floats: unknown value 'maybe' \(allowed: "):
        cfg.with_unit_floats("maybe")
    assert cfg.with_unit_floats("fraction").unit_floats == "fraction"
