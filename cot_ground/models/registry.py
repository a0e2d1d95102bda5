"""Adapters by short name, imported only when built (no heavy import at registry load).

The names are what experiment configs use. ``build(name, settings)`` returns an object that
implements one of the protocols in :mod:`cot_ground.models.base`; adapters built with equal
name and settings are shared within a process.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

from cot_ground.models.settings import ModelSettings

# name -> (role, "module:factory"). role is one of "reasoner", "grounder", "e2e".
ADAPTERS: dict[str, tuple[str, str]] = {
    # Qwen2-VL / Qwen2.5-VL / Qwen3-VL (family read from the checkpoint's config.json)
    "qwen-vl-reasoner": ("reasoner", "cot_ground.models.qwen_vl:build_reasoner"),
    "qwen-vl-grounder": ("grounder", "cot_ground.models.qwen_vl:build_grounder"),
    "qwen-vl-e2e": ("e2e", "cot_ground.models.qwen_vl:build_end_to_end"),
    "migician": ("e2e", "cot_ground.models.migician:build_migician"),
    # GroundingDINO through transformers and through groundingdino-py
    "gdino-hf": ("grounder", "cot_ground.models.gdino_hf:build_grounder"),
    "gdino-py": ("grounder", "cot_ground.models.gdino_py:build_grounder"),
    # models behind an OpenAI-compatible chat endpoint (vLLM, SGLang, hosted APIs)
    "openai-reasoner": ("reasoner", "cot_ground.models.openai_chat:build_reasoner"),
    "openai-e2e": ("e2e", "cot_ground.models.openai_chat:build_end_to_end"),
    # classical baselines (no weights)
    "rule-reasoner": ("reasoner", "cot_ground.models.classical:build_rule_reasoner"),
    "template-grounder": ("grounder", "cot_ground.models.classical:build_template_grounder"),
    "diff-grounder": ("grounder", "cot_ground.models.classical:build_diff_grounder"),
    "classical-grounder": ("grounder", "cot_ground.models.classical:build_classical_grounder"),
    "keypoint-grounder": ("grounder", "cot_ground.models.classical:build_keypoint_grounder"),
    # any transformers multi-image chat model (AutoModelForImageTextToText + chat template)
    "hf-chat-reasoner": ("reasoner", "cot_ground.models.hf_chat:build_reasoner"),
    "hf-chat-grounder": ("grounder", "cot_ground.models.hf_chat:build_grounder"),
    "hf-chat-e2e": ("e2e", "cot_ground.models.hf_chat:build_end_to_end"),
    # open-vocabulary single-image grounders shipped with transformers
    "mm-gdino-hf": ("grounder", "cot_ground.models.open_vocab:build_mm_gdino"),
    "owlv2": ("grounder", "cot_ground.models.open_vocab:build_owlv2"),
    "florence2": ("grounder", "cot_ground.models.florence2:build_grounder"),
}

_CACHE: dict[tuple[str, str], Any] = {}
_LOCK = threading.Lock()


def register(name: str, role: str, target: str) -> None:
    """Register ``module:factory`` under ``name``; factories take a :class:`ModelSettings`."""
    if role not in {"reasoner", "grounder", "e2e"}:
        raise ValueError(f"unknown adapter role {role!r} for {name!r}")
    ADAPTERS[name] = (role, target)


def role_of(name: str) -> str:
    """The role ('reasoner', 'grounder' or 'e2e') of a registered adapter."""
    if name not in ADAPTERS:
        known = ", ".join(sorted(ADAPTERS))
        raise KeyError(f"unknown adapter {name!r}; known adapters: {known}")
    return ADAPTERS[name][0]


def build(name: str, settings: ModelSettings | None = None) -> Any:
    """The adapter ``name`` built with ``settings`` (cached per name + settings)."""
    settings = settings or ModelSettings()
    role_of(name)
    key = (name, settings.model_dump_json())
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
    module_name, factory_name = ADAPTERS[name][1].split(":")
    factory = getattr(importlib.import_module(module_name), factory_name)
    adapter = factory(settings)
    with _LOCK:
        _CACHE.setdefault(key, adapter)
        return _CACHE[key]


def clear_cache() -> None:
    """Drop every cached adapter (frees model memory held by the registry)."""
    with _LOCK:
        _CACHE.clear()
