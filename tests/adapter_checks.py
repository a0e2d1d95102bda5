"""Checks every local multi-image adapter must pass, shared by the adapter tests."""

from __future__ import annotations

from typing import Any

from cot_ground.models.base import ChatRequest
from cot_ground.records import ParseStatus


def assert_batched_reasoning_is_one_at_a_time(reasoner: Any, requests: list[ChatRequest]) -> None:
    """Greedy step-1 answers of one batch equal those of the requests one at a time (padding
    changes nothing); the random model emits some text; every result has a status and the
    adapter's settings."""
    batched = reasoner.reason(requests)
    single = [reasoner.reason([r])[0] for r in requests]
    assert [b.raw_text for b in batched] == [s.raw_text for s in single]
    assert any(b.raw_text for b in batched)
    for result in batched:
        assert isinstance(result.status, ParseStatus)
        assert result.settings == reasoner.settings
