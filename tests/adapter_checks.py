"""Checks every local multi-image adapter must pass, shared by the adapter tests."""

from __future__ import annotations

from typing import Any

from cot_ground.models.base import ChatRequest
from cot_ground.records import ParseStatus


def assert_batched_reasoning_is_one_at_a_time(reasoner: Any, images: list[str]) -> None:
    """Greedy step-1 answers of one batch of three requests of different lengths (on the first
    two, all three and the third of ``images``) equal those of the requests one at a time
    (padding changes nothing); the random model emits some text; every result has a status and
    the adapter's settings."""
    requests = [
        ChatRequest(images=images[:2], prompt="Which image has the car?"),
        ChatRequest(
            images=images[:3], prompt="Find the dog in the picture and describe it please."
        ),
        ChatRequest(images=images[2:3], prompt="x"),
    ]
    batched = reasoner.reason(requests)
    single = [reasoner.reason([r])[0] for r in requests]
    assert [b.raw_text for b in batched] == [s.raw_text for s in single]
    assert any(b.raw_text for b in batched)
    for result in batched:
        assert isinstance(result.status, ParseStatus)
        assert result.settings == reasoner.settings
