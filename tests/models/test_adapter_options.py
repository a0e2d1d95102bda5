"""Adapter options are checked before anything loads: every unknown key and every bad value at
once, with the option, what it must be and the value given (Qwen-VL and served adapters)."""

from __future__ import annotations

import pytest

from cot_ground.models import openai_chat, qwen_vl
from cot_ground.models.options import option_problems, real_number, whole_number
from cot_ground.models.registry import build
from cot_ground.models.settings import ModelSettings

BAD_QWEN_OPTIONS = {
    "max_batch_visual_tokens": 0,
    "static_cache": "no",
    "batch_size": "4",
    "preprocess_threads": -1,
    "unit_floats": "round",
    "fast_image_processor": 1,
    "batchsize": 8,
}


def test_bad_qwen_options_are_all_reported() -> None:
    problems = qwen_vl.settings_problems("qwen-vl-e2e", ModelSettings(options=BAD_QWEN_OPTIONS))
    assert len(problems) == 7
    text = "\n".join(problems)
    assert "unknown option(s) batchsize" in text
    assert "option max_batch_visual_tokens must be an integer >= 1 or null, got 0 (int)" in text
    assert "option static_cache must be true or false, got 'no' (str)" in text
    assert "option batch_size must be an integer >= 1, got '4' (str)" in text
    assert "preprocess_threads must be an integer >= 1, got -1" in text
    assert "unit_floats must be one of reject, fraction" in text and "got 'round'" in text
    assert "fast_image_processor must be true or false, got 1 (int)" in text
    for name in qwen_vl.ADAPTER_OPTIONS:  # every Qwen-VL adapter checks the shared options
        assert qwen_vl.settings_problems(name, ModelSettings(options={"static_cache": "no"}))


def test_good_qwen_options_pass() -> None:
    good = {"max_batch_visual_tokens": 4096, "static_cache": True, "batch_size": 64}
    assert qwen_vl.settings_problems("qwen-vl-reasoner", ModelSettings(options=good)) == []
    assert qwen_vl.settings_problems("qwen-vl-e2e", ModelSettings(options={})) == []
    calibration = {"calibration": "migician-y", "unit_floats": "fraction"}
    assert qwen_vl.settings_problems("migician", ModelSettings(options=calibration)) == []
    # the grounder's own options are unknown to the reasoner
    assert qwen_vl.settings_problems(
        "qwen-vl-reasoner", ModelSettings(options={"prompt_file": "x"})
    )


@pytest.mark.parametrize(
    "adapter", ["qwen-vl-reasoner", "qwen-vl-grounder", "qwen-vl-e2e", "migician"]
)
def test_qwen_adapters_refuse_bad_options_before_loading(adapter: str, tmp_path) -> None:
    settings = ModelSettings(path=str(tmp_path / "no-such-model"), options=BAD_QWEN_OPTIONS)
    with pytest.raises(ValueError) as info:  # not the missing folder: options come first
        build(adapter, settings)
    assert "max_batch_visual_tokens" in str(info.value) and "static_cache" in str(info.value)
    assert "no-such-model" not in str(info.value)


def test_served_adapter_problems_are_all_reported() -> None:
    # built without validation: ModelSettings itself refuses min_pixels > max_pixels, and the
    # served adapter's own check guards settings made another way
    settings = ModelSettings.model_construct(
        min_pixels=5000,
        max_pixels=4000,
        options={
            "base_url": "http://127.0.0.1:1/v1",
            "concurrency": 0,
            "timeout_s": "60",
            "max_retries": -1,
            "retry_backoff_s": True,
            "family": "qwen2_5_vl",
            "frame": "pixel",
        },
    )
    problems = openai_chat.settings_problems("openai-e2e", settings)
    text = "\n".join(problems)
    assert len(problems) == 7, text
    assert "concurrency must be an integer >= 1, got 0" in text
    assert "timeout_s must be a number > 0, got '60' (str)" in text
    assert "max_retries must be an integer >= 0, got -1" in text
    assert "retry_backoff_s must be a number >= 0, got True (bool)" in text
    assert "needs options.model" in text
    assert "need 0 < min_pixels <= max_pixels, got 5000, 4000" in text
    assert "option frame must be one of unit, qwen1000, qwen3_1000, pixels, normalized" in text
    with pytest.raises(ValueError, match="concurrency must be"):
        build("openai-e2e", settings)
    # the reasoner has no frame option
    reasoner = openai_chat.settings_problems(
        "openai-reasoner", ModelSettings(options={"base_url": "u", "model": "m", "frame": "unit"})
    )
    assert reasoner == [
        "adapter 'openai-reasoner': unknown option(s) frame (known: api_key_env, base_url, "
        "concurrency, family, max_retries, model, retry_backoff_s, timeout_s)"
    ]


def test_min_equal_max_is_accepted_for_a_served_family() -> None:
    options = {"base_url": "u", "model": "m", "family": "qwen2_5_vl"}
    settings = ModelSettings(min_pixels=1003520, max_pixels=1003520, options=options)
    assert openai_chat.settings_problems("openai-e2e", settings) == []


def test_rules() -> None:
    positive = whole_number(1)
    assert positive(1) is None and positive(True) and positive(1.0) and positive(0)
    assert whole_number(1, optional=True)(None) is None and positive(None)
    above = real_number(0, strict=True)
    assert above(0.5) is None and above(2) is None and above(0) and above("1")
    assert real_number(0)(0) is None
    assert option_problems("a", {"x": 1}, {"x": 0}, {"x": positive, "y": positive}) == []


def test_an_infinite_timeout_or_back_off_is_refused() -> None:
    # an infinite back-off used to be accepted and the run waited forever on a dead server
    options = {"base_url": "http://127.0.0.1:1/v1", "model": "m"}
    for key in ("timeout_s", "retry_backoff_s"):
        for value in (float("inf"), float("nan")):
            settings = ModelSettings(options={**options, key: value})
            (problem,) = openai_chat.settings_problems("openai-e2e", settings)
            assert f"{key} must be a finite number" in problem, problem
