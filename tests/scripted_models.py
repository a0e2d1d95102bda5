"""Scripted stand-ins for the three adapter roles: fixed answers, every request logged."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from cot_ground.boxes import Box
from cot_ground.models.base import (
    ChatRequest,
    EndToEndResult,
    GroundRequest,
    GroundResult,
    ReasonerResult,
)
from cot_ground.models.settings import ModelSettings
from cot_ground.records import Candidate, Example, ParseStatus, example_id

QUESTIONS = {
    "diff": "Compare these two images carefully and give me the coordinates of their difference. ",
    "group_grounding": "Please find the bounding box coordinates for the area described by: "
    "<|object_ref_start|>a white truck with a crane on top<|object_ref_end|>.",
    "region": "You are given a source image followed by its several regions. "
    "Please locate the 1th region picture in the source image. ",
    "multi_view": "These images share one object in common(the object marked with red bounding "
    "box in the first image(<|box_start|>(451,265),(519,388)<|box_end|>). Recognize and locate "
    "this object in the 2th image. ",
    "common_object": "These images share one object in common. Recognize and locate this object "
    "in the 3th image. ",
}


def make_example(
    task: str = "group_grounding",
    n_images: int = 3,
    target: int = 1,
    question: str | None = None,
    folder: str = "/data/imgs",
) -> Example:
    """An example whose image paths need not exist (scripted adapters never open them)."""
    images = [f"{folder}/{task}_{i}.png" for i in range(n_images)]
    question = question if question is not None else QUESTIONS.get(task, f"Find it ({task}).")
    return example_on(task, images, question, Box.from_unit([0.1, 0.1, 0.5, 0.5]), target)


def example_on(task: str, images: list[str], question: str, gt_box: Box, target: int) -> Example:
    """The example of ``task`` asking ``question`` on ``images``, with its id computed as the
    benchmark loaders compute it."""
    return Example(
        id=example_id(task, images, question),
        task=task,
        images=list(images),
        question=question,
        gt_box=gt_box,
        target_image=target,
    )


class ScriptedReasoner:
    """Answers step 1 from a list (one answer per call, the last repeats) or a function."""

    def __init__(self, answers: list[str] | Callable[[ChatRequest], str]) -> None:
        self.name = "scripted-reasoner"
        self.settings: dict[str, Any] = {"scripted": True}
        self._answers = answers
        self.requests: list[ChatRequest] = []
        self._lock = threading.Lock()

    def reason(self, requests: list[ChatRequest]) -> list[ReasonerResult]:
        out = []
        for request in requests:
            with self._lock:
                self.requests.append(request)
                n = len(self.requests)
            if callable(self._answers):
                text = self._answers(request)
            else:
                text = self._answers[min(n, len(self._answers)) - 1]
            out.append(ReasonerResult.from_text(text, request, self.settings))
        return out


class ScriptedGrounder:
    """Returns a fixed candidate list for each image path (none for unlisted images)."""

    def __init__(self, boxes: dict[str, list[Candidate]], name: str = "scripted-grounder") -> None:
        self.name = name
        self.settings: dict[str, Any] = {"scripted": True}
        self._boxes = boxes
        self.requests: list[GroundRequest] = []
        self._lock = threading.Lock()

    def ground(self, requests: list[GroundRequest]) -> list[GroundResult]:
        out = []
        for request in requests:
            with self._lock:
                self.requests.append(request)
            candidates = self._boxes.get(request.image, [])
            status = ParseStatus.OK if candidates else ParseStatus.NO_BOX
            raw = " ".join(str(c.box.to_list()) for c in candidates) if candidates else ""
            out.append(GroundResult(candidates=candidates, raw_text=raw, status=status))
        return out


class RaisingAdapter:
    """Any role; every call raises ``exc``."""

    def __init__(self, exc: Exception) -> None:
        self.name = "raising"
        self.settings: dict[str, Any] = {}
        self._exc = exc

    def _raise(self, requests: list[Any]) -> list[Any]:
        raise self._exc

    reason = ground = predict = _raise


class ScriptedEndToEnd:
    """Answers every question with the same box text and box."""

    def __init__(self, box: Box | None, raw_text: str, image_index: int | None = None) -> None:
        self.name = "scripted-e2e"
        self.settings: dict[str, Any] = {"scripted": True}
        self._box, self._raw, self._index = box, raw_text, image_index
        self.requests: list[ChatRequest] = []

    def predict(self, requests: list[ChatRequest]) -> list[EndToEndResult]:
        self.requests.extend(requests)
        status = ParseStatus.OK if self._box else ParseStatus.NO_BOX
        return [
            EndToEndResult(
                raw_text=self._raw, box=self._box, image_index=self._index, status=status
            )
            for _ in requests
        ]


def candidate(x1: float, y1: float, x2: float, y2: float, score: float = 0.9) -> Candidate:
    """A candidate box in the unit frame."""
    return Candidate(box=Box.from_unit([x1, y1, x2, y2]), score=score, label="target")


def build_scripted_reasoner(settings: ModelSettings) -> ScriptedReasoner:
    """Registry-style factory: answers from ``settings.options["answers"]``."""
    return ScriptedReasoner(list(settings.options["answers"]))


def build_scripted_grounder(settings: ModelSettings) -> ScriptedGrounder:
    """Registry-style factory: the same candidate box on every image listed in options."""
    box = candidate(*settings.options["box"])
    return ScriptedGrounder({path: [box] for path in settings.options["images"]})


def build_scripted_e2e(settings: ModelSettings) -> ScriptedEndToEnd:
    """Registry-style factory: always answers ``settings.options["box"]`` (unit frame)."""
    return ScriptedEndToEnd(Box.from_unit(settings.options["box"]), "scripted answer")
