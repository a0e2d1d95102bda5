"""Rule reasoner (``rule-reasoner``, no weights): step 1 answered from the question text.

It takes the question and the task from the request (``ChatRequest.question`` / ``task``, which
the CoT graph sends; else the question from the prompt's ``Task:`` line and the task recognised
from its wording, :func:`cot_ground.tasks.task_of`) and answers which image holds the target
with the loader's documented rule (:func:`cot_ground.bench.targets.target_image`), plus the
picture step 2 should match (``reference_index``) and, when the question states one, the box on
it (``reference_box``). The answer is returned as a structured result for the request's
``answer_kind``; ``raw_text`` shows it as JSON (with the rule used) for the trace, and nothing
reads it back.
"""

from __future__ import annotations

import json
import re
from typing import Any

from cot_ground.bench.targets import TargetRuleError, target_image
from cot_ground.boxes import Box
from cot_ground.models.base import ChatRequest, ReasonerResult
from cot_ground.models.options import option_problems, resolve_options
from cot_ground.models.settings import ModelSettings
from cot_ground.records import ParseStatus
from cot_ground.tasks import (
    DIFF_TASKS,
    SHARED_CONTENT_TASKS,
    get_task,
    reference_box,
    reference_image,
    task_of,
)

_TASK_LINE = re.compile(r"^\s*Task:\s*(.+)$", re.MULTILINE)
_OBJECT_REF = re.compile(r"<\|object_ref_start\|>(.*?)<\|object_ref_end\|>", re.DOTALL)


def question_of(prompt: str) -> str:
    """The question inside a step-1 prompt: the ``Task:`` line if any, else the whole prompt."""
    match = _TASK_LINE.search(prompt)
    return match.group(1).strip() if match else prompt


class RuleReasoner:
    """Step 1 without a model: the target image and the reference come from the question text.

    Without ``request.question`` it relies on the MIG-Bench question being in the prompt
    verbatim (the ``structured`` prompts put it on a ``Task:`` line; other prompts must contain
    it somewhere). Group-grounding questions name no image, so they get ``image_index=None``
    and status ``malformed`` (``no_box`` for the answer kind ``image``).
    """

    name = "rule-reasoner"

    def __init__(self) -> None:
        self.settings: dict[str, Any] = {"adapter": self.name, "target_rule": "bench.targets"}

    def reason(self, requests: list[ChatRequest]) -> list[ReasonerResult]:
        """One answer per request (never raises for an unreadable question)."""
        return [self._one(r) for r in requests]

    def _one(self, request: ChatRequest) -> ReasonerResult:
        question = (request.question or question_of(request.prompt)).strip()
        n = len(request.images)
        task = request.task or task_of(question)
        ref = _OBJECT_REF.search(question)
        if task is None or get_task(task).target_from_answer:
            why = "unknown question wording" if task is None else "the question names no image"
            description = ref.group(1).strip() if ref else None
            return self._result(request, None, description, None, None, why)
        try:
            index, rule = target_image(task, question, "", n)
        except TargetRuleError as exc:
            return self._result(request, None, None, None, None, str(exc))
        if task in SHARED_CONTENT_TASKS:
            ref_image = 0 if index != 0 else 1
        else:
            ref_image = reference_image(get_task(task), question, n, index)
        ref_box = reference_box(get_task(task), question) if ref_image is not None else None
        if ref_image is None:
            description = f"the {task.replace('_', ' ')} target in image {index + 1}"
        elif task in DIFF_TASKS:
            description = f"what differs from image {ref_image + 1}"
        else:
            marked = " inside the marked box" if ref_box is not None else ""
            description = f"what image {ref_image + 1} shows{marked}"
        return self._result(request, index, description, ref_image, ref_box, f"{task}: {rule}")

    def _result(
        self,
        request: ChatRequest,
        index: int | None,
        description: str | None,
        ref_image: int | None,
        ref_box: Box | None,
        why: str,
    ) -> ReasonerResult:
        """The answer for the request's ``answer_kind``, with the status and reason the step-1
        reader (:func:`cot_ground.parsing.parse_step1`) gives such an answer."""
        raw = {"image": None if index is None else index + 1, "description": description}
        raw["rule"] = why
        kind = request.answer_kind
        if kind == "image":
            description = None
            status, reason = ParseStatus.NO_BOX, "the answer names no image"
        elif kind == "description":
            index = None
            status, reason = ParseStatus.MALFORMED, "empty answer"
        else:
            status, reason = ParseStatus.MALFORMED, "no image number"
        readable = description is not None if kind == "description" else index is not None
        return ReasonerResult(
            raw_text=json.dumps(raw),
            image_index=index,
            description=description,
            status=ParseStatus.OK if readable else status,
            reason=None if readable else reason,
            settings=self.settings,
            reference_index=ref_image,
            reference_box=ref_box,
        )


def settings_problems(name: str, settings: ModelSettings) -> list[str]:
    """``rule-reasoner`` (``name``) takes no options: each one given is a problem."""
    return option_problems(name, settings.options, {})


def build_rule_reasoner(settings: ModelSettings) -> RuleReasoner:
    """``rule-reasoner``: takes no options."""
    resolve_options("rule-reasoner", settings.options, {})
    return RuleReasoner()
