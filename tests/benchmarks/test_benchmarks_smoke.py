"""The overhead benchmark runs end to end at a tiny size and writes well-formed JSON (no timing
is asserted: figures depend on the machine)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # `benchmarks` lives at the root

from benchmarks.run import main


def test_overhead_workload_writes_json(tmp_path: Path, capsys) -> None:
    out = tmp_path / "overhead.json"
    main(
        [
            "--workload", "overhead", "--examples", "6", "--repeats", "1", "--warmup", "0",
            "--batch-sizes", "1,2", "--all-cores", "--data", str(tmp_path / "lite"),
            "--json", str(out),
        ]
    )  # fmt: skip
    data = json.loads(out.read_text())
    assert data["workload"] == "overhead" and data["environment"]["packages"]["langgraph"]
    rows = data["rows"]
    assert [(r["pipeline"], r["mode"], r["batch_size"]) for r in rows] == [
        ("cot", "sequential", 1),
        ("cot", "runner", 1),
        ("cot", "runner", 2),
        ("e2e", "sequential", 1),
        ("e2e", "runner", 1),
        ("e2e", "runner", 2),
    ]
    for r in rows:
        assert r["examples"] == 6  # rates are measured, not asserted (they depend on the machine)
        assert all(isinstance(r[k], float) for k in ("ex_per_s", "ms_per_example"))
        assert r["images"]["decodes"] == r["images"]["distinct_files"]  # one decode per file
        if r["mode"] == "runner":
            assert r["identical_to_sequential"] == "6/6" and r["batches"]
    assert {"select_and_describe", "ground"} <= set(rows[0]["stages_ms"])
    assert set(rows[0]["write_score_ms"]) == {"write", "score"}
    assert data["target"]["target_ms"] == 2.0 and isinstance(data["target"]["met"], bool)
    assert "x seq" in capsys.readouterr().out.splitlines()[0]


def test_live_report_keeps_valid_json_after_every_measurement(tmp_path: Path, capsys) -> None:
    from benchmarks.live_report import Budget, LiveReport

    path = tmp_path / "out.json"
    report = LiveReport(path, {"workload": "x"})
    assert json.loads(path.read_text()) == {"workload": "x"}
    report.add("rows", {"a": 1}, "first")
    saved = json.loads(path.read_text())  # what a run killed now would leave
    assert saved["rows"][0]["a"] == 1 and "at_s" in saved["rows"][0]
    assert "first" in capsys.readouterr().out
    budget = Budget(report, seconds=report.elapsed() + 3600)  # no wall-clock race in the test
    assert budget.allows("small", 1.0)
    assert not budget.allows("large", 7200.0)
    assert not Budget(report, seconds=0).allows("anything", None)
    saved = json.loads(path.read_text())
    assert [s["what"] for s in saved["skipped"]] == ["large", "anything"]
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.slow
def test_gpu_workload_smoke_reports_every_measurement(tmp_path: Path, capsys) -> None:
    from benchmarks.gpu_workload import main as gpu_main

    out = tmp_path / "gpu.json"
    gpu_main(
        [
            "--smoke", "--dtype", "bfloat16", "--examples", "2", "--seq-examples", "2",
            "--batch-sizes", "2", "--memory-tokens", "4", "--memory-batches", "1,2",
            "--static-cache", "--static-batch", "2", "--models-dir", str(tmp_path / "models"),
            "--json", str(out),
        ]
    )  # fmt: skip
    data = json.loads(out.read_text())
    assert data["workload"] == "gpu-smoke" and data["settings"]["dtype"] == "bfloat16"
    assert "errors" not in data
    builds = [c for c in data["checkpoints"] if c["what"] == "build"]
    assert {c["checkpoint"] for c in builds} == {"qwen2-vl-7b-shape", "gdino-tiny-shape"}
    loads = [(c["dtype"], c["options"]) for c in data["checkpoints"] if c["what"] == "load"]
    assert loads == [("bfloat16", {}), ("bfloat16", {"static_cache": True}), ("float32", {})]
    rows = data["rows"]
    assert [(r["pipeline"], r["mode"], r["batch_size"], r["dtype"]) for r in rows] == [
        ("cot", "sequential", 1, "bfloat16"),
        ("cot", "runner", 2, "bfloat16"),
        ("e2e", "sequential", 1, "bfloat16"),
        ("e2e", "runner", 2, "bfloat16"),
        ("e2e", "static-kv", 2, "bfloat16"),
        ("cot", "sequential", 1, "float32"),
        ("cot", "runner", 2, "float32"),
        ("e2e", "sequential", 1, "float32"),
        ("e2e", "runner", 2, "float32"),
    ]
    for r in (r for r in rows if r["mode"] != "sequential"):
        check = r["outputs_vs_reference"]
        if r["dtype"] == "float32":  # the exact check
            assert check["kind"].startswith("identical (float32") and check["same"] == check["of"]
        else:  # bf16: a rate, labelled as such
            assert check["kind"].startswith("agreement rate (bfloat16")
    assert data["tf32_in_check"] == {"matmul": False, "cudnn": False}
    assert rows[1]["grounder_share"] > 0 and not any(r["failed"] for r in rows)
    assert {"reasoner.reason", "grounder.ground"} <= set(rows[1]["model_s"])
    memory = data["memory"]
    assert [m["batch"] for m in memory] == [1, 2] and not any(m["oom"] for m in memory)
    assert memory[1]["visual_tokens"] == 2 * memory[0]["visual_tokens"]
    assert set(data["summary"]) >= {"cot", "e2e", "grounder_share", "cot_over_e2e"}
    printed = capsys.readouterr().out
    assert printed.count("ex/s") >= len(rows) and "smoke run" in printed


def test_rows_count_examples_that_could_not_run_not_model_answers() -> None:
    from benchmarks.compare import _broken

    assert _broken({"error": {"category": "model_error", "message": "CUDA out of memory"}})
    assert _broken({"error": {"category": "image_error", "message": "gone.jpg"}})
    assert not _broken({"error": {"category": "no_box", "message": "no readable box"}})
    assert not _broken({"error": None}) and not _broken({})
