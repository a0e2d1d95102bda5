"""The whole runner on a small benchmark of real PNG files with scripted adapters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import runner_fakes as rf

from cot_ground.runner.config import parse_config
from cot_ground.runner.pipelines import SetupError
from cot_ground.runner.run import run_experiment
from cot_ground.runner.shard import merge_runs
from cot_ground.runner.store import RunFolder, RunFolderError, read_jsonl

pytestmark = pytest.mark.usefixtures("fakes")


@pytest.fixture
def bench(tmp_path: Path) -> Path:
    return rf.make_benchmark(tmp_path / "bench", n=12)


def _run(bench: Path, tmp: Path, out: str = "run", **kw):
    overrides = kw.pop("config", {})
    cfg = parse_config(rf.experiment(bench, tmp / out, tmp / "cache", **overrides))
    return run_experiment(cfg, **kw)


def _by_id(records: list[dict]) -> dict[str, dict]:
    return {r["example_id"]: r for r in records}


def _comparable(record: dict) -> tuple:
    return (record["image_index"], record["box"], record["status"], record["error"])


def test_run_writes_the_run_folder(bench: Path, tmp_path: Path) -> None:
    summary = _run(bench, tmp_path, batch_size=3)
    folder = RunFolder(tmp_path / "run")
    manifest = folder.read_manifest()
    assert manifest["benchmark"]["sha256"] and manifest["benchmark"]["answer_frame"] == "unit"
    assert manifest["config"]["pipelines"]["cot"]["reasoner"] == "reasoner"
    assert manifest["config"]["batch_size"] == 3
    assert manifest["packages"]["pydantic"] and "cuda" in manifest["device"]
    assert "commit" in manifest["git"] and manifest["ended"]
    assert len(folder.read_examples()) == 12 == manifest["n_examples"]
    assert folder.pipelines() == ["cot", "e2e"]
    cot = folder.read_predictions("cot")
    assert len(cot) == 12 and all(r["pipeline"] == "cot" for r in cot)
    # the fake grounder finds the red square exactly: every CoT answer matches the ground truth
    examples = {e["id"]: e for e in folder.read_examples()}
    for r in cot:
        assert r["box"] == pytest.approx(examples[r["example_id"]]["gt_box"])
        assert [s["node"] for s in r["trace"]][:3] == [
            "select_and_describe",
            "parse_selection",
            "ground",
        ]
    assert summary.pipelines["cot"].written == 12


def test_resume_after_a_kill_mid_line(bench: Path, tmp_path: Path) -> None:
    _run(bench, tmp_path, config={"cache": {"enabled": False}})
    full = read_jsonl(tmp_path / "run/predictions/cot.jsonl")
    # simulate `kill -9` during a write: keep 7 whole lines and half of the 8th
    path = tmp_path / "run/predictions/cot.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:7]) + lines[7][: len(lines[7]) // 2])
    rf.reset()

    summary = _run(bench, tmp_path, config={"cache": {"enabled": False}})

    assert summary.pipelines["cot"].done_before == 7
    assert summary.pipelines["cot"].written == 5
    assert summary.pipelines["e2e"].written == 0
    assert sum(rf.calls_of("fake-reasoner")) == 5  # only the lost examples ran again
    assert rf.calls_of("fake-e2e") == []
    text = path.read_text()
    assert text.endswith("\n")
    records = [json.loads(line) for line in text.splitlines()]  # every line is whole JSON
    ids = [r["example_id"] for r in records]
    assert len(ids) == len(set(ids)) == 12
    assert {i: _comparable(r) for i, r in _by_id(records).items()} == {
        i: _comparable(r) for i, r in _by_id(full).items()
    }
    sessions = RunFolder(tmp_path / "run").read_manifest()["sessions"]
    assert len(sessions) == 2 and sessions[1]["pipelines"]["cot"]["done_before"] == 7

    rf.reset()
    again = _run(bench, tmp_path)
    assert again.pipelines["cot"].written == 0 and rf.CALLS == []


def test_ctrl_c_stops_after_flushing_and_resumes(bench: Path, tmp_path: Path) -> None:
    rf.SIGINT_AT["fake-reasoner"] = 2
    summary = _run(bench, tmp_path, batch_size=2)
    assert summary.interrupted
    written = read_jsonl(tmp_path / "run/predictions/cot.jsonl")
    assert 0 < len(written) < 12
    assert summary.pipelines["cot"].written == len(written)
    assert "e2e" not in summary.pipelines  # later pipelines do not start
    assert RunFolder(tmp_path / "run").read_manifest()["sessions"][0]["interrupted"]

    rf.reset()
    done = _run(bench, tmp_path, batch_size=2)
    assert not done.interrupted
    assert len(read_jsonl(tmp_path / "run/predictions/cot.jsonl", key="example_id")) == 12
    assert done.pipelines["cot"].done_before == len(written)


def test_resume_refuses_a_changed_pipeline(bench: Path, tmp_path: Path) -> None:
    _run(bench, tmp_path, limit=2)
    models = rf.experiment(bench, tmp_path, tmp_path)["models"]
    models["grounder"]["options"] = {"shrink": 1.0}
    with pytest.raises(SetupError, match=r"pipeline 'cot' has changed .*options\.shrink"):
        _run(bench, tmp_path, config={"models": models})
    # a new pipeline may join an existing run folder
    pipelines = rf.experiment(bench, tmp_path, tmp_path)["pipelines"]
    pipelines["cot_oracle"] = {**pipelines["cot"], "mode": "oracle-image"}
    summary = _run(bench, tmp_path, limit=2, config={"pipelines": pipelines})
    assert summary.pipelines["cot_oracle"].written == 2
    assert summary.pipelines["cot"].written == 0
    assert RunFolder(tmp_path / "run").pipelines() == ["cot", "cot_oracle", "e2e"]


def test_second_run_changing_only_the_grounder_makes_no_reasoner_call(
    bench: Path, tmp_path: Path
) -> None:
    first = _run(bench, tmp_path, out="a", batch_size=4)
    assert sum(rf.calls_of("fake-reasoner")) == 12
    assert first.cache_misses == 12 and first.cache_hits == 0
    rf.reset()

    models = rf.experiment(bench, tmp_path, tmp_path)["models"]
    models["grounder"]["options"] = {"shrink": 1.0}  # a different step 2
    second = _run(bench, tmp_path, out="b", batch_size=4, config={"models": models})

    assert rf.calls_of("fake-reasoner") == []
    assert sum(rf.calls_of("fake-grounder")) == 12
    assert second.cache_hits == 12 and second.cache_misses == 0
    records = read_jsonl(tmp_path / "b/predictions/cot.jsonl")
    assert all(r["trace"][0]["cached"] for r in records)
    a = _by_id(read_jsonl(tmp_path / "a/predictions/cot.jsonl"))
    assert all(r["box"] != a[r["example_id"]]["box"] for r in records)  # step 2 did change


def test_sampling_reasoner_is_never_cached(bench: Path, tmp_path: Path) -> None:
    models = rf.experiment(bench, tmp_path, tmp_path)["models"]
    models["reasoner"]["do_sample"] = True
    _run(bench, tmp_path, out="a", config={"models": models})
    _run(bench, tmp_path, out="b", config={"models": models})
    assert sum(rf.calls_of("fake-reasoner")) == 24


def test_shards_merged_equal_one_run(bench: Path, tmp_path: Path) -> None:
    _run(bench, tmp_path, out="whole", batch_size=2, config={"cache": {"enabled": False}})
    shard_dirs = []
    for k in (1, 2, 3):
        _run(
            bench,
            tmp_path,
            out=f"shard{k}",
            shard=(k, 3),
            batch_size=2,
            config={"cache": {"enabled": False}},
        )
        shard_dirs.append(tmp_path / f"shard{k}")
    sizes = [len(RunFolder(d).read_examples()) for d in shard_dirs]
    assert sorted(sizes) == [4, 4, 4]

    merged = merge_runs(shard_dirs, tmp_path / "merged")
    assert merged["missing_shards"] == [] and merged["n_examples"] == 12
    whole, joined = RunFolder(tmp_path / "whole"), RunFolder(tmp_path / "merged")
    assert {e["id"] for e in whole.read_examples()} == {e["id"] for e in joined.read_examples()}
    for pipeline in ("cot", "e2e"):
        w = {i: _comparable(r) for i, r in _by_id(whole.read_predictions(pipeline)).items()}
        m = {i: _comparable(r) for i, r in _by_id(joined.read_predictions(pipeline)).items()}
        assert w == m and len(w) == 12

    with pytest.raises(RunFolderError, match="already holds a run"):
        merge_runs(shard_dirs, tmp_path / "merged")
    with pytest.raises(RunFolderError, match="given twice"):
        merge_runs([shard_dirs[0], shard_dirs[0]], tmp_path / "twice")
    partial = merge_runs(shard_dirs[:2], tmp_path / "partial")
    assert partial["missing_shards"] == [3]

    # shards whose model folders held other weights (digests differ) are not one run
    for digest, shard in zip("ab", shard_dirs[:2], strict=True):
        manifest = json.loads((shard / "run.json").read_text())
        manifest["fingerprints"]["cot"]["models_weights"] = {"reasoner": digest * 64}
        (shard / "run.json").write_text(json.dumps(manifest))
    with pytest.raises(RunFolderError, match=r"different prompt files or weights.*model weights"):
        merge_runs(shard_dirs[:2], tmp_path / "other-weights")


@pytest.mark.parametrize("batch_size", [1, 3, 4])
def test_batch_size_bounds_every_adapter_call(bench: Path, tmp_path: Path, batch_size: int) -> None:
    summary = _run(bench, tmp_path, batch_size=batch_size, config={"cache": {"enabled": False}})
    for name in ("fake-reasoner", "fake-grounder", "fake-e2e"):
        sizes = rf.calls_of(name)
        assert sum(sizes) == 12, name
        assert max(sizes) == batch_size, name
    # 12 examples in full batches: 12 / N calls per adapter
    assert len(rf.calls_of("fake-reasoner")) == -(-12 // batch_size)
    assert summary.pipelines["cot"].batch_sizes["fake-reasoner.reason"] == rf.calls_of(
        "fake-reasoner"
    )


def test_failures_are_recorded_per_example_and_the_run_goes_on(tmp_path: Path) -> None:
    bench = rf.make_benchmark(tmp_path / "bench", n=10, corrupt=4)
    models = rf.experiment(bench, tmp_path, tmp_path)["models"]
    models["grounder"]["options"] = {"raise_on": ["item007_1"]}
    summary = _run(bench, tmp_path, batch_size=4, config={"models": models})
    cot = _by_id(read_jsonl(tmp_path / "run/predictions/cot.jsonl"))
    examples = {
        Path(e["images"][1]).stem: e["id"] for e in RunFolder(tmp_path / "run").read_examples()
    }
    assert len(cot) == 10 and summary.pipelines["cot"].failed == 2
    broken = cot[examples["item004_1"]]["error"]
    assert broken["category"] == "image_error" and "item004_1.png" in broken["message"]
    raised = cot[examples["item007_1"]]["error"]
    assert raised["category"] == "model_error" and "scripted failure" in raised["message"]
    ok = [r for r in cot.values() if r["error"] is None]
    assert len(ok) == 8 and all(r["status"] == "ok" for r in ok)
    e2e = read_jsonl(tmp_path / "run/predictions/e2e.jsonl")
    assert len(e2e) == 10 and sum(r["error"] is not None for r in e2e) == 1


def test_setup_failure_stops_before_any_work(bench: Path, tmp_path: Path) -> None:
    models = rf.experiment(bench, tmp_path, tmp_path)["models"]
    models["e2e"]["path"] = str(tmp_path / "no-such-model")
    with pytest.raises(SetupError, match=r"models\.e2e .*no-such-model"):
        _run(bench, tmp_path, config={"models": models})
    assert rf.CALLS == []
    assert not (tmp_path / "run").exists()

    models = rf.experiment(bench, tmp_path, tmp_path)["models"]
    models["grounder"]["adapter"] = "fake-reasoner"
    with pytest.raises(SetupError, match=r"pipelines\.cot\.grounder: .*a reasoner"):
        _run(bench, tmp_path, config={"models": models})

    with pytest.raises(SetupError, match="benchmark file not found"):
        _run(tmp_path / "missing.json", tmp_path)


def test_adapter_by_import_string(bench: Path, tmp_path: Path) -> None:
    models = rf.experiment(bench, tmp_path, tmp_path)["models"]
    models["reasoner"]["adapter"] = "runner_fakes:build_reasoner"
    _run(bench, tmp_path, limit=3, config={"models": models})
    assert sum(rf.calls_of("fake-reasoner")) == 3

    models["reasoner"]["adapter"] = "runner_fakes:no_such_factory"
    with pytest.raises(SetupError, match="no_such_factory"):
        _run(bench, tmp_path, out="other", config={"models": models})


def test_limit_and_tasks_select_examples(bench: Path, tmp_path: Path) -> None:
    summary = _run(bench, tmp_path, limit=5, tasks=["group_grounding"])
    examples = RunFolder(tmp_path / "run").read_examples()
    assert len(examples) == 5 and {e["task"] for e in examples} == {"group_grounding"}
    assert summary.n_examples == 5
