"""The upper bound of the proposal-based graphs (``som``, ``perception-prompt``, ``verify``):
proposal recall at IoU 0.5, the share of examples where some proposal on the target image
overlaps the ground truth with IoU >= 0.5. A selector over those proposals cannot beat it, so
it tells whether the detector or the selector is the limit.

The proposals are read from the ``propose`` step of each prediction's trace (see
:mod:`cot_ground.graph.proposals`); predictions without one (CoT, end-to-end) have no bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from cot_ground.boxes import Box, iou
from cot_ground.records import TraceStep
from cot_ground.tasks import ordered_tasks

PROPOSE_NODE = "propose"
RECALL_IOU = 0.5
ARTIFACT_NODES = ("draw_marks", "zoom", "verify")


def trace_proposals(trace: Sequence[TraceStep]) -> list[dict[str, Any]] | None:
    """The proposals of the (last) ``propose`` step of a trace, or None when it has none."""
    found = None
    for entry in trace:
        if entry.node == PROPOSE_NODE:
            found = list(entry.parsed.get("proposals", []))
    return found


def proposal_hit(
    proposals: Sequence[dict[str, Any]],
    gt_box: Box,
    target_image: int,
    threshold: float = RECALL_IOU,
) -> bool:
    """True when some proposal on the target image (0-based) overlaps the ground truth with
    IoU >= ``threshold``."""
    return any(
        p["image"] == target_image and iou(Box.model_validate(p["box"]), gt_box) >= threshold
        for p in proposals
    )


def trace_artifacts(trace: Sequence[TraceStep]) -> list[str]:
    """Files the graph made and showed a model: marked images, zoom crops, verified crops."""
    return [path for entry in trace if entry.node in ARTIFACT_NODES for path in entry.images]


def recall_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per pipeline with proposals and per task: ``n``, ``proposal_recall_50`` (% of examples
    with a hit) and ``acc_50`` (% official Acc@0.5) side by side; an ``AVERAGE`` row per
    pipeline is the plain mean over tasks. Empty when no pipeline made proposals."""
    columns = ["pipeline", "task", "n", "proposal_recall_50", "acc_50"]
    if "proposal_hit" not in df:
        return pd.DataFrame(columns=columns)
    sub = df[df["proposal_hit"].notna()]
    rows = []
    for pipeline in dict.fromkeys(sub["pipeline"]):
        mine = sub[sub["pipeline"] == pipeline]
        per_task = []
        for task in ordered_tasks(mine["task"]):
            part = mine[mine["task"] == task]
            row = {
                "pipeline": pipeline,
                "task": task,
                "n": len(part),
                "proposal_recall_50": 100.0 * part["proposal_hit"].astype(bool).mean(),
                "acc_50": 100.0 * part["correct_50"].astype(bool).mean(),
            }
            per_task.append(row)
        rows += per_task
        rows.append(
            {
                "pipeline": pipeline,
                "task": "AVERAGE",
                "n": len(mine),
                "proposal_recall_50": sum(r["proposal_recall_50"] for r in per_task)
                / len(per_task),
                "acc_50": sum(r["acc_50"] for r in per_task) / len(per_task),
            }
        )
    return pd.DataFrame(rows, columns=columns)
