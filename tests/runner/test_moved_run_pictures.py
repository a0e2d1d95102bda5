"""A run folder (and the benchmark it read) can be moved or copied: traces name the pictures a
graph showed its models relative to the run folder, and the report, `show` and `load_run` find
them, and the example images, in the folders as they are now."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from repo_paths import EXPERIMENTS
from typer.testing import CliRunner

from cot_ground.analysis.load import load_run
from cot_ground.analysis.report import build_report
from cot_ground.cli.app import _register_commands, app
from cot_ground.graph.artifacts import ARTIFACTS_FOLDER
from cot_ground.lite import generate_lite
from cot_ground.runner.config import load_config
from cot_ground.runner.run import run_experiment
from cot_ground.runner.shard import merge_runs
from cot_ground.runner.store import read_jsonl

_register_commands()
ARTIFACT_NODES = {"draw_marks", "choose", "zoom", "verify"}


def _recorded_artifacts(run: Path) -> list[str]:
    """Every picture the traces of the run folder name that is not an example image (marked
    images, zoom and verify crops; the zoom request's image)."""
    examples = {e["id"]: set(e["images"]) for e in read_jsonl(run / "examples.jsonl")}
    names = []
    for file in sorted((run / "predictions").glob("*.jsonl")):
        for record in read_jsonl(file):
            for entry in record["trace"]:
                names += [p for p in entry["images"] if p not in examples[record["example_id"]]]
                if entry["node"] == "zoom" and entry["parsed"].get("request"):
                    names.append(entry["parsed"]["request"]["image"])
                for verdict in entry["parsed"].get("verdicts") or []:
                    names += [verdict["crop"]] if verdict["crop"] else []
    return names


def _report_page(run: Path) -> str:
    files = build_report(run, n_boot=20)
    return (files.out_dir / "report.html").read_text(encoding="utf-8")


def _artifact_files(run: Path) -> list[Path]:
    frame = load_run(run)
    return [Path(p) for paths in frame["artifacts"] for p in paths]


@pytest.mark.slow
def test_moved_and_copied_run_folders_keep_their_pictures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lite = generate_lite(tmp_path / "lite", seed=0, per_task=1)
    monkeypatch.setenv("MIG_LITE_DIR", str(lite.out_dir))
    first = tmp_path / "run"
    run_experiment(load_config(EXPERIMENTS / "training_free_lite.yaml"), out=first)

    names = _recorded_artifacts(first)
    assert all(n.startswith(f"{ARTIFACTS_FOLDER}/") for n in names), names
    made = {Path(n).name.split("_")[0].rstrip("0123456789") for n in names}
    assert made == {"image", "zoom", "verify"}  # image<N>_marks, zoom<R>_image<N>, verify_...
    assert all((first / n).is_file() for n in names)

    moved = tmp_path / "elsewhere" / "run_moved"
    moved.parent.mkdir()
    shutil.move(first, moved)
    files = _artifact_files(moved)
    assert files and all(p.is_file() and p.is_relative_to(moved) for p in files)
    page = _report_page(moved)
    assert "shown to the model: image1_marks.png" in page
    assert 'class="missing"' not in page and "image not found" not in page

    # a copy reads its own pictures, not the original's (which a re-run may overwrite)
    copy = tmp_path / "copy"
    shutil.copytree(moved, copy)
    shutil.rmtree(moved / ARTIFACTS_FOLDER)
    assert all(p.is_relative_to(copy) and p.is_file() for p in _artifact_files(copy))


@pytest.mark.slow
def test_report_and_show_find_images_after_the_benchmark_root_moved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lite = generate_lite(tmp_path / "lite", seed=0, per_task=1)
    monkeypatch.setenv("MIG_LITE_DIR", str(lite.out_dir))
    run = tmp_path / "run"
    config = load_config(EXPERIMENTS / "lite_classical.yaml")
    run_experiment(config, out=run)
    old_images = [p for e in read_jsonl(run / "examples.jsonl") for p in e["images"]]

    moved = tmp_path / "lite_moved"
    shutil.move(lite.out_dir, moved)
    monkeypatch.setenv("MIG_LITE_DIR", str(moved))
    run_experiment(load_config(EXPERIMENTS / "lite_classical.yaml"), out=run, allow_changed=True)
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["benchmark"]["root"] == str(moved)
    # examples.jsonl keeps the paths of the session that first wrote each example
    assert [p for e in read_jsonl(run / "examples.jsonl") for p in e["images"]] == old_images

    frame = load_run(run)
    shown = [Path(p) for paths in frame["images"] for p in paths]
    assert shown and all(p.is_file() and p.is_relative_to(moved) for p in shown)
    page = _report_page(run)
    assert 'class="missing"' not in page and "image not found" not in page

    example = read_jsonl(run / "examples.jsonl")[0]
    done = CliRunner().invoke(app, ["show", str(run), example["id"]], env={"COLUMNS": "400"})
    assert done.exit_code == 0, done.output
    now = str(moved / Path(example["images"][0]).relative_to(lite.out_dir))
    assert now in done.output and f"(recorded as {example['images'][0]})" in done.output


@pytest.mark.slow
def test_a_merged_run_finds_the_pictures_in_its_shard_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lite = generate_lite(tmp_path / "lite", seed=0, per_task=1)
    config = {
        "name": "som_shards",
        "benchmark": {"file": str(lite.data_file), "root": str(lite.out_dir)},
        "models": {"r": {"adapter": "rule-reasoner"}, "g": {"adapter": "classical-grounder"}},
        "pipelines": {
            "som": {
                "kind": "som",
                "reasoner": "r",
                "grounder": "g",
                "unmarked_choice": "top-proposal",
                "max_retries": 0,
            }
        },
        "cache": {"enabled": False},
    }
    path = tmp_path / "som.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    shards = [tmp_path / f"shard{k}" for k in (1, 2)]
    for k, out in enumerate(shards, start=1):
        run_experiment(load_config(path), out=out, shard=(k, 2))
    merged = tmp_path / "merged"
    merge_runs(shards, merged)
    files = _artifact_files(merged)
    assert files and all(p.is_file() and p.is_relative_to(merged) for p in files)
    for shard in shards:  # the merged folder stands alone
        shutil.rmtree(shard)
    assert [p for p in _artifact_files(merged) if not p.is_file()] == []
