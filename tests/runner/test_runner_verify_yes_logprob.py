"""The verify graph's log-probability rule through the runner: the batching proxy and the step-1
cache pass ``yes_logprob`` on (batched in a queue of its own), and a MIG-Lite run with the tiny
Qwen2-VL reasoner records the rule in every verify step.

The random model's step 1 never names an image, so the run's reasoner (an import-string adapter,
:func:`scripted_step1_qwen`) answers step 1 from the question's target image and hands every
other request, and ``yes_logprob``, to the real ``qwen-vl-reasoner`` built by the registry."""

from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar

import pytest
import yaml
from scripted_models import ScriptedReasoner

from cot_ground.graph.verify import YesScorer
from cot_ground.lite import generate_lite
from cot_ground.models.base import ChatRequest, ReasonerResult
from cot_ground.models.registry import build
from cot_ground.runner.batching import BatchCoordinator, BatchingReasoner
from cot_ground.runner.cache import CachedReasoner, StepCache
from cot_ground.runner.config import load_config
from cot_ground.runner.run import run_experiment
from cot_ground.runner.store import RunFolder


class _Scorer(ScriptedReasoner):
    yes_tokens: ClassVar[dict] = {"single_token_ids": [7]}

    def yes_logprob(self, requests):
        return [-float(len(r.prompt)) for r in requests]


def test_proxies_pass_yes_logprob_on_only_when_the_adapter_has_it(tmp_path: Path) -> None:
    coordinator = BatchCoordinator(4)
    plain = BatchingReasoner(ScriptedReasoner(["x"]), coordinator)
    assert not isinstance(plain, YesScorer)
    assert not isinstance(CachedReasoner(plain, StepCache(tmp_path)), YesScorer)

    proxy = BatchingReasoner(_Scorer(["x"]), coordinator)
    cached = CachedReasoner(proxy, StepCache(tmp_path / "c"))
    assert isinstance(proxy, YesScorer) and isinstance(cached, YesScorer)
    assert cached.yes_tokens == {"single_token_ids": [7]}
    requests = [ChatRequest(images=[], prompt="ab"), ChatRequest(images=[], prompt="abc")]
    with coordinator.participant():
        assert cached.yes_logprob(requests) == [-2.0, -3.0]
    assert coordinator.batch_sizes()["scripted-reasoner.yes_logprob"] == [2]


class _ScriptedStep1:
    """Step 1 scripted (image 1, "the object"), everything else from the real adapter."""

    def __init__(self, real) -> None:
        self.real = real
        self.name = real.name
        self.settings = real.settings
        self.yes_tokens = real.yes_tokens

    def reason(self, requests: list[ChatRequest]) -> list[ReasonerResult]:
        step1 = '{"image": 1, "description": "the object"}'
        asked = [r for r in requests if not r.prompt.startswith("Is this")]
        real = iter(self.real.reason([r for r in requests if r.prompt.startswith("Is this")]))
        return [
            ReasonerResult.from_text(step1, r, self.settings) if r in asked else next(real)
            for r in requests
        ]

    def yes_logprob(self, requests: list[ChatRequest]) -> list[float]:
        return self.real.yes_logprob(requests)


def scripted_step1_qwen(settings):
    """Import-string factory of the run below."""
    return _ScriptedStep1(build("qwen-vl-reasoner", settings))


@pytest.mark.slow
def test_verify_on_mig_lite_with_the_tiny_qwen_reasoner_uses_the_logprob_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_qwen_paths: dict
) -> None:
    lite = generate_lite(tmp_path / "lite", seed=0, per_task=1)
    config = {
        "name": "verify_tiny",
        "benchmark": {
            "file": str(lite.out_dir / "MIG_data.json"),
            "root": str(lite.out_dir),
            "answer_frame": "unit",
        },
        "models": {
            "tiny": {
                "adapter": "test_runner_verify_yes_logprob:scripted_step1_qwen",
                "path": str(tiny_qwen_paths["qwen2_vl"]),
                "device": "cpu",
                "dtype": "float32",
                "min_pixels": 3136,
                "max_pixels": 12544,
                "max_new_tokens": 8,
            },
            "classical": {"adapter": "classical-grounder"},
        },
        "pipelines": {
            "verify": {
                "kind": "verify",
                "reasoner": "tiny",
                "grounder": "classical",
                "top_k": 3,
                "verify_top": 2,
                "max_retries": 0,
            }
        },
        "batch_size": 4,
        "cache": {"enabled": True, "dir": str(tmp_path / "cache")},
    }
    path = tmp_path / "verify_tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    summary = run_experiment(load_config(path), out=tmp_path / "run", limit=4)

    records = RunFolder(tmp_path / "run").read_predictions("verify")
    assert len(records) == 4
    steps = [s for r in records for s in r["trace"] if s["node"] == "verify"]
    sizes = summary.pipelines["verify"].batch_sizes
    assert steps  # examples without proposals end at propose
    for r in records:
        if not any(s["node"] == "verify" for s in r["trace"]):
            assert r["error"]["node"] == "propose"
    for s in steps:
        assert s["parsed"]["rule"] == "yes_logprob"
        assert s["settings"]["verify_rule"] == "yes_logprob"
        assert s["settings"]["yes_tokens"]["spellings"] == ["yes", "Yes"]
        scores = [v["yes_logprob"] for v in s["parsed"]["verdicts"] if v["crop"]]
        assert scores and all(math.isfinite(v) and v <= 0 for v in scores)
    assert sizes["qwen-vl-reasoner.yes_logprob"]
