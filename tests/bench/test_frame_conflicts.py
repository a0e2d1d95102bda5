"""An explicit answer_frame that contradicts the known frame of a file (a published file by its
sha256, or the frame a MIG-Lite build states for exactly this file) is refused, naming both
frames and the source; the run's pre-flight lists it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cot_ground.bench import BenchmarkError, load_benchmark, migbench
from cot_ground.bench.validate import validate_benchmark
from cot_ground.boxes import Frame
from cot_ground.cli.app import _register_commands, app
from cot_ground.records import file_sha256

_register_commands()


@pytest.fixture(scope="module")
def lite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cot_ground.lite import generate_lite

    out = tmp_path_factory.mktemp("lite")
    generate_lite(out, per_task=1)
    return out


def test_explicit_frame_contradicting_the_build_is_refused(lite: Path) -> None:
    data = lite / "MIG_data.json"
    with pytest.raises(BenchmarkError) as err:
        load_benchmark(data, root=lite, answer_frame="qwen1000")
    message = str(err.value)
    assert "'qwen1000'" in message and "'unit'" in message
    assert str(lite / "lite_info.json") in message and str(data) in message
    with pytest.raises(BenchmarkError, match="contradicts"):
        validate_benchmark(data, root=lite, answer_frame="qwen1000")
    # the agreeing frame (also under its other name) and no frame load the same boxes
    boxes = [e.gt_box for e in load_benchmark(data, root=lite).examples]
    for same in ("unit", "normalized", Frame.UNIT):
        assert [e.gt_box for e in load_benchmark(data, root=lite, answer_frame=same).examples] == (
            boxes
        )


def test_explicit_frame_contradicting_a_published_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    item = {
        "task": "diff",
        "images": ["./MIG-Bench/images/a.jpg", "./MIG-Bench/images/b.jpg"],
        "question": "Compare these two images carefully and give me the coordinates of their "
        "difference. ",
        "answer": [100, 200, 300, 400],
    }
    path = tmp_path / "revised.json"
    path.write_text(json.dumps([item]), encoding="utf-8")
    published = migbench.KnownFile("revised_MIG_bench.json (revised release)", Frame.QWEN3_1000, 1)
    monkeypatch.setitem(migbench.KNOWN_FILES, file_sha256(path), published)
    # a sidecar stating another frame for this file does not matter: the published frame wins
    sidecar = {"data_sha256": file_sha256(path), "answer_frame": "unit"}
    (tmp_path / "lite_info.json").write_text(json.dumps(sidecar), encoding="utf-8")
    with pytest.raises(BenchmarkError) as err:
        load_benchmark(path, answer_frame="unit")
    message = str(err.value)
    assert "'unit'" in message and "'qwen3_1000'" in message
    assert "the published file revised_MIG_bench.json (revised release)" in message
    assert load_benchmark(path).answer_frame is Frame.QWEN3_1000
    assert load_benchmark(path, answer_frame="qwen3_1000").examples[0].gt_box.to_list() == (
        pytest.approx([0.1, 0.2, 0.3, 0.4])
    )


@pytest.mark.shared
def test_real_published_files_refuse_another_frame(migbench_dir: Path) -> None:
    for name, frame, wrong in [
        ("MIG_data.json", "unit", "qwen1000"),
        ("revised_MIG_bench.json", "qwen3_1000", "unit"),
    ]:
        path = migbench_dir / "annotations" / name
        with pytest.raises(BenchmarkError, match=rf"'{wrong}' contradicts .* '{frame}'"):
            load_benchmark(path, answer_frame=wrong, limit=1)


def _qwen1000_config(lite: Path, tmp_path: Path) -> Path:
    """A classical CoT config that states answer_frame qwen1000 for the unit-frame build."""
    config = {
        "name": "cls_af",
        "benchmark": {
            "file": str(lite / "MIG_data.json"),
            "root": str(lite),
            "answer_frame": "qwen1000",
        },
        "models": {"r": {"adapter": "rule-reasoner"}, "g": {"adapter": "classical-grounder"}},
        "pipelines": {"cot": {"kind": "cot", "reasoner": "r", "grounder": "g"}},
        "output": str(tmp_path / "run"),
    }
    path = tmp_path / "cls_af.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_preflight_lists_the_contradiction(lite: Path, tmp_path: Path) -> None:
    path = _qwen1000_config(lite, tmp_path)
    done = CliRunner().invoke(app, ["run", str(path)], env={"COLUMNS": "400"})
    assert done.exit_code == 2, done.output
    assert "the run cannot start" in done.output
    assert "answer_frame 'qwen1000' contradicts the frame of this file, 'unit'" in done.output
    assert not (tmp_path / "run" / "predictions").exists()


def test_unknown_tasks_are_named_with_the_contradiction(lite: Path, tmp_path: Path) -> None:
    # lc_frame.yaml run with --tasks regoin,diff: one report names both problems
    path = _qwen1000_config(lite, tmp_path)
    done = CliRunner().invoke(
        app, ["run", str(path), "--tasks", "regoin,diff"], env={"COLUMNS": "400"}
    )
    assert done.exit_code == 2, done.output
    assert "the run cannot start (2 problem(s))" in done.output
    assert "benchmark.tasks: unknown task(s) ['regoin']; known: diff, view_diff," in done.output
    assert "answer_frame 'qwen1000' contradicts the frame of this file, 'unit'" in done.output


@pytest.mark.parametrize(
    ("command", "option"), [("validate-bench", "--answer-frame"), ("rescore", "--frame")]
)
def test_an_unknown_frame_option_lists_the_frames(lite: Path, command: str, option: str) -> None:
    done = CliRunner().invoke(
        app, [command, str(lite / "MIG_data.json"), option, "bogus"], env={"COLUMNS": "400"}
    )
    assert done.exit_code == 2, done.output
    assert (
        f"error: {option}: unknown frame 'bogus' (frames: unit, qwen1000, qwen3_1000, pixels,"
        " normalized)" in done.output
    )
    with pytest.raises(BenchmarkError, match=r"unknown answer_frame 'bogus' \(frames: unit, "):
        load_benchmark(lite / "MIG_data.json", root=lite, answer_frame="bogus")


def test_a_build_edited_after_it_was_written_is_named_as_such(lite: Path, tmp_path: Path) -> None:
    edited = tmp_path / "MIG_data.json"
    items = json.loads((lite / "MIG_data.json").read_text(encoding="utf-8"))
    items[0]["question"] += " "
    edited.write_text(json.dumps(items), encoding="utf-8")
    (tmp_path / "lite_info.json").write_bytes((lite / "lite_info.json").read_bytes())
    stated = json.loads((lite / "lite_info.json").read_text())["data_sha256"]
    with pytest.raises(BenchmarkError) as err:
        load_benchmark(edited, root=lite)
    message = str(err.value)
    assert (
        f"lite_info.json beside it describes another file (sha256 {stated[:12]}...): the file"
        " was edited after the build; state the frame of its boxes" in message
    )
    assert "stating the frame" not in message
    (tmp_path / "lite_info.json").unlink()  # no sidecar at all: said so
    with pytest.raises(BenchmarkError, match=r"and no lite_info\.json beside it stating the frame"):
        load_benchmark(edited, root=lite)
