"""Adapter-specific options (``ModelSettings.options``): defaults and typo checks."""

from __future__ import annotations

from typing import Any

# The image processor is chosen explicitly: the slow one each checkpoint was saved with (and the
# public evaluation ran) unless option ``fast_image_processor`` asks for the torchvision one,
# whose resizing gives slightly different pixels. Recorded in the adapter's settings.
PROCESSOR_OPTIONS: dict[str, Any] = {"fast_image_processor": False}


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
