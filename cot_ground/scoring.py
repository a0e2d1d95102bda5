"""IoU, Acc@k and mean IoU per task, in two modes, with optional named calibrations.

Modes:

* ``official`` -- the public MIG-Bench evaluation: only the box counts, the image is ignored.
* ``strict``   -- a prediction counts only when the image it names (or was grounded in) is the
  target image; otherwise its IoU is 0. A prediction that names no image is taken to answer on
  the image the question designates (``Example.target_rule`` in
  ``cot_ground.tasks.QUESTION_DESIGNATES_TARGET``, e.g. "locate it in the 2th image"); where the
  question designates none (``group_grounding``), naming no image counts as wrong.

:func:`score_row` is the only function that decides an item's IoU and official/strict
correctness; every table (here, in ``cot_ground.analysis`` and in the rescoring of the released
logs) aggregates its results. Figures in :func:`score_table` are percentages (0-100); the
average is the plain mean over tasks, as in the benchmark's tables, and the paper's group
means (:data:`cot_ground.tasks.TASK_GROUPS`) stand beside it. A named calibration is applied
to every predicted box before scoring and always recorded in the table. Task order and groups
come from :mod:`cot_ground.tasks`, IoU from :mod:`cot_ground.boxes`.

Reference-box echo: some questions state a box (object_tracking and multi_view: "the object
marked with red bounding box in the first image(<|box_start|>(131,254),(329,822)<|box_end|>)").
An answer that copies that box scores like any other box (the public rule; an object that did
not move can have the same box in the target image), so :func:`score_row` also says whether the
scored box *is* a box of the question (``RowScore.reference_box_echo``), for tables that show
how much of a score such copies make up.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from cot_ground.boxes import Box, Frame, iou
from cot_ground.records import Example, Prediction
from cot_ground.tasks import TASK_GROUPS, order_key, question_designates_target

THRESHOLDS: tuple[float, ...] = (0.3, 0.5, 0.7)
METRICS: tuple[str, ...] = (*(f"acc@{t}" for t in THRESHOLDS), "miou")
ScoringMode = Literal["official", "strict"]
"""How a prediction is scored: ``official`` (box only) or ``strict`` (box and image)."""
MODES: tuple[str, ...] = ("official", "strict")
QUESTION_BOX_FRAME = Frame.QWEN1000
"""The frame of the boxes MIG-Bench questions state (``<|box_start|>(x1,y1),(x2,y2)<|box_end|>``,
integers in thousandths of the reference image; in both annotation files)."""
_QUESTION_BOX = re.compile(
    r"<\|box_start\|>\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)\s*,?"
    r"\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)\s*<\|box_end\|>"
)
IntBox = tuple[int, int, int, int]


def question_boxes(question: str) -> tuple[IntBox, ...]:
    """Every box a question states as ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>`` with integer
    coordinates, as ``(x1, y1, x2, y2)`` in :data:`QUESTION_BOX_FRAME`, in question order
    (empty when it states none; the format template ``(x1,y1),(x2,y2)`` is not a box)."""
    return tuple(
        (int(a), int(b), int(c), int(d)) for a, b, c, d in _QUESTION_BOX.findall(question)
    )


def is_question_box(box: Box, boxes: Iterable[IntBox]) -> bool:
    """True when ``box`` (normalized) equals one of ``boxes`` (integers in
    :data:`QUESTION_BOX_FRAME`) coordinate for coordinate: each coordinate of ``box`` in that
    frame is within 1e-6 of the integer (the float error of ``v / 1000 * 1000``; boxes stated
    in another frame match only when they land on the same integers)."""
    coords = box.to_frame(QUESTION_BOX_FRAME)
    return any(
        all(abs(v - q) < 1e-6 for v, q in zip(coords, ref, strict=True)) for ref in boxes
    )


def _migician_y(box: Box) -> Box:
    y1 = round(min(box.y1 * 1.05, 0.999), 3)
    y2 = round(min(box.y2 * 1.10, 0.999), 3)
    return Box(x1=box.x1, y1=y1, x2=box.x2, y2=y2)


# Named box calibrations. "migician-y": the public Migician evaluation multiplies the predicted
# y1 by 1.05 and y2 by 1.10, caps each at 0.999 and rounds to 3 decimals (normalized
# coordinates; the 1/1000 grid Migician answers on) before scoring. Checked against every
# ``filter_answer`` of the released Migician logs: all 4,276 match.
CALIBRATIONS: dict[str, Callable[[Box], Box]] = {"migician-y": _migician_y}


def apply_calibration(box: Box, name: str | None) -> Box:
    """``box`` after the named calibration (``None`` leaves it unchanged)."""
    if name is None:
        return box
    try:
        return CALIBRATIONS[name](box)
    except KeyError:
        known = ", ".join(sorted(CALIBRATIONS))
        raise ValueError(f"unknown calibration {name!r} (known: {known})") from None


@dataclass(frozen=True)
class ScoreRow:
    """One scored item: the predicted box and image against the ground truth."""

    task: str
    pred_box: Box | None
    gt_box: Box
    pred_image: int | None = None
    target_image: int | None = None
    question_designates_target: bool = False
    """The question designates the target image, so an answer naming no image is on it."""
    question_boxes: tuple[IntBox, ...] = ()
    """The boxes the question states (:func:`question_boxes`: integers in
    :data:`QUESTION_BOX_FRAME`), e.g. the reference box of object_tracking and multi_view."""

    @classmethod
    def from_prediction(cls, prediction: Prediction, example: Example) -> ScoreRow:
        """Row for a prediction (box as the model stated it) joined to its example."""
        if prediction.example_id != example.id:
            raise ValueError(
                f"prediction for {prediction.example_id} joined to example {example.id}"
            )
        return cls(
            task=example.task,
            pred_box=prediction.box,
            gt_box=example.gt_box,
            pred_image=prediction.image_index,
            target_image=example.target_image,
            question_designates_target=question_designates_target(example.target_rule),
            question_boxes=question_boxes(example.question),
        )


@dataclass(frozen=True)
class RowScore:
    """How one scored item fares: IoU in both modes and the image facts behind strict."""

    iou: float
    """Official IoU: the (calibrated) box against the ground truth, the image ignored."""
    strict_iou: float
    """``iou`` when ``image_correct``, else 0."""
    image_stated: bool
    """The prediction names (or was grounded in) an image."""
    image_correct: bool
    """The named image is the target; with no image named, the question designates it."""
    reference_box_echo: bool = False
    """The predicted box, as stated (before the calibration :func:`score_row` applies), is one
    of the boxes the question states (``ScoreRow.question_boxes``, same integers in
    :data:`QUESTION_BOX_FRAME`): the answer copies the question's reference box. Scored like
    any box in both modes; reported beside the scores."""

    def iou_in(self, mode: ScoringMode | str) -> float:
        """IoU under ``mode`` (``official`` or ``strict``)."""
        _check_mode(mode)
        return self.iou if mode == "official" else self.strict_iou

    def correct(self, threshold: float = 0.5, mode: ScoringMode | str = "official") -> bool:
        """True when the IoU under ``mode`` is at least ``threshold``."""
        return self.iou_in(mode) >= threshold


def score_row(row: ScoreRow, calibration: str | None = None) -> RowScore:
    """The one place that decides IoU and official/strict correctness of a scored item.

    ``calibration`` (a name in :data:`CALIBRATIONS`, or None) is applied to the predicted box
    first. Strict: the image the row names must be the target; a row that names no image is
    taken to answer on the image the question designates (``question_designates_target``) and is
    wrong where the question designates none. ``reference_box_echo``: the stated box is one
    the question states (:func:`is_question_box`). Raises ValueError for an unknown calibration.
    """
    box = None if row.pred_box is None else apply_calibration(row.pred_box, calibration)
    official = iou(box, row.gt_box)
    stated = row.pred_image is not None
    right_image = row.pred_image == row.target_image if stated else row.question_designates_target
    return RowScore(
        iou=official,
        strict_iou=official if right_image else 0.0,
        image_stated=stated,
        image_correct=right_image,
        reference_box_echo=row.pred_box is not None
        and is_question_box(row.pred_box, row.question_boxes),
    )


def summarize(
    ious: Iterable[float], image_stated: Iterable[bool] | None = None
) -> dict[str, float]:
    """``n``, ``acc@k`` for every threshold and ``miou`` (percent) of a list of IoUs; with
    ``image_stated`` (one flag per IoU) also ``image_stated``, the percentage of items that
    name an image."""
    values = list(ious)
    n = len(values)
    out: dict[str, float] = {"n": n}
    for t in THRESHOLDS:
        out[f"acc@{t}"] = 100.0 * sum(v >= t for v in values) / n if n else 0.0
    out["miou"] = 100.0 * sum(values) / n if n else 0.0
    if image_stated is not None:
        flags = list(image_stated)
        if len(flags) != n:
            raise ValueError(f"summarize: {n} IoUs but {len(flags)} image_stated flags")
        out["image_stated"] = 100.0 * sum(flags) / n if n else 0.0
    return out


def score_table(
    rows: Iterable[ScoreRow | Mapping[str, Any]],
    mode: ScoringMode | str = "official",
    calibration: str | None = None,
) -> dict[str, Any]:
    """Per-task figures, the paper's group means and the plain mean over tasks.

    ``rows`` are :class:`ScoreRow` or mappings with the same keys, each scored by
    :func:`score_row`. Returns ``{"mode", "calibration", "tasks": {task: {"n", "acc@0.3",
    "acc@0.5", "acc@0.7", "miou", "image_stated"}}, "groups": {group: {...}}, "average":
    {...}}`` (percentages; see :func:`summarize`, :func:`group_means` and
    :func:`average_over_tasks`).
    """
    _check_mode(mode)
    if calibration is not None:
        apply_calibration(Box(x1=0, y1=0, x2=1, y2=1), calibration)  # fail early on a bad name
    per_task: dict[str, list[RowScore]] = {}
    for row in rows:
        r = row if isinstance(row, ScoreRow) else ScoreRow(**row)
        per_task.setdefault(r.task, []).append(score_row(r, calibration))
    tasks = {
        t: summarize([s.iou_in(mode) for s in per_task[t]], [s.image_stated for s in per_task[t]])
        for t in sorted(per_task, key=order_key)
    }
    return {
        "mode": mode,
        "calibration": calibration,
        "tasks": tasks,
        "groups": group_means(tasks),
        "average": average_over_tasks(list(tasks.values())),
    }


def average_over_tasks(per_task: list[Mapping[str, float]]) -> dict[str, float]:
    """The benchmark's average of per-task figures: ``n`` summed, every metric of
    :data:`METRICS` (and ``image_stated`` when every task has it) the plain mean over tasks
    (0 for no tasks)."""
    average: dict[str, float] = {"n": sum(s["n"] for s in per_task)}
    keys = [*METRICS]
    if per_task and all("image_stated" in s for s in per_task):
        keys.append("image_stated")
    for k in keys:
        average[k] = sum(s[k] for s in per_task) / len(per_task) if per_task else 0.0
    return average


def group_means(tasks: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """:func:`average_over_tasks` of each group of :data:`cot_ground.tasks.TASK_GROUPS` over
    the tasks present; a group with no task present is left out."""
    out = {}
    for group, members in TASK_GROUPS.items():
        present = [tasks[t] for t in members if t in tasks]
        if present:
            out[group] = average_over_tasks(present)
    return out


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown scoring mode {mode!r} (use one of {', '.join(MODES)})")
