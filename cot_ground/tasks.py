"""The MIG-Bench tasks as data: one :class:`Task` row per task, read by every other module.

A row says where a task stands in the published tables and which paper group it belongs to,
which image the loader falls back to as the target, which image step 2 sees in ``paper`` mode,
which image (and box) is the visual reference, what kind of content its images share, and how
its question is worded. Prompt wording lives in ``prompts/``; the target-image *algorithm* in
:mod:`cot_ground.bench.targets`. Image indices are 0-based.

Step-2 image rules in ``paper`` mode follow the public Migician CoT script: a fixed image, the
ground-truth target image (which that script reads from the question), or the image step 1
chose. A fixed image applies only when the question names none: where it names the target
("... in the 1th image"), ``paper`` mode uses that image
(``cot_ground.graph.nodes.CoTNodes._step2_image``). Where step 1's choice cannot be read,
``paper`` mode sends the first image, as the paper's appendix does.

The MIG-Lite build order (``cot_ground.lite.builders.LITE_TASKS``) is separate on purpose: its
positions seed the generator.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

from cot_ground.boxes import Box, Frame
from cot_ground.parsing import parse_box
from cot_ground.records import ParseStatus

PaperImage = int | Literal["target", "reasoner"]
Group = Literal["spontaneous", "referential"]
Content = Literal["difference", "shared"]


@dataclass(frozen=True)
class NumberInQuestion:
    """An image named by a number in the question: index = (number - 1) + ``offset``."""

    pattern: str
    offset: int = 0

    def index(self, question: str) -> int | None:
        """The 0-based image index, or None when the question does not match."""
        match = re.search(self.pattern, question)
        return None if match is None else int(match.group(1)) - 1 + self.offset


Reference = int | Literal["other"] | NumberInQuestion | None


@dataclass(frozen=True)
class DefaultTarget:
    """The target image a task falls back to when its question names none."""

    image: int
    """0-based image index."""
    rule: str
    """The target-rule name recorded as ``Example.target_rule``."""


SECOND_IMAGE = DefaultTarget(1, "default_second_image")
"""Two-image tasks (a reference image, then the target image): the target is the second."""
SOURCE_IMAGE = DefaultTarget(0, "default_source_image")
"""``region``: the target is the source image, the others are region pictures."""


@dataclass(frozen=True)
class Task:
    """What cot-ground knows about one MIG-Bench task beyond its prompt files.

    A task missing from :data:`TASKS` gets the field defaults (:func:`get_task`).
    """

    name: str
    """The task name as the annotation files spell it."""
    group: Group | None = None
    """The Migician paper's task group (arXiv 2501.05767, Table 5): ``spontaneous`` (the
    model finds what to ground) or ``referential`` (the query or a reference image says)."""
    default_target: DefaultTarget | None = None
    """The loader's target image when the question names none (see
    :mod:`cot_ground.bench.targets`); None: no fallback, the item is an error."""
    target_from_answer: bool = False
    """The target image is stated only in the hidden answer sentence (``additional_info``);
    the question designates no image."""
    paper_image: PaperImage = "reasoner"
    """Step-2 image in ``paper`` mode: fixed index (when the question names no image),
    ``"target"`` or ``"reasoner"``."""
    reference: Reference = None
    """Image a picture-based grounder matches against: fixed index, ``"other"`` (the other
    image of a two-image example), a number in the question, or None."""
    reference_box_in_question: bool = False
    """The question states a box (``<|box_start|>(x1,y1),(x2,y2)<|box_end|>``, Qwen 0-1000
    frame) on the reference image."""
    content: Content | None = None
    """What the images have in common: ``difference`` (the target is what changed between two
    images: the diff grounder, and "what differs" in the rule reasoner's description),
    ``shared`` (every image shows the target's content: the reference is another image), or
    None."""
    keypoints: bool = False
    """The classical grounder matches keypoints for it (one rigid object seen again)."""
    all_form: bool = False
    """The multi-image CoT ``all`` answer form applies: the target is one object seen in several
    images (arXiv 2501.05767, Table 10)."""
    question_pattern: str | None = None
    """Regular expression (case-insensitive) that recognises the task's question wording; tried
    in :data:`RECOGNITION_ORDER` by :func:`task_of`."""


# Rows that two tasks share but for their name and wording.
_DIFF = Task(
    "diff",
    group="spontaneous",
    default_target=SECOND_IMAGE,
    paper_image=1,
    reference="other",
    content="difference",
    question_pattern=r"\btheir difference\b",
)
_TRACKING = Task(
    "object_tracking",
    group="referential",
    paper_image="target",
    reference=0,
    reference_box_in_question=True,
    all_form=True,
    question_pattern=r"\bsequence of images containing moving objects\b",
)
TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        _DIFF,
        replace(_DIFF, name="view_diff", question_pattern=r"\btheir real difference\b"),
        Task(
            "common_object",
            group="spontaneous",
            paper_image="target",
            content="shared",
            keypoints=True,
            all_form=True,
            question_pattern=r"\bshare one object in common\b",
        ),
        _TRACKING,
        replace(
            _TRACKING,
            name="multi_view",
            question_pattern=r"\bshare one object in common\s*\(.*<\|box_start\|>",
        ),
        Task(
            "region",
            group="referential",
            default_target=SOURCE_IMAGE,
            paper_image=0,
            reference=NumberInQuestion(r"(\d+)\s*(?:th|st|nd|rd) region", 1),
            question_pattern=r"\bregion picture\b",
        ),
        Task(
            "refer_grounding",
            group="referential",
            default_target=SECOND_IMAGE,
            paper_image=1,
            reference=0,
            question_pattern=r"\bobject in image-\d+ locate in the image-\d+",
        ),
        Task(
            "group_grounding",
            group="referential",
            target_from_answer=True,
            paper_image="reasoner",
            question_pattern=r"<\|object_ref_start\|>",
        ),
        Task("reasoning", group="referential", default_target=SECOND_IMAGE, paper_image=1),
        Task(
            "correspondence",
            group="referential",
            default_target=SECOND_IMAGE,
            paper_image=1,
            reference=0,
            content="shared",
            question_pattern=r"\bcorresponding area\b",
        ),
    )
}
"""Every MIG-Bench task, in benchmark order (the column order of published tables)."""
TASK_ORDER: tuple[str, ...] = tuple(TASKS)
TASK_GROUPS: dict[str, tuple[str, ...]] = {
    group: tuple(t.name for t in TASKS.values() if t.group == group)
    for group in ("spontaneous", "referential")
}
"""The two groups whose means the Migician paper reports beside the 10-task average (arXiv
2501.05767, Table 5)."""

RECOGNITION_ORDER: tuple[str, ...] = (
    "region",
    "view_diff",
    "diff",
    "refer_grounding",
    "object_tracking",
    "multi_view",
    "common_object",
    "correspondence",
    "group_grounding",
)
"""The order :func:`task_of` tries question patterns in: the first match wins, so a more
specific wording comes before one it contains (``multi_view`` before ``common_object``)."""
_PATTERNS = tuple(
    (name, re.compile(pattern, re.IGNORECASE))
    for name in RECOGNITION_ORDER
    if (pattern := TASKS[name].question_pattern) is not None
)

TARGET_RULES: tuple[str, ...] = (
    "additional_info",
    "question_ordinal",
    "question_source_image",
    SECOND_IMAGE.rule,
    SOURCE_IMAGE.rule,
)
"""Names of the target-image rules of :mod:`cot_ground.bench.targets`, in the order tried."""
QUESTION_DESIGNATES_TARGET: frozenset[str] = frozenset(TARGET_RULES) - {"additional_info"}
"""Rules under which the question itself (or the task's fixed image layout) tells a model which
image to answer on; under ``additional_info`` the model has to find the image itself."""
QUESTION_NAMES_TARGET: frozenset[str] = frozenset({"question_ordinal", "question_source_image"})
"""Rules under which the question's own words name the target image (not a task default)."""


def get_task(name: str) -> Task:
    """The row of task ``name``; a task not in :data:`TASKS` gets the field defaults."""
    return TASKS.get(name) or Task(name)


def tasks_with(**values: Any) -> frozenset[str]:
    """Names of the tasks whose fields equal ``values`` (e.g. ``content="difference"``).
    Raises TypeError for a name that is not a :class:`Task` field."""
    unknown = set(values) - {f.name for f in fields(Task)}
    if unknown:
        raise TypeError(f"not Task fields: {', '.join(sorted(unknown))}")
    return frozenset(
        t.name for t in TASKS.values() if all(getattr(t, k) == v for k, v in values.items())
    )


DIFF_TASKS = tasks_with(content="difference")
SHARED_CONTENT_TASKS = tasks_with(content="shared")
KEYPOINT_TASKS = tasks_with(keypoints=True)
ALL_FORM_TASKS = tasks_with(all_form=True)


def order_key(name: str) -> tuple[int, str]:
    """Sort key for task names: benchmark order, unknown tasks after, alphabetical."""
    return (TASK_ORDER.index(name) if name in TASKS else len(TASK_ORDER), name)


def ordered_tasks(names: Iterable[str]) -> list[str]:
    """The distinct task ``names`` in benchmark order (unknown tasks after, alphabetical)."""
    return sorted(set(names), key=order_key)


def task_of(question: str) -> str | None:
    """The MIG-Bench task a question is worded for (see :data:`RECOGNITION_ORDER`), or None."""
    for name, pattern in _PATTERNS:
        if pattern.search(question):
            return name
    return None


def question_designates_target(target_rule: str | None) -> bool:
    """True when an item whose target came from ``target_rule`` (``Example.target_rule``) has a
    question that designates its target image, so an answer naming no image is taken to be on
    it (strict scoring); False for ``additional_info`` and None."""
    return target_rule in QUESTION_DESIGNATES_TARGET


def reference_image(
    task: Task, question: str, n_images: int, step2_image: int | None = None
) -> int | None:
    """The reference image index for a picture-based grounder, or None.

    Without ``step2_image`` only references stated independently of it are returned (a fixed
    index or a number in the question), which is what prompts may mention.
    """
    ref = task.reference
    if isinstance(ref, NumberInQuestion):
        index = ref.index(question)
    elif ref == "other":
        index = 1 - step2_image if n_images == 2 and step2_image in (0, 1) else None
    else:
        index = ref
    if index is None or not 0 <= index < n_images or index == step2_image:
        return None
    return index


def reference_box(task: Task, question: str) -> Box | None:
    """The box the question states on the reference image, when the task has one."""
    if not task.reference_box_in_question:
        return None
    parsed = parse_box(question, Frame.QWEN1000)
    return parsed.box if parsed.status in (ParseStatus.OK, ParseStatus.SEVERAL_BOXES) else None
