"""IoU, calibrations, per-record helpers and score tables in both modes."""

from __future__ import annotations

import pytest

from cot_ground.boxes import Box
from cot_ground.records import Example, ParseStatus, Prediction
from cot_ground.scoring import (
    ScoreRow,
    apply_calibration,
    iou,
    question_boxes,
    score_row,
    score_table,
    summarize,
)
from cot_ground.tasks import TASK_GROUPS, TASK_ORDER

GT = Box.from_unit([0.0, 0.0, 0.5, 0.5])


def test_iou_of_known_overlaps() -> None:
    assert iou(GT, GT) == pytest.approx(1.0)
    assert iou(Box.from_unit([0.25, 0.0, 0.75, 0.5]), GT) == pytest.approx(1 / 3)
    assert iou(Box.from_unit([0.5, 0.5, 1.0, 1.0]), GT) == 0.0  # touching corners
    assert iou(Box.from_unit([0.0, 0.0, 0.25, 0.25]), GT) == pytest.approx(0.25)


@pytest.mark.parametrize(
    "pred",
    [
        None,
        Box.from_unit([0.4, 0.4, 0.1, 0.1]),  # inverted
        Box.from_unit([0.2, 0.2, 0.2, 0.4]),  # zero width
        Box.from_unit([0.0, 0.0, 0.0, 0.0]),
    ],
)
def test_iou_is_zero_for_missing_inverted_and_degenerate_boxes(pred: Box | None) -> None:
    assert iou(pred, GT) == 0.0


def test_iou_against_an_inverted_ground_truth_is_zero() -> None:
    assert iou(GT, Box.from_unit([0.5, 0.5, 0.0, 0.0])) == 0.0


def test_migician_y_calibration() -> None:
    box = Box.from_qwen1000([270, 597, 330, 900])
    calibrated = apply_calibration(box, "migician-y")
    # the released log records filter_answer [270, 627, 330, 990] for this answer
    assert calibrated.to_frame("qwen1000") == pytest.approx([270, 627, 330, 990])
    capped = apply_calibration(Box.from_unit([0.1, 0.98, 0.2, 0.99]), "migician-y")
    assert capped.y1 == 0.999 and capped.y2 == 0.999
    assert apply_calibration(box, None) is box
    with pytest.raises(ValueError, match="unknown calibration"):
        apply_calibration(box, "flip")


def _row(task: str, pred: list[float] | None, image: int | None, target: int = 1) -> ScoreRow:
    box = Box.from_unit(pred) if pred is not None else None
    return ScoreRow(task, box, GT, pred_image=image, target_image=target)


def test_official_ignores_the_image_and_strict_requires_it() -> None:
    hit_wrong_image = _row("diff", [0.0, 0.0, 0.5, 0.5], image=0)
    hit_no_image = _row("diff", [0.0, 0.0, 0.5, 0.5], image=None)
    hit_right_image = _row("diff", [0.0, 0.0, 0.5, 0.5], image=1)
    wrong, none, right = (score_row(r) for r in (hit_wrong_image, hit_no_image, hit_right_image))
    for score in (wrong, none, right):
        assert score.iou == pytest.approx(1.0) and score.correct(0.5, "official")
    assert wrong.strict_iou == 0.0 and wrong.image_stated and not wrong.image_correct
    assert none.strict_iou == 0.0 and not none.image_stated and not none.image_correct
    assert right.strict_iou == pytest.approx(1.0) and right.image_correct
    assert right.correct(0.7, "strict") and not wrong.correct(0.3, "strict")
    with pytest.raises(ValueError, match="mode"):
        right.iou_in("lenient")


def test_score_row_applies_the_calibration_before_the_iou() -> None:
    row = _row("diff", [0.0, 0.0, 0.5, 0.45], image=1)
    calibrated = score_row(row, "migician-y")
    assert calibrated.iou == pytest.approx(0.5 * 0.495 / 0.25)
    assert calibrated.iou == iou(apply_calibration(row.pred_box, "migician-y"), GT)
    assert score_row(row).iou == pytest.approx(0.9)
    with pytest.raises(ValueError, match="unknown calibration"):
        score_row(row, "nope")


def test_score_table_per_task_and_plain_mean_over_tasks() -> None:
    rows = [
        _row("region", [0.0, 0.0, 0.5, 0.5], 1),  # IoU 1
        _row("region", [0.0, 0.0, 0.25, 0.25], 1),  # IoU 0.25
        _row("region", None, None),  # no box
        _row("diff", [0.25, 0.0, 0.75, 0.5], 0),  # IoU 1/3, wrong image
    ]
    table = score_table(rows)
    assert list(table["tasks"]) == ["diff", "region"]  # benchmark order
    region = table["tasks"]["region"]
    assert region["n"] == 3
    assert region["acc@0.3"] == pytest.approx(100 / 3)
    assert region["acc@0.5"] == pytest.approx(100 / 3)
    assert region["miou"] == pytest.approx(125 / 3)
    diff = table["tasks"]["diff"]
    assert diff["acc@0.3"] == 100.0 and diff["acc@0.5"] == 0.0
    assert table["average"]["acc@0.3"] == pytest.approx((100 / 3 + 100) / 2)
    assert table["average"]["n"] == 4
    assert table["mode"] == "official" and table["calibration"] is None
    strict = score_table(rows, mode="strict")
    assert strict["tasks"]["diff"]["acc@0.3"] == 0.0
    assert strict["tasks"]["region"]["miou"] == pytest.approx(125 / 3)
    # image_stated: the share of answers naming an image, the same in both modes
    assert table["tasks"]["region"]["image_stated"] == pytest.approx(200 / 3)
    assert strict["tasks"]["diff"]["image_stated"] == 100.0
    # the paper's group means: diff is spontaneous, region referential
    assert table["groups"]["spontaneous"]["acc@0.3"] == 100.0
    assert table["groups"]["referential"]["acc@0.3"] == pytest.approx(100 / 3)
    assert table["groups"]["referential"]["n"] == 3


def test_task_groups_are_the_papers_table_5_split() -> None:
    assert TASK_GROUPS["spontaneous"] == ("diff", "view_diff", "common_object")
    assert set(TASK_GROUPS["referential"]) == set(TASK_ORDER) - set(TASK_GROUPS["spontaneous"])
    rows = [_row(t, [0.0, 0.0, 0.5, 0.5] if t == "diff" else None, 1) for t in TASK_ORDER]
    table = score_table(rows)
    assert table["groups"]["spontaneous"]["acc@0.5"] == pytest.approx(100 / 3)
    assert table["groups"]["referential"]["acc@0.5"] == 0.0
    assert table["average"]["acc@0.5"] == pytest.approx(10.0)
    only_diff = score_table(rows[:1])
    assert set(only_diff["groups"]) == {"spontaneous"}  # a group with no task is left out


def test_score_table_accepts_mappings_and_records_the_calibration() -> None:
    rows = [{"task": "diff", "pred_box": Box.from_unit([0, 0, 0.5, 0.45]), "gt_box": GT}]
    table = score_table(rows, calibration="migician-y")
    assert table["calibration"] == "migician-y"
    assert table["tasks"]["diff"]["miou"] == pytest.approx(100 * 0.5 * 0.495 / 0.25)
    with pytest.raises(ValueError, match="unknown calibration"):
        score_table(rows, calibration="nope")


def test_summarize_thresholds_are_inclusive_and_empty_is_zero() -> None:
    assert summarize([0.5, 0.3, 0.7])["acc@0.5"] == pytest.approx(200 / 3)
    assert summarize([])["n"] == 0 and summarize([])["miou"] == 0.0
    assert summarize([0.5, 0.0], [True, False])["image_stated"] == 50.0
    assert "image_stated" not in summarize([0.5])
    with pytest.raises(ValueError, match="flags"):
        summarize([0.5, 0.1], [True])


def test_row_from_prediction_joins_on_example_id() -> None:
    example = Example(
        id="abc", task="diff", images=["a.jpg", "b.jpg"], question="q", gt_box=GT, target_image=1
    )
    pred = Prediction(
        example_id="abc", pipeline="p", task="diff", image_index=1, box=GT, status=ParseStatus.OK
    )
    row = ScoreRow.from_prediction(pred, example)
    assert row.target_image == 1 and row.pred_image == 1 and row.task == "diff"
    other = pred.model_copy(update={"example_id": "zzz"})
    with pytest.raises(ValueError, match="zzz"):
        ScoreRow.from_prediction(other, example)


def test_task_order_lists_the_ten_tasks() -> None:
    assert len(TASK_ORDER) == 10 and TASK_ORDER[0] == "diff" and TASK_ORDER[-1] == "correspondence"


def test_strict_takes_an_unnamed_image_to_be_the_one_the_question_designates() -> None:
    from cot_ground.records import Example, ParseStatus, Prediction

    def example(task: str, rule: str) -> Example:
        return Example(
            id=f"{task}-x",
            task=task,
            images=["a.jpg", "b.jpg"],
            question="q",
            gt_box=GT,
            target_image=1,
            target_rule=rule,
        )

    def prediction(ex: Example) -> Prediction:
        return Prediction(
            example_id=ex.id, pipeline="e2e", task=ex.task, box=GT, status=ParseStatus.OK
        )

    named = example("multi_view", "question_ordinal")  # "... locate it in the 2th image"
    hidden = example("group_grounding", "additional_info")  # the model must find the image
    row_named = ScoreRow.from_prediction(prediction(named), named)
    row_hidden = ScoreRow.from_prediction(prediction(hidden), hidden)
    assert row_named.question_designates_target and score_row(row_named).image_correct
    assert score_row(row_named).strict_iou == pytest.approx(1.0)
    assert not row_hidden.question_designates_target and not score_row(row_hidden).image_correct
    assert score_row(row_hidden).strict_iou == 0.0


TRACKING_QUESTION = (
    "These are a sequence of images containing moving objects. For the object in the first"
    " image marked with red bounding box(<|box_start|>(131,254),(329,822)<|box_end|>), please"
    " locate it in the 2th image. Format:<|box_start|>(x1,y1),(x2,y2)<|box_end|>."
)


def test_question_boxes_are_the_integer_boxes_the_question_states() -> None:
    assert question_boxes(TRACKING_QUESTION) == ((131, 254, 329, 822),)  # not the template
    assert question_boxes("Find the red cup in the second image.") == ()
    two = "<|box_start|>(1,2),(3,4)<|box_end|> and <|box_start|>(5, 6),(7, 8)<|box_end|>"
    assert question_boxes(two) == ((1, 2, 3, 4), (5, 6, 7, 8))


@pytest.mark.parametrize(
    ("answer", "echo"),
    [
        (Box.from_qwen1000([131, 254, 329, 822]), True),  # the reference box copied
        (Box.from_qwen1000([131, 254, 329, 823]), False),  # one unit off
        (Box.from_unit([0.131, 0.254, 0.329, 0.822]), True),  # same integers, unit frame
        (Box.from_pixels([131, 254, 329, 822], 1000, 2000), False),  # other numbers once framed
        (None, False),
    ],
)
def test_reference_box_echo_is_exact_equality_in_the_questions_frame(answer, echo) -> None:
    gt = Box.from_qwen1000([131, 254, 329, 822])  # the object did not move
    row = ScoreRow(
        "object_tracking",
        answer,
        gt,
        question_designates_target=True,
        question_boxes=question_boxes(TRACKING_QUESTION),
    )
    score = score_row(row)
    assert score.reference_box_echo is echo
    # the echo is reported, never scored differently: an unmoved object's copied box is right
    if echo:
        assert score.correct(0.5, "official") and score.correct(0.5, "strict")


def test_reference_box_echo_reads_the_box_as_stated_before_calibration() -> None:
    stated = Box.from_qwen1000([131, 254, 329, 822])
    row = ScoreRow(
        "object_tracking",
        stated,
        stated,
        question_designates_target=True,
        question_boxes=question_boxes(TRACKING_QUESTION),
    )
    assert score_row(row, "migician-y").reference_box_echo
    assert not score_row(ScoreRow("object_tracking", stated, stated)).reference_box_echo


def test_row_from_prediction_reads_the_questions_boxes() -> None:
    ex = Example(
        id="t1",
        task="object_tracking",
        images=["a.png", "b.png"],
        question=TRACKING_QUESTION,
        gt_box=Box.from_qwen1000([100, 250, 330, 800]),
        target_image=1,
    )
    pred = Prediction(
        example_id="t1",
        pipeline="e2e",
        task="object_tracking",
        box=Box.from_qwen1000([131, 254, 329, 822]),
        status=ParseStatus.OK,
    )
    assert ScoreRow.from_prediction(pred, ex).question_boxes == ((131, 254, 329, 822),)
    assert score_row(ScoreRow.from_prediction(pred, ex)).reference_box_echo
