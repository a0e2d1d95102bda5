"""Artifact names in traces: relative to the run folder for files inside it (the models still get
absolute paths), absolute otherwise; names of older records (absolute, or relative to the
working folder) are found again in a moved or copied run folder."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from cot_ground.boxes import Box
from cot_ground.graph import SoMConfig, build_som_graph, run_example
from cot_ground.graph.artifacts import ArtifactFolder, resolve_artifact
from cot_ground.records import Candidate
from tests.scripted_models import ScriptedGrounder, ScriptedReasoner, make_example


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"png")
    return path


def test_recorded_names_are_relative_to_the_run_folder_only_inside_it(tmp_path: Path) -> None:
    run = tmp_path / "run"
    inside = ArtifactFolder.open(str(run / "artifacts"), "som", run)
    file = inside.file("ab12", "image1_marks.png")
    assert file == run.absolute() / "artifacts/som/ab12/image1_marks.png"
    assert inside.recorded(file) == "artifacts/som/ab12/image1_marks.png"
    # an example image under the run folder is not an artifact: unchanged
    assert inside.recorded(str(run / "bench/a.jpg")) == str(run / "bench/a.jpg")
    # a config's own artifacts folder elsewhere, or no run folder: the absolute path
    elsewhere = ArtifactFolder.open(str(tmp_path / "pictures"), "som", run)
    assert elsewhere.recorded(elsewhere.file("ab12", "x.png")) == str(
        tmp_path / "pictures/som/ab12/x.png"
    )
    alone = ArtifactFolder.open(None, "som")
    assert alone.run_dir is None and alone.recorded(alone.file("ab12", "x.png")).startswith("/")


def test_relative_artifacts_dir_records_the_same_names(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    folder = ArtifactFolder.open("runs/x/artifacts", "zoom", "runs/x")
    assert folder.file("id", "zoom1_image1.png").is_absolute()
    assert (
        folder.recorded(folder.file("id", "zoom1_image1.png"))
        == "artifacts/zoom/id/zoom1_image1.png"
    )


def test_resolve_finds_new_and_old_names_in_the_folder_being_read(
    tmp_path: Path, monkeypatch
) -> None:
    original, copy = tmp_path / "original", tmp_path / "copy"
    tail = Path("artifacts/som/ab12/image1_marks.png")
    old = _touch(original / tail)
    # a relative name: under the run folder being read, found or not
    assert resolve_artifact(tail.as_posix(), copy) == copy / tail
    _touch(copy / tail)
    assert resolve_artifact(tail.as_posix(), copy) == copy / tail
    # an older absolute record: the copy's own file when it has it, else the recorded path
    assert resolve_artifact(str(old), copy) == copy / tail
    assert resolve_artifact(str(old), tmp_path / "empty") == old
    os.remove(old)
    assert resolve_artifact(str(old), tmp_path / "empty") == old  # reported missing as recorded
    # an older record relative to the working folder of its run
    monkeypatch.chdir(tmp_path)
    assert resolve_artifact(f"runs/x/{tail.as_posix()}", copy) == copy / tail


def test_som_trace_names_marked_images_relative_to_the_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    images = []
    for i in range(2):
        images.append(str(tmp_path / f"img{i}.png"))
        Image.new("RGB", (80, 60), (60 * i, 90, 160)).save(images[-1])
    example = make_example("group_grounding", n_images=2, target=1, folder=str(tmp_path))
    example = example.model_copy(update={"images": images})
    box = Box.from_unit([0.1, 0.1, 0.5, 0.5])
    grounder = ScriptedGrounder({p: [Candidate(box=box, score=0.9)] for p in images})
    reasoner = ScriptedReasoner(["image 2, mark 1"])
    config = SoMConfig(artifacts_dir=str(run / "artifacts"), pipeline="som")
    pred = run_example(build_som_graph(reasoner, grounder, config=config, run_dir=run), example)
    names = [f"artifacts/som/{example.id}/image{i}_marks.png" for i in (1, 2)]
    steps = {s.node: s for s in pred.trace}
    assert steps["draw_marks"].images == names and steps["choose"].images == names
    assert steps["propose"].images[:2] == images  # the example's own images stay as they are
    assert reasoner.requests[0].images == [str(run / n) for n in names]  # the model: absolute
    assert all((run / n).is_file() for n in names)
