"""Classical grounding without weights: :class:`ClassicalGrounder` (``classical-grounder``)
sends each request to the picture-based grounder its task calls for, by the task table
(:mod:`cot_ground.tasks`): difference tasks to :class:`~cot_ground.models.difference.DiffGrounder`,
keypoint tasks (``common_object``) to :class:`~cot_ground.models.keypoints.KeypointGrounder`
(template search as its fallback), every other task to
:class:`~cot_ground.models.template.TemplateGrounder`. The step-1 counterpart is
:mod:`cot_ground.models.rule_reasoner`.
"""

from __future__ import annotations

from typing import Any

from cot_ground.models.base import GroundRequest, GroundResult
from cot_ground.models.difference import DiffGrounder
from cot_ground.models.keypoints import KeypointGrounder
from cot_ground.models.options import resolve_options
from cot_ground.models.settings import ModelSettings
from cot_ground.models.template import TemplateGrounder
from cot_ground.tasks import DIFF_TASKS, KEYPOINT_TASKS


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
    """``classical-grounder``: options ``{"template": {...}, "diff": {...}, "keypoint": {...}}``."""
    opts = resolve_options(
        "classical-grounder", settings.options, {"template": {}, "diff": {}, "keypoint": {}}
    )
    return ClassicalGrounder(
        TemplateGrounder(opts["template"]), DiffGrounder(opts["diff"]), opts["keypoint"]
    )
