"""Adapters by short name, imported only when built (no heavy import at registry load).

The names are what experiment configs use. :func:`resolve` is the one way from a config's
``adapter`` value to an adapter: a registry name, or an import string ``package.module:factory``
for adapters that live outside cot-ground. It returns an object that implements one of the
protocols in :mod:`cot_ground.models.base`, checks its role, and shares adapters built with equal
name and settings within a process. :data:`SLOTS` says which role each pipeline slot needs.
"""

from __future__ import annotations

import importlib
import os
import threading
from typing import Any

from cot_ground.models.base import EndToEndGrounder, Grounder, Reasoner
from cot_ground.models.settings import ModelSettings
from cot_ground.models.weights_identity import weights_digest

# role -> (protocol, the method it needs)
ROLES: dict[str, tuple[type, str]] = {
    "reasoner": (Reasoner, "reason"),
    "grounder": (Grounder, "ground"),
    "e2e": (EndToEndGrounder, "predict"),
}

ROLE_NOUNS: dict[str, str] = {
    "reasoner": "a reasoner",
    "grounder": "a grounder",
    "e2e": "an e2e adapter",
}
"""Each role as messages name it (with its article)."""

SLOTS: dict[str, str] = {
    "reasoner": "reasoner",
    "grounder": "grounder",
    "fallback_grounder": "grounder",
    "zoom_grounder": "grounder",
    "model": "e2e",
    "multi_image_grounder": "e2e",
}
"""Pipeline slot -> the role of the adapter in it. ``multi_image_grounder`` is the ``grounder``
key of a CoT pipeline in mode ``multi-image``; every other slot is the config key of that name."""

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
    "rule-reasoner": ("reasoner", "cot_ground.models.rule_reasoner:build_rule_reasoner"),
    "template-grounder": ("grounder", "cot_ground.models.template:build_template_grounder"),
    "diff-grounder": ("grounder", "cot_ground.models.difference:build_diff_grounder"),
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


class AdapterError(RuntimeError):
    """An adapter cannot be had: its import string does not load, or it has the wrong role.
    The message names the adapter."""


def register(name: str, role: str, target: str) -> None:
    """Register ``module:factory`` under ``name``; factories take a :class:`ModelSettings`."""
    if role not in ROLES:
        raise ValueError(f"unknown adapter role {role!r} for {name!r}")
    ADAPTERS[name] = (role, target)


def install(table: dict[str, tuple[str, str]]) -> None:
    """Register every ``name: (role, target)`` of ``table`` not registered yet (a copy of
    :data:`ADAPTERS` shipped to another process, e.g. a Ray actor)."""
    for name, (role, target) in table.items():
        if name not in ADAPTERS:
            register(name, role, target)


def role_of(name: str) -> str:
    """The role ('reasoner', 'grounder' or 'e2e') of a registered adapter."""
    if name not in ADAPTERS:
        known = ", ".join(sorted(ADAPTERS))
        raise KeyError(f"unknown adapter {name!r}; known adapters: {known}")
    return ADAPTERS[name][0]


def missing_method(adapter: Any, role: str) -> str | None:
    """The method ``role`` needs (``reason``, ``ground`` or ``predict``) when ``adapter`` has
    no such callable, else None."""
    method = ROLES[role][1]
    return None if callable(getattr(adapter, method, None)) else method


def require_role(adapter: Any, role: str, slot: str | None = None) -> None:
    """Raise ``TypeError`` unless ``adapter`` implements the protocol of ``role`` (its ``name``,
    ``settings`` and method); the message calls it by ``slot`` (default: the role)."""
    protocol, method = ROLES[role]
    if not isinstance(adapter, protocol):
        raise TypeError(
            f"{slot or role} {getattr(adapter, 'name', type(adapter).__name__)!r} does not "
            f"implement {protocol.__name__} (needs name, settings and {method}(list))"
        )


def _factory(name: str) -> Any:
    target = name if ":" in name else ADAPTERS[name][1]
    module_name, factory_name = target.split(":", 1)
    try:
        return getattr(importlib.import_module(module_name), factory_name)
    except (ImportError, AttributeError) as exc:
        raise AdapterError(f"cannot load adapter {name!r}: {exc}") from exc


def _folder_digest(path: str | None) -> str | None:
    """What the local model folder ``path`` holds (None for no path, a Hub id, or a folder that
    cannot be read: the adapter's own load reports that)."""
    if not path:
        return None
    try:
        return weights_digest(os.path.expanduser(path))
    except OSError:
        return None


def resolve(name: str, settings: ModelSettings | None = None, role: str | None = None) -> Any:
    """The adapter ``name`` (a registry name or ``module:factory``) built with ``settings``.

    Adapters are cached per name, settings and, for a local model folder, what the folder
    holds (:func:`~cot_ground.models.weights_identity.weights_digest`: a checkpoint rebuilt in
    place, say from a notebook, gives a new adapter). With ``role``, a registry name must be
    registered with that role and the built adapter must have the role's method.

    Raises ``KeyError`` for an unknown registry name (the message lists the known ones),
    :class:`AdapterError` for an import string that does not load or a wrong role; whatever the
    factory raises (a missing model folder, say) passes through.
    """
    settings = settings or ModelSettings()
    if ":" not in name:
        actual = role_of(name)
        if role is not None and actual != role:
            raise AdapterError(f"adapter {name!r} is {ROLE_NOUNS[actual]}, not {ROLE_NOUNS[role]}")
    key = (name, settings.model_dump_json(), _folder_digest(settings.path))
    with _LOCK:
        adapter = _CACHE.get(key)
    if adapter is None:
        built = _factory(name)(settings)
        with _LOCK:
            adapter = _CACHE.setdefault(key, built)
    if role is not None and (method := missing_method(adapter, role)):
        raise AdapterError(f"adapter {name!r} has no {method}() method")
    return adapter


def build(name: str, settings: ModelSettings | None = None) -> Any:
    """The registered adapter ``name`` built with ``settings``: :func:`resolve` without a role
    check (``KeyError`` for a name not in :data:`ADAPTERS`)."""
    role_of(name)
    return resolve(name, settings)


def clear_cache() -> None:
    """Drop every cached adapter (frees model memory held by the registry)."""
    with _LOCK:
        _CACHE.clear()
