"""log P("yes") of the Qwen-VL and transformers-chat reasoners on tiny random-weight checkpoints
(CPU, offline), and the token bookkeeping of :mod:`cot_ground.models.yes_score`."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from noise_pictures import noise_pictures

from cot_ground.graph.verify import YesScorer
from cot_ground.models.base import ChatRequest
from cot_ground.models.registry import build
from cot_ground.models.settings import ModelSettings
from cot_ground.models.yes_score import YesTokens, combine

QWEN = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")
CHAT = ("internvl", "llava_onevision", "idefics3")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return noise_pictures(
        tmp_path_factory.mktemp("yes-images"), [(120, 90), (64, 96), (80, 80)], seed=3
    )


def _requests(images: list[str]) -> list[ChatRequest]:
    """Three yes/no questions of different lengths (one with two images)."""
    return [
        ChatRequest(images=images[:1], prompt="Is this the red car? Answer yes or no."),
        ChatRequest(images=images[1:3], prompt="Is this the dog next to the bench?"),
        ChatRequest(images=images[2:3], prompt="x"),
    ]


def _reasoner(adapter: str, path: Path):
    return build(
        adapter,
        ModelSettings(
            path=str(path), device="cpu", min_pixels=3136, max_pixels=12544, max_new_tokens=4
        ),
    )


def _check(reasoner, images: list[str]) -> None:
    """A finite natural-log probability ≤ 0 per request; one batch equals one at a time."""
    assert isinstance(reasoner, YesScorer)
    requests = _requests(images)
    batched = reasoner.yes_logprob(requests)
    single = [reasoner.yes_logprob([r])[0] for r in requests]
    assert len(batched) == 3
    assert all(math.isfinite(v) and v <= 0 for v in batched)
    assert batched == pytest.approx(single, abs=1e-4)
    described = reasoner.yes_tokens
    assert described["spellings"] == ["yes", "Yes"] and described["log"] == "natural"
    assert described["single_token_ids"] or described["multi_token_ids"]


@pytest.mark.parametrize("family", QWEN)
def test_qwen_vl_yes_logprob(tiny_qwen_paths, images, family) -> None:
    _check(_reasoner("qwen-vl-reasoner", tiny_qwen_paths[family]), images)


@pytest.mark.parametrize("family", CHAT)
def test_hf_chat_yes_logprob(tiny_chat_paths, images, family) -> None:
    _check(_reasoner("hf-chat-reasoner", tiny_chat_paths[family]), images)


def _full_logprobs(runner, request: ChatRequest, prefix: str) -> torch.Tensor:
    """Log-softmax over every position of the prompt + ``prefix`` (one request, no padding)."""
    inputs = runner.encode([(request.images, request.prompt)], [prefix])
    with torch.inference_mode():
        return torch.log_softmax(runner.model(**inputs).logits[0].float(), dim=-1)


def test_qwen_vl_yes_logprob_reads_the_first_answer_position(
    tiny_qwen_paths, images, monkeypatch
) -> None:
    reasoner = _reasoner("qwen-vl-reasoner", tiny_qwen_paths["qwen2_vl"])
    runner = reasoner.runner
    request = _requests(images)[0]
    tok = runner.processor.tokenizer
    # the tiny tokenizer spells "yes" and "Yes" in two tokens each: both are teacher-forced
    assert not runner.yes_tokens.single and len(runner.yes_tokens.multi) == 2
    chains = []
    for spelling in ("yes", "Yes"):
        ids = tok.encode(spelling, add_special_tokens=False)
        lp = _full_logprobs(runner, request, spelling)
        n = lp.shape[0]
        chains.append(sum(lp[n - len(ids) - 1 + j, t].item() for j, t in enumerate(ids)))
    expected = math.log(math.exp(chains[0]) + math.exp(chains[1]))
    assert reasoner.yes_logprob([request])[0] == pytest.approx(expected, abs=1e-5)
    # a tokenizer with one-token spellings: their probabilities at the first answer position
    monkeypatch.setattr(runner, "yes_tokens", YesTokens(single=(102, 70), multi=()))
    first = _full_logprobs(runner, request, "")[-1]
    expected = torch.logsumexp(first[[102, 70]], dim=0).item()
    assert reasoner.yes_logprob([request])[0] == pytest.approx(expected, abs=1e-5)
    assert reasoner.yes_tokens["single_token_ids"] == [102, 70]


class _Tokenizer:
    def __init__(self, vocab: dict[str, list[int]]) -> None:
        self.vocab = vocab

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        assert not add_special_tokens
        return self.vocab[text]


def test_yes_tokens_split_one_token_and_longer_spellings() -> None:
    tokens = YesTokens.of(_Tokenizer({"yes": [7], "Yes": [3, 9]}))
    assert tokens.single == (7,) and tokens.multi == (("Yes", (3, 9)),)
    assert tokens.suffixes() == ["Yes"] and tokens.suffix_ids("Yes") == (3, 9)
    # a lower-casing tokenizer gives one sequence for both spellings: counted once
    same = YesTokens.of(_Tokenizer({"yes": [5], "Yes": [5]}))
    assert same.single == (5,) and same.suffixes() == [""] and same.suffix_ids("") == ()
    assert same.describe()["multi_token_ids"] == {}


def test_combine_sums_probabilities() -> None:
    # one-token spellings P = 0.2 (first row), "Yes" teacher-forced P = 0.1 → log 0.3
    rows = [(math.log(0.2), math.log(0.1))]
    assert combine(rows, [(3, 9)]) == pytest.approx(math.log(0.3))
    # no one-token spellings: two chains 0.25 + 0.05 → log 0.3
    rows = [(float("-inf"), math.log(0.25)), (float("-inf"), math.log(0.05))]
    assert combine(rows, [(1, 2), (3, 4)]) == pytest.approx(math.log(0.3))
    assert combine([(math.log(0.4), 0.0)], [()]) == pytest.approx(math.log(0.4))
