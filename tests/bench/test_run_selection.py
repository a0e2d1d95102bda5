"""Shaping a run: --per-task N (first N of every task) and --sample N --seed S (stratified by
task, reproducible), recorded in run.json; at most one of --limit / --per-task / --sample."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cot_ground.bench import BenchmarkError, load_benchmark
from cot_ground.bench.selection import stratified_counts, stratified_sample
from cot_ground.cli.app import _register_commands, app
from cot_ground.paths import experiments_dir

_register_commands()


@pytest.fixture(scope="module")
def lite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cot_ground.lite import generate_lite

    out = tmp_path_factory.mktemp("lite")
    generate_lite(out, per_task=4)
    return out


def _load(lite: Path, **kwargs):
    return load_benchmark(lite / "MIG_data.json", root=lite, answer_frame="unit", **kwargs)


def test_per_task_keeps_the_first_n_of_every_task_in_file_order(lite: Path) -> None:
    full = _load(lite)
    picked = _load(lite, per_task=2)
    counts = Counter(e.task for e in picked.examples)
    assert set(counts.values()) == {2} and set(counts) == {e.task for e in full.examples}
    for task in counts:
        first = [e.id for e in full.examples if e.task == task][:2]
        assert [e.id for e in picked.examples if e.task == task] == first
    ids = [e.id for e in full.examples]
    positions = [ids.index(e.id) for e in picked.examples]
    assert positions == sorted(positions)


def test_stratified_sample_is_proportional_reproducible_and_seeded(lite: Path) -> None:
    full = _load(lite).examples
    a = stratified_sample(full, 9, seed=1)
    assert [e.id for e in a] == [e.id for e in stratified_sample(full, 9, seed=1)]
    assert len(a) == 9 and len({e.id for e in a}) == 9
    counts = Counter(e.task for e in a)
    assert max(counts.values()) - min(counts.get(t, 0) for t in {e.task for e in full}) <= 1
    seeds = {tuple(e.id for e in stratified_sample(full, 9, seed=s)) for s in range(5)}
    assert len(seeds) > 1  # the seed changes the draw
    assert len(stratified_sample(full, 10_000, seed=0)) == len(full)


def test_stratified_counts_split_by_size_with_largest_remainders() -> None:
    assert stratified_counts({"diff": 10, "region": 30}, 4) == {"diff": 1, "region": 3}
    counts = stratified_counts({"diff": 5, "region": 5, "multi_view": 5}, 4)
    assert sum(counts.values()) == 4 and sorted(counts.values()) == [1, 1, 2]


def test_one_selection_at_a_time(lite: Path) -> None:
    with pytest.raises(BenchmarkError, match="at most one of limit, per_task and sample"):
        _load(lite, limit=3, per_task=1)


@pytest.mark.slow
def test_run_cli_records_the_selection_in_run_json(
    lite: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIG_LITE_DIR", str(lite))
    monkeypatch.chdir(tmp_path)
    config = str(experiments_dir() / "lite_classical.yaml")
    out = tmp_path / "sampled"
    done = CliRunner().invoke(
        app, ["run", config, "--sample", "5", "--seed", "7", "--out", str(out), "--no-cache"]
    )
    assert done.exit_code == 0, done.output
    manifest = json.loads((out / "run.json").read_text(encoding="utf-8"))
    bench = manifest["benchmark"]
    assert (bench["sample"], bench["seed"], bench["per_task"], bench["limit"]) == (5, 7, None, None)
    assert manifest["config"]["benchmark"]["sample"] == 5
    lines = (out / "examples.jsonl").read_text(encoding="utf-8").splitlines()
    expected = stratified_sample(_load(lite).examples, 5, seed=7)
    assert [json.loads(line)["id"] for line in lines] == [e.id for e in expected]

    per_task = tmp_path / "per-task"
    done = CliRunner().invoke(
        app, ["run", config, "--per-task", "1", "--out", str(per_task), "--no-cache"]
    )
    assert done.exit_code == 0, done.output
    assert json.loads((per_task / "run.json").read_text())["benchmark"]["per_task"] == 1
    tasks = [json.loads(x)["task"] for x in (per_task / "examples.jsonl").read_text().splitlines()]
    assert sorted(tasks) == sorted(set(tasks))

    both = CliRunner().invoke(app, ["run", config, "--limit", "2", "--per-task", "1"])
    assert both.exit_code == 2
    assert "at most one of --limit, --per-task and --sample" in both.output  # the options named


def test_benchmark_has_len_and_a_short_repr(lite: Path) -> None:
    bench = _load(lite)
    assert len(bench) == len(bench.examples) == 28
    text = repr(bench)
    assert text.startswith("Benchmark('MIG_data.json', 28 examples, sha256=")
    assert len(text) < 120 and bench.examples[0].question not in text


def test_a_sample_larger_than_the_benchmark_warns(lite: Path, caplog) -> None:
    examples = _load(lite).examples
    with caplog.at_level(logging.WARNING, logger="cot_ground.bench.selection"):
        assert len(stratified_sample(examples, 5, seed=0)) == 5 and not caplog.records
        taken = stratified_sample(examples, 10_000, seed=0)
    assert len(taken) == len(examples)
    assert f"sample=10000 asks for more than the {len(examples)} example(s)" in caplog.text
