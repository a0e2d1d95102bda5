"""MIG-Bench as published on the Hugging Face Hub (dataset ``Michael4933/MIG-Bench``:
``MIG_data.json`` and ``images.zip`` at the top level): with the archive unpacked beside the
file, the snapshot folder is the MIG-Bench folder itself and image paths still resolve."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from cot_ground.bench.migbench import BenchmarkError, is_bench_folder, load_benchmark

COMMIT = "3c3615aa1b30a519b49d52333d5351a6813b8b48"


def _items() -> list[dict]:
    return [
        {
            "task": "common_object",
            "images": [f"./MIG-Bench/images/common/case{i}_{j}.png" for j in (1, 2)],
            "question": "Find the common object and locate it in the second image.",
            "answer": [0.1, 0.2, 0.5, 0.6],
            "need_format": True,
        }
        for i in range(2)
    ]


def _images(folder: Path) -> None:
    for i in range(2):
        for j in (1, 2):
            path = folder / "images" / "common" / f"case{i}_{j}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (16, 12)).save(path)


def test_a_hub_snapshot_with_images_unpacked_beside_the_file_loads(tmp_path: Path):
    snapshot = tmp_path / "datasets--Michael4933--MIG-Bench" / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (snapshot / "MIG_data.json").write_text(json.dumps(_items()))
    _images(snapshot)
    assert is_bench_folder(snapshot)
    bench = load_benchmark(snapshot / "MIG_data.json", answer_frame="unit", require_images=True)
    assert [Path(p) for p in bench.examples[0].images] == [
        snapshot / "images" / "common" / "case0_1.png",
        snapshot / "images" / "common" / "case0_2.png",
    ]
    assert bench.manifest()["root_layout"] == "MIG-Bench folder"


def test_the_release_layout_keeps_its_meaning(tmp_path: Path):
    bench_dir = tmp_path / "eval" / "MIG-Bench"
    bench_dir.mkdir(parents=True)
    (bench_dir / "MIG_data.json").write_text(json.dumps(_items()))
    _images(bench_dir)
    root = tmp_path / "eval"  # the folder that holds MIG-Bench/
    assert not is_bench_folder(root)
    bench = load_benchmark(
        bench_dir / "MIG_data.json", root=root, answer_frame="unit", require_images=True
    )
    assert bench.examples[0].images[0] == str(bench_dir / "images" / "common" / "case0_1.png")
    assert bench.manifest()["root_layout"] == "parent"


def test_images_not_unpacked_are_named(tmp_path: Path):
    (tmp_path / "MIG_data.json").write_text(json.dumps(_items()))
    (tmp_path / "images.zip").write_bytes(b"PK")
    with pytest.raises(BenchmarkError, match="image not found"):
        load_benchmark(tmp_path / "MIG_data.json", answer_frame="unit", require_images=True)
