"""Turning detector outputs (GroundingDINO) into ranked candidates for a referring expression.

A referring expression names one object, so candidates are ranked by score and the pipeline
takes the first. ``box_threshold`` drops weak boxes, but with ``top1_fallback`` the single best
box is still returned when every score is under it: asking for the best box never yields "no
box" only because the model is unsure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cot_ground.boxes import Box
from cot_ground.models.base import GroundResult
from cot_ground.models.options import OptionRule, any_number, true_or_false, whole_number
from cot_ground.records import Candidate, ParseStatus

DETECTOR_OPTIONS = {
    "box_threshold": 0.35,
    "text_threshold": 0.25,
    "top1_fallback": True,
    "max_candidates": 10,
}

DETECTOR_RULES: dict[str, OptionRule] = {
    "box_threshold": any_number,
    "text_threshold": any_number,
    "top1_fallback": true_or_false,
    "max_candidates": whole_number(1),
}
"""What each value of :data:`DETECTOR_OPTIONS` must be (scores lie in [0, 1]: a threshold of 0
keeps every box, one above 1 none)."""


def normalize_phrase(phrase: str) -> str:
    """Lower case, stripped, ending with ``.`` (the form GroundingDINO was trained on)."""
    text = " ".join(phrase.lower().split())
    return text if text.endswith(".") else text + "."


def rank_candidates(
    scores: Sequence[float],
    boxes_cxcywh: Sequence[Sequence[float]],
    label_of: Callable[[int], str | None],
    *,
    box_threshold: float,
    top1_fallback: bool,
    max_candidates: int,
) -> list[Candidate]:
    """Candidates best first: boxes scoring at least ``box_threshold`` (else the best one).

    ``boxes_cxcywh`` are ``(cx, cy, w, h)`` fractions of the image, as DETR-style heads predict;
    ``label_of(i)`` names the text matched by query ``i`` (called for kept queries only).
    """
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    keep = [i for i in order if scores[i] >= box_threshold]
    if not keep and top1_fallback and order:
        keep = order[:1]
    out = []
    for i in keep[: max(1, max_candidates)]:
        cx, cy, w, h = (float(v) for v in boxes_cxcywh[i])
        box = Box.from_unit([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]).clipped()
        out.append(Candidate(box=box, score=float(scores[i]), label=label_of(i)))
    return out


def matched_text(
    token_scores: Sequence[float],
    token_ids: Sequence[int],
    special_ids: set[int],
    text_threshold: float,
    decode: Callable[[list[int]], str],
) -> str | None:
    """The phrase tokens whose score is above ``text_threshold``, decoded (None if none)."""
    ids = [
        t
        for t, s in zip(token_ids, token_scores, strict=False)
        if s > text_threshold and t not in special_ids
    ]
    return decode(ids).strip() or None if ids else None


def ground_result(
    probs: Any,
    boxes_cxcywh: Sequence[Sequence[float]],
    token_ids: Sequence[int],
    phrase: str,
    *,
    special_ids: set[int],
    decode: Callable[[list[int]], str],
    options: Mapping[str, Any],
    settings: dict[str, Any],
) -> GroundResult:
    """A ``GroundResult`` from one image's query-by-token scores (``probs``, a 2-D tensor)."""

    def label_of(i: int) -> str | None:
        row = probs[i, : len(token_ids)].tolist()
        return matched_text(row, token_ids, special_ids, options["text_threshold"], decode)

    candidates = rank_candidates(
        probs.max(dim=-1).values.tolist(),
        boxes_cxcywh,
        label_of,
        box_threshold=options["box_threshold"],
        top1_fallback=options["top1_fallback"],
        max_candidates=options["max_candidates"],
    )
    return GroundResult(
        candidates=candidates,
        raw_text=phrase,
        status=ParseStatus.OK if candidates else ParseStatus.NO_BOX,
        settings=dict(settings),
    )
