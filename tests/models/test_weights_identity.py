"""weights_digest: what identifies a local model folder (tiny real checkpoints and plain files)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from cot_ground.models.weights_identity import SAMPLE_BYTES, weights_digest
from cot_ground.testing import build_tiny_qwen_vl


@pytest.fixture
def tiny_qwen(tmp_path: Path, tiny_qwen_paths: dict[str, Path]) -> Path:
    """A private copy of the session's tiny Qwen2-VL (seed 0), free to edit."""
    return Path(shutil.copytree(tiny_qwen_paths["qwen2_vl"], tmp_path / "qwen"))


@pytest.mark.slow
def test_other_weights_at_the_same_folder_change_the_digest(tmp_path: Path):
    folder = tmp_path / "model"
    before = weights_digest(build_tiny_qwen_vl(folder, seed=0))
    shutil.rmtree(folder)
    after = weights_digest(build_tiny_qwen_vl(folder, seed=7))
    assert before is not None and after is not None and before != after
    assert len(after) == 64 and int(after, 16) >= 0  # hex sha256


def test_a_copy_elsewhere_keeps_the_digest(tiny_qwen: Path, tmp_path: Path):
    copy = Path(shutil.copytree(tiny_qwen, tmp_path / "elsewhere" / "renamed"))
    for file in copy.iterdir():  # new modification times do not matter
        os.utime(file, (1_000_000, 1_000_000))
    assert weights_digest(copy) == weights_digest(tiny_qwen)
    assert weights_digest(str(copy)) == weights_digest(tiny_qwen)  # str or PathLike


def test_a_snapshot_of_links_to_blobs_has_the_folder_digest(tiny_qwen: Path, tmp_path: Path):
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    for file in tiny_qwen.iterdir():
        (snapshot / file.name).symlink_to(file)
    assert weights_digest(snapshot) == weights_digest(tiny_qwen)


@pytest.mark.parametrize(
    "name", ["tokenizer_config.json", "tokenizer.json", "chat_template.jinja", "merges.txt"]
)
def test_a_tokenizer_or_template_change_changes_the_digest(tiny_qwen: Path, name: str):
    before = weights_digest(tiny_qwen)
    with (tiny_qwen / name).open("a", encoding="utf-8") as handle:
        handle.write("\n")
    assert weights_digest(tiny_qwen) != before


def test_a_config_change_changes_the_digest(tiny_qwen: Path):
    before = weights_digest(tiny_qwen)
    config = json.loads((tiny_qwen / "generation_config.json").read_text())
    config["repetition_penalty"] = 1.05
    (tiny_qwen / "generation_config.json").write_text(json.dumps(config))
    assert weights_digest(tiny_qwen) != before


def test_files_that_do_not_define_the_model_are_left_out(tiny_qwen: Path):
    before = weights_digest(tiny_qwen)
    (tiny_qwen / "README.md").write_text("# notes\n")
    (tiny_qwen / ".gitattributes").write_text("*.safetensors filter=lfs\n")
    (tiny_qwen / "onnx").mkdir()
    (tiny_qwen / "onnx" / "model.onnx").write_bytes(b"other framework")
    assert weights_digest(tiny_qwen) == before


def test_not_a_local_folder_gives_none(tmp_path: Path):
    assert weights_digest("Qwen/Qwen2-VL-7B-Instruct") is None
    assert weights_digest(tmp_path / "missing") is None
    (tmp_path / "model.safetensors").write_bytes(b"x")
    assert weights_digest(tmp_path / "model.safetensors") is None


def _big_weights(folder: Path) -> Path:
    """A folder with one 5 MiB weight file of distinct bytes (more than three samples)."""
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    weights = folder / "model-00001-of-00001.safetensors"
    weights.write_bytes(bytes(range(256)) * (5 * SAMPLE_BYTES // 256))
    return weights


def _flip(path: Path, offset: int) -> None:
    with path.open("r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0xFF]))


def test_large_weight_files_are_identified_by_size_and_sampled_bytes(tmp_path: Path):
    weights = _big_weights(tmp_path / "model")
    size = weights.stat().st_size
    first = weights_digest(weights.parent)
    for offset in (10, size // 2, size - 10):  # inside the first, middle and last MiB
        _flip(weights, offset)
        assert weights_digest(weights.parent) != first, offset
        _flip(weights, offset)
        assert weights_digest(weights.parent) == first
    with weights.open("ab") as handle:  # one more byte: another size
        handle.write(b"\0")
    assert weights_digest(weights.parent) != first


def test_the_weight_file_name_counts(tmp_path: Path):
    weights = _big_weights(tmp_path / "model")
    first = weights_digest(weights.parent)
    weights.rename(weights.with_name("model.safetensors"))
    assert weights_digest(weights.parent) != first
