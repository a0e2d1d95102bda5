"""The per-task table: which image step 2 sees in ``paper`` mode, and the visual reference.

Everything task-specific that is not prompt wording lives here as data (prompt wording lives in
``prompts/``). Image indices are 0-based. Rules for the step-2 image in ``paper`` mode follow
the public Migician CoT script: a fixed image, the ground-truth target image (which that script
reads from the question), or the image step 1 chose. A fixed image applies only when the
question names none: where it names the target ("… in the 1th image"), ``paper`` mode uses that
image (``cot_ground.graph.nodes.CoTNodes._step2_image``). Where step 1's choice cannot be read,
``paper`` mode sends the first image, as the paper's appendix does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from cot_ground.boxes import Box, Frame
from cot_ground.parsing import parse_box
from cot_ground.records import ParseStatus

PaperImage = int | Literal["target", "reasoner"]


@dataclass(frozen=True)
class NumberInQuestion:
    """An image named by a number in the question: index = (number - 1) + ``offset``."""

    pattern: str
    offset: int = 0

    def index(self, question: str) -> int | None:
        """The 0-based image index, or None when the question does not match."""
        match = re.search(self.pattern, question)
        return None if match is None else int(match.group(1)) - 1 + self.offset


ReferenceImage = int | Literal["other"] | NumberInQuestion | None


@dataclass(frozen=True)
class TaskRule:
    """What the graph needs to know about a task beyond its prompt files."""

    paper_image: PaperImage
    """Step-2 image in ``paper`` mode: fixed index (when the question names no image),
    ``"target"`` or ``"reasoner"``."""
    reference_image: ReferenceImage = None
    """Image a picture-based grounder matches against: fixed index, ``"other"`` (the other
    image of a two-image example), a number in the question, or None."""
    reference_box_in_question: bool = False
    """The question states a box (``<|box_start|>(x1,y1),(x2,y2)<|box_end|>``, Qwen 0-1000
    frame) on the reference image."""


TASKS: dict[str, TaskRule] = {
    "common_object": TaskRule(paper_image="target"),
    "correspondence": TaskRule(paper_image=1, reference_image=0),
    "diff": TaskRule(paper_image=1, reference_image="other"),
    "group_grounding": TaskRule(paper_image="reasoner"),
    "multi_view": TaskRule(paper_image="target", reference_image=0, reference_box_in_question=True),
    "object_tracking": TaskRule(
        paper_image="target", reference_image=0, reference_box_in_question=True
    ),
    "reasoning": TaskRule(paper_image=1),
    "refer_grounding": TaskRule(paper_image=1, reference_image=0),
    "region": TaskRule(
        paper_image=0, reference_image=NumberInQuestion(r"(\d+)\s*(?:th|st|nd|rd) region", 1)
    ),
    "view_diff": TaskRule(paper_image=1, reference_image="other"),
}
DEFAULT_RULE = TaskRule(paper_image="reasoner")


def task_rule(task: str) -> TaskRule:
    """The rule of ``task``; tasks not in the table get :data:`DEFAULT_RULE`."""
    return TASKS.get(task, DEFAULT_RULE)


def reference_image(
    rule: TaskRule, question: str, n_images: int, step2_image: int | None = None
) -> int | None:
    """The reference image index for a picture-based grounder, or None.

    Without ``step2_image`` only references stated independently of it are returned (a fixed
    index or a number in the question), which is what prompts may mention.
    """
    ref = rule.reference_image
    if isinstance(ref, NumberInQuestion):
        index = ref.index(question)
    elif ref == "other":
        index = 1 - step2_image if n_images == 2 and step2_image in (0, 1) else None
    else:
        index = ref
    if index is None or not 0 <= index < n_images or index == step2_image:
        return None
    return index


def reference_box(rule: TaskRule, question: str) -> Box | None:
    """The box the question states on the reference image, when the task has one."""
    if not rule.reference_box_in_question:
        return None
    parsed = parse_box(question, Frame.QWEN1000)
    return parsed.box if parsed.status in (ParseStatus.OK, ParseStatus.SEVERAL_BOXES) else None
