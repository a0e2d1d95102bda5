"""Which image (0-based) a MIG-Bench ground-truth box belongs to: one documented rule per task.

The annotation files state the box but not the image it lies in. The rules, tried in order
(the first that fires is recorded as ``Example.target_rule``):

1. ``additional_info`` (``group_grounding`` only: ``Task.target_from_answer``): the ordinal in
   the hidden sentence "It is in the first image. <box>" (this sentence is the answer; it never
   reaches a prompt).
2. ``question_ordinal``: the image named right after ``in`` following the *last* request word
   (locate / find / ground / identify / recognize / detect / coordinates) of a sentence, e.g.
   "Recognize and locate this object in the 2th image", "Find it in Image-2", "give me the
   coordinates of their difference in the 1th image". Images named elsewhere are references
   ("the object marked with red bounding box in the first image", "the people in image-1") and
   are skipped because no request word governs them.
3. ``question_source_image``: "... in the source image" (``region``) is image 0.
4. The task's default (``Task.default_target`` in :data:`cot_ground.tasks.TASKS`):
   ``default_second_image`` for the two-image tasks (``diff``, ``view_diff``,
   ``refer_grounding``, ``reasoning``, ``correspondence``) and ``default_source_image`` (index 0)
   for ``region``.

Any other case is an error naming the item: a silent default would hide a data problem.
"""

from __future__ import annotations

import re
from functools import lru_cache

from cot_ground.mentions import image_choice, question_images
from cot_ground.tasks import get_task

_SOURCE_IMAGE = re.compile(r"\bin\s+the\s+source\s+image\b", re.IGNORECASE)
_BOX_TOKENS = re.compile(r"<\|box_start\|>.*?<\|box_end\|>", re.DOTALL)


class TargetRuleError(ValueError):
    """No rule gives a target image, or the rule names an image the item does not have."""


def target_image(task: str, question: str, additional_info: str, n_images: int) -> tuple[int, str]:
    """``(0-based target image index, rule name)`` for one item; see the module docstring."""
    index, rule = _apply_rules(task, question, additional_info)
    if not 0 <= index < n_images:
        raise TargetRuleError(
            f"rule {rule!r} gives image {index + 1} but the item has {n_images} images"
        )
    return index, rule


def designated_target(task: str, question: str) -> tuple[int, str] | None:
    """``(0-based index, rule)`` of the image the question (or the task's fixed layout)
    designates, or None for ``group_grounding``, whose target is only in ``additional_info``.
    The index is not checked against the item's images (see :func:`target_image`)."""
    if get_task(task).target_from_answer:
        return None
    return _apply_rules(task, question, "")


@lru_cache(maxsize=8192)  # questions repeat across items; the rules are pure
def _apply_rules(task: str, question: str, additional_info: str) -> tuple[int, str]:
    row = get_task(task)
    if row.target_from_answer:
        sentence = _BOX_TOKENS.sub(" ", additional_info).split(".")[0]
        index = image_choice(sentence)
        if index is None:
            raise TargetRuleError(
                f"{task}: additional_info names no image: {additional_info[:80]!r}"
            )
        return index, "additional_info"
    index = question_images(question).target
    if index is not None:
        return index, "question_ordinal"
    if _SOURCE_IMAGE.search(question):
        return 0, "question_source_image"
    if row.default_target is not None:
        return row.default_target.image, row.default_target.rule
    raise TargetRuleError(f"{task}: no rule names the target image in {question[:120]!r}")
