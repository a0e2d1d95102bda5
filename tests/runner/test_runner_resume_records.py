"""Resumes that never lie: a per-task prompt file added or removed, the grounding prompt the
Qwen grounder really reads, ground-truth settings and new weights in the same folder refuse the
resume; every session records its code, packages and models, and a killed session stays in
run.json. The real runner on scripted adapters (a tiny random-weight Qwen2-VL grounder where the
adapter's own lookup matters)."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import runner_fakes as rf
from repo_paths import REPO

from cot_ground.models.registry import build
from cot_ground.models.settings import ModelSettings
from cot_ground.paths import prompts_dir
from cot_ground.records import file_sha256
from cot_ground.runner.config import parse_config
from cot_ground.runner.pipelines import SetupError
from cot_ground.runner.run import run_experiment
from cot_ground.runner.store import RunFolder, read_jsonl

pytestmark = pytest.mark.usefixtures("fakes")

TASK = "common_object"  # a task of rf.make_benchmark (the other is group_grounding)


def _run(bench: Path, tmp: Path, **kw):
    cfg = parse_config(rf.experiment(bench, tmp / "run", tmp / "cache", **kw.pop("config", {})))
    return run_experiment(cfg, **kw)


def _manifest(tmp: Path) -> dict:
    return RunFolder(tmp / "run").read_manifest()


def _custom_variant(tmp: Path, task_file: bool) -> tuple[Path, Path]:
    """A prompt folder with CoT variant ``custom``: ``_all.yaml`` able to serve every task, and
    (``task_file``) a ``common_object.yaml`` of its own."""
    root = tmp / "prompts"
    shutil.copytree(prompts_dir(), root)
    variant = root / "cot/custom"
    variant.mkdir()
    shared = (root / "cot/structured/_all.yaml").read_text()
    step1 = "step1: |-\n  {intro}\n  Task: {question}\n  {answer_format}\n"
    (variant / "_all.yaml").write_text(shared + step1)
    if task_file:
        shutil.copy(root / f"cot/structured/{TASK}.yaml", variant / f"{TASK}.yaml")
    return root, variant / f"{TASK}.yaml"


def _custom_pipelines(bench: Path, tmp: Path, root: Path) -> dict:
    pipelines = rf.experiment(bench, tmp, tmp)["pipelines"]
    pipelines["cot"].update(prompts_dir=str(root), prompt_variant="custom")
    return pipelines


def _stop_midway(bench: Path, tmp: Path, pipelines: dict) -> int:
    """Run ``--tasks common_object`` and stop it part-way (Ctrl-C); the number of records."""
    rf.SIGINT_AT["fake-reasoner"] = 2
    summary = _run(bench, tmp, tasks=[TASK], config={"pipelines": pipelines})
    assert summary.interrupted
    rf.reset()
    return len(read_jsonl(tmp / "run/predictions/cot.jsonl"))


def test_a_task_prompt_file_removed_midway_refuses_the_resume(tmp_path: Path) -> None:
    bench = rf.make_benchmark(tmp_path / "bench", n=8)
    root, task_file = _custom_variant(tmp_path, task_file=True)
    pipelines = _custom_pipelines(bench, tmp_path, root)
    written = _stop_midway(bench, tmp_path, pipelines)
    assert 0 < written < 4

    task_file.unlink()  # the task now falls back to _all.yaml alone
    with pytest.raises(SetupError, match=rf"prompt file cot/custom/{TASK}\.yaml removed"):
        _run(bench, tmp_path, tasks=[TASK], config={"pipelines": pipelines})
    assert len(read_jsonl(tmp_path / "run/predictions/cot.jsonl")) == written  # nothing mixed

    _run(bench, tmp_path, tasks=[TASK], config={"pipelines": pipelines}, allow_changed=True)
    manifest = _manifest(tmp_path)
    assert manifest["sessions"][-1]["changed"] == {
        "cot": [f"prompt file cot/custom/{TASK}.yaml removed"]
    }
    assert manifest["fingerprints"]["cot"]["prompt_files"][f"cot/custom/{TASK}.yaml"] is None


def test_a_task_prompt_file_added_for_a_task_already_run_refuses_the_resume(
    tmp_path: Path,
) -> None:
    bench = rf.make_benchmark(tmp_path / "bench", n=8)
    root, task_file = _custom_variant(tmp_path, task_file=False)
    pipelines = _custom_pipelines(bench, tmp_path, root)
    assert _stop_midway(bench, tmp_path, pipelines) > 0
    stored = _manifest(tmp_path)["fingerprints"]["cot"]["prompt_files"]
    assert stored[f"cot/custom/{TASK}.yaml"] is None  # looked up, absent
    assert "cot/custom/group_grounding.yaml" not in stored  # a task not run is not looked up

    shutil.copy(root / f"cot/structured/{TASK}.yaml", task_file)
    with pytest.raises(
        SetupError, match=rf"prompt file cot/custom/{TASK}\.yaml added for a task already run"
    ):
        _run(bench, tmp_path, tasks=[TASK], config={"pipelines": pipelines})

    # a task run for the first time reads its own file: no change of the pipeline
    task_file.unlink()
    shutil.copy(
        root / "cot/structured/group_grounding.yaml", root / "cot/custom/group_grounding.yaml"
    )
    _run(bench, tmp_path, config={"pipelines": pipelines}, allow_changed=True)
    session = _manifest(tmp_path)["sessions"][-1]
    assert session["selection_changed"] == ["tasks ['common_object'] -> None"]
    assert "changed" not in session


@pytest.mark.slow
def test_the_qwen_grounder_prompt_is_fingerprinted_where_the_adapter_reads_it(
    tmp_path: Path, tiny_qwen_paths: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the grounder reads $COT_GROUND_PROMPTS/ground/<family>.txt; the pipeline's own prompt
    # folder (a second copy) plays no part in it
    grounding = tmp_path / "grounding-prompts"
    shutil.copytree(prompts_dir(), grounding)
    monkeypatch.setenv("COT_GROUND_PROMPTS", str(grounding))
    pipeline_root = tmp_path / "pipeline-prompts"
    shutil.copytree(prompts_dir(), pipeline_root)
    bench = rf.make_benchmark(tmp_path / "bench", n=2)
    qwen = {
        "adapter": "qwen-vl-grounder",
        "path": str(tiny_qwen_paths["qwen2_5_vl"]),
        "device": "cpu",
        "dtype": "float32",
        "min_pixels": 3136,
        "max_pixels": 12544,
        "max_new_tokens": 4,
    }
    config = rf.experiment(bench, tmp_path, tmp_path)
    config["models"]["grounder"] = qwen
    config["pipelines"]["cot"]["prompts_dir"] = str(pipeline_root)
    del config["pipelines"]["e2e"]
    _run(bench, tmp_path, config={k: config[k] for k in ("models", "pipelines")})

    reads = build(
        "qwen-vl-grounder", ModelSettings(**{k: v for k, v in qwen.items() if k != "adapter"})
    )
    read_by_adapter = Path(reads.settings["prompt_file"]).resolve()
    assert read_by_adapter == (grounding / "ground/qwen2_5_vl.txt").resolve()
    stored = _manifest(tmp_path)["fingerprints"]["cot"]["prompt_files"]
    assert stored[str(read_by_adapter)] == file_sha256(read_by_adapter)
    assert not any(path.startswith("ground/") for path in stored)  # not the pipeline folder's

    read_by_adapter.write_text("Locate {phrase} and answer with its box.\n")
    with pytest.raises(SetupError, match=rf"\(prompt file {re.escape(str(read_by_adapter))}\)"):
        _run(bench, tmp_path, config={k: config[k] for k in ("models", "pipelines")})


def test_changed_ground_truth_settings_refuse_the_resume_unless_allowed(tmp_path: Path) -> None:
    bench = rf.make_benchmark(tmp_path / "bench", n=4)
    base = rf.experiment(bench, tmp_path, tmp_path)["benchmark"]
    _run(bench, tmp_path, limit=2)

    for key, value, shown in [
        ("answer_frame", "qwen1000", "benchmark.answer_frame unit -> qwen1000"),
        ("allow_outside_root", True, "benchmark.allow_outside_root False -> True"),
    ]:
        with pytest.raises(SetupError, match=rf"other benchmark settings \({shown}\)"):
            _run(bench, tmp_path, limit=2, config={"benchmark": {**base, key: value}})
    images = tmp_path / "moved"
    shutil.copytree(bench.parent, images)
    with pytest.raises(SetupError, match=rf"benchmark\.root {bench.parent} -> {images}"):
        _run(bench, tmp_path, limit=2, config={"benchmark": {**base, "root": str(images)}})
    assert len(read_jsonl(tmp_path / "run/predictions/cot.jsonl")) == 2
    assert _manifest(tmp_path)["benchmark"]["allow_outside_root"] is False

    changed = {**base, "answer_frame": "qwen1000"}
    _run(bench, tmp_path, limit=2, config={"benchmark": changed}, allow_changed=True)
    manifest = _manifest(tmp_path)
    assert manifest["sessions"][-1]["benchmark_changed"] == ["answer_frame unit -> qwen1000"]
    assert manifest["benchmark"]["answer_frame"] == "qwen1000"  # the latest session's


def _weights(folder: Path, seed: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text('{"model_type": "fake"}')
    (folder / "model.safetensors").write_bytes(seed * 4096)
    return folder


def test_each_session_records_its_code_packages_and_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import cot_ground.runner.manifest as manifest_module

    checkout = tmp_path / "checkout"
    checkout.mkdir()
    rf.git(checkout, "init", "-q")
    (checkout / "code.py").write_text("A = 1\n")
    rf.git(checkout, "add", "code.py")
    rf.git(checkout, "commit", "-q", "-m", "first")
    first = rf.git(checkout, "rev-parse", "HEAD")
    monkeypatch.setattr(manifest_module, "source_checkout", lambda: checkout)
    bench = rf.make_benchmark(tmp_path / "bench", n=4)
    models = rf.experiment(bench, tmp_path, tmp_path)["models"]
    models["reasoner"]["path"] = str(_weights(tmp_path / "weights", b"a"))
    _run(bench, tmp_path, config={"models": models})

    (checkout / "code.py").write_text("A = 2\n")
    rf.git(checkout, "commit", "-q", "-am", "second")
    second = rf.git(checkout, "rev-parse", "HEAD")
    monkeypatch.setattr(manifest_module, "__version__", "99.0")
    with caplog.at_level(logging.WARNING, logger="cot_ground"):
        _run(bench, tmp_path, config={"models": models})

    manifest = _manifest(tmp_path)
    one, two = manifest["sessions"]
    assert one["git"] == {"commit": first, "dirty": False, "changes": None}
    assert two["git"] == {"commit": second, "dirty": False, "changes": None} == manifest["git"]
    assert one["packages"]["cot-ground"] != "99.0" and two["packages"]["cot-ground"] == "99.0"
    assert (
        one["models"]["reasoner"]["weights_digest"] == two["models"]["reasoner"]["weights_digest"]
    )
    assert one["models"]["reasoner"]["path"] == str(tmp_path / "weights")
    assert two["environment_changed"] == [
        f"git commit {first} -> {second}",
        f"package cot-ground {one['packages']['cot-ground']} -> 99.0",
    ]
    assert "environment_changed" not in one
    assert f"git commit {first} -> {second}" in caplog.text and "other code" in caplog.text


def test_new_weights_in_the_same_folder_refuse_the_resume(tmp_path: Path) -> None:
    bench = rf.make_benchmark(tmp_path / "bench", n=4)
    models = rf.experiment(bench, tmp_path, tmp_path)["models"]
    weights = _weights(tmp_path / "weights", b"a")
    models["reasoner"]["path"] = str(weights)
    _run(bench, tmp_path, limit=2, config={"models": models})
    stored = _manifest(tmp_path)["fingerprints"]["cot"]["models_weights"]
    assert set(stored) == {"reasoner"}  # fakes without a path have no weights

    _weights(weights, b"b")  # a fine-tune saved over the same folder
    with pytest.raises(SetupError, match=r"pipeline 'cot' has changed .*model weights reasoner"):
        _run(bench, tmp_path, limit=2, config={"models": models})
    _run(bench, tmp_path, limit=2, config={"models": models}, allow_changed=True)
    session = _manifest(tmp_path)["sessions"][-1]
    assert session["changed"]["cot"][0].startswith("model weights reasoner (digest ")
    assert "e2e" not in session["changed"]
    assert any(
        c.startswith("model reasoner weights_digest ") for c in session["environment_changed"]
    )


def test_a_folder_written_before_these_records_resumes(tmp_path: Path) -> None:
    bench = rf.make_benchmark(tmp_path / "bench", n=4)
    models = rf.experiment(bench, tmp_path, tmp_path)["models"]
    models["reasoner"]["path"] = str(_weights(tmp_path / "weights", b"a"))
    rf.SIGINT_AT["fake-reasoner"] = 2
    assert _run(bench, tmp_path, config={"models": models}).interrupted
    rf.reset()
    # what an older version wrote: no weight digests, no absent prompt files, no
    # allow_outside_root, sessions appended only at their end, with no code or models
    folder = RunFolder(tmp_path / "run")
    old = folder.read_manifest()
    for fp in old["fingerprints"].values():
        del fp["models_weights"]
        fp["prompt_files"] = {p: h for p, h in fp["prompt_files"].items() if h is not None}
    del old["benchmark"]["allow_outside_root"]
    del old["models"]["reasoner"]["weights_digest"]
    old["sessions"] = [
        {k: v for k, v in s.items() if k not in ("status", "git", "packages", "models")}
        for s in old["sessions"]
    ]
    folder.write_manifest(old)

    _weights(tmp_path / "weights", b"b")  # unknowable for that folder: not a change
    summary = _run(bench, tmp_path, config={"models": models})
    assert summary.pipelines["cot"].done_before > 0 and summary.pipelines["e2e"].written == 4
    manifest = _manifest(tmp_path)
    assert [s.get("status") for s in manifest["sessions"]] == [None, "finished"]
    assert "changed" not in manifest["sessions"][-1]


KILLED = """
import json, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
import runner_fakes as rf
from cot_ground.runner.config import parse_config
from cot_ground.runner.run import run_experiment
rf.register_fakes()
config = rf.experiment(*map(Path, {args!r}))
config["models"] = json.loads({models!r})
run_experiment(parse_config(config))
"""


@pytest.mark.slow
def test_a_killed_session_stays_in_run_json_and_is_marked_killed(tmp_path: Path) -> None:
    bench = rf.make_benchmark(tmp_path / "bench", n=4)
    die = tmp_path / "die"
    die.write_text("once")  # the e2e model kills the process (SIGKILL) on its first call
    args = (str(bench), str(tmp_path / "run"), str(tmp_path / "cache"))
    models = rf.experiment(bench, tmp_path, tmp_path)["models"]
    models["e2e"]["options"]["die_file"] = str(die)
    code = KILLED.format(tests=str(REPO / "tests"), args=args, models=json.dumps(models))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == -9, done.stderr
    killed = json.loads((tmp_path / "run/run.json").read_text())["sessions"]
    assert len(killed) == 1 and killed[0]["status"] == "running" and killed[0]["ended"] is None
    assert killed[0]["pipelines"] == {"cot": {"records_before": 0}, "e2e": {"records_before": 0}}
    assert killed[0]["git"] and killed[0]["packages"]["cot-ground"]
    assert len(read_jsonl(tmp_path / "run/predictions/cot.jsonl")) == 4  # written by it

    summary = _run(bench, tmp_path, config={"models": models})  # the same command again
    assert summary.pipelines["cot"].written == 0 and summary.pipelines["e2e"].written == 4
    first, second = _manifest(tmp_path)["sessions"]
    assert first["status"] == "killed" and first["ended"] is None
    assert second["status"] == "finished" and second["ended"]
    assert second["pipelines"]["cot"]["records_before"] == 4
    assert second["pipelines"]["e2e"]["records_before"] == 0


def test_a_session_stopped_by_an_error_records_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cot_ground.runner.run as run_module

    bench = rf.make_benchmark(tmp_path / "bench", n=2)

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(run_module, "run_pipeline_examples", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        _run(bench, tmp_path)
    session = _manifest(tmp_path)["sessions"][-1]
    assert session["status"] == "failed" and session["error"] == "RuntimeError: disk full"
    assert session["ended"]


def test_a_hub_id_is_fingerprinted_from_its_cached_snapshot_without_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cot_ground.models.hf_loading import resolve_model_source
    from cot_ground.runner.fingerprint import local_model_folder, weights_digests

    cache = tmp_path / "hub"
    repo = cache / "models--tiny-org--model"
    for commit, seed in (("a" * 40, b"a"), ("b" * 40, b"b")):
        _weights(repo / "snapshots" / commit, seed)
    (repo / "refs").mkdir()
    (repo / "refs/main").write_text("a" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    config = {"models": {"qwen": {"path": "tiny-org/model"}, "served": {"adapter": "x"}}}

    assert local_model_folder("tiny-org/model") == resolve_model_source("tiny-org/model").path
    before = weights_digests(config)
    assert set(before) == {"qwen"}  # a model without weights has no digest
    (repo / "refs/main").write_text("b" * 40)  # the cache now holds a newer main
    assert weights_digests(config)["qwen"] != before["qwen"]
    # online, an id not cached is left out, not fetched
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert local_model_folder("tiny-org/not-cached") is None
    assert weights_digests({"models": {"m": {"path": "tiny-org/not-cached"}}}) == {}
