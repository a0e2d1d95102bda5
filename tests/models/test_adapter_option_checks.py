"""Every adapter that takes options checks their keys and values before anything loads: all
problems at once from ``settings_problems`` (what the pre-flight lists) and one ``ValueError``
at build; values that worked before (int thresholds, null where null is allowed) still pass,
and so does every model of every shipped experiment config and docs example."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from cot_ground.models import registry
from cot_ground.models.options import (
    OPTION_CHECKS,
    adapter_option_problems,
    any_number,
    number_list,
    options_mapping,
    text,
)
from cot_ground.models.settings import ModelSettings
from cot_ground.runner.config import load_config

ROOT = Path(__file__).resolve().parents[2]

# adapter -> (bad options, one fragment per problem expected)
BAD: dict[str, tuple[dict[str, Any], list[str]]] = {
    "gdino-hf": (
        {
            "box_threshold": "0.3",
            "text_threshold": None,
            "top1_fallback": "yes",
            "max_candidates": 0,
            "batch_size": 2.0,
            "pad_batches": 1,
            "preprocess_threads": 0,
            "pixel_cache_size": -1,
            "fast_image_processor": "false",
            "box_treshold": 0.3,
        },
        [
            "unknown option(s) box_treshold",
            "box_threshold must be a number, got '0.3' (str)",
            "text_threshold must be a number, got None",
            "top1_fallback must be true or false, got 'yes'",
            "max_candidates must be an integer >= 1, got 0",
            "batch_size must be an integer >= 1, got 2.0 (float)",
            "pad_batches must be true or false, got 1 (int)",
            "preprocess_threads must be an integer >= 1, got 0",
            "pixel_cache_size must be an integer >= 0, got -1",
            "fast_image_processor must be true or false, got 'false'",
        ],
    ),
    "mm-gdino-hf": (
        {"box_threshold": True, "batch_size": "8"},
        ["box_threshold must be a number, got True (bool)", "batch_size must be an integer >= 1"],
    ),
    "owlv2": (
        {"box_threshold": "low", "top1_fallback": None, "batch_size": 0, "text_threshold": 0.2},
        [
            "unknown option(s) text_threshold",
            "box_threshold must be a number",
            "top1_fallback must be true or false",
            "batch_size must be an integer >= 1, got 0",
        ],
    ),
    "florence2": (
        {"num_beams": "3", "max_candidates": -2, "fast_image_processor": "no"},
        [
            "num_beams must be an integer >= 1, got '3' (str)",
            "max_candidates must be an integer >= 1, got -2",
            "fast_image_processor must be true or false, got 'no'",
        ],
    ),
    "hf-chat-reasoner": (
        {"batch_size": "4", "fast_image_processor": "no", "prompt_template": "{phrase}"},
        [
            "unknown option(s) prompt_template",
            "batch_size must be an integer >= 1, got '4' (str)",
            "fast_image_processor must be true or false, got 'no'",
        ],
    ),
    "hf-chat-grounder": (
        {"prompt_template": "Where is it?", "batch_size": 0},
        [
            "prompt_template must be a non-empty string with a {phrase} slot or null",
            "batch_size must be an integer >= 1, got 0",
        ],
    ),
    "hf-chat-e2e": ({"batch_sizes": 4}, ["unknown option(s) batch_sizes"]),
    "migician": (
        {"calibration": "migician-x", "static_cache": "no"},
        [
            "calibration must be one of migician-y or null, got 'migician-x'",
            "static_cache must be true or false",
        ],
    ),
    "rule-reasoner": ({"strict": True}, ["unknown option(s) strict (known: none)"]),
    "template-grounder": (
        {"scale_step": 1, "min_size": 0, "shared_windows": [], "backend": "cv2", "top_k": "3"},
        [
            "scale_step must be a number > 1, got 1",
            "min_size must be a number > 0, got 0",
            "shared_windows must be a list of one or more number(s) >= 0, got []",
            "backend must be one of auto, opencv, skimage, got 'cv2'",
            "top_k must be an integer >= 1, got '3'",
        ],
    ),
    "diff-grounder": (
        {"align": "false", "close_px": 0, "mad_k": -1},
        [
            "align must be true or false",
            "close_px must be an integer >= 1, got 0",
            "mad_k must be a number >= 0, got -1",
        ],
    ),
    "keypoint-grounder": (
        {"scale_range": [0.25], "ransac_seed": -1, "erode_px": 1.5},
        [
            "scale_range must be a list of 2 number(s) >= 0, got [0.25]",
            "ransac_seed must be an integer >= 0 or null, got -1",
            "erode_px must be an integer >= 0, got 1.5",
        ],
    ),
    "classical-grounder": (
        {"template": {"top_k": 0}, "diff": [1], "keypoint": {"ratio": "0.8", "rato": 1}},
        [
            "'classical-grounder': option diff must be a mapping of options or null",
            "'classical-grounder options.template': option top_k must be an integer >= 1",
            "'classical-grounder options.keypoint': unknown option(s) rato",
            "'classical-grounder options.keypoint': option ratio must be a number >= 0",
        ],
    ),
}

# values that worked before and stay valid: int thresholds, a threshold above every score (no
# box unless top1_fallback), null where null means something
GOOD: dict[str, dict[str, Any]] = {
    "gdino-hf": {"box_threshold": 0, "text_threshold": 1, "pixel_cache_size": 0},
    "mm-gdino-hf": {"box_threshold": 1.5, "top1_fallback": False, "pad_batches": True},
    "owlv2": {"box_threshold": 0, "max_candidates": 1, "fast_image_processor": True},
    "florence2": {"num_beams": 3, "batch_size": 1},
    "hf-chat-reasoner": {"batch_size": 8},
    "hf-chat-grounder": {"prompt_template": None},
    "hf-chat-e2e": {"fast_image_processor": False},
    "migician": {"calibration": None, "unit_floats": "migician"},
    "rule-reasoner": {},
    "template-grounder": {"shared_windows": (0.3,), "box_inset": 0, "backend": "skimage"},
    "diff-grounder": {"align": False, "smooth_sigma": 0},
    "keypoint-grounder": {"ransac_seed": None, "scale_range": [0, 10], "ncc_threshold": -1},
    "classical-grounder": {"template": None, "keypoint": {"top_k": 1}},
    "gdino-py": {"config_file": "SwinT_OGC", "max_size": None, "box_threshold": 1},
}


@pytest.mark.parametrize("adapter", sorted(BAD))
def test_every_problem_of_an_adapter_is_listed_at_once(adapter: str) -> None:
    options, expected = BAD[adapter]
    problems = adapter_option_problems(adapter, ModelSettings(options=options))
    text_ = "\n".join(problems)
    assert len(problems) == len(expected), text_
    for fragment in expected:
        assert fragment in text_
    assert all(adapter in p for p in problems)  # each line names the adapter


def test_gdino_py_options_and_dtype_are_listed_together() -> None:
    settings = ModelSettings(
        dtype="bfloat16", options={"image_size": "800", "weights_only": "true", "bert_path": 3}
    )
    problems = adapter_option_problems("gdino-py", settings)
    assert len(problems) == 4, problems
    assert any("image_size must be an integer >= 1, got '800' (str)" in p for p in problems)
    assert any("weights_only must be true or false" in p for p in problems)
    assert any("bert_path must be a non-empty string or null, got 3" in p for p in problems)
    assert problems[-1] == "adapter 'gdino-py' runs in float32; got dtype='bfloat16'"


@pytest.mark.parametrize("adapter", sorted(GOOD))
def test_values_that_worked_before_pass(adapter: str) -> None:
    assert adapter_option_problems(adapter, ModelSettings(options=GOOD[adapter])) == []


@pytest.mark.slow  # the first build imports transformers (seconds)
@pytest.mark.parametrize("adapter", sorted(BAD))
def test_building_refuses_bad_options_before_the_folder_is_read(
    adapter: str, tmp_path: Path
) -> None:
    options, expected = BAD[adapter]
    settings = ModelSettings(path=str(tmp_path / "no-such-model"), device="cpu", options=options)
    built_before = set(registry._CACHE)  # other tests may have built this adapter already
    with pytest.raises(ValueError) as info:
        registry.build(adapter, settings)
    message = str(info.value)
    assert all(fragment in message for fragment in expected), message  # all at once
    assert "no-such-model" not in message  # the options come first: nothing was read
    assert set(registry._CACHE) == built_before  # nothing was built


def test_gdino_py_refuses_bad_options_before_reading_the_checkpoint(tmp_path: Path) -> None:
    settings = ModelSettings(
        path=str(tmp_path / "none.pth"), options={"config_file": "SwinT_OGC", "image_size": "800"}
    )
    with pytest.raises(ValueError, match="image_size must be an integer >= 1") as info:
        registry.build("gdino-py", settings)
    assert "none.pth" not in str(info.value)


def test_every_registry_adapter_has_an_option_check_and_imports_without_torch() -> None:
    assert set(OPTION_CHECKS) == set(registry.ADAPTERS)
    modules = sorted(set(OPTION_CHECKS.values()))
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n"
        "    assert callable(importlib.import_module(m).settings_problems), m\n"
        "heavy = [n for n in ('torch', 'transformers') if n in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def _shipped_configs() -> list[Path]:
    return sorted((ROOT / "experiments").glob("*.yaml"))


@pytest.mark.parametrize("path", _shipped_configs(), ids=lambda p: p.name)
def test_every_model_of_every_shipped_experiment_passes_the_option_checks(path: Path) -> None:
    config = load_config(path, defer_unset_env=True)
    assert config.models
    for key, model in config.models.items():
        problems = adapter_option_problems(model.adapter, model.settings())
        assert problems == [], f"{path.name}: models.{key}: {problems}"


def _docs_models() -> list[tuple[str, str, dict[str, Any]]]:
    """(docs file, model key, model mapping) of every ``models:`` in a YAML example of the docs."""
    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for block in re.findall(r"```yaml\n(.*?)```", doc.read_text(), flags=re.S):
            data = yaml.safe_load(block)
            if isinstance(data, dict) and isinstance(data.get("models"), dict):
                found += [(doc.name, key, m) for key, m in data["models"].items()]
    return found


def test_every_model_of_the_docs_examples_passes_the_option_checks() -> None:
    models = _docs_models()
    assert len(models) >= 3  # docs/running.md and docs/scaling.md hold examples
    for doc, key, model in models:
        settings = ModelSettings(**{k: v for k, v in model.items() if k != "adapter"})
        problems = adapter_option_problems(model["adapter"], settings)
        assert problems == [], f"{doc}: models.{key}: {problems}"


@pytest.mark.parametrize(
    ("adapter", "option"),
    [
        ("gdino-hf", "box_threshold"),
        ("gdino-hf", "text_threshold"),
        ("owlv2", "box_threshold"),
        ("mm-gdino-hf", "box_threshold"),
        ("gdino-py", "box_threshold"),
        ("keypoint-grounder", "ncc_threshold"),
    ],
)
def test_a_threshold_that_is_not_finite_is_refused(adapter: str, option: str) -> None:
    # NaN passes and fails no comparison with a score; ±inf keeps every box or none
    for value in (float("nan"), float("inf"), float("-inf")):
        problems = adapter_option_problems(adapter, ModelSettings(options={option: value}))
        assert problems == [
            f"adapter {adapter!r}: option {option} must be a finite number, got {value!r} (float)"
        ]


def test_new_rules() -> None:
    assert any_number(0) is None and any_number(1.5) is None and any_number(-1) is None
    assert any_number(float("nan")) and any_number(float("inf")) and any_number(-float("inf"))
    assert any_number(True) and any_number("0.3") and any_number(None)
    pair = number_list(2, minimum=0)
    assert pair([0.25, 4]) is None and pair((1, 2)) is None
    assert pair([1]) and pair([1, -1]) and pair("1,2") and pair([1, "2"]) and pair([True, 1])
    assert number_list()([0.1]) is None and number_list()([])
    template = text(slot="{phrase}", optional=True)
    assert template(None) is None and template("find {phrase}") is None
    assert template("find it") and template("") and template(3)
    assert text()(None) and text()("x") is None
    assert options_mapping({}) is None and options_mapping(None) is None and options_mapping([])
