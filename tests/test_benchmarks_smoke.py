"""The overhead benchmark runs end to end at a tiny size and writes well-formed JSON (no timing
is asserted: figures depend on the machine)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `benchmarks` lives at the root

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
        assert r["examples"] == 6 and r["ex_per_s"] > 0 and r["ms_per_example"] > 0
        assert r["images"]["decodes"] == r["images"]["distinct_files"]  # one decode per file
        if r["mode"] == "runner":
            assert r["identical_to_sequential"] == "6/6" and r["batches"]
    assert {"select_and_describe", "ground"} <= set(rows[0]["stages_ms"])
    assert set(rows[0]["write_score_ms"]) == {"write", "score"}
    assert data["target"]["target_ms"] == 2.0 and isinstance(data["target"]["met"], bool)
    assert "x seq" in capsys.readouterr().out.splitlines()[0]
