"""Score tables per task × pipeline (Acc@0.3/0.5/0.7, mIoU; official and strict) and exports.

Every figure is an aggregate of the columns of a :func:`~cot_ground.analysis.load.load_run`
DataFrame (``iou``, ``strict_iou``, ``image_stated``), which :func:`cot_ground.scoring.score_row`
filled once per prediction; nothing here scores a box again. Boxes are scored as recorded: a
calibration named on a prediction was applied by the model adapter already, and is only
reported here.

Each table has, per pipeline, a row per task, the paper's group means ``SPONTANEOUS`` and
``REFERENTIAL`` (:data:`cot_ground.tasks.TASK_GROUPS`) and the plain mean over tasks
``AVERAGE``; every row carries its ``n`` and ``image_stated`` (percentage of answers that name
an image).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from cot_ground.scoring import (
    METRICS,
    MODES,
    average_over_tasks,
    group_means,
    summarize,
)
from cot_ground.tasks import TASK_GROUPS, ordered_tasks

AVERAGE = "AVERAGE"
WARNINGS_TITLE = "Warnings: these figures are not those of one finished, unchanged run"
GROUP_ROWS: dict[str, str] = {group: group.upper() for group in TASK_GROUPS}
SUMMARY_ROWS: tuple[str, ...] = (*GROUP_ROWS.values(), AVERAGE)
FIGURES: tuple[str, ...] = ("n", *METRICS, "image_stated")
_IOU_COLUMN = {"official": "iou", "strict": "strict_iou"}


def strict_note(df: pd.DataFrame) -> str:
    """One sentence on why strict Acc@0.5 differs from official in this run, and where.

    An answer official-correct at 0.5 is strict-wrong only when it names a wrong image, or
    names none where the question designates none (``group_grounding``); the sentence counts
    both per pipeline and task, from the ``load_run`` columns.
    """
    lost = df[df["correct_50"] & ~df["strict_correct_50"]]
    where = []
    for (pipeline, task), part in lost.groupby(["pipeline", "task"], sort=False):
        causes = [
            f"{count} {label}"
            for count, label in (
                (int(part["image_stated"].sum()), "naming a wrong image"),
                (int((~part["image_stated"]).sum()), "naming no image"),
            )
            if count
        ]
        where.append(f"{pipeline} {task} ({', '.join(causes)})")
    if not where:
        return "Strict and official Acc@0.5 agree here: no answer with a good box was strict-wrong."
    return (
        "Strict Acc@0.5 is below official only where an answer with a good box names a wrong"
        " image, or names no image although the question designates none (group_grounding;"
        " `image_stated` is the share of answers that name one): here " + "; ".join(where) + "."
    )


def reference_echo_note(df: pd.DataFrame) -> str | None:
    """One sentence on the Acc@0.5 hits that copy the question's reference box
    (``load_run`` column ``reference_box_echo``), per pipeline and task; None when no answer
    counted correct copies it."""
    echoed = df[df["reference_box_echo"] & (df["correct_50"] | df["strict_correct_50"])]
    where = []
    for (pipeline, task), part in echoed.groupby(["pipeline", "task"], sort=False):
        mine = df[(df["pipeline"] == pipeline) & (df["task"] == task)]
        where.append(
            f"{pipeline} {task}: {int(part['correct_50'].sum())} of"
            f" {int(mine['correct_50'].sum())} official and {int(part['strict_correct_50'].sum())}"
            f" of {int(mine['strict_correct_50'].sum())} strict hits"
        )
    if not where:
        return None
    return (
        "Some Acc@0.5 hits are answers that copy the box the question states for the reference"
        " image (`reference_box_echo`); both rules count them like any box (the object may not"
        " have moved): " + "; ".join(where) + "."
    )


def pipeline_calibration(df: pd.DataFrame, pipeline: str) -> str | None:
    """The one calibration a pipeline's predictions recorded; an error when they differ."""
    values = {c for c in df.loc[df["pipeline"] == pipeline, "calibration"] if pd.notna(c)}
    if len(values) > 1:
        raise ValueError(f"pipeline {pipeline!r} mixes calibrations: {sorted(values)}")
    return values.pop() if values else None


def score_tables(df: pd.DataFrame) -> dict[str, dict[str, dict[str, Any]]]:
    """``{mode: {pipeline: table}}`` for both scoring modes and every pipeline of a
    :func:`~cot_ground.analysis.load.load_run` DataFrame.

    A table has the shape of :func:`cot_ground.scoring.score_table`: ``mode``,
    ``calibration`` (the one the pipeline's boxes carry), ``tasks`` (``{task: {n, acc@0.3,
    acc@0.5, acc@0.7, miou, image_stated}}``), ``groups`` and ``average``.
    """
    out: dict[str, dict[str, dict[str, Any]]] = {mode: {} for mode in MODES}
    for pipeline in pipelines_of(df):
        sub = df[df["pipeline"] == pipeline]
        calibration = pipeline_calibration(df, pipeline)
        for mode in MODES:
            tasks = {
                task: summarize(part[_IOU_COLUMN[mode]], part["image_stated"])
                for task in ordered_tasks(sub["task"])
                for part in [sub[sub["task"] == task]]
            }
            out[mode][pipeline] = {
                "mode": mode,
                "calibration": calibration,
                "tasks": tasks,
                "groups": group_means(tasks),
                "average": average_over_tasks(list(tasks.values())),
            }
    return out


def scores_frame(tables: dict[str, dict[str, dict[str, Any]]]) -> pd.DataFrame:
    """Long table: ``mode, pipeline, task, n, acc@0.3, acc@0.5, acc@0.7, miou, image_stated``.

    Each pipeline's tasks are followed by ``SPONTANEOUS``, ``REFERENTIAL`` (the paper's group
    means, when the group has a task in the run) and ``AVERAGE`` (plain mean over tasks); the
    ``n`` of those rows is the total over their tasks.
    """
    rows = []
    for mode, by_pipeline in tables.items():
        for pipeline, table in by_pipeline.items():
            summary = [(GROUP_ROWS[g], figures) for g, figures in table["groups"].items()]
            for task, figures in [*table["tasks"].items(), *summary, (AVERAGE, table["average"])]:
                rows.append({"mode": mode, "pipeline": pipeline, "task": task, **figures})
    df = pd.DataFrame(rows, columns=["mode", "pipeline", "task", *FIGURES])
    df["n"] = df["n"].astype(int)
    return df


def overview_frame(
    scores: pd.DataFrame,
    mode: str = "official",
    metric: str = "acc@0.5",
    run_tasks: Sequence[str] = (),
) -> pd.DataFrame:
    """Pipelines × tasks of one metric (the layout of the benchmark's published tables), with
    the group means and the average, and under each pipeline's row its ``n`` per cell and (in
    strict mode) its ``image_stated`` share per cell.

    ``run_tasks``: the run's tasks; one that no pipeline has records for is a blank column, so
    the table shows that the averages leave it out. Index: ``pipeline``; column ``figure``
    names the row (``metric``, ``n``, ``image_stated``).
    """
    sub = scores[scores["mode"] == mode]
    figures = [metric, "n", *(["image_stated"] if mode == "strict" else [])]
    tasks = [t for t in ordered_tasks([*sub["task"], *run_tasks]) if t not in SUMMARY_ROWS]
    columns = [*tasks, *(s for s in SUMMARY_ROWS if s in set(sub["task"]))]
    parts = []
    for pipeline in pipelines_of(sub):
        mine = sub[sub["pipeline"] == pipeline].set_index("task")
        for figure in figures:
            values = mine[figure].reindex(columns)
            if figure == "n":
                values = values.astype("Int64")
            # a task this pipeline did not run is a blank cell (None), not NaN or <NA>
            values = values.astype(object).where(values.notna(), None)
            parts.append({"pipeline": pipeline, "figure": figure, **values.to_dict()})
    # object columns keep each cell's type: counts stay integers beside percentages
    out = pd.DataFrame(parts, columns=["pipeline", "figure", *columns], dtype=object)
    return out.set_index("pipeline")


def scores_markdown(
    scores: pd.DataFrame,
    warnings: Sequence[str] = (),
    note: str = "",
    run_tasks: Sequence[str] = (),
) -> str:
    """The score tables as markdown: an Acc@0.5 overview (a column per task of ``run_tasks``
    too), then every metric per mode; ``warnings`` head the page as one block and ``note``
    (:func:`strict_note`) follows the strict overview."""
    parts = []
    for mode in MODES:
        overview = overview_frame(scores, mode, run_tasks=run_tasks).reset_index()
        note_md = f"\n\n{note}" if mode == "strict" and note else ""
        parts.append(f"## Acc@0.5 ({mode})\n\n{markdown_table(overview)}{note_md}")
    for mode in MODES:
        detail = scores[scores["mode"] == mode].drop(columns="mode")
        parts.append(f"## All metrics ({mode})\n\n{markdown_table(detail)}")
    header = (
        "# Scores\n\nPercentages; `n` = examples per cell. `official`: only the box counts"
        " (public MIG-Bench evaluation); `strict`: the named image must be the target image."
        " AVERAGE is the plain mean over tasks; SPONTANEOUS (diff, view_diff, common_object)"
        " and REFERENTIAL (the other tasks) are the group means of the Migician paper's"
        " Table 5.\n"
    )
    flagged = ""
    if warnings:
        flagged = f"\n## {WARNINGS_TITLE}\n\n" + "".join(f"- **Warning:** {w}\n" for w in warnings)
    return header + flagged + "\n" + "\n\n".join(parts) + "\n"


def write_scores(
    df: pd.DataFrame,
    out_dir: str | Path,
    warnings: Sequence[str] = (),
    run_tasks: Sequence[str] = (),
) -> tuple[pd.DataFrame, dict[str, Path]]:
    """Write ``scores.md``, ``scores.csv`` and ``scores.json`` into ``out_dir``.

    ``warnings`` (e.g. from :func:`cot_ground.analysis.run_warnings.run_warnings`) head
    ``scores.md`` and are listed in ``scores.json`` under ``warnings``; ``run_tasks`` (the
    run's tasks) are columns of the markdown overview even where no pipeline has records.
    Returns the long score table (:func:`scores_frame`)
    and the paths by extension.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tables = score_tables(df)
    scores = scores_frame(tables)
    paths = {"md": out / "scores.md", "csv": out / "scores.csv", "json": out / "scores.json"}
    notes = [strict_note(df), reference_echo_note(df)]
    markdown = scores_markdown(scores, warnings, " ".join(n for n in notes if n), run_tasks)
    paths["md"].write_text(markdown, encoding="utf-8")
    scores.to_csv(paths["csv"], index=False, float_format="%.4f")
    payload = {**tables, "warnings": list(warnings)}
    paths["json"].write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return scores, paths


def coverage_warnings(df: pd.DataFrame, run_ids: set[str] | None = None) -> list[str]:
    """One message when the pipelines of a run cover different example sets, or (given
    ``run_ids``, the examples the run selected) fewer examples than the run; else none.

    The message gives each pipeline's example count and how many examples it lacks (of those
    some pipeline ran, or of the run's); tables compare such pipelines on different examples.
    """
    ids = {p: set(df.loc[df["pipeline"] == p, "example_id"]) for p in pipelines_of(df)}
    ran = set().union(*ids.values()) if ids else set()
    union = ran | (run_ids or set())
    short = {p: len(union - mine) for p, mine in ids.items()}
    if not any(short.values()):
        return []
    counts = ", ".join(
        f"{p} {len(ids[p])}" + (f" (lacks {short[p]})" if short[p] else "") for p in ids
    )
    where = "in the run" if run_ids else "in all"
    if len({frozenset(mine) for mine in ids.values()}) == 1:
        return [
            f"every pipeline has records for only {len(ran)} of the run's {len(union)} examples"
            f" ({counts}): the run is unfinished, or some examples failed to be written; the"
            " tables cover only those examples"
        ]
    return [
        f"pipelines cover different example sets ({len(union)} examples {where}): {counts}; "
        "their tables are not over the same examples, and paired statistics use only the "
        "examples both pipelines ran"
    ]


def correct_column(threshold: float, mode: str = "official") -> str:
    """Name of the ``load_run`` correct-flag column: ``correct_50`` (official) or
    ``strict_correct_50``."""
    name = f"correct_{round(threshold * 100):02d}"
    return name if mode == "official" else f"strict_{name}"


def markdown_table(df: pd.DataFrame, digits: int = 2) -> str:
    """A pipe table of ``df`` (floats rounded to ``digits``; missing values left blank)."""
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v, digits) for v in row) + " |")
    return "\n".join(lines)


def pipelines_of(df: pd.DataFrame) -> list[str]:
    """Distinct pipeline names in first-appearance order."""
    return list(dict.fromkeys(df["pipeline"]))


def _cell(value: Any, digits: int) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value).replace("|", "\\|")
