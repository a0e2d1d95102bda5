"""The step-1 cache: key recipe, hits and misses, deterministic calls only."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from PIL import Image

from cot_ground.models.base import ChatRequest, ReasonerResult
from cot_ground.runner.cache import CachedReasoner, FileHasher, StepCache, cache_key


class CountingReasoner:
    """Answers every prompt with a fixed text, read as the real adapters read theirs."""

    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        self.name = "counting"
        self.settings = settings or {"do_sample": False, "max_new_tokens": 8}
        self.seen: list[str] = []

    def reason(self, requests: list[ChatRequest]) -> list[ReasonerResult]:
        self.seen.extend(r.prompt for r in requests)
        return [
            ReasonerResult.from_text(f"answer to {r.prompt}", r, self.settings) for r in requests
        ]


def _images(folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, colour in enumerate([(255, 0, 0), (0, 255, 0)]):
        p = folder / f"{i}.png"
        Image.new("RGB", (8, 8), colour).save(p)
        paths.append(str(p))
    return paths


def test_key_depends_on_content_prompt_and_settings_not_on_paths(tmp_path: Path) -> None:
    images = _images(tmp_path / "a")
    moved = tmp_path / "b"
    shutil.copytree(tmp_path / "a", moved)
    hasher = FileHasher()
    adapter = CountingReasoner()
    key = cache_key(adapter, ChatRequest(images=images, prompt="p"), hasher)
    same = ChatRequest(images=[str(moved / "0.png"), str(moved / "1.png")], prompt="p")
    assert cache_key(adapter, same, hasher) == key
    assert cache_key(adapter, ChatRequest(images=images, prompt="p "), hasher) != key
    assert cache_key(adapter, ChatRequest(images=images[::-1], prompt="p"), hasher) != key
    other = CountingReasoner({"do_sample": False, "max_new_tokens": 9})
    assert cache_key(other, ChatRequest(images=images, prompt="p"), hasher) != key
    Image.new("RGB", (8, 8), (0, 0, 255)).save(moved / "0.png")  # edited content
    assert cache_key(adapter, same, FileHasher()) != key


def test_hits_skip_the_adapter_and_survive_a_new_process(tmp_path: Path) -> None:
    images = _images(tmp_path / "img")
    requests = [ChatRequest(images=images, prompt=f"q{i}") for i in range(3)]
    inner = CountingReasoner()
    cache = StepCache(tmp_path / "cache")
    first = CachedReasoner(inner, cache).reason(requests)
    assert inner.seen == ["q0", "q1", "q2"] and not any(r.cached for r in first)
    cache.close()

    cache = StepCache(tmp_path / "cache")  # reopened, as by a later run
    inner2 = CountingReasoner()
    mixed = [requests[1], ChatRequest(images=images, prompt="new"), requests[0]]
    out = CachedReasoner(inner2, cache).reason(mixed)
    assert inner2.seen == ["new"]
    assert [r.cached for r in out] == [True, False, True]
    assert [r.raw_text for r in out] == ["answer to q1", "answer to new", "answer to q0"]
    assert (cache.hits, cache.misses, cache.entries()) == (2, 1, 4)


def test_sampling_is_passed_through_uncached(tmp_path: Path) -> None:
    images = _images(tmp_path / "img")
    inner = CountingReasoner({"do_sample": True})
    cache = StepCache(tmp_path / "cache")
    wrapped = CachedReasoner(inner, cache)
    for _ in range(2):
        wrapped.reason([ChatRequest(images=images, prompt="q")])
    assert inner.seen == ["q", "q"] and cache.entries() == 0


def test_key_v2_holds_how_the_answer_is_read(tmp_path: Path) -> None:
    images, hasher, adapter = _images(tmp_path / "a"), FileHasher(), CountingReasoner()
    base = ChatRequest(images=images, prompt="which?")
    keys = {
        cache_key(adapter, base.model_copy(update=change), hasher)
        for change in ({}, {"answer_kind": "image"}, {"question": "q"}, {"task": "diff"})
    }
    assert len(keys) == 4
    # an entry stored before reference_image was renamed still loads
    old = ReasonerResult.model_validate({"raw_text": "x", "reference_image": 1})
    assert old.reference_index == 1
