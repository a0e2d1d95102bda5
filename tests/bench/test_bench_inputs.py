"""Hostile annotation files: image paths that leave the benchmark root, bytes that are not
UTF-8. Each is refused with a message naming the file and the item (or byte offset)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cot_ground.bench import BenchmarkError, load_benchmark
from cot_ground.bench.validate import validate_benchmark
from cot_ground.cli import bench_cmds

QUESTION = "Compare these two images carefully and give me the coordinates of their difference. "


def _item(images: list[str]) -> dict:
    return {"task": "diff", "images": images, "question": QUESTION, "answer": [0.1, 0.2, 0.3, 0.4]}


def _bench(folder: Path, images: list[str]) -> Path:
    root = folder / "root"
    root.mkdir(parents=True, exist_ok=True)
    path = root / "bench.json"
    path.write_text(json.dumps([_item(["MIG-Bench/a.jpg", "MIG-Bench/b.jpg"]), _item(images)]))
    return path


OUTSIDE = {
    "parent": ["MIG-Bench/a.jpg", "../outside/x.jpg"],
    "parent-inside-path": ["MIG-Bench/../../outside/x.jpg", "MIG-Bench/b.jpg"],
    "absolute": ["/etc/hostname", "MIG-Bench/b.jpg"],
}


@pytest.mark.parametrize("case", sorted(OUTSIDE))
def test_image_paths_leaving_the_root_are_refused(tmp_path, case):
    path = _bench(tmp_path, OUTSIDE[case])
    with pytest.raises(BenchmarkError, match=r"bench\.json item 1: image path .* leaves"):
        load_benchmark(path, answer_frame="unit")
    bench = load_benchmark(path, answer_frame="unit", allow_outside_root=True)
    root = (tmp_path / "root").resolve()
    assert any(not p.startswith(str(root) + "/") for p in bench.examples[1].images)
    report = validate_benchmark(path, answer_frame="unit")
    assert [e["item"] for e in report["errors"]] == [1]
    assert "leaves the benchmark root" in report["errors"][0]["error"]
    assert validate_benchmark(path, answer_frame="unit", allow_outside_root=True)["errors"] == []


def test_paths_inside_the_root_are_accepted(tmp_path):
    path = _bench(tmp_path, ["./MIG-Bench/x/../a.jpg", "MIG-Bench/b.jpg"])
    bench = load_benchmark(path, answer_frame="unit")
    assert bench.examples[1].images[0] == str((tmp_path / "root/MIG-Bench/a.jpg").resolve())


def test_non_utf8_annotation_file_names_file_and_byte_offset(tmp_path):
    path = tmp_path / "latin1.json"
    text = json.dumps([_item(["a.jpg", "b.jpg"])]).replace("carefully", "caf\u00e9")
    path.write_bytes(text.encode("latin-1"))
    offset = text.encode("latin-1").index(b"\xe9")
    message = rf"latin1\.json: not UTF-8 text: byte\(s\) 0xe9 at byte offset {offset}"
    with pytest.raises(BenchmarkError, match=message):
        load_benchmark(path, answer_frame="unit")
    app = typer.Typer()
    bench_cmds.register(app)
    result = CliRunner().invoke(app, ["validate-bench", str(path), "--answer-frame", "unit"])
    assert result.exit_code == 2
    assert str(path) in result.output and f"byte offset {offset}" in result.output
    assert "Traceback" not in result.output


def test_a_run_refuses_outside_paths_unless_the_config_allows_them(tmp_path, fakes):
    import runner_fakes as rf

    from cot_ground.runner.config import parse_config
    from cot_ground.runner.pipelines import SetupError
    from cot_ground.runner.run import run_experiment

    bench = rf.make_benchmark(tmp_path / "elsewhere", n=2)
    items = json.loads(bench.read_text())
    root = tmp_path / "root"
    root.mkdir()
    for item in items:  # the images stay in elsewhere/, outside root/
        item["images"] = [f"../elsewhere/{p.removeprefix('./')}" for p in item["images"]]
    path = root / "bench.json"
    path.write_text(json.dumps(items))
    config = rf.experiment(path, tmp_path / "run", tmp_path / "cache")
    with pytest.raises(SetupError, match=r"bench\.json item 0: image path .* leaves"):
        run_experiment(parse_config(config))
    config["benchmark"]["allow_outside_root"] = True
    summary = run_experiment(parse_config(config))
    assert summary.pipelines["cot"].failed == 0


def test_preflight_names_every_outside_path_and_missing_image_at_once(tmp_path, fakes):
    import runner_fakes as rf

    from cot_ground.runner.config import parse_config
    from cot_ground.runner.pipelines import SetupError
    from cot_ground.runner.run import run_experiment

    bench = rf.make_benchmark(tmp_path / "root", n=5)
    items = json.loads(bench.read_text())
    items[1]["images"][0] = "../elsewhere/one.png"
    items[3]["images"][1] = "/etc/hostname"
    items[4]["images"][1] = "./images/gone.png"
    bench.write_text(json.dumps(items))
    (tmp_path / "root/images/item000_0.png").unlink()
    config = rf.experiment(bench, tmp_path / "run", tmp_path / "cache")
    with pytest.raises(SetupError) as err:
        run_experiment(parse_config(config))
    message = str(err.value)
    assert "item 1: image path '../elsewhere/one.png' leaves" in message
    assert "item 3: image path '/etc/hostname' leaves" in message
    assert "item000_0.png" in message and "gone.png" in message
    assert "2 of 6 image file(s)" in message  # items 0, 2 and 4 loaded; two files missing


def test_loader_names_every_bad_item(tmp_path):
    path = _bench(tmp_path, ["../outside/x.jpg", "/etc/hostname"])
    items = json.loads(path.read_text())
    path.write_text(json.dumps([*items, _item(["../far/y.jpg", "MIG-Bench/b.jpg"])]))
    with pytest.raises(BenchmarkError) as err:
        load_benchmark(path, answer_frame="unit", require_images=True)
    message = str(err.value)
    assert "item 1: image path '../outside/x.jpg' leaves" in message
    assert "; image path '/etc/hostname' leaves" in message  # both paths of item 1
    assert "item 2: image path '../far/y.jpg' leaves" in message
    assert message.count("item 0: image not found") == 2 and message.startswith("4 problem(s)")
