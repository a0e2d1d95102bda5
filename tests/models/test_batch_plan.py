"""Forward-pass plans (buckets, request and visual-token limits) and the Qwen-VL adapters that
follow them, on tiny random-weight checkpoints (CPU): answers never depend on the plan in
float32, and the optional static-KV-cache decoding gives the same tokens as the plain path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from noise_pictures import noise_pictures

from cot_ground.models.base import ChatRequest
from cot_ground.models.batch_plan import in_batches, plan_batches
from cot_ground.models.registry import build
from cot_ground.models.settings import ModelSettings


def test_plan_buckets_by_key_and_respects_both_limits() -> None:
    keys = [(2, 50), (1, 10), (2, 40), (1, 12), (6, 300), (1, 11)]
    costs = [k[1] for k in keys]
    assert plan_batches(keys, costs, max_size=3) == [[1, 5, 3], [2, 0, 4]]
    plan = plan_batches(keys, costs, max_size=4, max_cost=100)
    assert plan == [[1, 5, 3, 2], [0], [4]]  # 300 > budget: alone
    assert sorted(i for b in plan for i in b) == list(range(len(keys)))
    assert all(sum(costs[i] for i in b) <= 100 for b in plan if len(b) > 1)
    assert plan_batches([], [], 4, 10) == []
    with pytest.raises(ValueError, match="max_size"):
        plan_batches([1], [1], 0)
    with pytest.raises(ValueError, match="keys"):
        plan_batches([1, 2], [1], 2)


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return noise_pictures(
        tmp_path_factory.mktemp("plan-images"),
        [(200, 120), (96, 160), (300, 300), (64, 64)],
        seed=1,
    )


def _requests(pictures: list[str]) -> list[ChatRequest]:
    return [
        ChatRequest(images=pictures[:2], prompt="Which image has the car?"),
        ChatRequest(images=pictures, prompt="Find the dog in the picture and describe it."),
        ChatRequest(images=pictures[3:], prompt="x"),
        ChatRequest(images=pictures[2:], prompt="A longer prompt about the third picture."),
        ChatRequest(images=pictures[:1], prompt="y"),
    ]


def _reasoner(path: Path, **options: object):
    settings = ModelSettings(path=str(path), max_new_tokens=6, dtype="float32", options=options)
    return build("qwen-vl-reasoner", settings)


@pytest.mark.slow
def test_visual_token_budget_and_buckets_keep_every_answer(tiny_qwen_paths, pictures) -> None:
    requests = _requests(pictures)
    plain = _reasoner(tiny_qwen_paths["qwen2_vl"], batch_size=1)
    runner = plain.runner
    # visual tokens from sizes alone equal what the processor makes
    for r in requests:
        grids = runner.encode([(r.images, "")])["image_grid_thw"]
        assert runner.visual_tokens(r.images) == int(grids.prod(dim=-1).sum()) // 4
    one_at_a_time = [g.raw_text for g in plain.reason(requests)]
    assert any(one_at_a_time)  # the random model does emit tokens
    tokens = [runner.visual_tokens(r.images) for r in requests]
    budget = max(tokens)  # the largest request fits alone; others share passes
    planned = _reasoner(tiny_qwen_paths["qwen2_vl"], batch_size=4, max_batch_visual_tokens=budget)
    sizes: list[int] = []
    inner = planned.runner._generate_batch

    def spy(batch):
        sizes.append(sum(planned.runner.visual_tokens(p) for p, _ in batch))
        return inner(batch)

    planned.runner._generate_batch = spy
    assert [g.raw_text for g in planned.reason(requests)] == one_at_a_time
    assert max(sizes) <= budget and len(sizes) < len(requests)
    assert sum(sizes) == sum(tokens)


@pytest.mark.slow
def test_static_cache_decodes_the_same_tokens(tiny_qwen_paths, pictures) -> None:
    requests = _requests(pictures)[:3]
    plain = _reasoner(tiny_qwen_paths["qwen2_vl"], batch_size=3)
    static = _reasoner(tiny_qwen_paths["qwen2_vl"], batch_size=3, static_cache=True)
    assert static.settings["static_cache"] is True and "static_cache" not in plain.settings
    assert static.runner.generate_kwargs["cache_implementation"] == "static"
    assert [g.raw_text for g in static.reason(requests)] == [
        g.raw_text for g in plain.reason(requests)
    ]


def test_the_tokenizer_stays_fast_with_the_slow_image_processor(tiny_qwen_paths) -> None:
    from transformers import Qwen2VLImageProcessor

    runner = _reasoner(tiny_qwen_paths["qwen2_vl"]).runner
    assert runner.settings["fast_image_processor"] is False
    assert isinstance(runner.processor.image_processor, Qwen2VLImageProcessor)
    assert runner.processor.tokenizer.is_fast  # the Rust tokenizer, not the pure-Python one


def test_threaded_pre_processing_gives_the_same_tensors(tiny_qwen_paths, pictures) -> None:
    requests = [(r.images, r.prompt) for r in _requests(pictures)]
    threaded = _reasoner(tiny_qwen_paths["qwen2_vl"], preprocess_threads=3).runner
    single = _reasoner(tiny_qwen_paths["qwen2_vl"], preprocess_threads=1).runner
    assert threaded.processor is not single.processor  # its own view of the shared processor
    assert threaded.processor.tokenizer is single.processor.tokenizer
    a, b = threaded.encode(requests), single.encode(requests)
    assert set(a) == set(b) and len(a["image_grid_thw"]) == 10
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert "preprocess_threads" not in threaded.settings
    assert threaded.settings == single.settings


def test_in_batches_keeps_the_order_and_the_size_limit() -> None:
    calls: list[list[int]] = []

    def run(batch: list[int]) -> list[int]:
        calls.append(batch)
        return [10 * r for r in batch]

    assert in_batches([1, 2, 3, 4, 5], 2, run) == [10, 20, 30, 40, 50]
    assert calls == [[1, 2], [3, 4], [5]]
    assert in_batches([1, 2], 0, run) == [10, 20] and calls[-2:] == [[1], [2]]
    assert in_batches([], 3, run) == []
