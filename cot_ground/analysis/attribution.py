"""Failure attribution: why each prediction failed, and what oracle-image mode gains over agent.

Categories, checked in this order (the first that applies wins):

``image_error`` / ``model_error`` / ``config_error``
    infrastructure failure recorded on the example (:class:`~cot_ground.records.ErrorInfo`).
``step1_format``
    CoT step 1 gave no usable image choice (its text did not parse after every retry).
``index_out_of_range``
    a model named an image the example does not have.
``wrong_image``
    the chosen image is not the target image.
``format_failure``
    an end-to-end answer could not be parsed into a box.
``no_box``
    the right image (or no image named), but no box: the grounder found nothing.
``image_not_stated``
    a box, but no image named where the question designates none (``group_grounding``): the
    official score counts the box, the strict one cannot.
``no_proposal_hits``
    proposal-based graphs (``som``, ``perception-prompt``, ``verify``): not a success, and no
    proposal on the target image overlaps the ground truth with IoU >= 0.5 (the detector,
    not the selector, is the limit; :mod:`cot_ground.analysis.proposal_recall`).
``wrong_mark``
    proposal-based graphs: a box with IoU < 0.5 although some proposal would have been right
    (the selector chose the wrong one).
``low_iou``
    a box with IoU < 0.5.
``success``
    the right image (named, or designated by the question) and IoU >= 0.5: exactly the
    predictions that are strict-correct at Acc@0.5.

The image facts and the IoU come from :func:`cot_ground.scoring.score_row` (one
:class:`~cot_ground.scoring.RowScore` per prediction), so a category never disagrees with
the score tables.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

import pandas as pd

from cot_ground.analysis.scores import AVERAGE, GROUP_ROWS, correct_column
from cot_ground.boxes import Box
from cot_ground.records import ErrorCategory, ErrorInfo, ParseStatus, TraceStep
from cot_ground.tasks import TASK_GROUPS, ordered_tasks

if TYPE_CHECKING:
    from collections.abc import Sequence

    from cot_ground.scoring import RowScore

CATEGORIES: tuple[str, ...] = (
    "success",
    "step1_format",
    "wrong_image",
    "no_box",
    "image_not_stated",
    "no_proposal_hits",
    "wrong_mark",
    "low_iou",
    "format_failure",
    "index_out_of_range",
    "image_error",
    "model_error",
    "config_error",
)
SUCCESS_IOU = 0.5
# the pipeline kinds attribution tables cover by default (the graphs with a selection step)
ATTRIBUTED_KINDS = ("cot", "som", "perception-prompt", "verify")
_INFRASTRUCTURE = {ErrorCategory.IMAGE, ErrorCategory.MODEL, ErrorCategory.CONFIG}


def failure_category(
    *,
    kind: str,
    error: ErrorInfo | None,
    step1: TraceStep | None,
    score: RowScore,
    box: Box | None,
    status: ParseStatus,
    proposal_hit: bool | None = None,
) -> str:
    """The category of one prediction (see the module docstring for the order); ``score`` is
    its :func:`~cot_ground.scoring.score_row` result; ``proposal_hit`` (proposal-based graphs
    only, else None): some proposal on the target image has IoU >= 0.5."""
    if error is not None and error.category in _INFRASTRUCTURE:
        return error.category.value
    if kind == "cot" and _step1_failed(step1, score.image_stated, error):
        return "step1_format"
    if error is not None and error.category is ErrorCategory.INDEX:
        return "index_out_of_range"
    if score.image_stated and not score.image_correct:
        return "wrong_image"
    success = box is not None and score.image_correct and score.iou >= SUCCESS_IOU
    if proposal_hit is False and not success:
        return "no_proposal_hits"
    if box is None:
        if kind != "cot" and status is not ParseStatus.NO_BOX:
            return "format_failure"
        return "no_box"
    if not score.image_correct:
        return "image_not_stated"
    if score.iou >= SUCCESS_IOU:
        return "success"
    return "wrong_mark" if proposal_hit else "low_iou"


def _step1_failed(step1: TraceStep | None, image_stated: bool, error: ErrorInfo | None) -> bool:
    if image_stated:
        return False  # an image was chosen (by step 1, a fallback, or the oracle)
    if step1 is not None:
        return step1.parsed.get("status", ParseStatus.OK.value) != ParseStatus.OK.value
    return error is not None and error.category is ErrorCategory.FORMAT


def attribution_table(df: pd.DataFrame, pipelines: Sequence[str] | None = None) -> pd.DataFrame:
    """Counts per (pipeline, task, category) of the CoT pipelines (or of ``pipelines``).

    Columns: ``pipeline, task, n`` and one count column per category present; tasks in
    benchmark order, then an ``ALL`` row per pipeline summing its tasks.
    """
    sub = _select(df, pipelines)
    cats = [c for c in CATEGORIES if c in set(sub["failure"])]
    rows = []
    for pipeline in dict.fromkeys(sub["pipeline"]):
        mine = sub[sub["pipeline"] == pipeline]
        for task in [*ordered_tasks(mine["task"]), "ALL"]:
            part = mine if task == "ALL" else mine[mine["task"] == task]
            counts = part["failure"].value_counts()
            row = {"pipeline": pipeline, "task": task, "n": len(part)}
            rows.append(row | {c: int(counts.get(c, 0)) for c in cats})
    return pd.DataFrame(rows, columns=["pipeline", "task", "n", *cats])


def attribution_shares(table: pd.DataFrame) -> pd.DataFrame:
    """``attribution_table`` with counts turned into percentages of ``n``."""
    out = table.copy()
    cats = [c for c in out.columns if c in CATEGORIES]
    out[cats] = out[cats].div(out["n"].where(out["n"] > 0), axis=0).mul(100).fillna(0.0)
    return out


GAIN_RULES: tuple[str, ...] = ("strict", "official")
"""The scoring rules of the oracle-gain table, in table order. ``strict`` (a box on a wrong
image is wrong) measures what the agent's image choices cost; ``official`` (the public
MIG-Bench rule: only the box counts, compared on the target image) cannot, since a wrong
image choice is not penalised by it."""


def oracle_gain(
    df: pd.DataFrame,
    specs: dict[str, dict[str, Any]] | None = None,
    threshold: float = SUCCESS_IOU,
    rules: Sequence[str] = GAIN_RULES,
) -> pd.DataFrame:
    """Acc gain of ``oracle-image`` over ``agent`` per task, for each matched pipeline pair
    and scoring rule.

    Pairs are CoT pipelines whose ``mode`` is ``agent`` and ``oracle-image`` and whose other
    settings in ``specs`` are equal (see :func:`oracle_pairs`); only examples both pipelines
    ran are compared. Each pair is scored at Acc@``threshold`` under every rule of ``rules``
    (``strict`` / ``official``, the ``load_run`` columns ``strict_correct_50`` /
    ``correct_50``; see :data:`GAIN_RULES`). Columns:
    ``agent, oracle, rule, task, n, agent_acc, oracle_acc, gain`` (percent points), with the
    paper's group means ``SPONTANEOUS`` / ``REFERENTIAL`` (groups with a task in the run) and
    an ``AVERAGE`` row (plain mean over tasks) per pair and rule. Empty when no pair was run.
    Raises ValueError for an unknown rule.
    """
    for rule in rules:
        if rule not in GAIN_RULES:
            raise ValueError(f"unknown rule {rule!r} (use {', '.join(GAIN_RULES)})")
    rows: list[dict[str, Any]] = []
    for (agent, oracle), rule in itertools.product(oracle_pairs(df, specs), rules):
        column = correct_column(threshold, rule)
        a = df[df["pipeline"] == agent].set_index("example_id")
        o = df[df["pipeline"] == oracle].set_index("example_id")
        common = a.index.intersection(o.index)
        a, o = a.loc[common], o.loc[common]
        per_task = []
        for task in ordered_tasks(a["task"]):
            mask = a["task"] == task
            acc_a = 100 * a.loc[mask, column].mean()
            acc_o = 100 * o.loc[mask, column].mean()
            per_task.append(
                {
                    "agent": agent,
                    "oracle": oracle,
                    "rule": rule,
                    "task": task,
                    "n": int(mask.sum()),
                    "agent_acc": acc_a,
                    "oracle_acc": acc_o,
                    "gain": acc_o - acc_a,
                }
            )
        by_task = {r["task"]: r for r in per_task}
        summaries = [
            (GROUP_ROWS[g], [by_task[t] for t in members if t in by_task])
            for g, members in TASK_GROUPS.items()
        ]
        for label, members in [*summaries, (AVERAGE, list(by_task.values()))]:
            if not members:
                continue
            acc = {
                k: sum(r[k] for r in members) / len(members) for k in ("agent_acc", "oracle_acc")
            }
            per_task.append(
                {
                    "agent": agent,
                    "oracle": oracle,
                    "rule": rule,
                    "task": label,
                    "n": sum(r["n"] for r in members),
                    **acc,
                    "gain": acc["oracle_acc"] - acc["agent_acc"],
                }
            )
        rows.extend(per_task)
    cols = ["agent", "oracle", "rule", "task", "n", "agent_acc", "oracle_acc", "gain"]
    return pd.DataFrame(rows, columns=cols)


def oracle_pairs(
    df: pd.DataFrame, specs: dict[str, dict[str, Any]] | None = None
) -> list[tuple[str, str]]:
    """(agent pipeline, oracle-image pipeline) pairs run side by side.

    With ``specs`` (pipeline configs from ``run.json``) an agent pipeline is paired with the
    oracle pipeline whose config is equal apart from ``mode``; without them, and when the run
    holds exactly one of each, those two are paired.
    """
    modes = df.drop_duplicates("pipeline").set_index("pipeline")["mode"].to_dict()
    agents = sorted(p for p, m in modes.items() if m == "agent")
    oracles = sorted(p for p, m in modes.items() if m == "oracle-image")
    if specs:
        keyed = {p: pair_key(specs.get(p, {})) for p in agents + oracles}
        return [(a, o) for a in agents for o in oracles if keyed[a] == keyed[o]]
    if len(agents) == 1 and len(oracles) == 1:
        return [(agents[0], oracles[0])]
    return []


def pair_key(spec: dict[str, Any]) -> str:
    """A pipeline config without its ``mode``, as a comparable string."""
    return repr(sorted((k, repr(v)) for k, v in spec.items() if k != "mode"))


def _select(df: pd.DataFrame, pipelines: Sequence[str] | None) -> pd.DataFrame:
    if pipelines is not None:
        return df[df["pipeline"].isin(list(pipelines))]
    return df[df["kind"].isin(ATTRIBUTED_KINDS)]
