"""cot-ground: the chain-of-thought multi-image grounding baseline as a research instrument."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "load_run"]


def __getattr__(name: str) -> object:
    """Lazy exports, so ``import cot_ground`` stays light (pandas loads on first use)."""
    if name == "load_run":
        from cot_ground.analysis.load import load_run

        return load_run
    raise AttributeError(f"module 'cot_ground' has no attribute {name!r}")
