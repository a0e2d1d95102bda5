"""The step-1 cache stores the model's text and reads it again on every hit with the current
reader, so a reader or parser upgrade is never served an old parse."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from cot_ground.models import base
from cot_ground.models.base import ChatRequest, ReasonerResult
from cot_ground.parsing import SelectionParse
from cot_ground.records import ParseStatus
from cot_ground.runner.cache import CachedReasoner, CacheError, FileHasher, StepCache, cache_key

ANSWER = json.dumps({"image": 1, "description": "the red square"})


class TextReasoner:
    """Answers ``ANSWER`` to every prompt, read as the real adapters read their text."""

    name = "text"

    def __init__(self) -> None:
        self.settings: dict[str, Any] = {"do_sample": False}
        self.calls = 0

    def reason(self, requests: list[ChatRequest]) -> list[ReasonerResult]:
        self.calls += len(requests)
        return [ReasonerResult.from_text(ANSWER, r, self.settings) for r in requests]


class BuiltReasoner(TextReasoner):
    """Results not read from their text (as the rule reasoner builds them from the question)."""

    def reason(self, requests: list[ChatRequest]) -> list[ReasonerResult]:
        self.calls += len(requests)
        return [
            ReasonerResult(raw_text="{}", image_index=0, description="x", status=ParseStatus.OK)
            for _ in requests
        ]


@pytest.fixture
def request_(tmp_path: Path) -> ChatRequest:
    paths = []
    for i, colour in enumerate([(255, 0, 0), (0, 255, 0)]):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.new("RGB", (8, 8), colour).save(paths[-1])
    return ChatRequest(images=paths, prompt="which image?")


def test_the_cache_stores_the_text_not_its_parse(tmp_path: Path, request_: ChatRequest):
    cache = StepCache(tmp_path / "cache")
    inner = TextReasoner()
    fresh = CachedReasoner(inner, cache).reason([request_])[0]
    assert fresh.image_index == 0 and fresh.status is ParseStatus.OK and not fresh.cached
    key = cache_key(inner, request_, FileHasher())
    assert cache.get_many([key]) == {key: {"raw_text": ANSWER}}
    hit = CachedReasoner(inner, cache).reason([request_])[0]
    assert inner.calls == 1 and hit.cached
    assert hit.model_dump(exclude={"cached"}) == fresh.model_dump(exclude={"cached"})


def test_a_parser_upgrade_reads_cached_answers_anew(
    tmp_path: Path, request_: ChatRequest, monkeypatch: pytest.MonkeyPatch
):
    cache = StepCache(tmp_path / "cache")
    CachedReasoner(TextReasoner(), cache).reason([request_])  # stored by the old parser

    def upgraded(text: str, kind: str, n_images: int | None, question: str | None):
        """A new reader that reads the same answer as the second image."""
        return SelectionParse(ParseStatus.OK, 1, "the red square, read anew", None)

    monkeypatch.setattr(base, "parse_step1", upgraded)
    inner = TextReasoner()
    hit = CachedReasoner(inner, cache).reason([request_])[0]
    assert inner.calls == 0 and hit.cached and hit.raw_text == ANSWER
    assert (hit.image_index, hit.description) == (1, "the red square, read anew")
    assert (cache.hits, cache.misses) == (1, 1)


def test_results_not_read_from_their_text_are_never_cached(tmp_path: Path, request_: ChatRequest):
    cache = StepCache(tmp_path / "cache")
    inner = BuiltReasoner()
    wrapped = CachedReasoner(inner, cache)
    first, second = (wrapped.reason([request_])[0] for _ in range(2))
    assert inner.calls == 2 and cache.entries() == 0
    assert first.image_index == second.image_index == 0 and not second.cached


def test_a_stored_value_without_text_is_a_cache_error(tmp_path: Path, request_: ChatRequest):
    cache = StepCache(tmp_path / "cache")
    inner = TextReasoner()
    key = cache_key(inner, request_, FileHasher())
    db = sqlite3.connect(cache.path)
    db.execute("INSERT INTO step1 VALUES (?, ?, 0)", (key, json.dumps({"image_index": 0})))
    db.commit()
    db.close()
    with pytest.raises(CacheError, match="no raw_text"):
        CachedReasoner(inner, cache).reason([request_])
    assert inner.calls == 0
