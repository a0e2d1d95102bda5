"""``load_run``: a run folder as one pandas DataFrame, one row per example × pipeline.

Every later table (scores, failure attribution, paired comparisons, charts, the HTML report)
is computed from this DataFrame, so an ablation notebook sees exactly what the report sees. Its
IoU, correctness and image columns come from :func:`cot_ground.scoring.score_row`, once per
prediction.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import ValidationError

from cot_ground.analysis.attribution import failure_category
from cot_ground.analysis.proposal_recall import proposal_hit, trace_artifacts, trace_proposals
from cot_ground.analysis.run_paths import artifact_files, example_images
from cot_ground.analysis.scores import correct_column
from cot_ground.records import Example, Prediction, TraceStep
from cot_ground.runner.store import RunFolder
from cot_ground.scoring import THRESHOLDS, ScoreRow, score_row

_DEFAULT_COT_NAME = re.compile(r"^cot-(agent|oracle-image|paper|multi-image)-")
BASE_COLUMNS: tuple[str, ...] = (
    "example_id",
    "pipeline",
    "kind",
    "mode",
    "task",
    "question",
    "images",
    "n_images",
    "target_image",
    "gt_box",
    "image_index",
    "image_stated",
    "image_correct",
    "box",
    "status",
    "calibration",
    "iou",
    "strict_iou",
    "correct_30",
    "correct_50",
    "correct_70",
    "strict_correct_30",
    "strict_correct_50",
    "strict_correct_70",
    "reference_box_echo",
    "failure",
    "step1_status",
    "step1_text",
    "description",
    "fallbacks",
    "time_total_s",
    "error_category",
    "error_node",
    "error_message",
    "raw_text",
    "prompt_variant",
    "proposal_hit",
    "artifacts",
)


_CORRECT_COLUMNS = [(t, correct_column(t), correct_column(t, "strict")) for t in THRESHOLDS]


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``run.json`` of a run folder (empty dict when the folder has none)."""
    return RunFolder(path).read_manifest() or {}


def pipeline_specs(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Pipeline configs from ``run.json`` (``config.pipelines``), keyed by pipeline name."""
    pipes = (manifest.get("config") or {}).get("pipelines") or {}
    return {str(k): dict(v) for k, v in pipes.items() if isinstance(v, dict)}


def step1_steps(trace: list[TraceStep]) -> tuple[TraceStep | None, TraceStep | None]:
    """(call, parse) of the last CoT step-1 attempt in a trace.

    The parse step is the last step whose ``parsed`` holds a ``description``; the call step is
    the last step up to it with a ``raw_output`` (the reasoner's text). Both None for traces
    without a step 1 (end-to-end pipelines).
    """
    parse_at = None
    for i, step in enumerate(trace):
        if "description" in step.parsed:
            parse_at = i
    if parse_at is None:
        return None, None
    call = next((s for s in reversed(trace[: parse_at + 1]) if s.raw_output is not None), None)
    return call, trace[parse_at]


def load_run(path: str | os.PathLike[str], pipelines: list[str] | None = None) -> pd.DataFrame:
    """One row per (example, pipeline) of the run folder at ``path``.

    Columns: :data:`BASE_COLUMNS` plus ``time_<stage>_s`` for every timed stage. Predictions
    are joined to ``examples.jsonl`` on ``example_id``; a truncated last line and duplicate
    ids (first wins) are tolerated. ``images`` and ``artifacts`` are files to read now: the
    example's images found again under the run's current benchmark root when the recorded ones
    are gone, and the pictures the graph made found in the folder at ``path``
    (:mod:`cot_ground.analysis.run_paths`).
    """
    folder = RunFolder(path)
    if not folder.path.is_dir():
        raise FileNotFoundError(f"run folder not found: {folder.path}")
    if not folder.examples_path.is_file():
        raise FileNotFoundError(f"run folder {folder.path} has no {folder.examples_path.name}")
    examples = {e.id: e for e in _validated(folder.read_examples(), Example, folder.examples_path)}
    manifest = read_manifest(folder.path)
    specs = pipeline_specs(manifest)
    benchmark = manifest.get("benchmark") or {}
    images: dict[str, list[str]] = {}
    names = pipelines if pipelines is not None else folder.pipelines()
    rows: list[dict[str, Any]] = []
    for name in names:
        file = folder.predictions_path(name)
        if not file.is_file():
            known = ", ".join(folder.pipelines()) or "none"
            raise FileNotFoundError(f"no predictions for pipeline {name!r} ({file}); have: {known}")
        for pred in _validated(folder.read_predictions(name), Prediction, file):
            example = examples.get(pred.example_id)
            if example is None:
                raise ValueError(
                    f"{file}: prediction for example {pred.example_id!r} has no line in "
                    f"{folder.examples_path}"
                )
            row = prediction_row(example, pred, specs.get(pred.pipeline, {}))
            if example.id not in images:
                images[example.id] = example_images(example, benchmark)
            row["images"] = list(images[example.id])
            row["artifacts"] = artifact_files(row["artifacts"], folder.path, manifest)
            rows.append(row)
    df = pd.DataFrame(rows, columns=_columns(rows))
    df["image_index"] = df["image_index"].astype("Int64")
    df["image_stated"] = df["image_stated"].astype(bool)
    df["image_correct"] = df["image_correct"].astype(bool)
    return df.sort_values(["pipeline", "task", "example_id"], kind="stable").reset_index(drop=True)


def prediction_row(example: Example, pred: Prediction, spec: dict[str, Any]) -> dict[str, Any]:
    """The row of one prediction (``spec`` is its pipeline config from ``run.json``)."""
    step1_call, step1 = step1_steps(pred.trace)
    kind = spec.get("kind") or ("cot" if step1 is not None else "e2e")
    box = pred.box
    # ``Prediction.box`` already carries the calibration it names (records.py), so none is
    # applied here
    score = score_row(ScoreRow.from_prediction(pred, example))
    row: dict[str, Any] = {
        "example_id": example.id,
        "pipeline": pred.pipeline,
        "kind": kind,
        "mode": spec.get("mode") or _mode_from_name(pred.pipeline, kind),
        "task": example.task,
        "question": example.question,
        "images": list(example.images),
        "n_images": len(example.images),
        "target_image": example.target_image,
        "gt_box": example.gt_box.to_list(),
        "image_index": pred.image_index,
        "image_stated": score.image_stated,
        "image_correct": score.image_correct,
        "box": box.to_list() if box is not None else None,
        "status": pred.status.value,
        "calibration": pred.calibration,
        "iou": score.iou,
        "strict_iou": score.strict_iou,
    }
    for t, official, strict in _CORRECT_COLUMNS:
        row[official] = score.correct(t, "official")
        row[strict] = score.correct(t, "strict")
    row["reference_box_echo"] = score.reference_box_echo
    proposals = trace_proposals(pred.trace)
    hit = None
    if proposals is not None:
        hit = proposal_hit(proposals, example.gt_box, example.target_image)
    row["failure"] = failure_category(
        kind=kind,
        error=pred.error,
        step1=step1,
        score=score,
        box=box,
        status=pred.status,
        proposal_hit=hit,
    )
    row["step1_status"] = step1.parsed.get("status") if step1 else None
    row["step1_text"] = step1_call.raw_output if step1_call else None
    row["description"] = step1.parsed.get("description") if step1 else None
    row["fallbacks"] = list(pred.fallbacks)
    row["time_total_s"] = float(pred.timing.get("total", sum(pred.timing.values())))
    for stage, seconds in pred.timing.items():
        if stage != "total":
            row[f"time_{stage}_s"] = float(seconds)
    row["error_category"] = pred.error.category.value if pred.error else None
    row["error_node"] = pred.error.node if pred.error else None
    row["error_message"] = pred.error.message if pred.error else None
    row["raw_text"] = pred.raw_text
    row["prompt_variant"] = pred.prompt_variant
    # proposal-based graphs: the recall bound, and the marked images and crops the model saw
    row["proposal_hit"] = hit
    row["artifacts"] = trace_artifacts(pred.trace)
    return row


def _mode_from_name(pipeline: str, kind: str) -> str | None:
    """The mode in a CoT graph's default pipeline name ``cot-<mode>-<variant>``."""
    match = _DEFAULT_COT_NAME.match(pipeline) if kind == "cot" else None
    return match.group(1) if match else None


def _validated(records: list[dict[str, Any]], model: type, file: Path) -> list[Any]:
    out = []
    for i, record in enumerate(records, start=1):
        try:
            out.append(model.model_validate(record))
        except ValidationError as exc:
            ident = record.get("example_id") or record.get("id") or f"record {i}"
            raise ValueError(f"{file}: {ident}: not a valid {model.__name__}: {exc}") from exc
    return out


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    cols = dict.fromkeys(BASE_COLUMNS)
    for row in rows:
        cols.update(dict.fromkeys(row))
    return list(cols)
