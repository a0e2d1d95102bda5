"""A single self-contained HTML report: tables, charts and drawn examples, embedded as data URIs.

Every piece of model or dataset text goes through :func:`html.escape`; model text longer than
:data:`MAX_TEXT_CHARS` is cut with a note (:func:`cut_text`). Pictures are decoded
with :func:`cot_ground.images.open_rgb`, downscaled, drawn on with PIL and embedded as base64
JPEG; each example image shown is exactly one ``<img>`` element.
"""

from __future__ import annotations

import base64
import html
import io
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image, ImageDraw

from cot_ground.analysis.attribution import ATTRIBUTED_KINDS, CATEGORIES, attribution_shares
from cot_ground.analysis.guide import (
    CAPTIONS,
    EMPTY_REASONS,
    HOW_TO_READ,
    category_rows,
    run_notes,
)
from cot_ground.analysis.run_warnings import describe
from cot_ground.analysis.scores import WARNINGS_TITLE, strict_note
from cot_ground.boxes import Box
from cot_ground.images import ImageLoadError, open_rgb

GT_COLOR = "#00c853"
COT_COLOR = "#ff1744"
E2E_COLORS = ("#2979ff", "#aa00ff", "#00b8d4", "#ffab00")
THUMB_SIDE = 384
# model text longer than this is cut in the page with a note (the JSONL keeps all of it)
MAX_TEXT_CHARS = 4096
# run.json keys shown in the report (a whitelist, so nothing else from the manifest leaks)
MANIFEST_KEYS = ("name", "benchmark", "n_examples", "shard", "git", "started", "ended")
# keys of run.json ``benchmark`` that belong to one session's selection, not to the file
SELECTION_KEYS = ("tasks", "limit", "per_task", "sample", "seed", "examples")
SESSION_COLUMNS = {
    "n_examples": "examples selected",
    "changed": "changes allowed",
    "environment_changed": "other code / weights",
}
# keys of a ``sessions`` entry shown in the run box's session table
SESSION_KEYS = (
    "started",
    "ended",
    "status",
    "n_examples",
    "selection_changed",
    "changed",
    "benchmark_changed",
    "environment_changed",
)


@dataclass(frozen=True)
class ReportTables:
    """Everything the HTML report shows apart from the examples themselves."""

    manifest: dict[str, Any]
    overview: dict[str, pd.DataFrame]  # mode -> pipelines × tasks Acc@0.5
    scores: pd.DataFrame
    attribution: pd.DataFrame
    oracle_gain: pd.DataFrame
    paired: pd.DataFrame
    charts: dict[str, Path]  # title -> PNG file
    warnings: list[str] = field(default_factory=list)  # e.g. pipelines on different examples
    # proposal-based graphs: recall at IoU 0.5 per task (analysis/proposal_recall.py)
    proposal_recall: pd.DataFrame = field(default_factory=pd.DataFrame)
    # examples the run selected (examples.jsonl: every session's selection); None: unknown
    n_run_examples: int | None = None


def render_report(
    df: pd.DataFrame, tables: ReportTables, sample_per_category: int = 3, seed: int = 0
) -> str:
    """The report page as one HTML string."""
    body = [
        f"<h1>cot-ground report: {_e(tables.manifest.get('name', ''))}</h1>",
        warnings_box(tables.warnings),
        guide_box(run_notes(df, tables.scores, tables.manifest)),
        _manifest_section(tables.manifest, tables.n_run_examples),
        "<h2>Acc@0.5 per task</h2><p>n: examples per cell; SPONTANEOUS and REFERENTIAL: the"
        " Migician paper's group means (Table 5); AVERAGE: plain mean over tasks.</p>",
    ]
    for mode, overview in tables.overview.items():
        caption = _caption(f"overview.{mode}")
        body.append(f"<h3>{_e(mode)}</h3>{caption}{html_table(overview.reset_index())}")
        if mode == "strict":
            body.append(f"<p>{_e(strict_note(df).replace('`', ''))}</p>")
    body.append("<h2>Charts</h2>")
    for title, path in tables.charts.items():
        uri = _data_uri(Path(path).read_bytes(), "image/png")
        body.append(f'<figure><img class="chart" src="{uri}" alt="{_e(title)}">')
        caption = CAPTIONS.get(f"chart.{Path(path).stem}", "")
        body.append(f"<figcaption><b>{_e(title)}</b>. {_e(caption)}</figcaption></figure>")
    body.append(
        "<h2>Failure attribution (counts)</h2>" + _section(tables.attribution, "attribution")
    )
    if not tables.attribution.empty:
        shares = attribution_shares(tables.attribution)
        body.append("<h3>Shares (% of n)</h3>" + _caption("shares") + html_table(shares))
    body.append(categories_table(df, tables.manifest))
    if not tables.proposal_recall.empty:
        body.append(
            "<h2>Proposal recall at IoU 0.5 (upper bound of the proposal-based graphs)</h2>"
            "<p>proposal_recall_50: % of examples where some proposal on the target image has"
            " IoU &ge; 0.5 with the ground truth; no selector over these proposals can score"
            " higher. acc_50: the pipeline's official Acc@0.5 beside it.</p>"
            + html_table(tables.proposal_recall)
        )
    body.append(
        "<h2>Oracle-image gain over agent (strict and official rules)</h2>"
        + _section(tables.oracle_gain, "oracle_gain")
    )
    if tables.paired.empty:
        body.append("<h2>Paired comparisons (Acc@0.5, official)</h2>" + _empty("paired"))
    else:
        body.append(
            f"<h2>Paired comparisons (Acc@0.5, official)</h2>{_caption('paired')}"
            "<p>On the examples both pipelines ran."
            " diff = A − B in percent points; CI: seeded bootstrap 95% interval; p_value: exact"
            " McNemar test, unadjusted for the number of tasks; p_holm: Holm-adjusted over the"
            " pair's per-task tests. POOLED weighs every example the same; TASK_MEAN weighs"
            " every task the same (task-stratified bootstrap, no test, no 2×2 counts).</p>"
            + html_table(tables.paired)
        )
    body.append(
        "<details><summary>All metrics, official and strict</summary>"
        + _caption("scores")
        + html_table(tables.scores)
        + "</details>"
    )
    body.append(examples_section(df, sample_per_category, seed))
    title = _e(f"cot-ground report {tables.manifest.get('name', '')}")
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def sample_examples(
    df: pd.DataFrame, per_category: int, seed: int
) -> dict[tuple[str, str], pd.DataFrame]:
    """Seeded sample of rows per (pipeline, failure category), for the CoT pipelines.

    When the run has no CoT pipeline, the other pipelines are sampled instead.
    """
    if per_category <= 0:
        return {}
    pool = df[df["kind"].isin(ATTRIBUTED_KINDS)]
    if pool.empty:
        pool = df
    out: dict[tuple[str, str], pd.DataFrame] = {}
    for pipeline in dict.fromkeys(pool["pipeline"]):
        rows = pool[pool["pipeline"] == pipeline].sort_values("example_id")
        for category in CATEGORIES:
            members = rows[rows["failure"] == category]
            if members.empty:
                continue
            rng = random.Random(f"{seed}:{pipeline}:{category}")
            picked = sorted(rng.sample(range(len(members)), min(per_category, len(members))))
            out[(pipeline, category)] = members.iloc[picked]
    return out


def examples_section(df: pd.DataFrame, per_category: int, seed: int) -> str:
    """Example cards: every image with the ground-truth, CoT and end-to-end boxes drawn."""
    e2e = [p for p in dict.fromkeys(df["pipeline"]) if _kind(df, p) != "cot"]
    colors = dict(zip(e2e, E2E_COLORS * (len(e2e) // len(E2E_COLORS) + 1), strict=False))
    legend = [f'<span style="color:{GT_COLOR}">■ ground truth</span>']
    legend.append(f'<span style="color:{COT_COLOR}">■ the card\'s pipeline</span>')
    legend += [_swatch(c, p + _no_box_note(df, p)) for p, c in colors.items()]
    parts = [
        f'<h2 id="examples">Examples by failure category'
        f" ({per_category} per category, seed {seed})</h2>",
        "<p>Boxes: " + " ".join(legend) + ". Image numbers are 1-based (index + 1); a "
        "box that names no image is drawn on the target image.</p>",
        _caption("examples"),
    ]
    by_id = {p: df[df["pipeline"] == p].set_index("example_id") for p in e2e}
    samples = sample_examples(df, per_category, seed)
    if not samples:
        parts.append(_empty("examples"))
    for (pipeline, category), rows in samples.items():
        parts.append(f"<h3>{_e(pipeline)}: {_e(category)} ({len(rows)} shown)</h3>")
        for row in rows.itertuples(index=False):
            others = {
                p: by_id[p].loc[row.example_id]
                for p in e2e
                if p != pipeline and row.example_id in by_id[p].index
            }
            parts.append(_example_card(row, others, colors))
    return "\n".join(parts)


def draw_image(path: str, boxes: Sequence[tuple[Box, str]], max_side: int = THUMB_SIDE) -> bytes:
    """JPEG bytes of the picture at ``path``, downscaled, with each (box, colour) drawn."""
    picture = open_rgb(path).copy()
    picture.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    draw = ImageDraw.Draw(picture)
    w, h = picture.size
    for box, color in boxes:
        x1, y1, x2, y2 = box.to_pixels(w, h)
        draw.rectangle((min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)), outline=color, width=3)
    buf = io.BytesIO()
    picture.save(buf, format="JPEG", quality=80)
    return buf.getvalue()


def html_table(df: pd.DataFrame, digits: int = 2) -> str:
    """An HTML table of ``df`` with every cell escaped."""
    if df.empty:
        return "<p>(none)</p>"
    head = "".join(f"<th>{_e(c)}</th>" for c in df.columns)
    rows = []
    for values in df.itertuples(index=False):
        cells = "".join(f"<td>{_e(_fmt(v, digits))}</td>" for v in values)
        rows.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def warnings_box(warnings: Sequence[str]) -> str:
    """The block that opens a report on a mixed or unfinished run: one item per warning
    (:func:`~cot_ground.analysis.run_warnings.run_warnings`); empty for a clean run."""
    if not warnings:
        return ""
    items = "".join(f'<li class="warning">Warning: {_e(w)}</li>' for w in warnings)
    return f'<section class="warnings"><h2>{_e(WARNINGS_TITLE)}</h2><ul>{items}</ul></section>'


def guide_box(notes: Sequence[str]) -> str:
    """The "how to read this report" box: :data:`~cot_ground.analysis.guide.HOW_TO_READ`, then
    ``notes`` about this run (:func:`~cot_ground.analysis.guide.run_notes`)."""
    items = "".join(f"<li>{_e(line)}</li>" for line in HOW_TO_READ)
    extra = ""
    if notes:
        extra = "<p><b>In this run</b></p><ul>" + "".join(f"<li>{_e(n)}</li>" for n in notes)
        extra += "</ul>"
    return f'<aside class="guide"><h2>How to read this report</h2><ul>{items}</ul>{extra}</aside>'


def categories_table(df: pd.DataFrame, manifest: dict[str, Any] | None = None) -> str:
    """The failure categories that occur in ``df`` with their meaning for the pipelines they
    occur in (by kind and zoom-in; :func:`~cot_ground.analysis.guide.category_rows`)."""
    table = category_rows(df, manifest)
    return "<h3>Failure categories</h3>" + _caption("categories") + html_table(table)


def _caption(key: str) -> str:
    return f'<p class="caption">{_e(CAPTIONS[key])}</p>'


def _empty(key: str) -> str:
    return f'<p class="empty">{_e(EMPTY_REASONS[key])}</p>'


def _section(table: pd.DataFrame, key: str) -> str:
    """Caption and table, or why the table is empty."""
    return _empty(key) if table.empty else _caption(key) + html_table(table)


def _swatch(color: str, label: str) -> str:
    return f'<span style="color:{color}">■</span> {_e(label)}'


def _no_box_note(df: pd.DataFrame, pipeline: str) -> str:
    boxes = df.loc[df["pipeline"] == pipeline, "box"]
    return "" if boxes.map(lambda b: isinstance(b, list)).any() else " (drew no box in this run)"


def _box_place(box: Any, image_index: Any, target: int, failure: str) -> str:
    if not isinstance(box, list):
        return f"no box ({failure})"
    if pd.isna(image_index):
        return f"image {int(target) + 1} (named none; drawn on the target)"
    return f"image {int(image_index) + 1}"


def _card_legend(row: Any, others: dict[str, pd.Series], colors: dict[str, str]) -> str:
    """Where each box of this card is drawn, or that a pipeline drew none."""
    entries = [_swatch(GT_COLOR, f"ground truth: image {int(row.target_image) + 1}")]
    place = _box_place(row.box, row.image_index, row.target_image, row.failure)
    entries.append(_swatch(COT_COLOR, f"{row.pipeline}: {place}"))
    for name, other in others.items():
        place = _box_place(other["box"], other["image_index"], row.target_image, other["failure"])
        entries.append(_swatch(colors[name], f"{name}: {place}"))
    return '<p class="legend">' + " · ".join(entries) + "</p>"


def _manifest_value(key: str, value: Any) -> str:
    """A run.json value for people: nested values as ``key: value``, unset ones said in words."""
    if value is None:
        return "not sharded (the whole benchmark)" if key == "shard" else "-"
    if not isinstance(value, dict):
        return _fmt(value, 4)
    parts = []
    for k, v in value.items():
        if v is None:
            if k == "tasks":
                parts.append("tasks: all")
            continue
        parts.append(f"{k}: {_fmt(v, 4)}")
    return "; ".join(parts)


def _example_figure(path: str, boxes: list[tuple[Box, str]], caption: str) -> str:
    """The picture at ``path`` with ``boxes`` drawn, captioned; a note when it cannot be read."""
    try:
        uri = _data_uri(draw_image(path, boxes), "image/jpeg")
    except ImageLoadError as exc:
        return f'<div class="missing">{_e(caption)}: {_e(exc)}</div>'
    return (
        f'<figure><img class="example" src="{uri}" alt="{_e(caption)}">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def _example_card(row: Any, others: dict[str, pd.Series], colors: dict[str, str]) -> str:
    gt = Box.from_unit(row.gt_box)
    chosen = None if pd.isna(row.image_index) else int(row.image_index)
    drawn = [(row.box, row.image_index, COT_COLOR)]
    drawn += [(o["box"], o["image_index"], colors[name]) for name, o in others.items()]
    figures = []
    for index, path in enumerate(row.images):
        boxes: list[tuple[Box, str]] = []
        if index == row.target_image:
            boxes.append((gt, GT_COLOR))
        for box, image_index, color in drawn:
            # a box that names no image is drawn on the target image (official scoring)
            where = row.target_image if pd.isna(image_index) else image_index
            if isinstance(box, list) and int(where) == index:
                boxes.append((Box.from_unit(box), color))
        tags = ["target"] if index == row.target_image else []
        if chosen == index:
            tags.append("chosen")
        caption = f"image {index + 1}" + (f" ({', '.join(tags)})" if tags else "")
        figures.append(_example_figure(path, boxes, caption))
    # what a proposal-based graph showed its models: marked images, zoom and verify crops
    for path in getattr(row, "artifacts", None) or []:
        figures.append(_example_figure(path, [], f"shown to the model: {Path(path).name}"))
    chosen_text = "none" if chosen is None else f"image {chosen + 1}"
    facts = [
        ("example", row.example_id),
        ("task", row.task),
        ("category", row.failure),
        ("IoU (official)", f"{row.iou:.3f}"),
        ("chosen image", chosen_text),
        ("target image", f"image {int(row.target_image) + 1}"),
        ("question", row.question),
        ("step-1 description", cut_text(_text(row.description), row.pipeline)),
    ]
    for name, other in others.items():
        facts.append((f"{name} IoU", f"{other['iou']:.3f}"))
    if _text(row.error_message):
        message = cut_text(_text(row.error_message), row.pipeline)
        facts.append(("error", f"{_text(row.error_category)}: {message}"))
    dl = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts)
    step1 = cut_text(_text(row.step1_text) or _text(row.raw_text), row.pipeline)
    return (
        f'<div class="card">{_card_legend(row, others, colors)}<dl>{dl}</dl>'
        f"<details open><summary>step-1 text</summary><pre>{_e(step1)}</pre></details>"
        f'<div class="images">{"".join(figures)}</div></div>'
    )


def _manifest_section(manifest: dict[str, Any], n_run_examples: int | None = None) -> str:
    """The run box: what was run, with the benchmark file apart from the example selection
    (the last session's, when sessions differ) and a table of the sessions."""
    items = []
    sessions = [s for s in manifest.get("sessions") or [] if isinstance(s, dict)]
    for key in MANIFEST_KEYS:
        if key not in manifest:
            continue
        value = manifest[key]
        if key == "benchmark" and isinstance(value, dict):
            items.append(("benchmark", {k: v for k, v in value.items() if k not in SELECTION_KEYS}))
            chosen = {k: value[k] for k in SELECTION_KEYS if k in value}
            if not value.get("sample"):
                chosen.pop("seed", None)  # a seed only draws a --sample
            if "examples" in chosen:
                chosen["examples selected"] = chosen.pop("examples")
            if chosen:
                label = "selection"
                if len(sessions) > 1 or any(s.get("selection_changed") for s in sessions):
                    label = "selection (last session; see sessions)"
                items.append((label, chosen))
        elif key == "n_examples":
            count = n_run_examples if n_run_examples is not None else value
            items.append(("examples in the run (every session's selection)", count))
        elif key == "ended" and value is None:
            items.append(("ended", "never (killed, or still running)"))
        else:
            items.append((key, value))
    if not items:
        return ""
    dl = "".join(f"<dt>{_e(k)}</dt><dd>{_e(_manifest_value(k, v))}</dd>" for k, v in items)
    return f"<h2>Run</h2>{_caption('run')}<dl>{dl}</dl>{_sessions_table(sessions)}"


def _sessions_table(sessions: list[dict[str, Any]]) -> str:
    """One row per session of ``run.json``: when it ran, how many examples it selected, and
    the selection change and changes allowed it brought (unknown values left blank)."""
    if not sessions:
        return ""
    rows = []
    for number, session in enumerate(sessions, start=1):
        row: dict[str, Any] = {"session": number}
        for key in SESSION_KEYS:
            value = session.get(key)
            if key == "ended" and key in session and value is None:
                # the status column says why, where the runner recorded one
                value = "never"
                if not session.get("status"):
                    last = number == len(sessions)
                    value += " (killed, or still running)" if last else " (killed)"
            row[key] = describe(value) if isinstance(value, dict | list) else value
        rows.append(row)
    # object columns: a count stays an integer beside a session that did not record one
    table = pd.DataFrame(rows, columns=["session", *SESSION_KEYS], dtype=object)
    table = table.dropna(axis=1, how="all").rename(columns=SESSION_COLUMNS)
    return f"<h3>Sessions</h3>{_caption('sessions')}{html_table(table)}"


def _kind(df: pd.DataFrame, pipeline: str) -> str:
    return str(df.loc[df["pipeline"] == pipeline, "kind"].iloc[0])


def cut_text(text: str, pipeline: str, limit: int = MAX_TEXT_CHARS) -> str:
    """``text`` cut to its first ``limit`` characters, with a note naming what was left out and
    where the full text is (``predictions/PIPELINE.jsonl``); shorter text unchanged."""
    if len(text) <= limit:
        return text
    return (
        f"{text[:limit]}\n[... cut: {len(text) - limit:,} more characters; the full text is in "
        f"predictions/{pipeline}.jsonl]"
    )


def _text(value: Any) -> str:
    """``value`` as text; "" for None and missing (NaN) values."""
    return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)


def _fmt(value: Any, digits: int) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items())
    return str(value)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0;font-size:.85em}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}
th{background:#f0f0f0}
.card{border:1px solid #bbb;border-radius:6px;padding:.6em;margin:.8em 0}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 12px;margin:0}
dt{font-weight:600}dd{margin:0}
pre{white-space:pre-wrap;background:#f7f7f7;padding:.4em;max-height:14em;overflow:auto}
.images{display:flex;flex-wrap:wrap;gap:8px}
figure{margin:0}img.chart{max-width:100%}
.missing{border:1px dashed #c00;padding:1em;color:#c00}
.guide{border:1px solid #8ab;background:#f3f8fb;border-radius:6px;padding:.2em 1em;max-width:70em}
.guide h2{margin:.4em 0}.caption{color:#555;font-style:italic;margin:.2em 0}
.empty{color:#555;border-left:4px solid #bbb;padding:.3em .6em}
.legend{margin:.2em 0 .5em}
table{display:block;max-width:100%;overflow-x:auto}
.warning{border-left:4px solid #c60;padding:.3em .6em;background:#fff4e5}
.warnings{border:2px solid #c60;background:#fff4e5;border-radius:6px;padding:.2em 1em;margin:.5em 0}
.warnings h2{margin:.4em 0;color:#a40}.warnings ul{padding-left:1.2em}
"""
