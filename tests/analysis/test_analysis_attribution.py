"""Failure categories on hand-made predictions, the per-task table and the oracle gain."""

from __future__ import annotations

import pytest
from analysis_fixtures import GOOD, POOR, cot_prediction, make_example, standard_run, write_run

from cot_ground.analysis.attribution import (
    attribution_shares,
    attribution_table,
    failure_category,
    oracle_gain,
    oracle_pairs,
)
from cot_ground.analysis.load import load_run
from cot_ground.boxes import Box
from cot_ground.records import ErrorCategory, ErrorInfo, ParseStatus, TraceStep
from cot_ground.scoring import ScoreRow, score_row

OK_STEP = TraceStep(
    node="parse_selection", parsed={"status": "ok", "image_index": 1, "description": "x"}
)
BAD_STEP = TraceStep(node="parse_selection", parsed={"status": "malformed", "description": None})


def _cat(image_index=1, target_image=1, iou_value=0.9, designated=True, **kw):
    """The category of a prediction described by its image, target and IoU (scored by
    ``score_row``, as ``load_run`` does)."""
    box = kw.pop("box", GOOD)
    pred = None if box is None else Box.from_unit([0.0, 0.0, iou_value, 1.0])
    row = ScoreRow(
        "diff",
        pred,
        Box.from_unit([0.0, 0.0, 1.0, 1.0]),
        pred_image=image_index,
        target_image=target_image,
        question_designates_target=designated,
    )
    base = dict(kind="cot", error=None, step1=OK_STEP, status=ParseStatus.OK)
    return failure_category(**(base | kw), score=score_row(row), box=box)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, "success"),
        ({"iou_value": 0.49}, "low_iou"),
        ({"iou_value": 0.5}, "success"),
        ({"box": None, "status": ParseStatus.NO_BOX, "iou_value": 0.0}, "no_box"),
        ({"image_index": 0}, "wrong_image"),
        ({"image_index": 2, "box": None, "iou_value": 0.0}, "wrong_image"),
        ({"step1": BAD_STEP, "image_index": None, "box": None, "iou_value": 0.0}, "step1_format"),
        (
            {
                "step1": None,
                "image_index": None,
                "box": None,
                "iou_value": 0.0,
                "error": ErrorInfo(category=ErrorCategory.FORMAT, message="unparsable"),
            },
            "step1_format",
        ),
        (
            {"error": ErrorInfo(category=ErrorCategory.IMAGE, message="missing a.png")},
            "image_error",
        ),
        (
            {"error": ErrorInfo(category=ErrorCategory.MODEL, message="CUDA OOM"), "box": None},
            "model_error",
        ),
        (
            {
                "image_index": None,
                "box": None,
                "error": ErrorInfo(category=ErrorCategory.INDEX, message="image 7 of 3"),
            },
            "index_out_of_range",
        ),
        # a fallback chose an image after an unreadable step 1: judged on the outcome
        ({"step1": BAD_STEP, "image_index": 1}, "success"),
        # end-to-end: no image named, the box decides; unparsable text is a format failure
        ({"kind": "e2e", "step1": None, "image_index": None}, "success"),
        # ... unless the question designates no image: strict cannot count the box
        (
            {"kind": "e2e", "step1": None, "image_index": None, "designated": False},
            "image_not_stated",
        ),
        (
            {"kind": "e2e", "step1": None, "box": None, "status": ParseStatus.MALFORMED},
            "format_failure",
        ),
        ({"kind": "e2e", "step1": None, "box": None, "status": ParseStatus.NO_BOX}, "no_box"),
    ],
)
def test_failure_category(changes, expected):
    assert _cat(**changes) == expected


def test_attribution_table_counts(tmp_path):
    table = attribution_table(load_run(standard_run(tmp_path)))
    assert list(table["pipeline"].unique()) == ["cot-agent", "cot-oracle"]  # CoT only
    agent = table[table["pipeline"] == "cot-agent"].set_index("task")
    assert list(agent.index) == ["common_object", "group_grounding", "ALL"]
    assert agent.loc["common_object", ["success", "wrong_image", "no_box", "low_iou"]].tolist() == [
        1,
        1,
        1,
        1,
    ]
    assert agent.loc["common_object", "step1_format"] == 0
    assert agent.loc["group_grounding", "step1_format"] == 1
    assert agent.loc["ALL"].drop(["pipeline", "n"]).sum() == agent.loc["ALL", "n"] == 8
    shares = attribution_shares(table).set_index(["pipeline", "task"])
    assert shares.loc[("cot-oracle", "ALL"), "success"] == pytest.approx(75.0)


def test_oracle_gain_per_task(tmp_path):
    run = standard_run(tmp_path)
    frame = load_run(run)
    table = oracle_gain(frame)
    assert list(dict.fromkeys(table["rule"])) == ["strict", "official"]
    gain = table[table["rule"] == "official"].set_index("task")
    # agent: 2 of 4 official Acc@0.5 per task (success + good box on the wrong image);
    # oracle: 3 of 4
    assert gain.loc["common_object", "agent_acc"] == pytest.approx(50.0)
    assert gain.loc["common_object", "oracle_acc"] == pytest.approx(75.0)
    assert gain.loc["common_object", "gain"] == pytest.approx(25.0)
    assert gain.loc["AVERAGE", "gain"] == pytest.approx(25.0)
    # the paper's group means: common_object is spontaneous, group_grounding referential
    assert gain.loc["SPONTANEOUS", "n"] == 4 and gain.loc["REFERENTIAL", "n"] == 4
    assert gain.loc["SPONTANEOUS", "gain"] == pytest.approx(gain.loc["common_object", "gain"])
    assert gain.loc["AVERAGE", "n"] == 8
    # strict: the good box on the wrong image is wrong, so the agent has 1 of 4
    strict = table[table["rule"] == "strict"].set_index("task")
    assert strict.loc["common_object", "agent_acc"] == pytest.approx(25.0)
    assert strict.loc["common_object", "gain"] == pytest.approx(50.0)


def test_oracle_pairs_match_configs(tmp_path):
    ex = make_example(tmp_path, "region", 0)
    preds = {
        name: [cot_prediction(ex, name, image_index=1, box=GOOD if "o" in name[-1] else POOR)]
        for name in ("a-gdino", "a-owl", "o-gdino", "o-owl")
    }
    specs = {
        "a-gdino": {"kind": "cot", "grounder": "gdino", "mode": "agent"},
        "a-owl": {"kind": "cot", "grounder": "owl", "mode": "agent"},
        "o-gdino": {"kind": "cot", "grounder": "gdino", "mode": "oracle-image"},
        "o-owl": {"kind": "cot", "grounder": "owl", "mode": "oracle-image"},
    }
    frame = load_run(write_run(tmp_path / "run", [ex], preds, specs))
    assert oracle_pairs(frame, specs) == [("a-gdino", "o-gdino"), ("a-owl", "o-owl")]
    assert oracle_pairs(frame) == []  # ambiguous without the configs
    assert set(oracle_gain(frame, specs)["oracle"]) == {"o-gdino", "o-owl"}


def test_no_pair_gives_empty_gain(tmp_path):
    ex = make_example(tmp_path, "region", 0)
    box = Box.from_unit([0, 0, 1, 1])
    preds = {"cot-agent": [cot_prediction(ex, "cot-agent", image_index=1, box=box)]}
    frame = load_run(write_run(tmp_path / "run", [ex], preds, {"cot-agent": {"mode": "agent"}}))
    assert oracle_gain(frame).empty


def test_success_is_exactly_strict_correct_at_half(tmp_path):
    frame = load_run(standard_run(tmp_path))
    assert (frame["failure"] == "success").tolist() == frame["strict_correct_50"].tolist()
    # the end-to-end answers name no image and these questions designate none
    e2e = frame[frame["pipeline"] == "migician"]
    assert set(e2e.loc[e2e["iou"] >= 0.5, "failure"]) == {"image_not_stated"}
