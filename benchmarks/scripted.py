"""Instant adapters for measuring the library's own cost per example.

They answer at once but otherwise behave like real adapters: every image of a request is opened
through :func:`cot_ground.images.open_rgb` (so the image cache is exercised), and every answer is
model-like text run through the same parsers the real adapters use. Experiment configs name them
by import string, e.g. ``adapter: benchmarks.scripted:build_reasoner``.
"""

from __future__ import annotations

import json
from typing import Any

from cot_ground.boxes import Frame
from cot_ground.images import open_rgb
from cot_ground.models.base import (
    ChatRequest,
    EndToEndResult,
    GroundRequest,
    GroundResult,
    ReasonerResult,
)
from cot_ground.models.settings import ModelSettings
from cot_ground.parsing import parse_box
from cot_ground.records import Candidate


def _pick(prompt: str, n_images: int) -> int:
    """A deterministic 0-based image choice that depends on the request."""
    return len(prompt) % max(1, n_images)


class InstantReasoner:
    """Step 1: a structured JSON answer naming an image, parsed like a real reasoner's."""

    def __init__(self, settings: ModelSettings) -> None:
        self.name = "instant-reasoner"
        self.settings: dict[str, Any] = settings.model_dump(mode="json")

    def reason(self, requests: list[ChatRequest]) -> list[ReasonerResult]:
        """One result per request."""
        out = []
        for r in requests:
            for path in r.images:
                open_rgb(path)
            n = len(r.images)
            text = json.dumps({"image": _pick(r.prompt, n) + 1, "description": "the red object"})
            out.append(ReasonerResult.from_text(text, r, self.settings))
        return out


class InstantGrounder:
    """Step 2: a Qwen2-VL style box answer, parsed into one candidate."""

    def __init__(self, settings: ModelSettings) -> None:
        self.name = "instant-grounder"
        self.settings: dict[str, Any] = settings.model_dump(mode="json")

    def ground(self, requests: list[GroundRequest]) -> list[GroundResult]:
        """One result per request."""
        out = []
        for r in requests:
            open_rgb(r.image)
            text = "<|box_start|>(120,45),(380,290)<|box_end|>"
            parsed = parse_box(text, Frame.QWEN1000)
            out.append(
                GroundResult(
                    candidates=[Candidate(box=b) for b in parsed.boxes],
                    raw_text=text,
                    status=parsed.status,
                    settings=self.settings,
                )
            )
        return out


class InstantEndToEnd:
    """End to end: an image ordinal plus a box, parsed like a real end-to-end model's."""

    def __init__(self, settings: ModelSettings) -> None:
        self.name = "instant-e2e"
        self.settings: dict[str, Any] = settings.model_dump(mode="json")

    def predict(self, requests: list[ChatRequest]) -> list[EndToEndResult]:
        """One result per request."""
        out = []
        for r in requests:
            for path in r.images:
                open_rgb(path)
            index = _pick(r.prompt, len(r.images))
            text = f"In image {index + 1}: <|box_start|>(250,250),(500,500)<|box_end|>"
            out.append(EndToEndResult.from_text(text, Frame.QWEN1000, self.settings))
        return out


def build_reasoner(settings: ModelSettings) -> InstantReasoner:
    """Factory for configs (``benchmarks.scripted:build_reasoner``)."""
    return InstantReasoner(settings)


def build_grounder(settings: ModelSettings) -> InstantGrounder:
    """Factory for configs (``benchmarks.scripted:build_grounder``)."""
    return InstantGrounder(settings)


def build_end_to_end(settings: ModelSettings) -> InstantEndToEnd:
    """Factory for configs (``benchmarks.scripted:build_end_to_end``)."""
    return InstantEndToEnd(settings)
