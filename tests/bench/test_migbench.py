"""MIG-Bench loader, target-image rules, leakage of additional_info, validation report."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cot_ground.bench import TASKS, BenchmarkError, load_benchmark, target_image
from cot_ground.bench.migbench import KNOWN_FILES
from cot_ground.bench.validate import validate_benchmark
from cot_ground.boxes import Frame
from cot_ground.cli import bench_cmds
from cot_ground.records import file_sha256

FILES = {"MIG_data.json": 4295, "revised_MIG_bench.json": 4276}


@pytest.fixture(scope="module")
def benchmarks(migbench_dir: Path) -> dict:
    return {name: load_benchmark(migbench_dir / "annotations" / name) for name in FILES}


def _write(tmp_path: Path, items: list, name: str = "bench.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(items), encoding="utf-8")
    return path


def _item(**over: object) -> dict:
    item = {
        "task": "diff",
        "images": ["./MIG-Bench/images/a.jpg", "./MIG-Bench/images/b.jpg"],
        "question": "Compare these two images carefully and give me the coordinates of their "
        "difference. ",
        "answer": [0.1, 0.2, 0.3, 0.4],
        "additional_info": "",
        "need_format": True,
    }
    item.update(over)
    return item


# ----------------------------------------------------------------------------- real files
@pytest.mark.shared
def test_both_files_load_with_their_known_frames(benchmarks: dict) -> None:
    for name, n in FILES.items():
        bench = benchmarks[name]
        assert len(bench.examples) == n
        assert bench.sha256 in KNOWN_FILES
        assert len({e.id for e in bench.examples}) == n  # repeated items get distinct ids
        assert {e.task for e in bench.examples} == set(TASKS)
    assert benchmarks["MIG_data.json"].answer_frame is Frame.UNIT
    assert benchmarks["revised_MIG_bench.json"].answer_frame is Frame.QWEN3_1000
    first = [b.examples[0].gt_box.to_list() for b in benchmarks.values()]
    assert first[0] == [0.321, 0.096, 0.999, 0.724]
    assert first[1] == pytest.approx([0.024, 0.093, 0.999, 0.91])


@pytest.mark.shared
def test_every_item_of_both_files_gets_a_target_image_in_range(benchmarks: dict) -> None:
    counts = {}
    for name, bench in benchmarks.items():
        rules = Counter()
        for e in bench.examples:
            assert 0 <= e.target_image < len(e.images), e.id
            rules[(e.task, e.target_rule, e.target_image)] += 1
        assert len({t for t, _, _ in rules}) == 10
        assert sum(v for (t, r, _), v in rules.items() if r == "additional_info") == sum(
            v for (t, _, _), v in rules.items() if t == "group_grounding"
        )
        assert rules[("region", "question_source_image", 0)] == 1203
        counts[name] = rules
    # the original file does not say which image holds the difference; the revised one does
    assert counts["MIG_data.json"][("diff", "default_second_image", 1)] == 528
    assert counts["revised_MIG_bench.json"][("diff", "question_ordinal", 0)] == 274
    assert counts["revised_MIG_bench.json"][("diff", "question_ordinal", 1)] == 254


@pytest.mark.shared
def test_target_rule_agrees_with_question_ordinals(benchmarks: dict) -> None:
    for e in benchmarks["MIG_data.json"].examples:
        if e.task in ("multi_view", "object_tracking", "refer_grounding", "reasoning"):
            assert e.target_image >= 1, (e.id, e.question)  # image 1 is the reference there
        if e.task == "common_object":
            ordinal = int(e.question.split("in the ")[1].split("th image")[0])
            assert e.target_image == ordinal - 1


@pytest.mark.shared
def test_additional_info_never_reaches_an_example_field(benchmarks: dict) -> None:
    for bench in benchmarks.values():
        checked = 0
        for e in bench.examples:
            if e.task != "group_grounding":
                continue
            info = e.raw["additional_info"]
            sentence = info.split("<|box_start|>")[0].strip()
            assert sentence.startswith("It is in the")
            visible = e.model_dump(exclude={"raw"})
            assert info not in json.dumps(visible)
            assert sentence not in json.dumps(visible)
            assert sentence not in e.question
            checked += 1
        assert checked > 400


@pytest.mark.shared
def test_image_paths_resolve_against_root(migbench_dir: Path, tmp_path: Path) -> None:
    path = migbench_dir / "annotations" / "revised_MIG_bench.json"
    bench = load_benchmark(path, root=tmp_path, tasks=["reasoning"], limit=3)
    assert [e.task for e in bench.examples] == ["reasoning"] * 3
    raw = bench.examples[0].raw["images"][0]
    assert bench.examples[0].images[0] == str(tmp_path.resolve() / raw)
    with pytest.raises(BenchmarkError, match="image not found"):
        load_benchmark(path, root=tmp_path, limit=1, require_images=True)


@pytest.mark.shared
def test_validation_report_on_both_files(migbench_dir: Path) -> None:
    original = validate_benchmark(migbench_dir / "annotations" / "MIG_data.json")
    assert original["items"] == 4295 and sum(original["tasks"].values()) == 4295
    assert [e["item"] for e in original["inverted"]] == [7, 105, 126, 163, 512]
    assert {e["task"] for e in original["inverted"] + original["outside_unit"]} == {"common_object"}
    assert len(original["outside_unit"]) == 2
    assert len(original["duplicates"]) == 2 and original["errors"] == []
    revised = validate_benchmark(migbench_dir / "annotations" / "revised_MIG_bench.json")
    assert revised["items"] == 4276 and revised["inverted"] == [] and revised["outside_unit"] == []
    assert revised["target_rules"]["group_grounding"] == {"additional_info": 485}


@pytest.mark.shared
def test_validate_bench_cli(migbench_dir: Path) -> None:
    app = typer.Typer()
    bench_cmds.register(app)
    path = str(migbench_dir / "annotations" / "MIG_data.json")
    result = CliRunner().invoke(app, ["validate-bench", path, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["tasks"]["common_object"] == 816 and len(report["inverted"]) == 5
    text = CliRunner().invoke(app, ["validate-bench", path])
    assert text.exit_code == 0
    assert "inverted box" in text.output and "item 7 common_object" in text.output


# ----------------------------------------------------------------------------- synthetic files
def test_unknown_file_needs_an_explicit_frame(tmp_path: Path) -> None:
    path = _write(tmp_path, [_item()])
    with pytest.raises(BenchmarkError, match="answer_frame"):
        load_benchmark(path)
    bench = load_benchmark(path, answer_frame="unit")
    assert bench.answer_frame is Frame.UNIT
    assert bench.sha256 == file_sha256(path)
    assert bench.manifest()["answer_frame"] == "unit"
    e = bench.examples[0]
    assert e.target_image == 1 and e.target_rule == "default_second_image"
    assert e.images[0] == str(tmp_path.resolve() / "MIG-Bench/images/a.jpg")
    ints = _write(tmp_path, [_item(answer=[100, 200, 300, 400])], "ints.json")
    assert load_benchmark(ints, answer_frame="qwen1000").examples[0].gt_box.to_list() == (
        pytest.approx([0.1, 0.2, 0.3, 0.4])
    )


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (_item(task="counting"), "item 0: unknown task 'counting'"),
        (_item(answer=[0.1, 0.2, 0.3]), "item 0: malformed answer box"),
        (_item(answer="left"), "item 0: malformed answer box"),
        (_item(images=[]), "item 0: 'images' must be"),
        ({"task": "diff"}, "item 0: missing field"),
        (
            _item(task="group_grounding", images=["a", "b", "c"], additional_info="Somewhere."),
            "additional_info names no image",
        ),
        (
            _item(task="common_object", question="Locate it in the 5th image."),
            "gives image 5 but the item has 2 images",
        ),
        (_item(task="multi_view", question="Where is it?"), "no rule names the target image"),
    ],
)
def test_bad_items_raise_errors_naming_the_item(tmp_path: Path, item: dict, message: str) -> None:
    path = _write(tmp_path, [item])
    with pytest.raises(BenchmarkError, match=r"bench\.json") as info:
        load_benchmark(path, answer_frame="unit")
    assert message in str(info.value)


def test_missing_file_and_unknown_task_filter(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError, match="not found"):
        load_benchmark(tmp_path / "none.json", answer_frame="unit")
    path = _write(tmp_path, [_item()])
    with pytest.raises(BenchmarkError, match="unknown task"):
        load_benchmark(path, answer_frame="unit", tasks=["counting"])
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(BenchmarkError, match=r"bad\.json"):
        load_benchmark(tmp_path / "bad.json", answer_frame="unit")


def test_require_images_passes_when_images_exist(tmp_path: Path) -> None:
    images = tmp_path / "MIG-Bench" / "images"
    images.mkdir(parents=True)
    for name in ("a.jpg", "b.jpg"):
        (images / name).write_bytes(b"x")
    path = _write(tmp_path, [_item()])
    bench = load_benchmark(path, answer_frame="unit", require_images=True)
    assert all(Path(p).is_file() for p in bench.examples[0].images)


@pytest.mark.parametrize(
    ("task", "question", "info", "n", "expected"),
    [
        (
            "multi_view",
            "These images share one object in common(the object marked with red bounding box "
            "in the first image(<|box_start|>(483,284),(805,912)<|box_end|>). Recognize and "
            "locate this object in the 2th image. ",
            "",
            4,
            (1, "question_ordinal"),
        ),
        (
            "reasoning",
            "The people in image-1 need something. Find it in Image-2.",
            "",
            2,
            (1, "question_ordinal"),
        ),
        (
            "refer_grounding",
            "Find and locate where does the object in image-1 locate in the image-2.",
            "",
            2,
            (1, "question_ordinal"),
        ),
        (
            "object_tracking",
            "For the object in the first image marked with red bounding box(<|box_start|>(1,2),"
            "(3,4)<|box_end|>), please locate it in the 5th image. ",
            "",
            6,
            (4, "question_ordinal"),
        ),
        (
            "group_grounding",
            "Give the bounding box of <|object_ref_start|>a dog<|object_ref_end|>.",
            "It is in the third image. <|box_start|>(1,2),(3,4)<|box_end|>",
            4,
            (2, "additional_info"),
        ),
        (
            "region",
            "You are given a source image followed by its several regions. Please locate the "
            "2th region picture in the source image. ",
            "",
            4,
            (0, "question_source_image"),
        ),
        (
            "diff",
            "Compare these two images carefully and give me the coordinates of their difference "
            "in the 1th image. ",
            "",
            2,
            (0, "question_ordinal"),
        ),
        ("region", "Where is the region?", "", 3, (0, "default_source_image")),
        ("diff", "Compare these two images.", "", 2, (1, "default_second_image")),
    ],
)
def test_target_rules(task: str, question: str, info: str, n: int, expected: tuple) -> None:
    assert target_image(task, question, info, n) == expected


def test_validation_reports_bad_items_without_fixing(tmp_path: Path) -> None:
    items = [
        _item(answer=[0.5, 0.2, 0.1, 0.4]),
        _item(answer=[0.1, 0.2, 1.3, 0.4]),
        _item(task="counting"),
        _item(answer=[0.5, 0.2, 0.1, 0.4]),
    ]
    path = _write(tmp_path, items)
    report = validate_benchmark(path, answer_frame="unit", check_images=True)
    assert [e["item"] for e in report["inverted"]] == [0, 3]
    assert report["inverted"][0]["box"] == [0.5, 0.2, 0.1, 0.4]
    assert [e["item"] for e in report["outside_unit"]] == [1]
    assert report["duplicates"][0]["same_as"] == 0
    assert len(report["missing_images"]) == 6
    assert report["errors"][0]["item"] == 2 and "counting" in report["errors"][0]["error"]
    app = typer.Typer()
    bench_cmds.register(app)
    result = CliRunner().invoke(app, ["validate-bench", str(path), "--answer-frame", "unit"])
    assert result.exit_code == 1  # some items cannot be loaded
    assert "unknown task" in result.output
    unknown = CliRunner().invoke(app, ["validate-bench", str(path)])
    assert unknown.exit_code == 2 and "answer" in unknown.output
