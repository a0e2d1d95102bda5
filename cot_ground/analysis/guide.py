"""The report's explanations for a newcomer: what the figures mean and why a section is empty.

Plain text (the HTML page escapes it; markdown files and the terminal print it as is):

- :data:`CATEGORY_MEANINGS`: one line per failure category of
  :data:`cot_ground.analysis.attribution.CATEGORIES` (CoT wording), with
  :data:`KIND_MEANINGS` where a category means something else for another pipeline kind, and
  :func:`category_meaning` choosing by kind and zoom-in;
- :data:`HOW_TO_READ`: the short box at the top of the report;
- :data:`CAPTIONS`: one line under each table and chart;
- :data:`EMPTY_REASONS`: what an empty table means;
- :func:`run_notes`: facts of this run a reader would otherwise have to guess (random-weight
  pipelines, Acc@0.5 hits that copy the question's reference box, a pipeline scoring 0 on a
  task because every example failed the same way).
"""

from __future__ import annotations

import os
from typing import Any

import pandas as pd

from cot_ground.analysis.attribution import CATEGORIES
from cot_ground.analysis.scores import reference_echo_note

TINY_PREFIX = "tiny_"

CATEGORY_MEANINGS: dict[str, str] = {
    "success": "right image (named, or designated by the question) and IoU ≥ 0.5",
    "step1_format": "CoT step 1 gave no usable image choice (its text did not parse after every"
    " retry, or the reasoner could not choose)",
    "wrong_image": "the image the pipeline named is not the target image",
    "no_box": "right image (or none named) but no box: the grounder found nothing",
    "image_not_stated": "a box, but no image named where the question designates none"
    " (group_grounding): official counts the box, strict cannot",
    "no_proposal_hits": "proposal-based graph: no proposal on the target image overlaps the"
    " ground truth with IoU ≥ 0.5 (the detector, not the selector, is the limit)",
    "wrong_mark": "proposal-based graph: the selector chose a wrong proposal although one"
    " would have been right",
    "low_iou": "a box on the right image, but IoU with the ground truth < 0.5",
    "format_failure": "an end-to-end answer could not be parsed into a box",
    "index_out_of_range": "the model named an image the example does not have",
    "image_error": "a picture could not be read (infrastructure failure)",
    "model_error": "the model call failed (infrastructure failure)",
    "config_error": "the pipeline was misconfigured for this example (infrastructure failure)",
}

KIND_MEANINGS: dict[str, dict[str, str]] = {
    "e2e": {
        "no_box": "the end-to-end answer held no box",
    },
    "som": {
        "no_box": "Set-of-Mark: proposals were drawn, but the reasoner answered that no mark fits",
        "format_failure": "Set-of-Mark: the reasoner's answer named no usable image and mark"
        " after every retry",
    },
    "perception-prompt": {
        "no_box": "perception-prompt: proposals were listed, but the reasoner answered that none"
        " fits",
        "format_failure": "perception-prompt: the reasoner's answer named no usable proposal id"
        " or box after every retry",
    },
    "verify": {
        "no_box": "verify: the grounder proposed boxes (one would have been right), but the"
        " reasoner said yes to none of the cropped proposals it was asked about",
        "format_failure": "verify: step 1 (the reasoner's image choice and description) could"
        " not be parsed after every retry",
        "wrong_mark": "verify: the reasoner said yes to a wrong proposal although one would have"
        " been right",
    },
}
"""Meanings that differ from :data:`CATEGORY_MEANINGS` per pipeline kind (``kind:`` of the
pipeline config; ``cot`` uses :data:`CATEGORY_MEANINGS` as is)."""
ZOOM_NOTE = " (after zoom-in: the trace's zoom step holds the box before and after)"
_ZOOM_CATEGORIES = frozenset({"success", "low_iou", "wrong_mark"})

HOW_TO_READ: tuple[str, ...] = (
    "Acc@0.5: the share of examples (%) whose predicted box overlaps the ground-truth box with"
    " IoU ≥ 0.5; AVERAGE is the plain mean over tasks.",
    "official vs strict: official is the public MIG-Bench rule, only the box counts (it is"
    " compared on the target image); strict also needs the answer to name the target image."
    " They differ when a pipeline names a wrong image, or names none.",
    "Reference-box echo: object_tracking and multi_view questions state the object's box in"
    " the first image. An answer that copies that box is scored like any other under both"
    " rules (the object may not have moved), so part of a score there can be copies: column"
    " reference_box_echo of load_run, and the notes below, say how many.",
    "CoT pipelines run two steps: a reasoner picks the image and describes the target (step 1),"
    " a grounder boxes that description (step 2). End-to-end pipelines answer with a box in one"
    " step.",
    "Failure categories say why an example was not a success (first rule that applies):"
    " step1_format = step 1 gave no usable image choice; wrong_image = the named image is not"
    " the target; no_box = no box (CoT: the grounder found nothing; som, perception-prompt,"
    " verify: no proposal was chosen); low_iou = a box, IoU < 0.5; format_failure = an answer"
    " could not be read (end-to-end: no readable box; som, perception-prompt: no usable mark"
    " or id; verify: step 1). Their meaning per pipeline is under Failure attribution.",
    "Pipelines named tiny_* run tiny models with random weights: they prove the MLLM code path"
    " runs end to end; their scores mean nothing.",
    "Image numbers shown here start at 1.",
)

CAPTIONS: dict[str, str] = {
    "run": "What was run: the benchmark file (identified by its sha256), how many examples,"
    " and the code version.",
    "sessions": "Each start or resume of the run: when it started and ended, how many examples"
    " it selected, and what it changed (the selection; the pipelines' config or prompts, when"
    " resumed with --allow-changed).",
    "overview.official": "Acc@0.5 (%) per task, official rule: only the box counts.",
    "overview.strict": "Acc@0.5 (%) per task, strict rule: the named image must also be the"
    " target image.",
    "chart.acc_per_task": "One bar per pipeline and task: Acc@0.5 (official, %); a missing bar"
    " is 0.",
    "chart.failure_categories": "Per CoT pipeline: the share of examples in each failure"
    " category, per task (ALL = every task).",
    "attribution": "Why each CoT example failed, as counts per pipeline and task (n = examples).",
    "shares": "The same counts as % of n.",
    "categories": "What each failure category means (the first rule that applies wins).",
    "oracle_gain": "Acc@0.5 of the oracle-image pipeline (step 2 gets the target image) minus"
    " its agent twin (step 1 chooses), per rule. rule strict (a box on a wrong image is"
    " wrong): how much wrong image choices cost. rule official (the public rule, only the box"
    " counts): a box on a wrong image still counts when its coordinates overlap the ground"
    " truth, so this gain does not measure image choice.",
    "paired": "Two pipelines on the same examples, Acc@0.5 under the official rule (only the"
    " box counts): both / only A / only B / neither right, A − B with a bootstrap 95%"
    " interval, exact McNemar p (unadjusted; p_holm: Holm-adjusted over the pair's per-task"
    " tests). TASK_MEAN has no counts: its difference is a mean over tasks, not a 2×2 table.",
    "scores": "Every metric (Acc@0.3/0.5/0.7, mIoU), both rules, per pipeline and task.",
    "examples": "A seeded sample of examples per CoT pipeline and failure category, every image"
    " with the boxes drawn.",
}

TABLE_NOTES: dict[str, str] = {
    "oracle_gain": "Acc@0.5 (%) of oracle-image minus agent, under two rules (column `rule`)."
    " strict: the named image must be the target, so the gain is what wrong image choices"
    " cost. official: the public MIG-Bench rule, only the box counts (compared on the target"
    " image), so a wrong image choice costs nothing when the box's coordinates happen to fit.",
    "paired": "Acc@0.5 under the official rule (only the box counts, the public MIG-Bench"
    " rule), on the examples both pipelines ran. p_value: exact McNemar, unadjusted: with"
    " several tasks some fall below 0.05 by chance; p_holm: Holm-adjusted over the pair's"
    " per-task tests. POOLED: every example weighs the same; TASK_MEAN: every task weighs the"
    " same (its difference is a mean over tasks, so it has no 2×2 counts and no test).",
}
"""The line that opens a table's markdown file (``oracle_gain.md``, ``paired.md``): the
scoring rule it uses and how to read it."""

EMPTY_REASONS: dict[str, str] = {
    "attribution": "No CoT pipeline in this run: failure attribution covers two-step"
    " pipelines only.",
    "oracle_gain": "No oracle-image gain: this run has no pair of CoT pipelines that differ only"
    " in mode (agent vs oracle-image), so there is nothing to subtract.",
    "paired": "No paired comparison: the run has a single pipeline, or no two pipelines share"
    " an example.",
    "examples": "No examples drawn (--sample-per-category 0).",
}


def category_meaning(category: str, kind: str | None = None, zoom: bool = False) -> str:
    """The one-line meaning of ``category`` for a pipeline of ``kind`` (``cot``, ``e2e``,
    ``som``, ``perception-prompt``, ``verify``; None: the CoT wording), noting zoom-in when the
    pipeline has it; a pointer to docs/analysis.md when the category is unknown."""
    meaning = (KIND_MEANINGS.get(kind or "") or {}).get(category) or CATEGORY_MEANINGS.get(
        category, "see docs/analysis.md, Failure categories"
    )
    return meaning + ZOOM_NOTE if zoom and category in _ZOOM_CATEGORIES else meaning


def zoomed_pipelines(manifest: dict[str, Any] | None) -> set[str]:
    """The pipelines whose config in ``run.json`` has zoom-in (``zoom:``)."""
    pipes = ((manifest or {}).get("config") or {}).get("pipelines") or {}
    return {str(k) for k, v in pipes.items() if isinstance(v, dict) and v.get("zoom")}


def category_rows(df: pd.DataFrame, manifest: dict[str, Any] | None = None) -> pd.DataFrame:
    """The failure categories present in ``df`` (a :func:`~cot_ground.analysis.load.load_run`
    frame), one row per category and meaning: columns ``category, pipelines, meaning``, in
    ``categories`` order (then unknown ones by name); the meaning follows each pipeline's kind
    and zoom-in (:func:`category_meaning`)."""
    zoomed = zoomed_pipelines(manifest)
    present = set(df["failure"])
    order = [c for c in CATEGORIES if c in present] + sorted(present - set(CATEGORIES))
    rows = []
    for category in order:
        sub = df[df["failure"] == category]
        by_meaning: dict[str, list[str]] = {}
        for pipeline, kind in dict.fromkeys(zip(sub["pipeline"], sub["kind"], strict=True)):
            meaning = category_meaning(category, kind, pipeline in zoomed)
            by_meaning.setdefault(meaning, []).append(str(pipeline))
        rows += [(category, ", ".join(p), m) for m, p in by_meaning.items()]
    return pd.DataFrame(rows, columns=["category", "pipelines", "meaning"])


def tiny_pipelines(pipelines: list[str]) -> list[str]:
    """The pipelines that run random-weight tiny models (named ``tiny_*``)."""
    return [p for p in pipelines if p.startswith(TINY_PREFIX)]


def run_notes(
    df: pd.DataFrame, scores: pd.DataFrame, manifest: dict[str, Any] | None = None
) -> list[str]:
    """Plain-text notes on this run: random-weight pipelines, and every (pipeline, task) at
    0% Acc@0.5 (official) whose examples all fell in one failure category, with its meaning.

    ``df``: a :func:`~cot_ground.analysis.load.load_run` DataFrame; ``scores``: the long score
    table of :func:`~cot_ground.analysis.scores.scores_frame` (columns mode, pipeline, task,
    acc@0.5; extra columns are ignored); ``manifest``: ``run.json``, whose config names each
    pipeline's reasoner adapter (a ``rule-reasoner`` gets a note on why it cannot choose).
    """
    reasoners = _reasoner_adapters(manifest or {})
    zoomed = zoomed_pipelines(manifest)
    notes = []
    tiny = tiny_pipelines(list(dict.fromkeys(df["pipeline"])))
    if tiny:
        notes.append(
            f"{', '.join(tiny)}: random weights; these scores only show that the code path runs."
        )
    echo = reference_echo_note(df)
    if echo:
        notes.append(echo.replace("`", ""))
    official = scores[(scores["mode"] == "official") & scores["acc@0.5"].notna()]
    if "figure" in official.columns:  # long tables with one row per figure
        official = official[official["figure"] == "acc@0.5"]
    zero = official[official["acc@0.5"] == 0]
    for pipeline, task in zip(zero["pipeline"], zero["task"], strict=True):
        if pipeline in tiny:
            continue
        rows = df[(df["pipeline"] == pipeline) & (df["task"] == task)]
        categories = set(rows["failure"])
        if len(rows) and len(categories) == 1:
            category = categories.pop()
            meaning = category_meaning(category, rows["kind"].iloc[0], pipeline in zoomed)
            why = ""
            if category == "step1_format" and reasoners.get(pipeline) == "rule-reasoner":
                why = (
                    " The rule-reasoner reads the target image from the question, and these"
                    " questions name no image."
                )
            notes.append(
                f"{pipeline} scores 0 on {task}: all {len(rows)} examples are {category}"
                f" ({meaning}).{why}"
            )
    return notes


def _reasoner_adapters(manifest: dict[str, Any]) -> dict[str, str]:
    """Pipeline name → adapter of its reasoner, from ``run.json``'s config (CoT pipelines)."""
    config = manifest.get("config") or {}
    models = config.get("models") or {}
    out = {}
    for name, pipe in (config.get("pipelines") or {}).items():
        model = models.get(pipe.get("reasoner")) if isinstance(pipe, dict) else None
        if isinstance(model, dict) and model.get("adapter"):
            out[str(name)] = str(model["adapter"])
    return out


def terminal_lines(run_dir: str | os.PathLike[str]) -> list[str]:
    """What the terminal prints under a score table: how to read it, then :func:`run_notes`."""
    from cot_ground.analysis.load import load_run, read_manifest
    from cot_ground.analysis.scores import score_tables, scores_frame

    df = load_run(run_dir)
    notes = run_notes(df, scores_frame(score_tables(df)), read_manifest(run_dir))
    return [
        "Acc@0.5: % of examples whose box has IoU >= 0.5 with the ground truth. official: only"
        " the box counts (public MIG-Bench rule); strict: the named image must also be the"
        " target. report.html opens with a 'How to read this report' box.",
        *(f"note: {n}" for n in notes),
    ]
