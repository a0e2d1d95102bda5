"""Zoom-in geometry (hand-computed), the zoom wrapper and the verify graph with scripted models."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from cot_ground.boxes import Box
from cot_ground.graph import (
    PerceptionConfig,
    SoMConfig,
    VerifyConfig,
    ZoomConfig,
    build_perception_graph,
    build_som_graph,
    build_verify_graph,
    build_zoom_graph,
    run_example,
)
from cot_ground.graph.zoom import crop_window, moved, to_full
from cot_ground.models.base import ChatRequest, GroundRequest, GroundResult
from cot_ground.records import Candidate, ErrorCategory, ParseStatus
from tests.scripted_models import ScriptedGrounder, ScriptedReasoner, make_example

A = Box.from_unit([0.1, 0.1, 0.5, 0.5])


# ----------------------------------------------------------------------------- geometry
@pytest.mark.parametrize(
    ("box", "expand", "min_size", "window"),
    [
        # 200x100 image; box px x 50..70, y 40..60; sides 40, 40; centres 60, 50
        ([0.25, 0.4, 0.35, 0.6], 2.0, 16, (40, 30, 80, 70)),
        # at the top-right corner: x start 170 shifted to 200-40=160; y start -5 clamped to 0
        ([0.9, 0.0, 1.0, 0.1], 2.0, 16, (160, 0, 200, 20)),
        # tiny box: min_size 16 wins; x centre 101 -> 93, y centre 51 -> 43
        ([0.5, 0.5, 0.51, 0.52], 2.0, 16, (93, 43, 109, 59)),
        # expand 10 asks for more than the image: capped to the whole image
        ([0.2, 0.2, 0.8, 0.8], 10.0, 16, (0, 0, 200, 100)),
        # non-integer side rounds up: x 20..33 -> 13 x 1.5 = 19.5 -> 20, centre 26.5 -> 16.5 -> 17
        ([0.1, 0.2, 0.165, 0.3], 1.5, 4, (17, 18, 37, 33)),
    ],
)
def test_crop_window_hand_computed(box, expand, min_size, window) -> None:
    assert crop_window(Box.from_unit(box), 200, 100, expand, min_size) == window


def test_crop_window_box_outside_the_image() -> None:
    assert crop_window(Box.from_unit([1.2, 0.1, 1.5, 0.3]), 200, 100, 2.0, 16) is None
    assert crop_window(Box.from_unit([0.5, 0.5, 0.4, 0.6]), 200, 100, 2.0, 16) is None  # inverted
    # partly outside: clipped to [0.9, 0.1, 1.0, 0.3] -> px x 180..200 -> side 40 -> (160, 200)
    assert crop_window(Box.from_unit([0.9, 0.1, 1.3, 0.3]), 200, 100, 2.0, 16) == (160, 0, 200, 40)


def test_back_mapping_hand_computed() -> None:
    # window (40, 30, 80, 70) on 200x100: x = (40 + u*40)/200, y = (30 + v*40)/100
    full = to_full(Box.from_unit([0.25, 0.25, 0.75, 0.75]), (40, 30, 80, 70), 200, 100)
    assert full.to_list() == [0.25, 0.4, 0.35, 0.6]
    # window (160, 0, 200, 20): the whole crop is the top-right corner
    full = to_full(Box.from_unit([0.0, 0.0, 1.0, 1.0]), (160, 0, 200, 20), 200, 100)
    assert full.to_list() == [0.8, 0.0, 1.0, 0.2]
    assert moved(Box.from_unit([0.1, 0.1, 0.5, 0.5]), Box.from_unit([0.1, 0.15, 0.5, 0.48])) == (
        pytest.approx(0.05)
    )


# ----------------------------------------------------------------------------- zoom graph
class FnGrounder:
    """Grounder answering from a function of the request (crop paths are made by the graph)."""

    def __init__(self, fn: Callable[[GroundRequest], list[Candidate]]) -> None:
        self.name = "fn-grounder"
        self.settings: dict[str, Any] = {"scripted": True}
        self.fn = fn
        self.requests: list[GroundRequest] = []
        self._lock = threading.Lock()

    def ground(self, requests: list[GroundRequest]) -> list[GroundResult]:
        out = []
        for r in requests:
            with self._lock:
                self.requests.append(r)
            cands = self.fn(r)
            out.append(
                GroundResult(
                    candidates=cands, status=ParseStatus.OK if cands else ParseStatus.NO_BOX
                )
            )
        return out


@pytest.fixture
def example(tmp_path: Path):
    images = []
    for i in range(2):
        p = tmp_path / f"img{i}.png"
        Image.new("RGB", (200, 100), (10, 80 * i, 30)).save(p)
        images.append(str(p))
    ex = make_example("group_grounding", n_images=2, target=1, folder=str(tmp_path))
    return ex.model_copy(update={"images": images})


def _zoomed_som(example, crop_answers: list[list[float] | None], tmp_path: Path, **zoom):
    answers = iter(crop_answers)

    def fn(r: GroundRequest) -> list[Candidate]:
        if r.image == example.images[1]:
            return [Candidate(box=A, score=0.9)]
        if Path(r.image).name.startswith("zoom"):
            box = next(answers)
            return [Candidate(box=Box.from_unit(box))] if box else []
        return []

    grounder = FnGrounder(fn)
    som = build_som_graph(
        ScriptedReasoner(["image 2, mark 1"]),
        grounder,
        config=SoMConfig(artifacts_dir=str(tmp_path / "art"), pipeline="som"),
    )
    graph = build_zoom_graph(
        som,
        grounder,
        config=ZoomConfig(**zoom),
        pipeline="som_zoom",
        artifacts_dir=str(tmp_path / "art"),
    )
    return graph, grounder


def test_zoom_converges_in_one_round(example, tmp_path: Path) -> None:
    # box A = px x 20..100, y 10..50 -> window (0, 0, 160, 80); crop box 0.125..0.625 maps to A
    graph, grounder = _zoomed_som(example, [[0.125, 0.125, 0.625, 0.625]], tmp_path, rounds=3)
    pred = run_example(graph, example)
    zooms = [s for s in pred.trace if s.node == "zoom"]
    assert len(zooms) == 1 and zooms[0].parsed["stop"] == "converged"
    assert zooms[0].parsed["window_px"] == [0, 0, 160, 80]
    assert pred.box.to_list() == pytest.approx(A.to_list())
    assert pred.pipeline == "som_zoom"
    crop = Path(zooms[0].images[0])
    assert crop.name == "zoom1_image2.png" and Image.open(crop).size == (160, 80)
    assert Path(grounder.requests[-1].image) == crop
    assert [s.node for s in pred.trace][:5] == [
        "propose",
        "draw_marks",
        "choose",
        "parse_choice",
        "finalize",
    ]
    assert pred.trace[-1].parsed["zoom"]["stop"] == "converged"


def test_zoom_moves_then_converges_or_stops_after_n_rounds(example, tmp_path: Path) -> None:
    # round 1: [0.25..0.75] of (0,0,160,80) -> [0.2, 0.2, 0.6, 0.6]; round 2 has the same window
    graph, _ = _zoomed_som(example, [[0.25, 0.25, 0.75, 0.75]] * 2, tmp_path, rounds=3)
    pred = run_example(graph, example)
    stops = [s.parsed.get("stop") for s in pred.trace if s.node == "zoom"]
    assert stops == [None, "converged"]
    assert pred.box.to_list() == pytest.approx([0.2, 0.2, 0.6, 0.6])
    graph, _ = _zoomed_som(example, [[0.25, 0.25, 0.75, 0.75]], tmp_path, rounds=1)
    pred = run_example(graph, example)
    assert [s.parsed.get("stop") for s in pred.trace if s.node == "zoom"] == ["rounds done"]


def test_zoom_no_box_in_crop_keeps_the_box(example, tmp_path: Path) -> None:
    graph, _ = _zoomed_som(example, [None], tmp_path)
    pred = run_example(graph, example)
    assert pred.box == A and pred.trace[-1].parsed["zoom"]["stop"] == "no box in the crop"


def test_zoom_box_that_leaves_the_image(example, tmp_path: Path) -> None:
    grounder = ScriptedGrounder({example.images[0]: [Candidate(box=A)]})
    inner = build_perception_graph(
        ScriptedReasoner(["image 2 [1200, 100, 1500, 300]"]),
        grounder,
        config=PerceptionConfig(pipeline="pp", artifacts_dir=str(tmp_path)),
    )
    pred = run_example(build_zoom_graph(inner, grounder, artifacts_dir=str(tmp_path)), example)
    zooms = [s for s in pred.trace if s.node == "zoom"]
    assert zooms[0].parsed["stop"] == "the box lies outside the image"
    assert pred.box == Box.from_unit([1.2, 0.1, 1.5, 0.3])  # unchanged, never clipped silently
    assert [r.image for r in grounder.requests] == example.images  # proposals only, no crop


def test_zoom_after_no_box_does_nothing(example, tmp_path: Path) -> None:
    grounder = ScriptedGrounder({})
    inner = build_som_graph(
        ScriptedReasoner(["image 1, mark 1"]),
        grounder,
        config=SoMConfig(artifacts_dir=str(tmp_path)),
    )
    pred = run_example(build_zoom_graph(inner, grounder, artifacts_dir=str(tmp_path)), example)
    assert pred.box is None and pred.error.category is ErrorCategory.NO_BOX
    assert "zoom" not in [s.node for s in pred.trace]


# ----------------------------------------------------------------------------- verify graph
P1 = Box.from_unit([0.1, 0.1, 0.3, 0.3])
P2 = Box.from_unit([0.5, 0.5, 0.9, 0.9])
P3 = Box.from_unit([0.3, 0.6, 0.45, 0.95])


class LogprobReasoner(ScriptedReasoner):
    def __init__(self, answers, logprobs: list[float]) -> None:
        super().__init__(answers)
        self.logprobs = logprobs

    def yes_logprob(self, requests: list[ChatRequest]) -> list[float]:
        return self.logprobs[: len(requests)]


def _verifier(
    example, answers: dict[str, str], tmp_path: Path, *, logprobs=None, boxes=(P1, P2, P3)
):
    def answer(request: ChatRequest) -> str:
        if not request.prompt.startswith("Is this"):
            return '{"image": 2, "description": "the green cup"}'
        return answers[Path(request.images[0]).name]

    reasoner = LogprobReasoner(answer, logprobs) if logprobs else ScriptedReasoner(answer)
    grounder = ScriptedGrounder({example.images[1]: [Candidate(box=b, score=0.5) for b in boxes]})
    cfg = VerifyConfig(pipeline="verify", artifacts_dir=str(tmp_path / "art"), verify_top=3)
    return build_verify_graph(reasoner, grounder, config=cfg), reasoner, grounder


def test_verify_takes_the_first_yes_by_answer_text(example, tmp_path: Path) -> None:
    answers = {
        "verify_image2_id1.png": "No.",
        "verify_image2_id2.png": "Yes",
        "verify_image2_id3.png": "yes",
    }
    graph, reasoner, grounder = _verifier(example, answers, tmp_path)
    pred = run_example(graph, example)
    assert pred.box == P2 and pred.image_index == 1 and pred.status is ParseStatus.OK
    assert grounder.requests[0].phrase == "the green cup"
    asked = [r for r in reasoner.requests if r.prompt.startswith("Is this")]
    assert [r.prompt for r in asked] == ["Is this the the green cup? Answer yes or no."] * 3
    assert all(Path(r.images[0]).is_file() for r in asked)
    step = next(s for s in pred.trace if s.node == "verify")
    assert step.parsed["rule"] == "answer_text" and step.parsed["chosen_id"] == 2
    assert [s.node for s in pred.trace] == [
        "select_and_describe",
        "parse_selection",
        "propose",
        "verify",
        "finalize",
    ]


def test_verify_uses_yes_logprob_when_exposed(example, tmp_path: Path) -> None:
    answers = dict.fromkeys(
        ("verify_image2_id1.png", "verify_image2_id2.png", "verify_image2_id3.png"), "yes"
    )
    graph, _, _ = _verifier(example, answers, tmp_path, logprobs=[-0.6, -2.0, -0.1])
    pred = run_example(graph, example)
    assert pred.box == P3
    assert next(s for s in pred.trace if s.node == "verify").parsed["rule"] == "yes_logprob"


def test_verify_no_yes_and_no_proposals(example, tmp_path: Path) -> None:
    answers = dict.fromkeys(
        ("verify_image2_id1.png", "verify_image2_id2.png", "verify_image2_id3.png"), "no"
    )
    graph, _, _ = _verifier(example, answers, tmp_path)
    pred = run_example(graph, example)
    assert pred.box is None and pred.error.category is ErrorCategory.NO_BOX
    assert pred.error.message == "no proposal was verified"
    graph, reasoner, _ = _verifier(example, answers, tmp_path, boxes=())
    pred = run_example(graph, example)
    assert pred.error.node == "propose" and "verify" not in [s.node for s in pred.trace]
    assert not any(r.prompt.startswith("Is this") for r in reasoner.requests)
