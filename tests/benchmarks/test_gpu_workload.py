"""The GPU workload's inputs, time budget, summary and recorded command, checked on CPU: the data
and budget logic without models, the whole script with ``--smoke`` (shrunken models; no timing
is asserted)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # `benchmarks` lives at the root

from benchmarks.gpu_workload import Workload, _table, main, parse_args, summarize
from benchmarks.live_report import LiveReport
from benchmarks.workloads import MODEL_TASKS, lite_benchmark, upscaled_copy
from cot_ground.records import file_sha256

TASKS = MODEL_TASKS[:2]  # few pictures: the data tests stay fast


def _sides(folder: Path) -> set[int]:
    """Long sides of every picture under ``folder``."""
    out = set()
    for path in folder.rglob("*.jpg"):
        with Image.open(path) as im:
            out.add(max(im.size))
    return out


def _fingerprint(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): file_sha256(p) for p in folder.rglob("*") if p.is_file()}


def test_pictures_are_resized_into_a_copy_per_side_and_the_build_is_never_edited(
    tmp_path: Path,
) -> None:
    lite = tmp_path / "lite"
    data = lite_benchmark(lite, len(TASKS), TASKS)  # one item per task
    pristine = _fingerprint(lite)
    at_300 = lite_benchmark(lite, len(TASKS), TASKS, image_side=300)
    at_256 = lite_benchmark(lite, len(TASKS), TASKS, image_side=256)
    assert at_300 == tmp_path / "lite-300px" / data.name
    assert at_256 == tmp_path / "lite-256px" / data.name
    assert _sides(at_300.parent) == {300} and _sides(at_256.parent) == {256}  # not 300 left over
    assert _fingerprint(lite) == pristine  # every picture resized from the build's own file
    assert at_256.read_bytes() == data.read_bytes()
    info = json.loads((at_256.parent / "lite_info.json").read_text())
    assert info["upscaled"]["long_side"] == 256 and info["data_sha256"] == file_sha256(data)
    copied = _fingerprint(at_256.parent)
    assert upscaled_copy(data, 256) == at_256 and _fingerprint(at_256.parent) == copied  # reused

    # a larger request rebuilds the build (no refusal) and the copy follows it
    bigger = lite_benchmark(lite, 2 * len(TASKS), TASKS, image_side=256)
    assert json.loads((lite / "lite_info.json").read_text())["per_task"] == 2
    assert bigger.read_bytes() == data.read_bytes()
    assert len(json.loads(bigger.read_text())) == 2 * len(TASKS)
    assert _sides(bigger.parent) == {256}


def test_a_build_resized_in_place_by_an_earlier_version_is_generated_again(
    tmp_path: Path,
) -> None:
    lite = tmp_path / "lite"
    data = lite_benchmark(lite, 1, TASKS)
    pristine = _fingerprint(lite)
    picture = next(lite.rglob("*.jpg"))
    with Image.open(picture) as im:
        im.resize((64, 64)).save(picture)  # what the old in-place upscaling left behind
    (lite / ".upscaled-64").write_text("ok\n")
    assert lite_benchmark(lite, 1, TASKS) == data  # used to raise "not a MIG-Lite folder"
    assert _fingerprint(lite) == pristine and not list(lite.glob(".upscaled-*"))


def test_the_upscaled_copy_never_replaces_a_folder_it_did_not_write(tmp_path: Path) -> None:
    data = lite_benchmark(tmp_path / "lite", 1, TASKS)
    foreign = tmp_path / "lite-128px"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="lite-128px exists but is not a resized copy"):
        upscaled_copy(data, 128)
    assert (foreign / "notes.txt").read_text() == "mine"


# ---------------------------------------------------------------- the budget covers reloads


class Started(Exception):
    """Raised by the fake loader: the phase got as far as loading models."""


def _workload(now: list[float], first_load: tuple[str, float], *argv: str) -> Workload:
    """A Workload on a fake clock (``now[0]`` seconds since the start) whose loader raises
    :class:`Started` and records what it was asked to load."""
    report = LiveReport(None, {})
    report.elapsed = lambda: now[0]  # type: ignore[method-assign]
    work = Workload(parse_args(["--smoke", "--budget-s", "100", *argv]), report)
    work.first_load = first_load
    work.rates = {"cot-seq": 1.0, "e2e-seq": 1.0, "cot": 4.0, "e2e": 4.0}  # ex/s
    work.loads = []

    def load(paths, dtype, n, batch, **qwen):
        work.loads.append((dtype, qwen))
        raise Started

    work.load = load
    return work


def _in_use() -> tuple[SimpleNamespace, SimpleNamespace]:
    """Stand-ins for the loaded adapters and their call timer (what a phase frees)."""
    return SimpleNamespace(adapters={}, examples=[0] * 4), SimpleNamespace(close=lambda: None)


def _skipped(work: Workload) -> list[str]:
    return [s["what"] for s in work.report.document.get("skipped", [])]


def test_the_float32_reload_starts_only_when_reload_and_check_fit_the_budget() -> None:
    # bf16 first load of 20 s: a float32 reload is estimated at 40 s, then the cot check
    # (1 warm-up + 2 sequential examples at 1 ex/s, 2 runner examples at 4 ex/s) 3.5 s
    now = [70.0]  # 30 s left
    work = _workload(now, ("bfloat16", 20.0), "--dtype", "bfloat16")
    in_use = _in_use()
    assert work.float32_check(None, *in_use) == in_use and work.loads == []  # nothing freed
    assert _skipped(work) == ["float32 check: reload, then cot warm-up, sequential, runner b=2"]
    assert work.report.document["skipped"][0]["estimate_s"] == pytest.approx(43.5)
    now[0] = 50.0  # 50 s left
    with pytest.raises(Started):
        work.float32_check(None, *_in_use())
    assert work.loads == [("float32", {})]
    # a float32 first load is not doubled: 23.5 s fits in 25
    now[0] = 75.0
    work = _workload(now, ("float32", 20.0), "--dtype", "bfloat16")
    with pytest.raises(Started):
        work.float32_check(None, *_in_use())


def test_the_static_cache_reload_and_compile_warm_up_wait_for_the_budget() -> None:
    plain = ({"mode": "runner", "batch_size": 4, "ex_per_s": 4.0}, [])
    # reload 20 s + warm-up on 4 examples and the measurement on 4, both at 4 ex/s: 22 s
    now = [80.0]
    work = _workload(now, ("float32", 20.0), "--static-cache", "--static-batch", "4")
    work.static_cache(None, *_in_use(), 4, plain, None)
    assert work.loads == [] and _skipped(work) == [
        "e2e static-kv b=4 (float32): reload, compile warm-up, measurement"
    ]
    now[0] = 70.0
    with pytest.raises(Started):
        work.static_cache(None, *_in_use(), 4, plain, None)
    assert work.loads == [("float32", {"static_cache": True})]
    # without a plain row the plain path is measured first; when even that does not fit,
    # nothing is reloaded
    now[0] = 99.5  # the plain path on 4 examples at 4 ex/s needs 1 s
    work = _workload(now, ("float32", 20.0), "--static-cache", "--static-batch", "4")
    work.static_cache(None, *_in_use(), 4, None, None)
    assert work.loads == [] and _skipped(work) == ["e2e plain-kv b=4 (float32)"]


# ---------------------------------------------------------------- the summary


def _row(mode: str, batch: int, ex_per_s: float, speedup: float | None = None) -> dict:
    row = {"pipeline": "e2e", "mode": mode, "batch_size": batch, "dtype": "float32"}
    row.update(ex_per_s=ex_per_s, ms_per_example=1000 / ex_per_s)
    if speedup is not None:
        row["speedup_vs_reference"] = speedup
    return row


def test_the_summary_counts_runner_rows_only_and_never_prints_an_unknown_ratio_as_zero() -> None:
    rows = [
        _row("runner", 1, 1.0),  # its sequential reference was skipped: no ratio
        _row("runner", 2, 1.05),
        _row("plain-kv", 4, 9.0, speedup=4.1),  # the static-cache reference: not a runner row
        _row("static-kv", 4, 12.0, speedup=1.3),
    ]
    summary = summarize(rows, ["e2e"], "float32")
    assert summary["e2e"] == {
        "best_batch": 2,
        "ex_per_s": 1.05,
        "speedup": None,
        "speedup_met": None,
        "plateau_after_batch": 1,  # 1.0 -> 1.05: under 10% more
    }
    text = _table(summary, smoke=False)
    assert "x? sequential (target >= 6: not compared)" in text and "x0.00" not in text
    rows[1]["speedup_vs_reference"] = 6.5
    assert "x6.50 sequential (target >= 6: met)" in _table(
        summarize(rows, ["e2e"], "float32"), smoke=False
    )


# ---------------------------------------------------------------- whole runs (--smoke)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One models folder for the whole-run tests (the smoke checkpoints are built once)."""
    return tmp_path_factory.mktemp("gpu-models")


@pytest.mark.slow
def test_a_second_run_with_more_examples_and_another_side_reuses_the_checkpoints(
    models_dir: Path, tmp_path: Path, capsys
) -> None:
    first = ["--smoke", "--models-dir", str(models_dir), "--budget-s", "1e-9", "--examples", "2"]
    main([*first, "--json", str(tmp_path / "a.json")])
    capsys.readouterr()
    argv = [
        "--smoke", "--models-dir", str(models_dir), "--budget-s", "1e-9", "--examples", "14",
        "--image-side", "200", "--json", str(tmp_path / "b.json"),
    ]  # fmt: skip
    data = main(argv)  # used to fail: the first run's pictures were resized inside the build
    assert "errors" not in data
    saved = json.loads((tmp_path / "b.json").read_text())["command"]
    assert saved == "python -m benchmarks.gpu_workload " + " ".join(argv)  # not pytest's argv
    builds = [c for c in data["checkpoints"] if c["what"] == "build"]
    assert [c["cached"] for c in builds] == [True, True]
    printed = capsys.readouterr().out
    assert printed.count("cached, a finished build was found") == 2
    assert data["skipped"][0]["what"].startswith("load both models")  # nothing loaded: no time
    smoke = models_dir / "smoke"
    assert json.loads((smoke / "lite" / "lite_info.json").read_text())["per_task"] == 3
    assert _sides(smoke / "lite-200px") == {200} and _sides(smoke / "lite-256px") == {256}


@pytest.mark.slow
def test_the_plain_static_cache_reference_is_its_own_row_compared_with_sequential(
    models_dir: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "gpu.json"
    data = main(
        [
            "--smoke", "--batch-sizes", "1", "--examples", "2", "--seq-examples", "1",
            "--static-cache", "--static-batch", "2", "--pipelines", "e2e", "--no-memory-sweep",
            "--models-dir", str(models_dir), "--json", str(out),
        ]
    )  # fmt: skip
    assert "errors" not in data
    rows = data["rows"]
    assert [(r["mode"], r["batch_size"]) for r in rows] == [
        ("sequential", 1), ("runner", 1), ("plain-kv", 2), ("static-kv", 2),
    ]  # fmt: skip
    plain, static = rows[2], rows[3]
    assert plain["outputs_vs_reference"]["reference"] == "sequential b=1"
    assert plain["speedup_vs_reference"] > 0
    assert static["outputs_vs_reference"]["reference"] == "plain-kv b=2"
    assert static["outputs_vs_reference"]["same"] == static["outputs_vs_reference"]["of"] == 2
    assert data["summary"]["e2e"]["best_batch"] == 1  # the plain-kv row is not a runner row
    assert [w["what"] for w in data["warmups"]] == [
        "e2e sequential on 2 examples",
        "e2e static-kv b=2 (compiles on CUDA)",
    ]
    assert "x0.00" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--max-batch-visual-tokens", "0"], "--max-batch-visual-tokens: must be at least 1"),
        (["--image-side", "0"], "--image-side: must be at least 1, got 0"),
        (["--new-tokens", "0"], "--new-tokens: must be at least 1, got 0"),
        (["--examples", "-3"], "must be at least 1, got -3"),
        (["--check-batch", "two"], "expected a whole number, got 'two'"),
        (["--pipelines", "cot,cot"], "'cot,cot' names cot more than once"),
        (["--batch-sizes", "16,32,16"], "'16,32,16' names 16 more than once"),
        (["--batch-sizes", "4,,8"], "expected e.g. 1,2,4, got '4,,8'"),
        (["--budget-s", "0"], "--budget-s: must be a finite number above 0, got '0'"),
        (["--budget-s", "nan"], "--budget-s: must be a finite number above 0, got 'nan'"),
    ],
)
def test_bad_counts_and_repeats_are_argparse_errors_before_anything_runs(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        parse_args(argv)
    assert info.value.code == 2
    assert says in capsys.readouterr().err


def test_a_positive_visual_token_budget_reaches_the_qwen_options() -> None:
    assert parse_args(["--max-batch-visual-tokens", "5000"]).qwen_options == {
        "max_batch_visual_tokens": 5000
    }
    assert parse_args([]).qwen_options == {}


def test_models_dir_and_json_folder_must_be_creatable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    blocked = tmp_path / "a-file" / "x"
    for option, value in (("--models-dir", blocked), ("--json", blocked / "y.json")):
        with pytest.raises(SystemExit) as info:
            parse_args([option, str(value)])
        assert info.value.code == 2
        assert f"{tmp_path / 'a-file'} is not a folder" in capsys.readouterr().err
    fine = parse_args(["--models-dir", str(tmp_path / "new" / "m")])
    assert fine.models_dir == tmp_path / "new" / "m" and not (tmp_path / "new").exists()


def test_the_work_dir_is_created_or_refused_up_front(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "runs" / "gpu"
    assert parse_args(["--work-dir", str(missing)]).work_dir == missing and missing.is_dir()
    blocked = tmp_path / "a-file" / "runs"
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(SystemExit) as info:
        parse_args(["--work-dir", str(blocked)])
    assert info.value.code == 2
    assert f"--work-dir {blocked}: cannot create it" in capsys.readouterr().err
