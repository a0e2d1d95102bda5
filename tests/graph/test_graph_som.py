"""Set-of-Mark and perception-prompt graphs with scripted models: every branch."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from cot_ground.analysis.proposal_recall import proposal_hit, trace_proposals
from cot_ground.boxes import Box
from cot_ground.graph import (
    PerceptionConfig,
    SoMConfig,
    build_perception_graph,
    build_som_graph,
    run_example,
)
from cot_ground.graph.choices import parse_id_choice, parse_mark_choice, parse_yes_no
from cot_ground.graph.proposals import nms, proposal_request
from cot_ground.records import Candidate, ErrorCategory, ParseStatus
from tests.scripted_models import RaisingAdapter, ScriptedGrounder, ScriptedReasoner, make_example

A = Box.from_unit([0.1, 0.1, 0.5, 0.5])
B = Box.from_unit([0.6, 0.6, 0.9, 0.9])
C = Box.from_unit([0.12, 0.1, 0.5, 0.5])  # IoU with A = 0.95: dropped by NMS


def _images(tmp_path: Path, n: int = 3) -> list[str]:
    paths = []
    for i in range(n):
        p = tmp_path / f"img{i}.png"
        Image.new("RGB", (200, 100), (40 * i, 90, 160)).save(p)
        paths.append(str(p))
    return paths


@pytest.fixture
def setup(tmp_path: Path):
    images = _images(tmp_path)
    ex = make_example("group_grounding", n_images=3, target=1, folder=str(tmp_path))
    ex = ex.model_copy(update={"images": images})
    grounder = ScriptedGrounder(
        {
            images[0]: [Candidate(box=B, score=0.9)],
            images[1]: [
                Candidate(box=A, score=0.8),
                Candidate(box=C, score=0.7),
                Candidate(box=B, score=0.5),
            ],
        }
    )
    return ex, grounder, tmp_path


def _som(reasoner, grounder, tmp_path, **kw):
    cfg = SoMConfig(artifacts_dir=str(tmp_path / "artifacts"), pipeline="som", **kw)
    return build_som_graph(reasoner, grounder, config=cfg)


def test_som_picks_the_named_mark_and_saves_marked_images(setup) -> None:
    ex, grounder, tmp = setup
    reasoner = ScriptedReasoner(["The target is in image 2, mark 1."])
    pred = run_example(_som(reasoner, grounder, tmp), ex)
    assert pred.status is ParseStatus.OK and pred.error is None
    assert pred.image_index == 1 and pred.box == A
    nodes = [s.node for s in pred.trace]
    assert nodes == ["propose", "draw_marks", "choose", "parse_choice", "finalize"]
    # NMS dropped C; marks are numbered per image
    props = trace_proposals(pred.trace)
    assert [(p["image"], p["mark"]) for p in props] == [(0, 1), (1, 1), (1, 2)]
    # the reasoner saw the marked copies, which exist and differ from the originals
    shown = reasoner.requests[0].images
    assert shown == [
        str(tmp / "artifacts" / "som" / ex.id / f"image{i}_marks.png") for i in (1, 2, 3)
    ]
    assert pred.trace[2].images == shown
    marked = Image.open(shown[1]).convert("RGB")
    original = Image.open(ex.images[1]).convert("RGB")
    assert marked.size == original.size and marked.tobytes() != original.tobytes()
    assert "image 2: marks 1-2" in reasoner.requests[0].prompt
    assert proposal_hit(props, ex.gt_box, ex.target_image)


def test_som_no_proposals_skips_the_reasoner(setup) -> None:
    ex, _, tmp = setup
    reasoner = ScriptedReasoner(["image 1, mark 1"])
    pred = run_example(_som(reasoner, ScriptedGrounder({}), tmp), ex)
    assert reasoner.requests == []
    assert pred.box is None and pred.status is ParseStatus.NO_BOX
    assert pred.error.category is ErrorCategory.NO_BOX and pred.error.node == "propose"
    assert [s.node for s in pred.trace] == ["propose", "finalize"]


def test_som_mark_out_of_range_retries_then_records_index_error(setup) -> None:
    ex, grounder, tmp = setup
    reasoner = ScriptedReasoner(["image 2, mark 7"])
    pred = run_example(_som(reasoner, grounder, tmp, max_retries=1), ex)
    assert len(reasoner.requests) == 2
    assert "mark 7 is not on image 2" in reasoner.requests[1].prompt
    assert pred.box is None and pred.error.category is ErrorCategory.INDEX
    assert pred.image_index is None


def test_som_unparseable_choice_retries_and_recovers(setup) -> None:
    ex, grounder, tmp = setup
    reasoner = ScriptedReasoner(["I think it is the truck.", '{"image": 1, "mark": 1}'])
    pred = run_example(_som(reasoner, grounder, tmp), ex)
    assert len(reasoner.requests) == 2
    assert "could not be used" in reasoner.requests[1].prompt
    assert pred.image_index == 0 and pred.box == B
    parses = [s.parsed for s in pred.trace if s.node == "parse_choice"]
    assert parses[0]["next"] == "retry" and parses[1]["rule"] == "mark"


def test_som_unparseable_after_retries_is_a_format_failure(setup) -> None:
    ex, grounder, tmp = setup
    pred = run_example(_som(ScriptedReasoner(["no idea"]), grounder, tmp, max_retries=0), ex)
    assert pred.status is ParseStatus.MALFORMED and pred.error.category is ErrorCategory.FORMAT
    assert pred.box is None


def test_som_none_answer_is_an_empty_multi_box_answer(setup) -> None:
    ex, grounder, tmp = setup
    pred = run_example(_som(ScriptedReasoner(["None."]), grounder, tmp), ex)
    assert pred.box is None and pred.boxes == [] and pred.error.category is ErrorCategory.NO_BOX


def test_som_unmarked_choice_option(setup) -> None:
    ex, grounder, tmp = setup
    answer = '{"image": 2, "description": "the truck"}'
    default = run_example(_som(ScriptedReasoner([answer]), grounder, tmp, max_retries=0), ex)
    assert default.box is None and default.error.category is ErrorCategory.FORMAT
    top = run_example(
        _som(ScriptedReasoner([answer]), grounder, tmp, unmarked_choice="top-proposal"), ex
    )
    assert top.box == A
    assert [s.parsed.get("rule") for s in top.trace if s.node == "parse_choice"] == ["top-proposal"]


def test_perception_lists_proposals_in_the_reasoner_frame(setup) -> None:
    ex, grounder, tmp = setup
    reasoner = ScriptedReasoner(["id 2"])
    cfg = PerceptionConfig(frame="qwen1000", pipeline="pp", artifacts_dir=str(tmp))
    pred = run_example(build_perception_graph(reasoner, grounder, config=cfg), ex)
    prompt = reasoner.requests[0].prompt
    assert "id 1: image 1, [600, 600, 900, 900]" in prompt
    assert "id 2: image 2, [100, 100, 500, 500]" in prompt
    assert reasoner.requests[0].images == ex.images  # the originals, no marks
    assert pred.box == A and pred.image_index == 1
    assert [s.node for s in pred.trace] == ["propose", "choose", "parse_choice", "finalize"]


def test_perception_reasoner_box_and_unknown_id(setup) -> None:
    ex, grounder, tmp = setup
    cfg = PerceptionConfig(frame="qwen1000", pipeline="pp", artifacts_dir=str(tmp))
    reasoner = ScriptedReasoner(["id 9", "image 3 [100, 200, 300, 400]"])
    pred = run_example(build_perception_graph(reasoner, grounder, config=cfg), ex)
    assert "id 9 is not listed" in reasoner.requests[1].prompt
    assert pred.image_index == 2 and pred.box == Box.from_unit([0.1, 0.2, 0.3, 0.4])
    assert pred.trace[-2].parsed["rule"] == "reasoner-box"


@pytest.mark.parametrize(
    ("text", "image", "mark"),
    [
        ("image 2, mark 3", 1, 3),
        ("Mark 3 in the second image.", 1, 3),
        ("Image-2 #3", 1, 3),
        ('```json\n{"image": 2, "mark": "3"}\n```', 1, 3),
        ("(2, 3)", 1, 3),
        ("<think>image 1?</think><answer>image 2, mark 3</answer>", 1, 3),
    ],
)
def test_mark_phrasings(text: str, image: int, mark: int) -> None:
    choice = parse_mark_choice(text)
    assert (choice.kind, choice.image, choice.mark) == ("choice", image, mark)


def test_mark_choice_never_invents() -> None:
    assert parse_mark_choice("the red truck").kind == "unreadable"
    assert parse_mark_choice("image 2").kind == "unreadable"
    assert parse_mark_choice("none of them").kind == "none"
    assert parse_id_choice("[4]", "qwen1000").proposal_id == 4
    json_image = parse_id_choice('{"image": 2, "description": "what image 1 shows"}', "unit")
    assert (json_image.kind, json_image.image) == ("unreadable", 1)
    assert parse_id_choice("[100, 100, 200, 200]", "qwen1000").kind == "unreadable"
    assert parse_yes_no("Yes, it is.") is True
    assert parse_yes_no("no") is False
    assert parse_yes_no("maybe") is None


def test_nms_keeps_ranking_order() -> None:
    cands = [{"box": b.model_dump(), "score": s} for b, s in ((A, 0.9), (C, 0.8), (B, 0.1))]
    assert [c["score"] for c in nms(cands, 0.5, 5)] == [0.9, 0.1]
    assert [c["score"] for c in nms(cands, 0.5, 1)] == [0.9]


def test_som_grounder_failure_and_unreadable_image(setup, tmp_path: Path) -> None:
    ex, grounder, tmp = setup
    reasoner = ScriptedReasoner(["image 1, mark 1"])
    failing = RaisingAdapter(RuntimeError("CUDA out of memory"))
    pred = run_example(_som(reasoner, failing, tmp), ex)
    assert pred.error.category is ErrorCategory.MODEL and pred.error.node == "propose"
    assert "CUDA out of memory" in pred.error.message and reasoner.requests == []
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    images = [ex.images[0], str(broken), ex.images[2]]
    grounder = ScriptedGrounder({images[0]: [Candidate(box=B, score=0.9)]})
    pred = run_example(_som(reasoner, grounder, tmp), ex.model_copy(update={"images": images}))
    assert pred.error.category is ErrorCategory.IMAGE and pred.error.node == "draw_marks"
    assert reasoner.requests == []


def test_proposal_requests_carry_the_reference_picture() -> None:
    ex = make_example("common_object", n_images=3, target=2)
    assert [proposal_request(ex, i, "object.").reference_image for i in range(3)] == [
        ex.images[1],
        ex.images[0],
        ex.images[0],
    ]
    group = make_example("group_grounding", n_images=2)
    assert proposal_request(group, 0, "object.").reference_image is None
