"""Read and rescore the released per-task logs of the public MIG-Bench evaluation.

A log file is a JSON list of records ``{task, question, answer, filter_answer, iou,
groundtruth}`` (``answer`` = raw model text; ``filter_answer`` = the public parser's box after
any calibration, ``[0, 1000]`` frame; ``iou`` = its IoU with ``groundtruth``, also ``[0, 1000]``)
followed by one summary object ``{task: {"IOU@0.7", "IOU@0.5", "IOU@0.3", "AVE_IOU", "TOTAL"}}``
holding counts and the IoU sum.

Rescoring parses ``answer`` with :func:`cot_ground.parsing.parse_box` in the stated frame
(box and the image the answer names), applies the named calibration and scores every record
with :func:`cot_ground.scoring.score_row`: the ``official`` figures, and per task the
``strict`` ones and ``image_stated``. Strict needs the target image: the image the question
designates (:func:`cot_ground.bench.targets.designated_target`), or, with an annotation file,
the target of the matching item (the only source for ``group_grounding``). Each record is also
compared with the public parser's box so that every disagreement is counted by kind.

Per task the rescoring also counts the answers whose scored box is a box the question states
(``RowScore.reference_box_echo``: object_tracking and multi_view questions give the object's
box in the first image) and how many of them are counted correct, and scores the baseline that
answers every item with the question's first box (``reference_box_baseline``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cot_ground.bench.migbench import load_benchmark, read_json
from cot_ground.bench.targets import designated_target
from cot_ground.boxes import Box, Frame
from cot_ground.mentions import READER
from cot_ground.parsing import parse_box
from cot_ground.records import Example
from cot_ground.scoring import (
    METRICS,
    THRESHOLDS,
    ScoreRow,
    apply_calibration,
    average_over_tasks,
    question_boxes,
    score_row,
    score_table,
    summarize,
)
from cot_ground.tasks import TASK_GROUPS, TASK_ORDER, question_designates_target

RECORD_FIELDS: tuple[str, ...] = ("task", "answer", "filter_answer", "iou", "groundtruth")
SUMMARY_FIELDS: tuple[str, ...] = ("IOU@0.3", "IOU@0.5", "IOU@0.7", "AVE_IOU", "TOTAL")
# Kinds of agreement between our parse and the public one (see docs/benchmark.md).
AGREEMENT_KINDS: tuple[str, ...] = (
    "same_box",
    "both_no_box",
    "public_zero_box_we_read",
    "we_no_box_public_read",
    "different_box",
)


class ReleasedLogError(ValueError):
    """A released log file that cannot be read; the message names the file and record."""


@dataclass(frozen=True)
class ReleasedRecord:
    """One scored item of a released log."""

    task: str
    question: str
    answer: str
    filter_answer: list[float]
    iou: float
    groundtruth: list[float]


@dataclass(frozen=True)
class ReleasedLog:
    """One released per-task log: its records and its own summary (percent, like tables)."""

    path: Path
    task: str
    records: list[ReleasedRecord]
    logged: dict[str, float]


def read_released_log(path: str | Path) -> ReleasedLog:
    """Read one released log file (records + trailing summary object)."""
    path = Path(path)
    data = read_json(path, ReleasedLogError, "log file")
    if not isinstance(data, list) or len(data) < 2 or not isinstance(data[-1], dict):
        raise ReleasedLogError(f"{path}: expected a JSON list of records plus a summary object")
    summary = data[-1]
    if len(summary) != 1:
        raise ReleasedLogError(f"{path}: the last object should be {{task: summary}}")
    ((task, figures),) = summary.items()
    if not isinstance(figures, dict) or any(k not in figures for k in SUMMARY_FIELDS):
        raise ReleasedLogError(f"{path}: summary for {task!r} lacks one of {SUMMARY_FIELDS}")
    records = []
    for number, rec in enumerate(data[:-1]):
        if not isinstance(rec, dict) or any(k not in rec for k in RECORD_FIELDS):
            raise ReleasedLogError(f"{path} record {number}: missing one of {RECORD_FIELDS}")
        if rec["task"] != task:
            raise ReleasedLogError(
                f"{path} record {number}: task {rec['task']!r} differs from summary {task!r}"
            )
        if len(rec["groundtruth"]) != 4 or len(rec["filter_answer"]) != 4:
            raise ReleasedLogError(f"{path} record {number}: boxes must have 4 numbers")
        records.append(
            ReleasedRecord(
                task=task,
                question=str(rec.get("question", "")),
                answer=str(rec["answer"]),
                filter_answer=[float(v) for v in rec["filter_answer"]],
                iou=float(rec["iou"]),
                groundtruth=[float(v) for v in rec["groundtruth"]],
            )
        )
    total = figures["TOTAL"]
    if total != len(records) or total == 0:
        raise ReleasedLogError(f"{path}: summary TOTAL {total} but {len(records)} records")
    logged = {"n": total, "miou": 100.0 * figures["AVE_IOU"] / total}
    for t in THRESHOLDS:
        logged[f"acc@{t}"] = 100.0 * figures[f"IOU@{t}"] / total
    return ReleasedLog(path=path, task=task, records=records, logged=logged)


def agreement(ours: Box | None, public: list[float], calibration: str | None) -> str:
    """How our parse compares with the public parser's box (``[0, 1000]`` frame, rounded)."""
    public_zero = not any(public)
    if ours is None:
        return "both_no_box" if public_zero else "we_no_box_public_read"
    coords = apply_calibration(ours, calibration).to_frame(Frame.QWEN1000)
    if all(abs(a - b) <= 0.5 + 1e-9 for a, b in zip(coords, public, strict=True)):
        return "same_box"
    return "public_zero_box_we_read" if public_zero else "different_box"


def rescore_logs(
    paths: list[str | Path],
    calibration: str | None = None,
    frame: Frame | str = Frame.QWEN1000,
    bench: str | Path | None = None,
    unit_floats: str = "reject",
) -> dict[str, Any]:
    """Rescore released logs from their raw answers; one file per task.

    ``unit_floats``: how an answer box of four numbers in [0, 1] (one written with a decimal
    point) is read in an integer frame (:func:`cot_ground.parsing.parse_box`): ``reject`` (status
    ``frame_mismatch``, the default) or ``fraction``; recorded in the result. The question of
    each record is given to the parser, so echoed reference images are not read as choices.

    ``bench``: the annotation file the logs were scored against (the released logs: the
    revised file); its items of a task must match the log's records in order (same
    ground-truth box, question starting with the item's question). Without it, strict figures
    are given only for tasks whose question designates the target image.

    Returns the :func:`~cot_ground.scoring.score_table` dict (``official`` mode; per task
    ``image_stated`` = percentage of answers that name an image) where each task also has
    ``strict`` (``{acc@0.3, acc@0.5, acc@0.7, miou}``, or None when its target images are
    unknown), ``logged`` (the file's own figures), ``status`` (parse status counts),
    ``without_box`` (answers from which no box was read, whatever their status: ``no_box``,
    ``malformed``, ``frame_mismatch``),
    ``agreement`` (see :data:`AGREEMENT_KINDS`), ``decision_changes`` (items whose Acc@0.5
    outcome differs from the log) and ``file``; ``average`` and each group also have
    ``strict`` (None unless every task of it has one), ``logged`` and ``tasks`` (the tasks it
    averages over); ``strict_unknown`` lists the tasks without strict figures (their target
    images need ``bench``); ``missing_tasks`` the MIG-Bench tasks no log was given for (the
    group means and the average are then over fewer tasks than the benchmark's). Each task also
    has ``reference_box_echo`` (``{"answers", "correct_official", "correct_strict",
    "task_correct_official", "task_correct_strict"}``: answers whose scored box is a box the
    question states, how many of those are correct at Acc@0.5 under each rule, and how many
    answers of the task are; the strict counts are None when strict is unknown) and
    ``reference_box_baseline`` (``{"n_with_box", "acc@0.5", "miou"}``, official, percent: every
    item answered with the question's first box, no calibration; an item whose question states
    none counts as no box; None when no question of the task states a box). Raises
    :class:`ReleasedLogError` for unreadable logs, a task given twice, or logs that do not
    match ``bench``.
    """
    logs = [read_released_log(p) for p in paths]
    by_task: dict[str, ReleasedLog] = {}
    for log in logs:
        if log.task in by_task:
            raise ReleasedLogError(
                f"task {log.task!r} is in both {by_task[log.task].path} and {log.path}; "
                "rescore one model at a time"
            )
        by_task[log.task] = log
    examples = _bench_examples(bench, list(by_task)) if bench is not None else {}
    rows: list[ScoreRow] = []
    strict_rows: list[ScoreRow] = []
    extra: dict[str, dict[str, Any]] = {}
    for task, log in by_task.items():
        status: Counter[str] = Counter()
        without_box = 0
        agree: Counter[str] = Counter({k: 0 for k in AGREEMENT_KINDS})
        changes = 0
        echo: Counter[str] = Counter()
        baseline: list[float] = []
        with_box = 0
        targets = _targets(log, examples.get(task))
        for rec, target in zip(log.records, targets, strict=True):
            parsed = parse_box(rec.answer, frame, unit_floats=unit_floats, question=rec.question)
            gt = Box.from_thousandths(rec.groundtruth)
            stated = question_boxes(rec.question)
            row = ScoreRow(
                task,
                parsed.box,
                gt,
                pred_image=parsed.image_index,
                target_image=None if target is None else target[0],
                question_designates_target=target is not None and target[1],
                question_boxes=stated,
            )
            rows.append(row)
            if target is not None:
                strict_rows.append(row)
            status[parsed.status.value] += 1
            without_box += parsed.box is None
            agree[agreement(parsed.box, rec.filter_answer, calibration)] += 1
            score = score_row(row, calibration)
            changes += score.correct(0.5) != (rec.iou >= 0.5)
            echo["task_correct_official"] += score.correct(0.5, "official")
            echo["task_correct_strict"] += score.correct(0.5, "strict")
            if score.reference_box_echo:
                echo["answers"] += 1
                echo["correct_official"] += score.correct(0.5, "official")
                echo["correct_strict"] += score.correct(0.5, "strict")
            copy = Box.from_thousandths(stated[0]) if stated else None
            baseline.append(score_row(ScoreRow(task, copy, gt)).iou)
            with_box += bool(stated)
        strict_known = all(t is not None for t in targets)
        extra[task] = {
            "reference_box_echo": {
                "answers": echo["answers"],
                "correct_official": echo["correct_official"],
                "correct_strict": echo["correct_strict"] if strict_known else None,
                "task_correct_official": echo["task_correct_official"],
                "task_correct_strict": echo["task_correct_strict"] if strict_known else None,
            },
            "reference_box_baseline": _baseline(baseline, with_box),
            "logged": log.logged,
            "status": dict(status),
            "without_box": without_box,
            "agreement": dict(agree),
            "decision_changes": changes,
            "file": str(log.path),
        }
    table = score_table(rows, mode="official", calibration=calibration)
    strict = score_table(strict_rows, mode="strict", calibration=calibration)
    for task, info in table["tasks"].items():
        info["strict"] = _metrics(strict["tasks"].get(task))
        info.update(extra[task])
    summaries = [(table["average"], strict["average"], list(table["tasks"]))]
    for group, info in table["groups"].items():
        members = [t for t in TASK_GROUPS[group] if t in table["tasks"]]
        summaries.append((info, strict["groups"].get(group), members))
    for info, strict_info, members in summaries:
        complete = all(table["tasks"][t]["strict"] is not None for t in members)
        info["strict"] = _metrics(strict_info) if complete else None
        info["logged"] = average_over_tasks([by_task[t].logged for t in members])
        info["tasks"] = members
    table["frame"] = Frame(frame).value
    table["unit_floats"] = unit_floats
    table["image_reader"] = READER
    table["bench"] = None if bench is None else str(bench)
    table["strict_unknown"] = [t for t, info in table["tasks"].items() if info["strict"] is None]
    table["missing_tasks"] = [t for t in TASK_ORDER if t not in by_task]
    return table


def _baseline(ious: list[float], with_box: int) -> dict[str, float] | None:
    """Official Acc@0.5 and mIoU (percent) of the copy-the-question's-box baseline."""
    if not with_box:
        return None
    figures = summarize(ious)
    return {"n_with_box": with_box, "acc@0.5": figures["acc@0.5"], "miou": figures["miou"]}


def _metrics(figures: dict[str, float] | None) -> dict[str, float] | None:
    return None if figures is None else {k: figures[k] for k in METRICS}


def _bench_examples(bench: str | Path, tasks: list[str]) -> dict[str, list[Example]]:
    """The annotation file's examples of ``tasks``, in file order per task."""
    out: dict[str, list[Example]] = {}
    for example in load_benchmark(bench, tasks=tasks).examples:
        out.setdefault(example.task, []).append(example)
    return out


def _targets(log: ReleasedLog, examples: list[Example] | None) -> list[tuple[int, bool] | None]:
    """Per record ``(target image, question designates it)``, or None when unknown."""
    if examples is None:
        out: list[tuple[int, bool] | None] = []
        for rec in log.records:
            found = designated_target(rec.task, rec.question)
            out.append(None if found is None else (found[0], question_designates_target(found[1])))
        return out
    if len(examples) != len(log.records):
        raise ReleasedLogError(
            f"{log.path}: {len(log.records)} records but the annotation file has "
            f"{len(examples)} {log.task} items; give the file the log was scored on (--bench,"
            " default $MIGBENCH_FILE)"
        )
    targets: list[tuple[int, bool] | None] = []
    for number, (rec, ex) in enumerate(zip(log.records, examples, strict=True)):
        gt = Box.from_thousandths(rec.groundtruth).to_list()
        same_box = all(abs(a - b) < 1e-6 for a, b in zip(gt, ex.gt_box.to_list(), strict=True))
        if not same_box or not rec.question.startswith(ex.question.strip()):
            raise ReleasedLogError(
                f"{log.path} record {number}: does not match {log.task} item {number} of the "
                "annotation file (ground-truth box or question differs); give the file the log was"
                " scored on (--bench, default $MIGBENCH_FILE)"
            )
        targets.append((ex.target_image, question_designates_target(ex.target_rule)))
    return targets
