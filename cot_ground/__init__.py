"""cot-ground: the chain-of-thought multi-image grounding baseline as a research instrument."""

from __future__ import annotations

__version__ = "0.1.0"
