"""The step-1 cache never serves an answer of other weights written to the same model folder:
`cot-ground run` with a real tiny Qwen2-VL reasoner (CPU), the cache on, before and after the
folder is rebuilt with another seed."""

from __future__ import annotations

import gc
import shutil
from pathlib import Path

import pytest
import runner_fakes as rf
import yaml
from typer.testing import CliRunner

from cot_ground.cli.app import _register_commands, app
from cot_ground.models import registry
from cot_ground.models.weights_identity import weights_digest
from cot_ground.runner.store import read_jsonl
from cot_ground.testing import build_tiny_qwen_vl

_register_commands()

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("fakes")]


def _config(tmp_path: Path, model: Path) -> Path:
    bench = rf.make_benchmark(tmp_path / "bench", n=2)
    data = rf.experiment(bench, tmp_path / "runs" / "c", tmp_path / "cache")
    data["models"]["reasoner"] = {
        "adapter": "qwen-vl-reasoner",
        "path": str(model),
        "device": "cpu",
        "dtype": "float32",
        "min_pixels": 3136,
        "max_pixels": 12544,
        "max_new_tokens": 8,
    }
    # one step-1 call per example: random weights answer unreadable text, which is not retried
    data["pipelines"] = {"cot": {**data["pipelines"]["cot"], "max_retries": 0}}
    path = tmp_path / "cache.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _run(config: Path, out: Path) -> tuple[str, list[dict]]:
    """`cot-ground run CONFIG --out OUT --limit 2` in a fresh registry (as a new process has);
    its output and the step-1 trace steps of its records."""
    registry.clear_cache()
    gc.collect()  # the weights of the dropped adapters leave the process-wide model cache
    result = CliRunner().invoke(app, ["run", str(config), "--out", str(out), "--limit", "2"])
    assert result.exit_code == 0, result.output
    records = read_jsonl(out / "predictions" / "cot.jsonl")
    return result.output, [r["trace"][0] for r in records]


def test_other_weights_at_the_same_folder_miss_the_cache(tmp_path: Path) -> None:
    model = build_tiny_qwen_vl(tmp_path / "models" / "qwen2_vl", seed=0)
    config = _config(tmp_path, model)
    out, first = _run(config, tmp_path / "runs" / "c1")
    assert "step-1 cache: 0 hits, 2 misses" in out
    old_digest = weights_digest(model)
    assert all(s["settings"]["weights_digest"] == old_digest for s in first)

    shutil.rmtree(model)  # rebuilt at the same folder with other weights
    build_tiny_qwen_vl(model, seed=7)
    out, second = _run(config, tmp_path / "runs" / "c2")
    assert "step-1 cache: 0 hits, 2 misses" in out
    assert not any(s["cached"] for s in second)
    new_digest = weights_digest(model)
    assert new_digest != old_digest
    assert all(s["settings"]["weights_digest"] == new_digest for s in second)
    assert [s["raw_output"] for s in second] != [s["raw_output"] for s in first]

    out, third = _run(config, tmp_path / "runs" / "c3")  # the same weights again: hits
    assert "step-1 cache: 2 hits, 0 misses" in out
    assert all(s["cached"] for s in third)
    assert [s["raw_output"] for s in third] == [s["raw_output"] for s in second]
