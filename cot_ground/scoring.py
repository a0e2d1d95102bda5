"""IoU, Acc@k and mean IoU per task, in two modes, with optional named calibrations.

Modes:

* ``official`` -- the public MIG-Bench evaluation: only the box counts, the image is ignored.
* ``strict``   -- a prediction counts only when the image it names (or was grounded in) is the
  target image; otherwise its IoU is 0. A prediction that names no image is taken to answer on
  the image the question designates (``Example.target_rule`` in
  ``bench.targets.QUESTION_DESIGNATES_TARGET``, e.g. "locate it in the 2th image"); where the
  question designates none (``group_grounding``), naming no image counts as wrong.

Figures in :func:`score_table` are percentages (0-100); the average is the plain mean over
tasks, as in the benchmark's tables. A named calibration is applied to every predicted box
before scoring and always recorded in the table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from cot_ground.boxes import Box
from cot_ground.records import Example, Prediction

THRESHOLDS: tuple[float, ...] = (0.3, 0.5, 0.7)
METRICS: tuple[str, ...] = (*(f"acc@{t}" for t in THRESHOLDS), "miou")
Mode = Literal["official", "strict"]
MODES: tuple[str, ...] = ("official", "strict")

# Benchmark order of the MIG-Bench tasks (the column order of published tables).
TASK_ORDER: tuple[str, ...] = (
    "diff",
    "view_diff",
    "common_object",
    "object_tracking",
    "multi_view",
    "region",
    "refer_grounding",
    "group_grounding",
    "reasoning",
    "correspondence",
)


def iou(pred: Box | None, gt: Box) -> float:
    """Intersection over union in the unit frame; 0 for None, inverted or degenerate boxes."""
    return 0.0 if pred is None else xyxy_iou(pred.to_list(), gt.to_list())


def xyxy_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two ``[x1, y1, x2, y2]`` boxes stated in one and the same frame (unit, pixels...);
    0 when they do not overlap or either is inverted or degenerate."""
    ix = min(a[2], b[2]) - max(a[0], b[0])
    iy = min(a[3], b[3]) - max(a[1], b[1])
    if ix <= 0 or iy <= 0:  # also every inverted box: x2 < x1 makes ix negative
        return 0.0
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _migician_y(box: Box) -> Box:
    y1 = round(min(box.y1 * 1.05, 0.999), 3)
    y2 = round(min(box.y2 * 1.10, 0.999), 3)
    return Box(x1=box.x1, y1=y1, x2=box.x2, y2=y2)


# Named box calibrations. "migician-y": the public Migician evaluation multiplies the predicted
# y1 by 1.05 and y2 by 1.10, caps each at 0.999 and rounds to 3 decimals (unit frame; the
# 1/1000 grid Migician answers on) before scoring. Checked against every ``filter_answer`` of
# the released Migician logs: all 4,276 match.
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
    question_names_target: bool = False
    """The question designates the target image, so an answer naming no image is on it."""

    @classmethod
    def from_prediction(cls, prediction: Prediction, example: Example) -> ScoreRow:
        """Row for a prediction (box as the model stated it) joined to its example."""
        from cot_ground.bench.targets import QUESTION_DESIGNATES_TARGET  # bench imports scoring

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
            question_names_target=example.target_rule in QUESTION_DESIGNATES_TARGET,
        )


def image_correct(row: ScoreRow) -> bool:
    """True when the row's image is the target: the one it names, else the one the question
    designates (see the module docstring)."""
    if row.pred_image is None:
        return row.question_names_target
    return row.pred_image == row.target_image


def row_iou(row: ScoreRow, mode: Mode | str = "official", calibration: str | None = None) -> float:
    """IoU of one row under ``mode`` (strict: 0 unless the image is right)."""
    _check_mode(mode)
    if mode == "strict" and not image_correct(row):
        return 0.0
    box = None if row.pred_box is None else apply_calibration(row.pred_box, calibration)
    return iou(box, row.gt_box)


def is_correct(
    row: ScoreRow,
    threshold: float = 0.5,
    mode: Mode | str = "official",
    calibration: str | None = None,
) -> bool:
    """True when the row's IoU under ``mode`` is at least ``threshold``."""
    return row_iou(row, mode, calibration) >= threshold


def summarize(ious: Iterable[float]) -> dict[str, float]:
    """``n``, ``acc@k`` for every threshold and ``miou`` (percent) of a list of IoUs."""
    values = list(ious)
    n = len(values)
    out: dict[str, float] = {"n": n}
    for t in THRESHOLDS:
        out[f"acc@{t}"] = 100.0 * sum(v >= t for v in values) / n if n else 0.0
    out["miou"] = 100.0 * sum(values) / n if n else 0.0
    return out


def score_table(
    rows: Iterable[ScoreRow | Mapping[str, Any]],
    mode: Mode | str = "official",
    calibration: str | None = None,
) -> dict[str, Any]:
    """Per-task figures and their plain mean over tasks.

    ``rows`` are :class:`ScoreRow` or mappings with the same keys. Returns
    ``{"mode", "calibration", "tasks": {task: {"n", "acc@0.3", "acc@0.5", "acc@0.7", "miou"}},
    "average": {...}}``; the average's ``n`` is the total number of rows.
    """
    _check_mode(mode)
    if calibration is not None:
        apply_calibration(Box(x1=0, y1=0, x2=1, y2=1), calibration)  # fail early on a bad name
    per_task: dict[str, list[float]] = {}
    for row in rows:
        r = row if isinstance(row, ScoreRow) else ScoreRow(**row)
        per_task.setdefault(r.task, []).append(row_iou(r, mode, calibration))
    tasks = {t: summarize(per_task[t]) for t in sorted(per_task, key=_task_key)}
    average = average_over_tasks(list(tasks.values()))
    return {"mode": mode, "calibration": calibration, "tasks": tasks, "average": average}


def average_over_tasks(per_task: list[Mapping[str, float]]) -> dict[str, float]:
    """The benchmark's average of per-task figures: ``n`` summed, every metric of
    :data:`METRICS` the plain mean over tasks (0 for no tasks)."""
    average: dict[str, float] = {"n": sum(s["n"] for s in per_task)}
    for k in METRICS:
        average[k] = sum(s[k] for s in per_task) / len(per_task) if per_task else 0.0
    return average


def _task_key(task: str) -> tuple[int, str]:
    return (TASK_ORDER.index(task) if task in TASK_ORDER else len(TASK_ORDER), task)


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown scoring mode {mode!r} (use one of {', '.join(MODES)})")
