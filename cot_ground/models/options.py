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
