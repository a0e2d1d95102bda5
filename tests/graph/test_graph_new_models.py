"""The CoT graph on MIG-Lite with the generic chat reasoner (tiny InternVL and LLaVA-OneVision)
and the three new grounders (tiny MM-GroundingDINO, OWLv2, Florence-2), run by the runner in
batches and one example at a time: the outputs agree (CPU, float32, greedy)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cot_ground.runner.config import load_config
from cot_ground.runner.run import run_experiment
from cot_ground.runner.store import RunFolder

pytestmark = pytest.mark.slow

PIPELINES = {
    # pipeline: (reasoner family, grounder adapter, grounder family)
    "internvl_mm_gdino": ("internvl", "mm-gdino-hf", "mm_gdino"),
    "llava_ov_owlv2": ("llava_onevision", "owlv2", "owlv2"),
    "internvl_florence2": ("internvl", "florence2", "florence2"),
}


@pytest.fixture(scope="module")
def lite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cot_ground.lite import generate_lite

    build = generate_lite(tmp_path_factory.mktemp("lite"), seed=1, per_task=1)
    return build.data_file


def _config(tmp_path: Path, lite: Path, chat: dict, grounders: dict, batch_size: int) -> Path:
    models: dict = {}
    for family in ("internvl", "llava_onevision"):
        models[f"r_{family}"] = {
            "adapter": "hf-chat-reasoner",
            "path": str(chat[family]),
            "device": "cpu",
            "dtype": "float32",
            "max_new_tokens": 8,
        }
    pipelines = {}
    for name, (family, adapter, gfamily) in PIPELINES.items():
        models[f"g_{gfamily}"] = {
            "adapter": adapter,
            "path": str(grounders[gfamily]),
            "device": "cpu",
            "dtype": "float32",
            "max_new_tokens": 8,
        }
        pipelines[name] = {
            "kind": "cot",
            "reasoner": f"r_{family}",
            "grounder": f"g_{gfamily}",
            "mode": "paper",
            "prompt_variant": "paper",
        }
    config = {
        "name": f"new_models_b{batch_size}",
        "benchmark": {"file": str(lite), "answer_frame": "unit"},
        "models": models,
        "pipelines": pipelines,
        "batch_size": batch_size,
        "cache": {"enabled": False},
    }
    path = tmp_path / f"b{batch_size}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _outputs(folder: RunFolder, pipeline: str) -> dict[str, list]:
    out = {}
    for record in folder.read_predictions(pipeline):
        steps = [(s["node"], s["raw_output"], s["images"]) for s in record["trace"]]
        out[record["example_id"]] = [steps, record["box"], record["status"]]
    return out


def test_cot_graph_on_mig_lite_with_new_models_batched_equals_sequential(
    tmp_path: Path, lite: Path, tiny_chat_paths: dict, tiny_grounder_paths: dict
) -> None:
    runs = {}
    for batch_size in (4, 1):
        config = load_config(
            _config(tmp_path, lite, tiny_chat_paths, tiny_grounder_paths, batch_size)
        )
        summary = run_experiment(config, out=tmp_path / f"run{batch_size}")
        runs[batch_size] = RunFolder(tmp_path / f"run{batch_size}")
        for name in PIPELINES:
            assert summary.pipelines[name].written == summary.n_examples >= 5
            sizes = summary.pipelines[name].batch_sizes
            assert max(max(v) for v in sizes.values()) == min(batch_size, summary.n_examples)
    for name, (family, adapter, _) in PIPELINES.items():
        batched, sequential = (_outputs(runs[b], name) for b in (4, 1))
        assert batched == sequential
        records = runs[4].read_predictions(name)
        assert any(s["node"] == "ground" for r in records for s in r["trace"])
        for record in records:
            assert record["error"] is None or record["error"]["category"] not in (
                "model_error",
                "image_error",
            )
            first = record["trace"][0]
            assert first["settings"]["family"] == family
            grounds = [s for s in record["trace"] if s["node"] == "ground"]
            for step in grounds:
                assert step["settings"]["adapter"] == adapter
            if adapter != "florence2":  # the detectors always rank a scored best box
                assert all(step["candidates"][0]["score"] is not None for step in grounds)
