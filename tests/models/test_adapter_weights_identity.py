"""Every HF adapter records what its weights are (``weights_digest``; ``commit`` for a Hub id) in
its ``settings``, which the step-1 cache key and the traces carry."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cot_ground.models import registry
from cot_ground.models.registry import build
from cot_ground.models.settings import ModelSettings
from cot_ground.models.weights_identity import weights_digest

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _hub_snapshot(cache: Path, repo_id: str, folder: Path) -> Path:
    """``folder`` put in Hub cache ``cache`` as snapshot :data:`COMMIT` of ``repo_id`` (on
    ``main``), its files linked to blobs as ``huggingface_hub`` stores them."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for file in folder.iterdir():
        if file.is_file():
            blob = repo / "blobs" / file.name
            shutil.copyfile(file, blob)
            (snapshot / file.name).symlink_to(blob)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return snapshot


@pytest.fixture(autouse=True)
def _fresh_registry():
    """Adapters built here (one from a Hub cache of this test) are not left to other tests."""
    yield
    registry.clear_cache()


@pytest.mark.slow
def test_local_and_hub_adapters_record_their_weights(
    tiny_qwen_paths: dict[str, Path],
    tiny_gdino_hf_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    folder = tiny_qwen_paths["qwen2_vl"]
    local = build("qwen-vl-reasoner", ModelSettings(path=str(folder), device="cpu"))
    assert local.settings["weights_digest"] == weights_digest(folder) is not None
    assert local.settings["commit"] is None

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _hub_snapshot(tmp_path / "hub", "tiny-org/gdino-weights-identity", tiny_gdino_hf_path)
    hub = build("gdino-hf", ModelSettings(path="tiny-org/gdino-weights-identity", device="cpu"))
    assert hub.settings["commit"] == COMMIT
    # the snapshot holds the same files as the folder it was made from
    assert hub.settings["weights_digest"] == weights_digest(tiny_gdino_hf_path)


@pytest.mark.slow
def test_a_checkpoint_rebuilt_in_place_is_loaded_again(tmp_path: Path):
    from cot_ground.testing import build_tiny_qwen_vl

    folder = build_tiny_qwen_vl(tmp_path / "model", seed=0)
    settings = ModelSettings(path=str(folder), device="cpu")
    first = build("qwen-vl-reasoner", settings)
    assert build("qwen-vl-reasoner", settings) is first  # same files: the same adapter
    shutil.rmtree(folder)
    build_tiny_qwen_vl(folder, seed=7)  # a notebook rebuilds the checkpoint in place
    second = build("qwen-vl-reasoner", settings)
    assert second is not first
    assert second.settings["weights_digest"] == weights_digest(folder)
    assert second.settings["weights_digest"] != first.settings["weights_digest"]
    assert second.runner.model is not first.runner.model  # the weights were loaded again
