"""Shared test fixtures. Nothing here reaches a network: HF_HUB_OFFLINE is forced on."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from repo_paths import REPO

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
# One torch/OpenMP thread: the tiny models gain nothing from more, and on a busy 2-core machine
# spinning OpenMP workers made CPU forward passes 10-50x slower (set before torch is imported).
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO_ROOT = REPO
SHARED_MIGBENCH = REPO_ROOT.parent / "shared" / "migbench"


@pytest.fixture
def fakes() -> Iterator[None]:
    """The adapters of ``tests/runner_fakes.py`` registered and their call log empty; after the
    test, the ``cot_ground`` logger's handlers and level as before (the CLI sets them)."""
    import runner_fakes as rf

    rf.register_fakes()
    rf.reset()
    logger = logging.getLogger("cot_ground")
    handlers, level = list(logger.handlers), logger.level
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)
    rf.reset()
    rf.unregister_fakes()


@pytest.fixture(scope="session")
def migbench_dir() -> Path:
    """``../shared/migbench``; fails under CI (``CI=true``) when absent, skips elsewhere."""
    if not (SHARED_MIGBENCH / "annotations" / "MIG_data.json").is_file():
        msg = f"MIG-Bench data not found at {SHARED_MIGBENCH} (expected beside the project root)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return SHARED_MIGBENCH


# --- tiny random-weight models (cot_ground.testing), built once per test session -------------
@pytest.fixture(scope="session")
def tiny_models_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder the tiny models of this session are built into."""
    return tmp_path_factory.mktemp("tiny-models")


@pytest.fixture(scope="session")
def tiny_qwen_paths(tiny_models_root: Path) -> dict[str, Path]:
    """Tiny Qwen2-VL / Qwen2.5-VL / Qwen3-VL folders by model_type."""
    from cot_ground.testing import QWEN_FAMILIES, build_tiny_qwen_vl

    return {f: build_tiny_qwen_vl(tiny_models_root / f, f) for f in QWEN_FAMILIES}


@pytest.fixture(scope="session")
def tiny_gdino_hf_path(tiny_models_root: Path) -> Path:
    """Tiny transformers GroundingDino folder (model + processor)."""
    from cot_ground.testing import build_tiny_gdino_hf

    return build_tiny_gdino_hf(tiny_models_root / "gdino-hf")


@pytest.fixture(scope="session")
def tiny_gdino_py_files(tiny_models_root: Path):  # -> cot_ground.testing.GdinoPyFiles
    """Tiny groundingdino-py checkpoint, config file and local BERT folder."""
    from cot_ground.testing import build_tiny_gdino_py

    return build_tiny_gdino_py(tiny_models_root / "gdino-py")


@pytest.fixture(scope="session")
def tiny_chat_paths(tiny_models_root: Path) -> dict[str, Path]:
    """Tiny InternVL / LLaVA-OneVision / Idefics3 chat checkpoints by model_type."""
    from cot_ground.testing.tiny_chat_models import CHAT_FAMILIES, build_tiny_chat_model

    return {f: build_tiny_chat_model(tiny_models_root / f, f) for f in CHAT_FAMILIES}


@pytest.fixture(scope="session")
def tiny_grounder_paths(tiny_models_root: Path) -> dict[str, Path]:
    """Tiny MM-GroundingDINO / OWLv2 / Florence-2 checkpoints by family."""
    from cot_ground.testing.tiny_grounders import GROUNDER_FAMILIES, build_tiny_grounder

    return {f: build_tiny_grounder(tiny_models_root / f, f) for f in GROUNDER_FAMILIES}
