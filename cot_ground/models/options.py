"""Adapter-specific options (``ModelSettings.options``): defaults, typo checks and value checks.

An adapter states a default for every option it knows and, for the options whose values it
checks, an :data:`OptionRule`. :func:`option_problems` lists every unknown option and every bad
value at once (the pre-flight check can call it without building the adapter);
:func:`resolve_options` raises them as one ``ValueError`` before anything is loaded.
:func:`adapter_option_problems` runs the check of any registry adapter by name
(:data:`OPTION_CHECKS`), importing no model code beyond its module. A YAML
value is taken as written: ``"4096"`` is a string, not a number, and ``"no"`` is not false.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cot_ground.models.settings import ModelSettings

OptionRule = Callable[[Any], str | None]
"""Checks one option value: None when it is valid, else what the value must be."""

# The image processor is chosen explicitly: the slow one each checkpoint was saved with (and the
# public evaluation ran) unless option ``fast_image_processor`` asks for the torchvision one,
# whose resizing gives slightly different pixels. Recorded in the adapter's settings.
PROCESSOR_OPTIONS: dict[str, Any] = {"fast_image_processor": False}


def whole_number(minimum: int = 1, *, optional: bool = False) -> OptionRule:
    """Rule: an integer (not a bool) of at least ``minimum``; also null when ``optional``."""

    def rule(value: Any) -> str | None:
        if value is None and optional:
            return None
        if isinstance(value, int) and not isinstance(value, bool) and value >= minimum:
            return None
        return f"an integer >= {minimum}" + (" or null" if optional else "")

    return rule


def real_number(minimum: float = 0.0, *, strict: bool = False) -> OptionRule:
    """Rule: a finite integer or float (not a bool) of at least ``minimum`` (above it when
    ``strict``); ±inf and NaN are refused (an infinite timeout or back-off waits forever)."""

    def rule(value: Any) -> str | None:
        bound = f"{'>' if strict else '>='} {minimum:g}"
        if not isinstance(value, int | float) or isinstance(value, bool):
            return f"a number {bound}"
        if not math.isfinite(value):
            return f"a finite number {bound}"
        if value > minimum or (value == minimum and not strict):
            return None
        return f"a number {bound}"

    return rule


def true_or_false(value: Any) -> str | None:
    """Rule: ``true`` or ``false`` (a YAML boolean, not the string "no")."""
    return None if isinstance(value, bool) else "true or false"


PROCESSOR_RULES: dict[str, OptionRule] = {"fast_image_processor": true_or_false}
"""The rule of :data:`PROCESSOR_OPTIONS`."""


def any_number(value: Any) -> str | None:
    """Rule: a finite integer or float (not a bool) of any size, for a score threshold (one
    above every score keeps no box, which is valid); NaN, which no score passes or fails, and
    ±inf are refused."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "a number"
    return None if math.isfinite(value) else "a finite number"


def number_list(length: int | None = None, minimum: float = 0.0) -> OptionRule:
    """Rule: a list (or tuple) of numbers, each at least ``minimum``; ``length`` of them when
    given, else at least one."""
    each = real_number(minimum)

    def rule(value: Any) -> str | None:
        need = f"a list of {length or 'one or more'} number(s) >= {minimum:g}"
        if not isinstance(value, list | tuple) or not value:
            return need
        if length is not None and len(value) != length:
            return need
        return need if any(each(v) is not None for v in value) else None

    return rule


def text(*, slot: str | None = None, optional: bool = False) -> OptionRule:
    """Rule: a non-empty string (holding ``slot``, e.g. ``{phrase}``, when given); also null
    when ``optional``."""

    def rule(value: Any) -> str | None:
        if value is None and optional:
            return None
        if isinstance(value, str) and value and (slot is None or slot in value):
            return None
        need = "a non-empty string" + (f" with a {slot} slot" if slot else "")
        return need + (" or null" if optional else "")

    return rule


def options_mapping(value: Any) -> str | None:
    """Rule: a mapping of options (the options of a part of a composite adapter) or null."""
    return None if value is None or isinstance(value, Mapping) else "a mapping of options or null"


def one_of(*choices: Any, optional: bool = False) -> OptionRule:
    """Rule: one of ``choices``; also null when ``optional``."""

    def rule(value: Any) -> str | None:
        if (value is None and optional) or (value is not None and value in choices):
            return None
        names = ", ".join(str(c) for c in choices) + (" or null" if optional else "")
        return f"one of {names}"

    return rule


def option_problems(
    adapter: str,
    given: Mapping[str, Any],
    defaults: Mapping[str, Any],
    rules: Mapping[str, OptionRule] | None = None,
) -> list[str]:
    """Every problem of the options ``given`` to ``adapter``: each unknown key (one line
    listing the known ones), then each value its rule in ``rules`` refuses (naming the option,
    what it must be and the value given with its type). Empty when all is well."""
    problems = []
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        known = ", ".join(sorted(defaults)) or "none"
        problems.append(
            f"adapter {adapter!r}: unknown option(s) {', '.join(unknown)} (known: {known})"
        )
    for key, rule in (rules or {}).items():
        if key in given and (need := rule(given[key])) is not None:
            value = given[key]
            problems.append(
                f"adapter {adapter!r}: option {key} must be {need}, got {value!r} "
                f"({type(value).__name__})"
            )
    return problems


def resolve_options(
    adapter: str,
    given: dict[str, Any],
    defaults: dict[str, Any],
    rules: Mapping[str, OptionRule] | None = None,
) -> dict[str, Any]:
    """``defaults`` updated with ``given``; raises one ``ValueError`` listing every problem
    :func:`option_problems` finds (unknown keys, values ``rules`` refuse)."""
    problems = option_problems(adapter, given, defaults, rules)
    if problems:
        raise ValueError("; ".join(problems))
    return {**defaults, **given}


def choose_backend(requested: str, adapter: str) -> str:
    """``opencv`` or ``skimage`` for option ``backend`` of ``adapter`` (``auto``: OpenCV when
    it imports, the scikit-image equivalent otherwise)."""
    if requested not in ("auto", "opencv", "skimage"):
        raise ValueError(f"{adapter}: backend must be auto, opencv or skimage, got {requested!r}")
    if requested == "skimage":
        return "skimage"
    try:
        import cv2  # noqa: F401
    except ImportError:
        if requested == "opencv":
            raise
        return "skimage"
    return "opencv"


OPTION_CHECKS: dict[str, str] = {
    "qwen-vl-reasoner": "cot_ground.models.qwen_vl",
    "qwen-vl-grounder": "cot_ground.models.qwen_vl",
    "qwen-vl-e2e": "cot_ground.models.qwen_vl",
    "migician": "cot_ground.models.migician",
    "gdino-hf": "cot_ground.models.gdino_hf",
    "gdino-py": "cot_ground.models.gdino_py",
    "openai-reasoner": "cot_ground.models.openai_chat",
    "openai-e2e": "cot_ground.models.openai_chat",
    "rule-reasoner": "cot_ground.models.rule_reasoner",
    "template-grounder": "cot_ground.models.template",
    "diff-grounder": "cot_ground.models.difference",
    "classical-grounder": "cot_ground.models.classical",
    "keypoint-grounder": "cot_ground.models.keypoints",
    "hf-chat-reasoner": "cot_ground.models.hf_chat",
    "hf-chat-grounder": "cot_ground.models.hf_chat",
    "hf-chat-e2e": "cot_ground.models.hf_chat",
    "mm-gdino-hf": "cot_ground.models.open_vocab",
    "owlv2": "cot_ground.models.open_vocab",
    "florence2": "cot_ground.models.florence2",
}
"""Registry adapter name → the module whose ``settings_problems(name, settings)`` lists the
problems of its options (unknown keys, bad values); imported when a config uses the adapter
(none of these modules imports torch or transformers at module level)."""


def adapter_option_problems(adapter: str, settings: ModelSettings) -> list[str]:
    """Problems of the options of registry adapter ``adapter`` (:data:`OPTION_CHECKS`; none
    for an adapter not listed); loads nothing."""
    module = OPTION_CHECKS.get(adapter)
    if module is None:
        return []
    return importlib.import_module(module).settings_problems(adapter, settings)
