"""The runner on the tiny random-weight models (real adapters, real images, CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
import runner_fakes as rf
from repo_paths import EXPERIMENTS

from cot_ground.runner.config import load_config
from cot_ground.runner.run import run_experiment
from cot_ground.runner.store import RunFolder

pytestmark = pytest.mark.slow

EXPERIMENT = EXPERIMENTS / "tiny_models.yaml"


def test_tiny_models_experiment_runs_batched_and_resumes(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tiny_models_root: Path,
    tiny_qwen_paths: dict,
    tiny_gdino_hf_path: Path,
) -> None:
    bench = rf.make_benchmark(tmp_path / "lite", n=6)
    monkeypatch.setenv("COT_GROUND_TINY_DIR", str(tiny_models_root))
    monkeypatch.setenv("MIG_LITE_DIR", str(bench.parent))
    config = load_config(EXPERIMENT)

    summary = run_experiment(config, out=tmp_path / "run", limit=5)

    folder = RunFolder(tmp_path / "run")
    assert folder.pipelines() == ["tiny_cot_paper", "tiny_e2e"]
    for name, pipe in summary.pipelines.items():
        records = folder.read_predictions(name)
        assert len(records) == 5 == pipe.written
        for r in records:
            assert r["trace"] and r["trace"][-1]["node"] == "finalize"
            assert r["box"] is not None or r["error"] is not None or r["status"] != "ok"
            model_steps = [s for s in r["trace"] if s["settings"]]
            assert model_steps and all(s["settings"]["device"] == "cpu" for s in model_steps)
        assert all(1 <= n <= 4 for sizes in pipe.batch_sizes.values() for n in sizes)
    # lock-step examples share calls: fewer end-to-end calls than examples
    assert len(summary.pipelines["tiny_e2e"].batch_sizes["qwen-vl-e2e.predict"]) < 5
    manifest = folder.read_manifest()
    assert manifest["device"]["torch_threads"] >= 1
    assert manifest["packages"]["transformers"]

    again = run_experiment(config, out=tmp_path / "run", limit=5)
    assert all(p.written == 0 and p.done_before == 5 for p in again.pipelines.values())
