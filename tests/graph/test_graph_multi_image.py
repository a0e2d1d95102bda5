"""Mode ``multi-image`` (the Migician paper's +mCoT, Table 5) and its answer forms (Table 10)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from scripted_models import (
    RaisingAdapter,
    ScriptedGrounder,
    ScriptedReasoner,
    candidate,
    make_example,
)

from cot_ground.boxes import Box, Frame
from cot_ground.graph import CoTConfig, build_cot_graph, run_example
from cot_ground.graph.multi_image import ALL_FORM_TASKS, boxes_by_image
from cot_ground.models.base import ChatRequest, EndToEndResult
from cot_ground.records import ParseStatus


class ScriptedMultiImage:
    """A multi-image grounder answering text (read like a Qwen2-VL end-to-end answer)."""

    def __init__(self, answer: str | Callable[[ChatRequest], str], frame: str = "qwen1000"):
        self.name = "scripted-multi-image"
        self.settings: dict[str, Any] = {"frame": frame, "max_new_tokens": 128}
        self._answer = answer
        self.requests: list[ChatRequest] = []

    def predict(self, requests: list[ChatRequest]) -> list[EndToEndResult]:
        self.requests.extend(requests)
        texts = [self._answer(r) if callable(self._answer) else self._answer for r in requests]
        return [EndToEndResult.from_text(t, Frame.QWEN1000, self.settings) for t in texts]


def _run(ex, reasoner_answer, grounder, **config):
    reasoner = ScriptedReasoner([reasoner_answer])
    cfg = CoTConfig(mode="multi-image", prompt_variant="paper", **config)
    pred = run_example(build_cot_graph(reasoner, grounder, config=cfg), ex)
    return pred, reasoner


def _ground_step(pred):
    (step,) = [s for s in pred.trace if s.node == "ground"]
    return step


def test_polling_sends_every_image_and_names_the_targeted_one():
    ex = make_example("multi_view", n_images=3, target=2)
    grounder = ScriptedMultiImage("<|box_start|>(100,200),(300,400)<|box_end|>")
    pred, reasoner = _run(ex, "a red mug.", grounder)
    (request,) = grounder.requests
    assert request.images == ex.images
    assert request.prompt == (
        "Now ONIY look at Image3. Locate and ground the object <|object_ref_start|>a red mug"
        "<|object_ref_end|> with bounding box coordinates. Format:<|box_start|>(x1,y1),(x2,y2)"
        "<|box_end|>. Don't generate additional words."
    )
    assert pred.box == Box.from_unit([0.1, 0.2, 0.3, 0.4]) and pred.image_index == 2
    assert pred.status is ParseStatus.OK and pred.error is None
    assert pred.settings["mode"] == "multi-image" and pred.settings["answer_form"] == "polling"
    assert pred.settings["step2"] == {"max_new_tokens": 128}
    step = _ground_step(pred)
    assert step.images == ex.images and step.prompt == request.prompt and step.prompt_hash
    assert step.parsed["image_source"] == "prompt" and step.parsed["targeted_image"] == 2
    assert [s.node for s in pred.trace] == [
        "select_and_describe",
        "parse_selection",
        "ground",
        "finalize",
    ]
    assert len(reasoner.requests) == 1 and reasoner.requests[0].images == ex.images


def test_polling_keeps_the_image_the_answer_names():
    ex = make_example("multi_view", n_images=3, target=2)
    grounder = ScriptedMultiImage("It is in Image-1 at (100,200),(300,400).")
    pred, _ = _run(ex, "a red mug", grounder)
    assert pred.image_index == 0 and _ground_step(pred).parsed["image_source"] == "answer"


def test_all_form_takes_the_targeted_images_box_from_one_query():
    ex = make_example("common_object", n_images=4, target=2)
    answer = (
        "Image-1: <|box_start|>(0,0),(500,500)<|box_end|>\n"
        "Image-3: <|box_start|>(100,200),(300,400)<|box_end|>\n"
        "Image-4: <|box_start|>(10,10),(20,20)<|box_end|>"
    )
    grounder = ScriptedMultiImage(answer)
    pred, _ = _run(ex, "a tuba", grounder, answer_form="all")
    assert grounder.requests[0].prompt.startswith(
        "Find <|object_ref_start|>a tuba<|object_ref_end|> in every image where it appears."
    )
    assert pred.box == Box.from_unit([0.1, 0.2, 0.3, 0.4]) and pred.image_index == 2
    parsed = _ground_step(pred).parsed
    assert parsed["answer_form"] == "all" and parsed["unattributed_boxes"] == 0
    assert parsed["boxes_by_image"]["3"] == [0.1, 0.2, 0.3, 0.4]
    assert set(parsed["boxes_by_image"]) == {"1", "3", "4"}
    assert pred.settings["answer_form"] == "all"


def test_all_form_without_the_targeted_image_is_no_box_not_a_guess():
    ex = make_example("common_object", n_images=4, target=2)
    grounder = ScriptedMultiImage("(100,200),(300,400) Image-1: (0,0),(10,10)")
    pred, _ = _run(ex, "a tuba", grounder, answer_form="all")
    assert pred.box is None and pred.status is ParseStatus.NO_BOX
    assert pred.error is not None and pred.error.category.value == "no_box"
    assert _ground_step(pred).parsed["unattributed_boxes"] == 1


@pytest.mark.parametrize("task", ["diff", "region", "reasoning", "refer_grounding"])
def test_all_form_applies_only_where_one_object_is_in_several_images(task):
    assert task not in ALL_FORM_TASKS
    ex = make_example(task, n_images=2, target=1)
    grounder = ScriptedMultiImage("(100,200),(300,400)")
    pred, _ = _run(ex, "a cat", grounder, answer_form="all")
    assert _ground_step(pred).parsed["answer_form"] == "polling"
    assert grounder.requests[0].prompt.startswith("Now ONIY look at Image")
    assert pred.box is not None


def test_group_grounding_uses_step1s_image_and_the_papers_first_image_fallback():
    ex = make_example("group_grounding", n_images=3, target=1)
    grounder = ScriptedMultiImage("(100,200),(300,400)")
    pred, _ = _run(ex, "Image2", grounder)
    assert grounder.requests[0].prompt.startswith("Now ONIY look at Image2. Please find")
    assert pred.image_index == 1 and pred.fallbacks == []

    grounder = ScriptedMultiImage("(100,200),(300,400)")
    pred, _ = _run(ex, "no idea", grounder)
    assert grounder.requests[0].prompt.startswith("Now ONIY look at Image1. ")
    assert pred.fallbacks == ["paper-first-image"] and pred.image_index == 0


def test_variant_without_step2_uses_the_request_wording():
    ex = make_example("group_grounding", n_images=3, target=1)
    grounder = ScriptedMultiImage("(100,200),(300,400)")
    reasoner = ScriptedReasoner(['{"image": 3, "description": "the white truck"}'])
    cfg = CoTConfig(mode="multi-image", prompt_variant="structured")
    pred = run_example(build_cot_graph(reasoner, grounder, config=cfg), ex)
    assert grounder.requests[0].prompt.startswith(
        "Now ONIY look at Image3. Locate <|object_ref_start|>the white truck<|object_ref_end|>"
    )
    assert pred.image_index == 2


def test_a_failing_grounder_is_recorded_on_the_example():
    ex = make_example("multi_view", n_images=3, target=2)
    grounder = RaisingAdapter(RuntimeError("out of memory"))
    pred, _ = _run(ex, "a red mug", grounder)
    assert pred.box is None and pred.error.category.value == "model_error"
    assert "out of memory" in pred.error.message


def test_setup_errors():
    reasoner = ScriptedReasoner(["x"])
    with pytest.raises(ValueError, match="needs mode 'multi-image'"):
        CoTConfig(mode="paper", answer_form="all")
    with pytest.raises(ValueError, match="takes no fallbacks"):
        CoTConfig(mode="multi-image", fallbacks=["next-image"])
    single = ScriptedGrounder({"a.png": [candidate(0.1, 0.1, 0.2, 0.2)]})
    with pytest.raises(TypeError, match="multi-image grounder"):
        build_cot_graph(reasoner, single, config=CoTConfig(mode="multi-image"))
    pixels = ScriptedMultiImage("", frame="pixels")
    with pytest.raises(ValueError, match="fixed frame"):
        build_cot_graph(reasoner, pixels, config=CoTConfig(mode="multi-image", answer_form="all"))
    build_cot_graph(reasoner, pixels, config=CoTConfig(mode="multi-image"))  # polling is fine


@pytest.mark.parametrize(
    ("text", "expected", "unattributed"),
    [
        ("Image-1: (0,0),(500,500)\nImage-2: (100,200),(300,400)", {0: 0.0, 1: 0.1}, 0),
        ("第二张图片 (100,200),(300,400)；第一张图片 (0,0),(500,500)", {1: 0.1, 0: 0.0}, 0),
        ("(1,1),(2,2) then the second image: [100, 200, 300, 400]", {1: 0.1}, 1),
        ("Image 2 (100,200),(300,400) and again Image 2 (0,0),(9,9)", {1: 0.1}, 0),
        ("the third image has none", {}, 0),
        ("", {}, 0),
    ],
)
def test_boxes_by_image(text, expected, unattributed):
    found, loose = boxes_by_image(text, Frame.QWEN1000)
    assert {i: b.x1 for i, b in found.items()} == expected and loose == unattributed


def test_boxes_by_image_refuses_pixels():
    with pytest.raises(ValueError, match="size"):
        boxes_by_image("Image-1: (1,2),(3,4)", Frame.PIXELS)


def test_config_slot_needs_an_end_to_end_adapter():
    from cot_ground.runner.config import parse_config
    from cot_ground.runner.pipelines import role_problems

    def config(grounder: str) -> dict:
        return {
            "name": "mcot",
            "benchmark": {"file": "/b.json"},
            "models": {
                "reasoner": {"adapter": "qwen-vl-reasoner", "path": "/m"},
                "single": {"adapter": "qwen-vl-grounder", "path": "/m"},
                "multi": {"adapter": "qwen-vl-e2e", "path": "/m"},
            },
            "pipelines": {
                "mcot": {
                    "kind": "cot",
                    "reasoner": "reasoner",
                    "grounder": grounder,
                    "mode": "multi-image",
                    "answer_form": "all",
                }
            },
        }

    assert role_problems(parse_config(config("multi"))) == []
    (problem,) = role_problems(parse_config(config("single")))
    assert "pipelines.mcot.multi_image_grounder" in problem and "qwen-vl-grounder" in problem
    with_zoom = config("multi")
    with_zoom["pipelines"]["mcot"]["zoom"] = {}
    with pytest.raises(ValueError, match="takes no zoom"):
        parse_config(with_zoom)
