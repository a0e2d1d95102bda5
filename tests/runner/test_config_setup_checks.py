"""A config with errors lists, in the same report, the setup problems that need no model and no
big file: unknown task names, unknown adapters, models in a slot of another role and a missing
answer_frame (the reviewer's round-1 file)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import runner_fakes as rf

from cot_ground.records import BUILD_INFO_FILE, file_sha256
from cot_ground.runner.config import ConfigError, parse_config

pytestmark = pytest.mark.usefixtures("fakes")


def _round_one(bench: Path) -> dict:
    return {
        "name": "mb",
        "benchmark": {"file": str(bench), "per_task": 0, "tasks": ["regoin", "diff"]},
        "models": {
            "rules": {"adapter": "fake-reasoner", "max_new_tokens": -3},
            "g": {"adapter": "fake-grounder"},
            "n": {"adapter": "nope"},
        },
        "pipelines": {
            "a": {"kind": "cot", "reasoner": "rules", "grounder": "ghost", "modee": "agent"},
            "b": {"kind": "e2e", "model": "g"},
            "c": {"kind": "cot", "reasoner": "n", "grounder": "g"},
        },
        "batch_size": 0,
        "cache": {"timeout_s": -1},
    }


def test_every_setup_problem_of_an_invalid_config_is_in_one_report(tmp_path: Path) -> None:
    bench = rf.make_benchmark(tmp_path / "bench", n=2)  # an unknown file, no build info
    with pytest.raises(ConfigError) as caught:
        parse_config(_round_one(bench), "mb.yaml")
    lines = str(caught.value).splitlines()
    assert lines[0] == "invalid experiment config mb.yaml:"
    expected = [
        "benchmark.per_task: Input should be greater than or equal to 1",
        "batch_size: Input should be greater than or equal to 1",
        "cache.timeout_s: Input should be greater than 0",
        "models.rules.max_new_tokens: Input should be greater than or equal to 1",
        "pipelines.a.modee: unknown key",
        "pipelines.a.grounder: unknown model 'ghost' (models: g, n, rules)",
        "benchmark.tasks[0]: unknown task 'regoin' (tasks: diff, view_diff,",
        "pipelines.b.model: model 'g' is adapter 'fake-grounder', a grounder, but this slot"
        " needs an e2e adapter",
        "models.n.adapter: unknown adapter 'nope'; known adapters:",
        f"benchmark.answer_frame: required for {bench} (not a published MIG-Bench file",
    ]
    for start in expected:
        assert sum(line.strip().startswith(start) for line in lines) == 1, start
    assert not any("tasks[1]" in line for line in lines)  # diff is a task


def test_a_build_that_states_its_frame_needs_no_answer_frame(tmp_path: Path) -> None:
    bench = rf.make_benchmark(tmp_path / "bench", n=2)
    info = {"data_sha256": file_sha256(bench), "answer_frame": "unit"}
    (bench.parent / BUILD_INFO_FILE).write_text(json.dumps(info))
    with pytest.raises(ConfigError) as caught:
        parse_config(_round_one(bench), "mb.yaml")
    assert "answer_frame" not in str(caught.value)

    copy = tmp_path / "copy.json"  # the same items elsewhere: no build states its frame
    shutil.copy(bench, copy)
    with pytest.raises(ConfigError, match=r"benchmark\.answer_frame: required for "):
        parse_config(_round_one(copy), "mb.yaml")


def test_a_valid_config_still_parses_and_leaves_these_to_the_preflight(tmp_path: Path) -> None:
    bench = rf.make_benchmark(tmp_path / "bench", n=2)
    config = rf.experiment(bench, tmp_path / "run", tmp_path / "cache")
    del config["benchmark"]["answer_frame"]
    config["models"]["grounder"]["adapter"] = "fake-e2e"  # wrong slot: the pre-flight says so
    assert parse_config(config).models["grounder"].adapter == "fake-e2e"


def test_a_bad_prompt_variant_is_named_when_the_selection_cannot_be_read(tmp_path: Path) -> None:
    from cot_ground.runner.preflight import PreflightError, preflight
    from cot_ground.runner.resume import resolve_config

    bench = rf.make_benchmark(tmp_path / "bench", n=2)
    config = rf.experiment(bench, tmp_path / "run", tmp_path / "cache")
    config["benchmark"]["file"] = str(tmp_path / "absent.json")  # no examples to check against
    config["pipelines"]["e2e"]["prompt_variant"] = "nosuch"
    with pytest.raises(PreflightError) as caught:
        preflight(resolve_config(parse_config(config)))
    problems = caught.value.problems
    assert any(p.startswith("benchmark: ") for p in problems)
    assert [p for p in problems if p.startswith("pipelines.")] == [
        next(p for p in problems if p.startswith("pipelines.e2e: prompt variant 'nosuch'"))
    ]  # the cot pipeline's variant serves tasks: not named
