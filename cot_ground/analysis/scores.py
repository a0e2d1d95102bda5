"""Score tables per task × pipeline (Acc@0.3/0.5/0.7, mIoU; official and strict) and exports.

The figures come from :func:`cot_ground.scoring.score_table` applied to each pipeline's rows of
a :func:`~cot_ground.analysis.load.load_run` frame. Boxes are scored as recorded: a calibration
named on a prediction was applied by the model adapter already, and is only reported here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from cot_ground.boxes import Box
from cot_ground.scoring import METRICS, MODES, TASK_ORDER, score_table

AVERAGE = "AVERAGE"


def pipeline_calibration(frame: pd.DataFrame, pipeline: str) -> str | None:
    """The one calibration a pipeline's predictions recorded; an error when they differ."""
    values = {c for c in frame.loc[frame["pipeline"] == pipeline, "calibration"] if pd.notna(c)}
    if len(values) > 1:
        raise ValueError(f"pipeline {pipeline!r} mixes calibrations: {sorted(values)}")
    return values.pop() if values else None


def score_tables(frame: pd.DataFrame) -> dict[str, dict[str, dict[str, Any]]]:
    """``{mode: {pipeline: score_table(...)}}`` for both scoring modes and every pipeline.

    Each table's ``calibration`` is the one the pipeline's boxes carry (see module docstring).
    """
    out: dict[str, dict[str, dict[str, Any]]] = {mode: {} for mode in MODES}
    for pipeline in pipelines_of(frame):
        sub = frame[frame["pipeline"] == pipeline]
        calibration = pipeline_calibration(frame, pipeline)
        rows = [
            {
                "task": r.task,
                "pred_box": None if r.box is None else Box.from_unit(r.box),
                "gt_box": Box.from_unit(r.gt_box),
                "pred_image": None if pd.isna(r.image_index) else int(r.image_index),
                "target_image": int(r.target_image),
            }
            for r in sub.itertuples(index=False)
        ]
        for mode in MODES:
            out[mode][pipeline] = score_table(rows, mode=mode) | {"calibration": calibration}
    return out


def scores_frame(tables: dict[str, dict[str, dict[str, Any]]]) -> pd.DataFrame:
    """Long table: ``mode, pipeline, task, n, acc@0.3, acc@0.5, acc@0.7, miou``.

    Each pipeline ends with an ``AVERAGE`` row (plain mean over tasks; ``n`` is the total).
    """
    rows = []
    for mode, by_pipeline in tables.items():
        for pipeline, table in by_pipeline.items():
            for task, figures in [*table["tasks"].items(), (AVERAGE, table["average"])]:
                rows.append({"mode": mode, "pipeline": pipeline, "task": task, **figures})
    frame = pd.DataFrame(rows, columns=["mode", "pipeline", "task", "n", *METRICS])
    frame["n"] = frame["n"].astype(int)
    return frame


def overview_frame(
    scores: pd.DataFrame, mode: str = "official", metric: str = "acc@0.5"
) -> pd.DataFrame:
    """Pipelines × tasks of one metric (the layout of the benchmark's published tables)."""
    sub = scores[scores["mode"] == mode]
    wide = sub.pivot(index="pipeline", columns="task", values=metric)
    tasks = [t for t in ordered_tasks(sub["task"]) if t != AVERAGE]
    return wide.reindex(columns=[*tasks, AVERAGE]).reindex(pipelines_of(sub))


def scores_markdown(scores: pd.DataFrame) -> str:
    """The score tables as markdown: an Acc@0.5 overview, then every metric per mode."""
    parts = []
    for mode in MODES:
        overview = overview_frame(scores, mode).reset_index()
        parts.append(f"## Acc@0.5 ({mode})\n\n{markdown_table(overview)}")
    for mode in MODES:
        detail = scores[scores["mode"] == mode].drop(columns="mode")
        parts.append(f"## All metrics ({mode})\n\n{markdown_table(detail)}")
    header = (
        "# Scores\n\nPercentages. `official`: only the box counts (public MIG-Bench evaluation);"
        " `strict`: the named image must be the target image. AVERAGE is the plain mean over"
        " tasks.\n"
    )
    return header + "\n" + "\n\n".join(parts) + "\n"


def write_scores(frame: pd.DataFrame, out_dir: str | Path) -> tuple[pd.DataFrame, dict[str, Path]]:
    """Write ``scores.md``, ``scores.csv`` and ``scores.json`` into ``out_dir``.

    Returns the long score table (:func:`scores_frame`) and the paths by extension.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tables = score_tables(frame)
    scores = scores_frame(tables)
    paths = {"md": out / "scores.md", "csv": out / "scores.csv", "json": out / "scores.json"}
    paths["md"].write_text(scores_markdown(scores), encoding="utf-8")
    scores.to_csv(paths["csv"], index=False, float_format="%.4f")
    paths["json"].write_text(json.dumps(tables, indent=2) + "\n", encoding="utf-8")
    return scores, paths


def markdown_table(frame: pd.DataFrame, digits: int = 2) -> str:
    """A pipe table of ``frame`` (floats rounded to ``digits``; missing values left blank)."""
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v, digits) for v in row) + " |")
    return "\n".join(lines)


def ordered_tasks(tasks: Sequence[str] | pd.Series) -> list[str]:
    """Distinct task names in benchmark order (unknown tasks after, alphabetical)."""
    known = {t: i for i, t in enumerate(TASK_ORDER)}
    return sorted(set(tasks), key=lambda t: (known.get(t, len(known)), t))


def pipelines_of(frame: pd.DataFrame) -> list[str]:
    """Distinct pipeline names in first-appearance order."""
    return list(dict.fromkeys(frame["pipeline"]))


def _cell(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value).replace("|", "\\|")
