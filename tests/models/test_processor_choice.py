"""The image processor is chosen on purpose (slow by default, option ``fast_image_processor``),
recorded in the adapter settings, and transformers' "loaded as a fast processor" warning is not
printed on every run."""

from __future__ import annotations

from pathlib import Path

import pytest

from cot_ground.models.registry import build
from cot_ground.models.settings import ModelSettings


@pytest.mark.slow
@pytest.mark.parametrize("fast", [False, True])
def test_qwen_processor_choice_is_explicit_and_recorded(
    tiny_qwen_paths: dict[str, Path], fast: bool, capfd: pytest.CaptureFixture[str]
) -> None:
    options = {"fast_image_processor": True} if fast else {}
    settings = ModelSettings(path=str(tiny_qwen_paths["qwen2_vl"]), device="cpu", options=options)
    capfd.readouterr()

    adapter = build("qwen-vl-reasoner", settings)

    err = capfd.readouterr().err
    assert "fast processor" not in err
    assert adapter.settings["fast_image_processor"] is fast
    name = type(adapter.runner.processor.image_processor).__name__
    assert name.endswith("Fast") is fast, name


@pytest.mark.slow
def test_gdino_processor_choice_is_explicit_and_recorded(
    tiny_gdino_hf_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    capfd.readouterr()
    adapter = build("gdino-hf", ModelSettings(path=str(tiny_gdino_hf_path), device="cpu"))
    assert "fast processor" not in capfd.readouterr().err
    assert adapter.settings["fast_image_processor"] is False
    assert not type(adapter.processor.image_processor).__name__.endswith("Fast")


@pytest.mark.slow
@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize("family", ["owlv2", "florence2"])
def test_owlv2_and_florence2_choose_the_processor_without_a_notice(
    tmp_path: Path, family: str, fast: bool, capfd: pytest.CaptureFixture[str]
) -> None:
    """No "slow image processor as `use_fast` is unset" notice: the choice is explicit."""
    import logging

    from cot_ground.testing.tiny_grounders import build_tiny_grounder

    path = build_tiny_grounder(tmp_path / family, family)  # a new folder: nothing cached
    logging.Logger.warning_once.cache_clear()  # transformers prints each notice once a process
    options = {"fast_image_processor": True} if fast else {}
    capfd.readouterr()

    adapter = build(family, ModelSettings(path=str(path), device="cpu", options=options))

    err = capfd.readouterr().err
    assert "use_fast" not in err and "fast processor" not in err, err
    assert adapter.settings["fast_image_processor"] is fast
    name = type(adapter.processor.image_processor).__name__
    assert name.endswith("Fast") is fast, name
