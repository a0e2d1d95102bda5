"""Where cot-ground finds its data folders (prompts) relative to the checkout."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def prompts_dir() -> Path:
    """The prompt folder: ``$COT_GROUND_PROMPTS`` if set, else ``prompts/`` of the checkout."""
    override = os.environ.get("COT_GROUND_PROMPTS")
    path = Path(override) if override else REPO_ROOT / "prompts"
    if not path.is_dir():
        raise FileNotFoundError(
            f"prompt folder not found: {path} (set COT_GROUND_PROMPTS to a folder of prompt files)"
        )
    return path
