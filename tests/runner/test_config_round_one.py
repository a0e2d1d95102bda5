"""The config is refused in one report when it is read: the pixel range and device of every model
(ModelSettings), a bad answer_frame name, and, next to a schema error, each used model's option
values, the prompt variants that serve no task and an answer_frame contradicting the file's
build (the reviewer's bad2.yaml, two_rounds.yaml and multi.yaml)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import runner_fakes as rf
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from cot_ground.cli.app import _register_commands, app
from cot_ground.models.settings import ModelSettings
from cot_ground.records import BUILD_INFO_FILE, file_sha256
from cot_ground.runner.config import ConfigError, parse_config

_register_commands()


def _lines(config: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(config, "c.yaml")
    return [line.strip() for line in str(caught.value).splitlines()[1:]]


def _classical(bench: Path, **models: dict[str, Any]) -> dict[str, Any]:
    """A config of the classical pipeline (registry adapters, no weights) on ``bench``."""
    return {
        "name": "c",
        "benchmark": {"file": str(bench), "root": str(bench.parent), "answer_frame": "unit"},
        "models": {
            "rules": {"adapter": "rule-reasoner"},
            "classical": {"adapter": "classical-grounder"},
            **models,
        },
        "pipelines": {
            "cot": {"kind": "cot", "reasoner": "rules", "grounder": "classical", "mode": "agent"}
        },
    }


def test_model_settings_refuse_a_bad_pixel_range_and_device() -> None:
    goods = ("auto", "cpu", "cpu:0", "cuda", "cuda:0", "cuda:12", "mps", "mps:0", "xpu", "xpu:1")
    for good in (*goods, "npu:0", "hpu", "xla:1", "meta"):  # what torch.device accepts
        assert ModelSettings(device=good).device == good
    for bad in ("gpu7", "cuda:", "cuda:x", "CUDA", "cuda 0", ""):
        with pytest.raises(ValidationError, match="accepted: auto, meta, or cpu, cuda, mps"):
            ModelSettings(device=bad)
    assert ModelSettings(min_pixels=3136, max_pixels=3136).max_pixels == 3136
    assert ModelSettings(min_pixels=1).max_pixels is None and ModelSettings(max_pixels=1)
    for low, high in ((-5, 10), (0, None), (None, 0), (20, 10)):
        with pytest.raises(ValidationError):
            ModelSettings(min_pixels=low, max_pixels=high)


def test_pixels_and_device_are_refused_when_the_config_is_read(tmp_path: Path) -> None:
    bench = rf.make_benchmark(tmp_path / "bench", n=2)
    config = _classical(
        bench,
        r={"adapter": "qwen-vl-reasoner", "path": "/x", "min_pixels": -5, "max_pixels": 10},
        e={"adapter": "qwen-vl-e2e", "path": "/x", "min_pixels": 20, "max_pixels": 10},
        g={"adapter": "gdino-hf", "path": "/y", "device": "gpu7"},
    )
    lines = _lines(config)
    assert "models.r.min_pixels: Input should be greater than or equal to 1" in lines
    assert "models.e.max_pixels: must be at least min_pixels (20), got 10" in lines
    assert (
        "models.g.device: unknown device 'gpu7' (accepted: auto, meta, or cpu, cuda, mps, xpu,"
        " npu, hpu, xla with an optional :N index)" in lines
    )
    # the command stops with exit status 2 before anything is built
    path = tmp_path / "bad2.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    done = CliRunner().invoke(app, ["run", str(path), "--limit", "1", "--out", str(tmp_path / "r")])
    assert done.exit_code == 2, done.output
    assert "models.r.min_pixels" in done.output and not (tmp_path / "r").exists()


def test_an_unset_device_variable_is_reported_as_unset_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("H3_DEVICE", raising=False)
    bench = rf.make_benchmark(tmp_path / "bench", n=2)
    config = _classical(bench)
    config["models"]["rules"]["device"] = "${H3_DEVICE}"
    parsed = parse_config(config, "c.yaml", defer_unset_env=True)
    assert [p.split(":")[0] for p in parsed.unset_env] == ["models.rules.device"]


def test_an_unknown_answer_frame_lists_the_frames(tmp_path: Path) -> None:
    bench = rf.make_benchmark(tmp_path / "bench", n=2)
    config = _classical(bench)
    config["benchmark"]["answer_frame"] = "bogus"
    assert _lines(config) == [
        "benchmark.answer_frame: unknown frame 'bogus' (frames: unit, qwen1000, qwen3_1000,"
        " pixels, normalized)"
    ]
    config["benchmark"]["answer_frame"] = "normalized"
    assert parse_config(config).benchmark.answer_frame == "normalized"


def _build(bench: Path, frame: str = "unit") -> None:
    """A sidecar stating ``frame`` for exactly ``bench`` (as a MIG-Lite build writes)."""
    info = {"data_sha256": file_sha256(bench), "answer_frame": frame}
    (bench.parent / BUILD_INFO_FILE).write_text(json.dumps(info))


def test_a_schema_error_does_not_hide_option_values_and_prompt_variants(tmp_path: Path) -> None:
    # two_rounds.yaml: batch_size 0, an unknown option, a prompt variant that does not exist
    bench = rf.make_benchmark(tmp_path / "bench", n=2)
    _build(bench)
    config = _classical(bench)
    config["benchmark"]["answer_frame"] = "unit"
    config["batch_size"] = 0
    config["models"]["classical"]["options"] = {"nonsense": 1}
    config["pipelines"]["cot"]["prompt_variant"] = "nosuch"
    lines = _lines(config)
    assert lines[0] == "batch_size: Input should be greater than or equal to 1"
    assert lines[1].startswith(
        "models.classical (classical-grounder): adapter 'classical-grounder': unknown option(s)"
        " nonsense (known: diff, keypoint, template)"
    )
    assert lines[2].startswith("pipelines.cot: prompt variant 'nosuch' not found")
    assert len(lines) == 3


def test_multi_lists_every_problem_in_round_one(tmp_path: Path) -> None:
    # multi.yaml: a bad option value, a missing prompt variant and an answer_frame that
    # contradicts the build, next to a schema error and a model in the wrong slot
    bench = rf.make_benchmark(tmp_path / "bench", n=2)
    _build(bench, "unit")
    config = {
        "name": "multi",
        "benchmark": {"file": str(bench), "root": str(bench.parent), "answer_frame": "qwen1000"},
        "models": {
            "r": {"adapter": "qwen-vl-reasoner", "path": "/x", "max_new_tokens": -3},
            "g": {"adapter": "gdino-hf", "path": "/y", "options": {"box_threshold": "high"}},
            "unused": {"adapter": "gdino-hf", "options": {"box_threshold": "high"}},
        },
        "pipelines": {
            "p1": {
                "kind": "cot",
                "reasoner": "r",
                "grounder": "g",
                "mode": "paper",
                "prompt_variant": "nosuch",
            },
            "p2": {"kind": "e2e", "model": "r"},
        },
    }
    lines = _lines(config)
    expected = [
        "models.r.max_new_tokens: Input should be greater than or equal to 1",
        "pipelines.p2.model: model 'r' is adapter 'qwen-vl-reasoner', a reasoner, but this slot"
        " needs an e2e adapter",
        "models.g (gdino-hf): adapter 'gdino-hf': option box_threshold must be a number, got"
        " 'high' (str)",
        "pipelines.p1: prompt variant 'nosuch' not found",
        f"benchmark.answer_frame: {bench}: answer_frame 'qwen1000' contradicts the frame of this"
        " file, 'unit'",
    ]
    for start in expected:
        assert sum(line.startswith(start) for line in lines) == 1, (start, lines)
    assert len(lines) == len(expected), lines  # the unused model is the pre-flight's business


def test_an_edited_build_is_named_in_round_one(tmp_path: Path) -> None:
    bench = rf.make_benchmark(tmp_path / "bench", n=2)
    _build(bench)
    bench.write_text(bench.read_text() + "\n")  # edited after the build
    config = _classical(bench)
    del config["benchmark"]["answer_frame"]
    config["batch_size"] = 0
    frame_lines = [line for line in _lines(config) if line.startswith("benchmark.answer_frame")]
    assert len(frame_lines) == 1
    assert f"required for {bench} (not a published MIG-Bench file" in frame_lines[0]
    assert f"{BUILD_INFO_FILE} beside it describes another file (sha256 " in frame_lines[0]
    assert "the file was edited after the build" in frame_lines[0]
