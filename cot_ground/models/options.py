"""Adapter-specific options (``ModelSettings.options``): defaults and typo checks."""

from __future__ import annotations

from typing import Any


def resolve_options(
    adapter: str, given: dict[str, Any], defaults: dict[str, Any]
) -> dict[str, Any]:
    """``defaults`` updated with ``given``; an unknown key raises ``ValueError`` naming it."""
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        known = ", ".join(sorted(defaults)) or "none"
        raise ValueError(
            f"adapter {adapter!r}: unknown option(s) {', '.join(unknown)} (known: {known})"
        )
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
