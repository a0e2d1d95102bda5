"""load_run: one row per example × pipeline, scored with cot_ground.scoring, robust to kills."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from analysis_fixtures import (
    GOOD,
    GT,
    cot_prediction,
    e2e_prediction,
    make_example,
    standard_run,
    write_run,
)

import cot_ground
from cot_ground.analysis.load import load_run
from cot_ground.scoring import apply_calibration, iou


def test_one_row_per_example_and_pipeline(tmp_path):
    frame = load_run(standard_run(tmp_path))
    assert len(frame) == 3 * 8
    assert set(frame["pipeline"]) == {"cot-agent", "cot-oracle", "migician"}
    assert frame.groupby("pipeline").size().eq(8).all()
    agent = frame[frame["pipeline"] == "cot-agent"]
    assert set(agent["mode"]) == {"agent"}
    assert set(agent["kind"]) == {"cot"}
    assert set(frame.loc[frame["pipeline"] == "migician", "kind"]) == {"e2e"}
    assert agent["description"].eq("a red cup").all()
    grounded = agent[agent["failure"] != "step1_format"]  # step 1 then step 2
    assert grounded["time_total_s"].eq(0.75).all()
    assert agent["time_select_and_describe_s"].eq(0.5).all()
    assert "time_total_s" in frame and "time_total_s_s" not in frame
    failed = agent[agent["failure"] == "step1_format"].iloc[0]
    assert failed["time_total_s"] == 0.5  # step 1 only
    assert failed["step1_text"].startswith("I think <script>")
    assert failed["step1_status"] == "malformed"
    assert failed["error_node"] == "parse_selection"


def test_official_and_strict_flags(tmp_path):
    frame = load_run(standard_run(tmp_path))
    wrong = frame[(frame["pipeline"] == "cot-agent") & (frame["failure"] == "wrong_image")]
    assert len(wrong) == 2
    # a good box on the wrong image: right under the official rule, wrong under strict
    assert wrong["iou"].eq(iou(GOOD, GT)).all()
    assert wrong["correct_50"].all()
    assert not wrong["strict_correct_50"].any()
    assert wrong["strict_iou"].eq(0.0).all()
    assert not wrong["image_correct"].any()


def test_recorded_calibration_is_not_applied_twice(tmp_path):
    ex = make_example(tmp_path, "region", 0)
    calibrated = apply_calibration(GOOD, "migician-y")  # as the adapter recorded it
    pred = e2e_prediction(ex, "migician", box=calibrated, image_index=1, calibration="migician-y")
    run = write_run(tmp_path / "run", [ex], {"migician": [pred]}, {})
    row = load_run(run).iloc[0]
    assert row["calibration"] == "migician-y"
    assert row["iou"] == pytest.approx(iou(calibrated, GT))


def test_truncated_last_line_and_duplicates_are_tolerated(tmp_path):
    run = standard_run(tmp_path)
    expected = load_run(run)
    file = run / "predictions" / "cot-agent.jsonl"
    lines = file.read_text(encoding="utf-8").splitlines(keepends=True)
    first = json.loads(lines[0])
    changed = dict(first, box=None)  # a later duplicate of the first example: ignored
    with file.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(changed) + "\n")
        fh.write(lines[1][: len(lines[1]) // 2])  # killed mid-write
    frame = load_run(run)
    assert len(frame) == len(expected)
    assert frame["iou"].tolist() == expected["iou"].tolist()


def test_prediction_without_example_names_the_id(tmp_path):
    ex = make_example(tmp_path, "region", 0)
    other = make_example(tmp_path, "region", 1)
    pred = e2e_prediction(other, "migician", box=GOOD)
    run = write_run(tmp_path / "run", [ex], {"migician": [pred]}, {})
    with pytest.raises(ValueError, match=other.id):
        load_run(run)


def test_missing_folder_and_unknown_pipeline(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_run(tmp_path / "nowhere")
    run = standard_run(tmp_path)
    with pytest.raises(FileNotFoundError, match="cot-missing"):
        load_run(run, pipelines=["cot-missing"])


def test_kind_and_mode_without_manifest(tmp_path):
    ex = make_example(tmp_path, "region", 0)
    preds = {
        "cot-oracle-image-structured": [
            cot_prediction(ex, "cot-oracle-image-structured", image_index=1, box=GOOD)
        ],
        "e2e-migician": [e2e_prediction(ex, "e2e-migician", box=GOOD)],
    }
    run = write_run(tmp_path / "run", [ex], preds, {})
    (run / "run.json").unlink()
    frame = load_run(run).set_index("pipeline")
    assert frame.loc["cot-oracle-image-structured", "kind"] == "cot"
    assert frame.loc["cot-oracle-image-structured", "mode"] == "oracle-image"
    assert frame.loc["e2e-migician", "kind"] == "e2e"
    assert pd.isna(frame.loc["e2e-migician", "mode"])


def test_load_run_is_exported_lazily():
    assert cot_ground.load_run is load_run
    code = "import sys, cot_ground; assert 'pandas' not in sys.modules, 'pandas imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
