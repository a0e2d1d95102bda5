"""Both graphs end to end on tiny random-weight models and real image files (CPU, offline).

The models answer random text, so only the plumbing is checked: every example ends with a
complete record and trace, whatever the answers were.
"""

from __future__ import annotations

import os

import pytest
import skimage
from scripted_models import example_on

from cot_ground.boxes import Box
from cot_ground.graph import CoTConfig, build_cot_graph, build_e2e_graph, run_example
from cot_ground.models.registry import build
from cot_ground.models.settings import ModelSettings
from cot_ground.records import Example

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def example() -> Example:
    images = [
        os.path.join(skimage.data_dir, f) for f in ("motorcycle_left.png", "motorcycle_right.png")
    ]
    question = (
        "Compare these two images carefully and give me the coordinates of their difference. "
    )
    return example_on("diff", images, question, Box.from_unit([0.2, 0.2, 0.6, 0.6]), 1)


def _qwen(tiny_qwen_paths) -> ModelSettings:
    return ModelSettings(
        path=str(tiny_qwen_paths["qwen2_vl"]), max_new_tokens=12, min_pixels=3136, max_pixels=12544
    )


def _check_trace(pred, example, first_nodes):
    assert pred.example_id == example.id and pred.task == "diff"
    assert [s.node for s in pred.trace][: len(first_nodes)] == first_nodes
    assert pred.trace[-1].node == "finalize"
    assert pred.prompt_hash and pred.prompt_variant
    model_steps = [s for s in pred.trace if s.node not in ("parse_selection", "finalize")]
    for s in model_steps:
        assert s.prompt and s.images and s.settings and s.wall_s > 0
        assert s.raw_output is not None or s.error is not None
    assert pred.box is not None or pred.error is not None  # never silent
    assert pred.timing["total"] > 0


@pytest.mark.parametrize(("mode", "variant"), [("paper", "paper"), ("agent", "structured")])
def test_cot_graph_on_tiny_models(tiny_qwen_paths, tiny_gdino_hf_path, example, mode, variant):
    reasoner = build("qwen-vl-reasoner", _qwen(tiny_qwen_paths))
    grounder = build("gdino-hf", ModelSettings(path=str(tiny_gdino_hf_path)))
    config = CoTConfig(mode=mode, prompt_variant=variant, fallbacks=["next-image"])
    pred = run_example(build_cot_graph(reasoner, grounder, config=config), example)

    _check_trace(pred, example, ["select_and_describe", "parse_selection"])
    assert pred.trace[0].images == example.images
    assert pred.trace[0].settings["family"] == "qwen2_vl"
    if mode == "paper":  # a description is always readable: step 2 runs on image 2
        ground = next(s for s in pred.trace if s.node == "ground")
        assert ground.images[0] == example.images[1] and ground.settings


def test_e2e_graph_on_tiny_models(tiny_qwen_paths, example):
    model = build("qwen-vl-e2e", _qwen(tiny_qwen_paths))
    pred = run_example(build_e2e_graph(model), example)
    _check_trace(pred, example, ["predict", "finalize"])
    assert pred.trace[0].prompt.endswith("Don't generate addtional words.")


def test_paper_step2_wording_reaches_the_qwen_grounder(tiny_qwen_paths, example):
    qwen = _qwen(tiny_qwen_paths)
    reasoner, grounder = build("qwen-vl-reasoner", qwen), build("qwen-vl-grounder", qwen)
    config = CoTConfig(mode="paper", prompt_variant="paper")
    pred = run_example(build_cot_graph(reasoner, grounder, config=config), example)

    parse = pred.trace[1]
    ground = next(s for s in pred.trace if s.node == "ground")
    assert ground.prompt == parse.parsed["step2_prompt"] == ground.parsed["request"]["prompt"]
    assert ground.prompt.startswith("According to the object difference/change: ")
    assert ground.prompt.endswith(" Format:<|box_start|>(x1,y1),(x2,y2)<|box_end|>. "
                                  "Don't generate additional words.")  # fmt: skip
    assert ground.prompt.count("Format:") == 1
