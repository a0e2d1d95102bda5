"""som, perception-prompt, verify and zoom on tiny random-weight Qwen2-VL + GroundingDINO, loaded
through the registry (the user's code path), over real image files (CPU, offline).

The models answer random text, so only the plumbing is checked: every example ends with a
complete record and trace (proposals, marked images or crops the reasoner really received),
whatever the answers were.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import skimage
from scripted_models import example_on

from cot_ground.boxes import Box
from cot_ground.graph import (
    PerceptionConfig,
    SoMConfig,
    VerifyConfig,
    build_perception_graph,
    build_som_graph,
    build_verify_graph,
    build_zoom_graph,
    run_example,
)
from cot_ground.models.registry import build
from cot_ground.models.settings import ModelSettings
from cot_ground.records import Example

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def example() -> Example:
    images = [os.path.join(skimage.data_dir, f) for f in ("coffee.png", "chelsea.png")]
    question = (
        "Please find the bounding box coordinates for the area described by: "
        "<|object_ref_start|>the cat<|object_ref_end|>."
    )
    return example_on("group_grounding", images, question, Box.from_unit([0.1, 0.1, 0.9, 0.9]), 1)


@pytest.fixture(scope="module")
def adapters(tiny_qwen_paths, tiny_gdino_hf_path):
    qwen = ModelSettings(
        path=str(tiny_qwen_paths["qwen2_vl"]), max_new_tokens=12, min_pixels=3136, max_pixels=12544
    )
    return build("qwen-vl-reasoner", qwen), build(
        "gdino-hf", ModelSettings(path=str(tiny_gdino_hf_path))
    )


def _complete(pred) -> None:
    assert pred.trace[0].node in ("propose", "select_and_describe")
    assert pred.trace[-1].node == "finalize"
    assert pred.box is not None or pred.error is not None  # never silent
    assert pred.timing["total"] > 0


def test_som_and_zoom_on_tiny_models(example, adapters, tmp_path: Path) -> None:
    reasoner, gdino = adapters
    som = build_som_graph(
        reasoner, gdino, config=SoMConfig(artifacts_dir=str(tmp_path), pipeline="som", top_k=3)
    )
    pred = run_example(build_zoom_graph(som, gdino, artifacts_dir=str(tmp_path)), example)
    _complete(pred)
    propose = pred.trace[0]
    assert propose.node == "propose" and propose.settings["adapter"] == "gdino-hf"
    assert propose.parsed["proposals"]  # the tiny detector's random boxes
    choose = next(s for s in pred.trace if s.node == "choose")
    assert all(Path(p).is_file() and p.endswith("_marks.png") for p in choose.images)
    assert choose.raw_output is not None


def test_perception_and_verify_on_tiny_models(example, adapters, tmp_path: Path) -> None:
    reasoner, gdino = adapters
    cfg = PerceptionConfig(artifacts_dir=str(tmp_path), pipeline="pp", top_k=2, max_retries=0)
    _complete(run_example(build_perception_graph(reasoner, gdino, config=cfg), example))
    vcfg = VerifyConfig(artifacts_dir=str(tmp_path), pipeline="verify", top_k=2, max_retries=0)
    pred = run_example(build_verify_graph(reasoner, gdino, config=vcfg), example)
    _complete(pred)
    assert pred.trace[0].node == "select_and_describe" and pred.trace[0].raw_output is not None
