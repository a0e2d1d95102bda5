"""Failures you can retry and resumes you can trust: --retry-failed replaces failed lines, a
locked or corrupt cache is a cache_error or moved aside (never a model_error), a changed prompt
refuses the resume unless allowed, a killed merge leaves no run, and report needs run.json."""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
from pathlib import Path

import pytest
import runner_fakes as rf
import yaml
from PIL import Image
from typer.testing import CliRunner

from cot_ground.cli.app import _register_commands, app
from cot_ground.paths import prompts_dir
from cot_ground.runner.cache import DB_NAME
from cot_ground.runner.config import parse_config
from cot_ground.runner.fingerprint import prompt_files
from cot_ground.runner.pipelines import SetupError
from cot_ground.runner.resume import config_dump
from cot_ground.runner.retry import failure_lines, retry_command
from cot_ground.runner.run import run_experiment
from cot_ground.runner.shard import merge_runs
from cot_ground.runner.store import JsonlAppender, RunFolder, read_jsonl

_register_commands()


pytestmark = pytest.mark.usefixtures("fakes")


def _run(bench: Path, tmp: Path, out: str = "run", **kw):
    cfg = parse_config(rf.experiment(bench, tmp / out, tmp / "cache", **kw.pop("config", {})))
    return run_experiment(cfg, **kw)


def _errors(path: Path) -> list[str | None]:
    return [(r["error"] or {}).get("category") for r in read_jsonl(path)]


def test_retry_failed_reruns_only_failed_records_and_replaces_their_lines(
    tmp_path: Path,
) -> None:
    bench = rf.make_benchmark(tmp_path / "bench", n=8, corrupt=3)
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump(rf.experiment(bench, tmp_path / "run", tmp_path / "cache")))
    cli = CliRunner()
    first = cli.invoke(app, ["run", str(config)])
    assert first.exit_code == 0, first.output
    cot = tmp_path / "run/predictions/cot.jsonl"
    before = _errors(cot)
    assert before.count("image_error") == 1
    bad_line = before.index("image_error")
    lines = failure_lines(tmp_path / "run")
    assert lines[0] == "cot: 1 failed (1 image_error)"
    command = lines[-1].split(": ", 1)[1]
    assert command == f"cot-ground run {config.resolve()} --out {tmp_path / 'run'} --retry-failed"

    # the user fixes the picture, then types the suggested command
    Image.open(bench.parent / "images/item004_1.png").save(bench.parent / "images/item003_1.png")
    rf.reset()
    again = cli.invoke(app, command.split()[1:])
    assert again.exit_code == 0, again.output
    assert sum(rf.calls_of("fake-reasoner")) == 1 and sum(rf.calls_of("fake-e2e")) == 1
    after = read_jsonl(cot)
    assert len(after) == 8 and len({r["example_id"] for r in after}) == 8
    assert _errors(cot) == [None] * 8 and after[bad_line]["status"] == "ok"  # replaced in place
    assert not Path(f"{cot}.retry").exists()
    session = RunFolder(tmp_path / "run").read_manifest()["sessions"][-1]
    assert session["retry_failed"] == ["cache_error", "image_error", "model_error"]
    assert session["pipelines"]["cot"]["retried"] == 1
    assert failure_lines(tmp_path / "run") == []


def test_a_retry_killed_before_closing_is_applied_on_the_next_open(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    with JsonlAppender(path, "example_id") as store:
        for rid in "abc":
            store.append({"example_id": rid, "error": {"category": "model_error"}})
    store = JsonlAppender(path, "example_id")
    store.replace({"b"})
    assert "b" not in store and store.append({"example_id": "b", "error": None})
    store._side.flush()
    # killed here: close() never runs; the main file still has the old line, readers of the
    # run folder already see the new one
    assert read_jsonl(path)[1]["error"] == {"category": "model_error"}
    folder = RunFolder(tmp_path)
    (tmp_path / "predictions").mkdir()
    shutil.copy(path, folder.predictions_path("p"))
    shutil.copy(f"{path}.retry", f"{folder.predictions_path('p')}.retry")
    assert [r["error"] for r in folder.read_predictions("p")][1] is None
    with JsonlAppender(path, "example_id") as reopened:
        assert reopened.ids == {"a", "b", "c"}
    assert [r["example_id"] for r in read_jsonl(path)] == ["a", "b", "c"]
    assert read_jsonl(path)[1]["error"] is None and not Path(f"{path}.retry").exists()


def test_a_locked_cache_is_a_cache_error_and_retry_fixes_it(tmp_path: Path) -> None:
    bench = rf.make_benchmark(tmp_path / "bench", n=4)
    db = tmp_path / "cache" / DB_NAME
    db.parent.mkdir()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("CREATE TABLE step1 (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL)")
    holder.execute("BEGIN EXCLUSIVE")  # another process writing the shared cache
    cache = {"dir": str(tmp_path / "cache"), "timeout_s": 0.05}
    try:
        summary = _run(bench, tmp_path, config={"cache": cache})
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    records = read_jsonl(tmp_path / "run/predictions/cot.jsonl")
    assert summary.pipelines["cot"].failed == 4
    for record in records:
        assert record["error"]["category"] == "cache_error"
        assert str(db) in record["error"]["message"] and "--no-cache" in record["error"]["message"]
    assert _errors(tmp_path / "run/predictions/e2e.jsonl") == [None] * 4

    again = _run(bench, tmp_path, config={"cache": cache}, retry_failed=["cache_error"])
    assert again.pipelines["cot"].retried == 4 and again.pipelines["e2e"].written == 0
    assert _errors(tmp_path / "run/predictions/cot.jsonl") == [None] * 4


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_corrupt_cache_is_moved_aside_with_a_warning(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    bench = rf.make_benchmark(tmp_path / "bench", n=4)
    db = tmp_path / "cache" / DB_NAME
    if damage == "garbage":
        db.parent.mkdir()
        db.write_bytes(b"this is not a database" * 50)
    else:
        _run(bench, tmp_path, out="first")  # a real cache, then cut to a third
        db.write_bytes(db.read_bytes()[: db.stat().st_size // 3])
    with caplog.at_level(logging.WARNING, logger="cot_ground"):
        summary = _run(bench, tmp_path)
    assert summary.pipelines["cot"].failed == 0 and summary.cache_misses == 4
    aside = list(db.parent.glob(f"{DB_NAME}.corrupt-*"))
    assert len(aside) == 1 and str(aside[0]) in caplog.text and "moved it aside" in caplog.text


def test_a_changed_prompt_file_refuses_the_resume_unless_allowed(tmp_path: Path) -> None:
    bench = rf.make_benchmark(tmp_path / "bench", n=6)
    prompts = tmp_path / "prompts"
    shutil.copytree(prompts_dir(), prompts)
    pipelines = rf.experiment(bench, tmp_path, tmp_path)["pipelines"]
    pipelines["cot"]["prompts_dir"] = str(prompts)
    _run(bench, tmp_path, limit=2, config={"pipelines": pipelines})
    stored = RunFolder(tmp_path / "run").read_manifest()["fingerprints"]["cot"]["prompt_files"]
    assert "cot/structured/_all.yaml" in stored

    edited = prompts / "cot/structured/_all.yaml"
    edited.write_text(edited.read_text() + "\n# reworded\n")
    with pytest.raises(SetupError, match=r"prompt file cot/structured/_all\.yaml"):
        _run(bench, tmp_path, config={"pipelines": pipelines})
    assert len(read_jsonl(tmp_path / "run/predictions/cot.jsonl")) == 2  # nothing mixed in

    summary = _run(bench, tmp_path, config={"pipelines": pipelines}, allow_changed=True)
    assert summary.pipelines["cot"].written == 4
    manifest = RunFolder(tmp_path / "run").read_manifest()
    assert manifest["sessions"][-1]["changed"] == {"cot": ["prompt file cot/structured/_all.yaml"]}
    new_hash = manifest["fingerprints"]["cot"]["prompt_files"]["cot/structured/_all.yaml"]
    assert new_hash != stored["cot/structured/_all.yaml"]


def test_the_fingerprint_covers_the_multi_image_step2_prompts(tmp_path: Path) -> None:
    bench = rf.make_benchmark(tmp_path / "bench", n=2)
    raw = rf.experiment(bench, tmp_path, tmp_path)
    raw["pipelines"]["cot"]["mode"] = "multi-image"
    files = prompt_files(config_dump(parse_config(raw)), "cot", {"diff"})
    assert "multi-image/default/_all.yaml" in files and "cot/structured/_all.yaml" in files


@pytest.mark.slow
def test_a_killed_merge_leaves_no_run_and_report_needs_run_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = rf.make_benchmark(tmp_path / "bench", n=4)
    shards = []
    for k in (1, 2):
        _run(bench, tmp_path, out=f"s{k}", shard=(k, 2))
        shards.append(tmp_path / f"s{k}")
    real = RunFolder.read_predictions

    def killed(self, pipeline):
        if pipeline == "e2e":
            raise KeyboardInterrupt  # the merge is stopped part-way
        return real(self, pipeline)

    monkeypatch.setattr(RunFolder, "read_predictions", killed)
    with pytest.raises(KeyboardInterrupt):
        merge_runs(shards, tmp_path / "merged")
    monkeypatch.setattr(RunFolder, "read_predictions", real)
    assert not (tmp_path / "merged").exists()
    assert [p.name for p in tmp_path.iterdir() if "merging" in p.name] == []
    merged = merge_runs(shards, tmp_path / "merged")
    assert merged["n_examples"] == 4 and set(merged["fingerprints"]) == {"cot", "e2e"}

    # a folder with predictions but no run.json (what a half-written folder looks like)
    half = tmp_path / "half"
    shutil.copytree(tmp_path / "s1", half)
    (half / "run.json").unlink()
    res = CliRunner().invoke(app, ["report", str(half)])
    assert res.exit_code == 1 and "no run.json" in res.output


def test_report_prints_failures_and_the_retry_command(tmp_path: Path) -> None:
    bench = rf.make_benchmark(tmp_path / "bench", n=6, corrupt=2)
    _run(bench, tmp_path)
    res = CliRunner().invoke(app, ["report", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    assert "cot: 1 failed (1 image_error)" in out and "e2e: 1 failed (1 image_error)" in out
    assert f"--out {tmp_path / 'run'} --retry-failed" in out
    assert json.loads((tmp_path / "run/run.json").read_text())["config_file"] is None


def test_retry_categories_are_checked_on_the_command_line(tmp_path: Path) -> None:
    bench = rf.make_benchmark(tmp_path / "bench", n=2)
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump(rf.experiment(bench, tmp_path / "run", tmp_path / "cache")))
    cli = CliRunner()
    res = cli.invoke(app, ["run", str(config), "--retry-failed", "model_eror"])
    assert res.exit_code == 2 and "unknown category model_eror" in res.output
    res = cli.invoke(app, ["run", str(config), "no_box"])
    assert res.exit_code == 2 and "categories follow --retry-failed" in res.output
    assert rf.CALLS == []
    res = cli.invoke(app, ["run", str(config), "--retry-failed", "no_box", "format_failure"])
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())  # the table counts this session, the lines the folder
    assert "failed now" in out and "count the failed records of the whole run folder" in out
    session = RunFolder(tmp_path / "run").read_manifest()["sessions"][-1]
    assert session["retry_failed"] == ["format_failure", "no_box"]


def test_retry_command_reproduces_the_recorded_selection(tmp_path: Path) -> None:
    bench = rf.make_benchmark(tmp_path / "bench", n=8, corrupt=3)
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump(rf.experiment(bench, tmp_path / "run", tmp_path / "cache")))
    cli = CliRunner()
    first = cli.invoke(app, ["run", str(config), "--sample", "5", "--seed", "3"])
    assert first.exit_code == 0, first.output
    manifest = RunFolder(tmp_path / "run").read_manifest()
    picked = {e["id"] for e in RunFolder(tmp_path / "run").read_examples()}
    assert len(picked) == 5
    command = retry_command(manifest, tmp_path / "run", ["image_error"])
    assert "--sample 5 --seed 3 --retry-failed" in command

    rf.reset()
    again = cli.invoke(app, command.split()[1:])
    assert again.exit_code == 0, again.output
    after = RunFolder(tmp_path / "run")
    assert {e["id"] for e in after.read_examples()} == picked  # the same 5 examples, no more
    assert after.read_manifest()["benchmark"]["sample"] == 5
    assert len(read_jsonl(tmp_path / "run/predictions/cot.jsonl")) == 5


def test_retry_command_keeps_per_task_shard_and_unit_floats(tmp_path: Path) -> None:
    bench = rf.make_benchmark(tmp_path / "bench", n=4)
    experiment = rf.experiment(bench, tmp_path / "run", tmp_path / "cache")
    experiment["models"]["box"] = {"adapter": "qwen-vl-grounder", "path": "unused"}
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump(experiment))
    cfg = parse_config(experiment).with_unit_floats("fraction")
    manifest = {
        "config_file": str(config),
        "config": cfg.model_dump(mode="json"),
        "benchmark": {"tasks": ["common_object"], "per_task": 2, "sample": None, "seed": 0},
        "shard": {"k": 2, "n": 3},
    }
    command = retry_command(manifest, tmp_path / "run", ["image_error"])
    assert command.endswith(
        "--tasks common_object --per-task 2 --shard 2/3 --unit-floats fraction --retry-failed"
    )
    # the config file itself says fraction: no override to repeat
    config.write_text(yaml.safe_dump({**experiment, "unit_floats": "fraction"}))
    assert "--unit-floats" not in retry_command(manifest, tmp_path / "run", ["image_error"])


def test_resume_with_another_selection_is_refused_unless_allowed(tmp_path: Path) -> None:
    bench = rf.make_benchmark(tmp_path / "bench", n=8)
    base = rf.experiment(bench, tmp_path, tmp_path)["benchmark"]

    def sampled(seed: int) -> dict:
        return {"benchmark": {**base, "sample": 3, "seed": seed}}

    _run(bench, tmp_path, config=sampled(1))
    with pytest.raises(SetupError, match=r"another selection of examples \(sample 3 -> None") as e:
        _run(bench, tmp_path)
    assert "--sample 3 --seed 1" in str(e.value)
    with pytest.raises(SetupError, match=r"seed 1 -> 2"):
        _run(bench, tmp_path, config=sampled(2))
    with pytest.raises(SetupError, match=r"tasks None -> \['common_object'\]"):
        _run(bench, tmp_path, tasks=["common_object"], config=sampled(1))
    _run(bench, tmp_path, config=sampled(1))  # the same selection resumes
    manifest = RunFolder(tmp_path / "run").read_manifest()
    assert manifest["benchmark"]["sample"] == 3 and len(manifest["sessions"]) == 2

    _run(bench, tmp_path, allow_changed=True)
    manifest = RunFolder(tmp_path / "run").read_manifest()
    assert manifest["sessions"][-1]["selection_changed"] == ["sample 3 -> None", "seed 1 -> None"]
