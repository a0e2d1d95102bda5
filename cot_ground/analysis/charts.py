"""PNG charts drawn with matplotlib's Agg canvas (no display, no global pyplot state)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cot_ground.analysis.attribution import CATEGORIES, attribution_shares
from cot_ground.analysis.scores import SUMMARY_ROWS, pipelines_of
from cot_ground.tasks import ordered_tasks

CATEGORY_COLORS: dict[str, str] = {
    "success": "#2ca02c",
    "step1_format": "#9467bd",
    "wrong_image": "#d62728",
    "no_box": "#ff7f0e",
    "image_not_stated": "#aec7e8",
    "no_proposal_hits": "#c49c94",
    "wrong_mark": "#dbdb8d",
    "low_iou": "#bcbd22",
    "format_failure": "#8c564b",
    "index_out_of_range": "#e377c2",
    "image_error": "#7f7f7f",
    "model_error": "#17becf",
    "config_error": "#1f77b4",
}


def task_bar_chart(
    scores: pd.DataFrame,
    path: str | Path,
    mode: str = "official",
    metric: str = "acc@0.5",
) -> Path:
    """Grouped bars: one group per task (then the group means and the average), one bar per
    pipeline."""
    sub = scores[scores["mode"] == mode]
    present = set(sub["task"])
    tasks = [t for t in ordered_tasks(sub["task"]) if t not in SUMMARY_ROWS]
    tasks += [s for s in SUMMARY_ROWS if s in present]
    pipelines = pipelines_of(sub)
    fig = Figure(figsize=(max(6.0, 1.0 + 0.9 * len(tasks)), 4.2), dpi=100)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(pipelines))
    x = np.arange(len(tasks))
    for i, pipeline in enumerate(pipelines):
        values = sub[sub["pipeline"] == pipeline].set_index("task")[metric].reindex(tasks)
        ax.bar(x + (i - (len(pipelines) - 1) / 2) * width, values.fillna(0), width, label=pipeline)
    ax.set_xticks(x, tasks, rotation=30, ha="right")
    ax.set_ylabel(f"{metric} ({mode}), %")
    ax.set_ylim(0, 100)
    ax.set_title(f"{metric} per task ({mode})")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def failure_chart(attribution: pd.DataFrame, path: str | Path) -> Path:
    """Stacked bars of failure-category shares per task, one panel per pipeline."""
    pipelines = pipelines_of(attribution) if not attribution.empty else []
    cats = [c for c in CATEGORIES if c in attribution.columns]
    fig = Figure(figsize=(9.0, 1.0 + 3.2 * max(1, len(pipelines))), dpi=100)
    if not pipelines:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no CoT pipeline in this run", ha="center", va="center")
        ax.set_axis_off()
        return _save(fig, path)
    shares_all = attribution_shares(attribution)
    axes = fig.subplots(len(pipelines), 1, squeeze=False)[:, 0]
    for ax, pipeline in zip(axes, pipelines, strict=True):
        shares = shares_all[shares_all["pipeline"] == pipeline]
        tasks = list(shares["task"])
        bottom = np.zeros(len(tasks))
        for cat in cats:
            ax.bar(tasks, shares[cat], bottom=bottom, color=CATEGORY_COLORS[cat], label=cat)
            bottom += shares[cat].to_numpy()
        ax.set_title(pipeline)
        ax.set_ylabel("% of examples")
        ax.set_ylim(0, 100)
        ax.tick_params(axis="x", labelrotation=30)
        ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _save(fig, path)


def _save(fig: Figure, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(out, format="png")
    return out
