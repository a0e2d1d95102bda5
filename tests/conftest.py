"""Shared test fixtures. Nothing here reaches a network: HF_HUB_OFFLINE is forced on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_MIGBENCH = REPO_ROOT.parent / "shared" / "migbench"


@pytest.fixture(scope="session")
def migbench_dir() -> Path:
    """``../shared/migbench``; fails under CI (``CI=true``) when absent, skips elsewhere."""
    if not (SHARED_MIGBENCH / "annotations" / "MIG_data.json").is_file():
        msg = f"MIG-Bench data not found at {SHARED_MIGBENCH} (expected beside the project root)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return SHARED_MIGBENCH
