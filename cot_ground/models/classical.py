"""Classical grounding without weights: :class:`ClassicalGrounder` (``classical-grounder``)
sends each request to the picture-based grounder its task calls for, by the task table
(:mod:`cot_ground.tasks`): difference tasks to :class:`~cot_ground.models.difference.DiffGrounder`,
keypoint tasks (``common_object``) to :class:`~cot_ground.models.keypoints.KeypointGrounder`
(template search as its fallback), every other task to
:class:`~cot_ground.models.template.TemplateGrounder`. The step-1 counterpart is
:mod:`cot_ground.models.rule_reasoner`. The options of every part are checked when the adapter is
built, every problem at once (:func:`settings_problems` lists them without building it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cot_ground.models.base import GroundRequest, GroundResult
from cot_ground.models.difference import DiffGrounder
from cot_ground.models.keypoints import KeypointGrounder
from cot_ground.models.options import OptionRule, option_problems, options_mapping
from cot_ground.models.settings import ModelSettings
from cot_ground.models.template import TemplateGrounder
from cot_ground.tasks import DIFF_TASKS, KEYPOINT_TASKS

PARTS: dict[str, type[TemplateGrounder | DiffGrounder | KeypointGrounder]] = {
    "template": TemplateGrounder,
    "diff": DiffGrounder,
    "keypoint": KeypointGrounder,
}
"""Option of ``classical-grounder`` → the grounder whose options it holds."""

_PART_RULES: dict[str, OptionRule] = dict.fromkeys(PARTS, options_mapping)


def settings_problems(name: str, settings: ModelSettings) -> list[str]:
    """Problems of the options of ``classical-grounder`` (``name``): unknown keys, a part that
    is not a mapping, and every unknown key and bad value inside each part (named
    ``classical-grounder options.<part>``), all at once; for the pre-flight check."""
    options = settings.options
    problems = option_problems(name, options, dict.fromkeys(PARTS), _PART_RULES)
    for part, grounder in PARTS.items():
        given = options.get(part)
        if isinstance(given, Mapping):
            problems += option_problems(
                f"{name} options.{part}", given, grounder.DEFAULTS, grounder.RULES
            )
    return problems


class ClassicalGrounder:
    """Difference tasks go to :class:`DiffGrounder`, ``common_object`` to a
    :class:`KeypointGrounder` (falling back to the template grounder), all others to
    :class:`TemplateGrounder`."""

    name = "classical-grounder"

    def __init__(
        self,
        template: TemplateGrounder,
        diff: DiffGrounder,
        keypoint_options: dict[str, Any] | None = None,
    ) -> None:
        self.template = template
        self.diff = diff
        self.keypoint = KeypointGrounder(keypoint_options, fallback=template)
        self.settings: dict[str, Any] = {
            "adapter": self.name,
            "template": template.settings,
            "diff": diff.settings,
            "keypoint": self.keypoint.settings,
            "diff_tasks": sorted(DIFF_TASKS),
            "keypoint_tasks": sorted(KEYPOINT_TASKS),
        }

    def ground(self, requests: list[GroundRequest]) -> list[GroundResult]:
        """Each request answered by the grounder its task calls for (order kept)."""
        return [self._grounder(r.task).ground([r])[0] for r in requests]

    def _grounder(self, task: str | None) -> TemplateGrounder | DiffGrounder | KeypointGrounder:
        if task in DIFF_TASKS:
            return self.diff
        return self.keypoint if task in KEYPOINT_TASKS else self.template


def build_keypoint_grounder(settings: ModelSettings) -> KeypointGrounder:
    """``keypoint-grounder``: options are :attr:`KeypointGrounder.DEFAULTS` keys; the template
    grounder (default options) answers when matching fails."""
    return KeypointGrounder(settings.options, fallback=TemplateGrounder())


def build_classical_grounder(settings: ModelSettings) -> ClassicalGrounder:
    """``classical-grounder``: options ``{"template": {...}, "diff": {...}, "keypoint": {...}}``;
    raises one ``ValueError`` listing every problem :func:`settings_problems` finds."""
    problems = settings_problems(ClassicalGrounder.name, settings)
    if problems:
        raise ValueError("; ".join(problems))
    opts = settings.options
    return ClassicalGrounder(
        TemplateGrounder(opts.get("template")), DiffGrounder(opts.get("diff")), opts.get("keypoint")
    )
