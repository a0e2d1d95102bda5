"""``build_report``: every table, chart and the HTML page of a run, written to RUN_DIR/report/."""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cot_ground.analysis.attribution import attribution_table, oracle_gain
from cot_ground.analysis.charts import failure_chart, task_bar_chart
from cot_ground.analysis.guide import EMPTY_REASONS, TABLE_NOTES
from cot_ground.analysis.html_report import ReportTables, render_report
from cot_ground.analysis.load import load_run, pipeline_specs, read_manifest
from cot_ground.analysis.paired import paired_comparison, paired_display, paired_frame
from cot_ground.analysis.proposal_recall import recall_table
from cot_ground.analysis.run_warnings import RunSelection, run_warnings, task_coverage
from cot_ground.analysis.scores import (
    markdown_table,
    overview_frame,
    pipelines_of,
    write_scores,
)
from cot_ground.scoring import MODES


@dataclass
class ReportFiles:
    """What :func:`build_report` wrote, and the long score table it computed."""

    out_dir: Path
    scores: pd.DataFrame
    files: dict[str, Path] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    """Why the figures are not those of one finished, unchanged run (a run that never ended,
    changes allowed across sessions, pipelines or tasks without records, pipelines on
    different example sets: :func:`~cot_ground.analysis.run_warnings.run_warnings`)."""
    task_coverage: dict[str, tuple[int, int]] = field(default_factory=dict)
    """``{pipeline: (tasks with records, tasks of the run)}``: its AVERAGE is over the first."""


def build_report(
    run_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    sample_per_category: int = 3,
    seed: int = 0,
    n_boot: int = 2000,
) -> ReportFiles:
    """Write scores, attribution, oracle gain, paired comparisons, charts and ``report.html``.

    ``out_dir`` defaults to ``RUN_DIR/report``. The oracle gain is given under the strict rule
    (what wrong image choices cost) and the official one. Paired comparisons cover every pair
    of pipelines (in run order) on Acc@0.5 (official), bootstrapped with ``seed``, on the
    examples both ran; p-values are written with every digit in ``paired.csv`` and
    ``paired.json`` and as ``1.4e-20`` below 0.001 in ``paired.md`` and the page. When the
    run is mixed or unfinished (changes allowed across sessions, a changed selection, a run
    that never ended, pipelines or tasks without records, pipelines on different example
    sets) the report is still written, with warnings in ``ReportFiles.warnings``, at the top
    of ``scores.md`` and ``report.html``, and in ``scores.json``.
    """
    df = load_run(run_dir)
    if df.empty:
        raise ValueError(f"run folder {run_dir} holds no predictions to report on")
    manifest = read_manifest(run_dir)
    out = Path(out_dir) if out_dir is not None else Path(run_dir) / "report"
    out.mkdir(parents=True, exist_ok=True)
    selection = RunSelection.of(run_dir)
    warnings = run_warnings(run_dir, df, manifest, selection)
    scores, score_files = write_scores(df, out, warnings, selection.tasks)
    result = ReportFiles(
        out_dir=out,
        scores=scores,
        warnings=warnings,
        task_coverage=task_coverage(df, selection),
    )
    result.files.update({f"scores.{k}": p for k, p in score_files.items()})

    attribution = attribution_table(df)
    gain = oracle_gain(df, pipeline_specs(manifest))
    paired = paired_frame(
        [
            r
            for a, b in itertools.combinations(pipelines_of(df), 2)
            for r in paired_comparison(df, a, b, seed=seed, n_boot=n_boot)
        ]
    )
    tables_out = (
        ("attribution", attribution, attribution, 2),
        ("oracle_gain", gain, gain, 2),
        ("paired", paired_display(paired, full_precision=True), paired_display(paired), 4),
    )
    for name, csv_table, md_table, digits in tables_out:
        result.files[f"{name}.csv"] = _write_csv(csv_table, out / f"{name}.csv")
        md = out / f"{name}.md"
        # an empty table's markdown file says why it is empty instead of holding a bare header;
        # the others open with the rule they are scored by (TABLE_NOTES)
        if md_table.empty:
            text = EMPTY_REASONS[name]
        else:
            note = TABLE_NOTES.get(name)
            text = (f"{note}\n\n" if note else "") + markdown_table(md_table, digits)
        md.write_text(text + "\n", "utf-8")
        result.files[f"{name}.md"] = md
    recall = recall_table(df)
    if not recall.empty:
        result.files["proposal_recall.csv"] = _write_csv(recall, out / "proposal_recall.csv")
        md = out / "proposal_recall.md"
        md.write_text(markdown_table(recall, 2) + "\n", "utf-8")
        result.files["proposal_recall.md"] = md
    paired_json = out / "paired.json"
    records = paired.astype(object).where(paired.notna(), None).to_dict("records")
    paired_json.write_text(json.dumps(records, indent=2) + "\n", "utf-8")
    result.files["paired.json"] = paired_json

    charts = {
        "Acc@0.5 per task (official)": task_bar_chart(scores, out / "charts" / "acc_per_task.png"),
        "Failure categories per task (CoT pipelines)": failure_chart(
            attribution, out / "charts" / "failure_categories.png"
        ),
    }
    result.files.update({f"charts/{p.name}": p for p in charts.values()})
    tables = ReportTables(
        manifest=manifest,
        overview={mode: overview_frame(scores, mode, run_tasks=selection.tasks) for mode in MODES},
        scores=scores,
        attribution=attribution,
        oracle_gain=gain,
        paired=paired_display(paired),
        charts=charts,
        warnings=warnings,
        proposal_recall=recall,
        n_run_examples=len(selection.ids),
    )
    page = out / "report.html"
    page.write_text(render_report(df, tables, sample_per_category, seed), encoding="utf-8")
    result.files["report.html"] = page
    return result


def _write_csv(table: pd.DataFrame, path: Path) -> Path:
    table.to_csv(path, index=False, float_format="%.4f")
    return path
