"""MIG-Lite generator: layout, MIG-Bench compatibility, target images, determinism, CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from cot_ground.bench import BenchmarkError, load_benchmark
from cot_ground.bench.validate import validate_benchmark
from cot_ground.boxes import Frame
from cot_ground.cli.lite_cmds import register
from cot_ground.lite import LITE_TASKS, generate_lite
from cot_ground.lite.sources import PHOTOS, data_dir, load_table


@pytest.fixture(scope="module")
def lite(tmp_path_factory: pytest.TempPathFactory):
    return generate_lite(tmp_path_factory.mktemp("lite"), seed=3, per_task=6)


def test_layout_and_record_format(lite) -> None:
    records = json.loads(lite.data_file.read_text())
    assert [r["task"] for r in records] == [t for t in LITE_TASKS for _ in range(6)]
    assert lite.counts == dict.fromkeys(LITE_TASKS, 6)
    for r in records:
        assert set(r) == {"task", "images", "question", "answer", "additional_info", "need_format"}
        assert all(p.startswith(f"./MIG-Bench/images/{r['task']}/") for p in r["images"])
        x1, y1, x2, y2 = r["answer"]
        assert 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1, r
        for p in r["images"]:
            with Image.open(lite.out_dir / p) as im:
                assert max(im.size) <= 512 and im.mode == "RGB"


def test_questions_use_mig_bench_wording(lite) -> None:
    records = json.loads(lite.data_file.read_text())
    patterns = {
        "region": r"You are given a source image followed by its several regions\. Please locate "
        r"the \dth region picture in the source image\. $",
        "diff": r"Compare these two images carefully and give me the coordinates of their "
        r"difference in the [12]th image\. $",
        "refer_grounding": r"Find and locate where does the object in image-1 locate in the "
        r"image-2\.$",
        "common_object": r"These images share one object in common\. Recognize and locate this "
        r"object in the \dth image\. $",
        "object_tracking": r"These are a sequence of images containing moving objects\. For the "
        r"object in the first image marked with red bounding box\(<\|box_start\|>\(\d+,\d+\),"
        r"\(\d+,\d+\)<\|box_end\|>\), please locate it in the \dth image\. $",
        "multi_view": r"These images share one object in common\(the object marked with red "
        r"bounding box in the first image\(<\|box_start\|>\(\d+,\d+\),\(\d+,\d+\)<\|box_end\|>\)"
        r"\)\. Recognize and locate this object in the [23]th image\. $",
        "group_grounding": r".*<\|object_ref_start\|>[^<]+<\|object_ref_end\|>\.$",
    }
    for r in records:
        assert re.fullmatch(patterns[r["task"]], r["question"]), r["question"]
        if r["task"] == "group_grounding":
            assert re.fullmatch(
                r"It is in the \w+ image\. <\|box_start\|>.*<\|box_end\|>\. ", r["additional_info"]
            )
        else:
            assert r["additional_info"] == ""


@pytest.mark.parametrize("task", LITE_TASKS)
def test_loader_target_image_is_the_generated_one(lite, task: str) -> None:
    bench = load_benchmark(
        lite.data_file, root=lite.out_dir, answer_frame="unit", require_images=True
    )
    assert len(bench.examples) == len(lite.targets)
    pairs = [(e, t) for e, t in zip(bench.examples, lite.targets, strict=True) if e.task == task]
    assert len(pairs) == 6
    for example, target in pairs:
        assert example.target_image == target, (example.question, example.target_rule)


def test_build_states_its_frame_for_its_own_file_only(lite, tmp_path: Path) -> None:
    info = json.loads((lite.out_dir / "lite_info.json").read_text())
    assert info["answer_frame"] == "unit"
    stated = load_benchmark(lite.data_file, root=lite.out_dir)
    assert stated.answer_frame is Frame.UNIT
    assert stated.manifest()["answer_frame"] == "unit"
    explicit = load_benchmark(lite.data_file, root=lite.out_dir, answer_frame="unit")
    assert [e.gt_box for e in stated.examples] == [e.gt_box for e in explicit.examples]
    assert validate_benchmark(lite.data_file, root=lite.out_dir)["answer_frame"] == "unit"
    # a copy whose items were edited is no longer the file the build wrote: no frame is stated
    copy = tmp_path / "edited"
    copy.mkdir()
    (copy / "lite_info.json").write_text(json.dumps(info), encoding="utf-8")
    records = json.loads(lite.data_file.read_text())
    (copy / "MIG_data.json").write_text(json.dumps(records[:-1]), encoding="utf-8")
    with pytest.raises(BenchmarkError, match=r"lite_info\.json beside it describes another file"):
        load_benchmark(copy / "MIG_data.json", root=lite.out_dir)
    # a sidecar naming an unknown frame states nothing either
    (copy / "MIG_data.json").write_bytes(lite.data_file.read_bytes())
    (copy / "lite_info.json").write_text(
        json.dumps({**info, "answer_frame": "inches"}), encoding="utf-8"
    )
    with pytest.raises(BenchmarkError, match="answer_frame"):
        load_benchmark(copy / "MIG_data.json", root=lite.out_dir)


def test_same_seed_gives_identical_files_other_seed_differs(tmp_path: Path) -> None:
    def files(root: Path) -> dict[str, bytes]:
        return {
            str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
        }

    a = generate_lite(tmp_path / "a", seed=7, per_task=2)
    b = generate_lite(tmp_path / "b", seed=7, per_task=2)
    c = generate_lite(tmp_path / "c", seed=8, per_task=2)
    assert files(a.out_dir) == files(b.out_dir)
    assert a.data_file.read_bytes() != c.data_file.read_bytes()


def test_subset_of_tasks_draws_the_same_items(tmp_path: Path) -> None:
    full = json.loads(generate_lite(tmp_path / "all", seed=5, per_task=2).data_file.read_text())
    part = generate_lite(tmp_path / "part", seed=5, per_task=2, tasks=["refer_grounding"])
    assert json.loads(part.data_file.read_text()) == [
        r for r in full if r["task"] == "refer_grounding"
    ]


def test_bad_arguments_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="difficulty"):
        generate_lite(tmp_path, difficulty=1.5)
    with pytest.raises(ValueError, match="unknown MIG-Lite task"):
        generate_lite(tmp_path, tasks=["reasoning"])
    with pytest.raises(ValueError, match="per_task"):
        generate_lite(tmp_path, per_task=0)


def test_object_table_uses_only_packaged_photos() -> None:
    objects, pairs = load_table()
    assert len(objects) >= 20 and len(pairs) >= 5
    for obj in objects:
        assert (data_dir() / obj.photo).is_file()
        assert PHOTOS[obj.photo] == obj.scene
    assert len({o.id for o in objects}) == len(objects)


def test_make_lite_command(tmp_path: Path) -> None:
    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    result = CliRunner().invoke(
        app, ["make-lite", str(tmp_path / "out"), "--per-task", "1", "--task", "refer_grounding"]
    )
    assert result.exit_code == 0, result.output
    assert "wrote 1 items" in result.output
    assert len(json.loads((tmp_path / "out" / "MIG_data.json").read_text())) == 1
    bad = CliRunner().invoke(app, ["make-lite", str(tmp_path / "x"), "--difficulty", "2"])
    assert bad.exit_code == 2
