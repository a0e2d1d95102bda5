"""experiments/training_free_lite.yaml end to end on MIG-Lite, offline (classical proposals + the
rule reasoner): every proposal graph and zoom through the runner, then the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from repo_paths import EXPERIMENTS

from cot_ground.analysis.load import load_run
from cot_ground.analysis.report import build_report
from cot_ground.lite import LITE_TASKS, generate_lite
from cot_ground.runner.config import load_config
from cot_ground.runner.run import run_experiment


@pytest.mark.slow
def test_training_free_lite_runs_every_graph(tmp_path: Path, monkeypatch) -> None:
    lite = generate_lite(tmp_path / "lite", seed=0, per_task=1)
    monkeypatch.setenv("MIG_LITE_DIR", str(lite.out_dir))
    config = load_config(EXPERIMENTS / "training_free_lite.yaml")
    summary = run_experiment(config, out=tmp_path / "run", use_cache=False)
    n = len(LITE_TASKS)
    assert summary.n_examples == n
    assert set(summary.pipelines) == {
        "classical_cot",
        "classical_cot_zoom",
        "som",
        "perception_prompt",
        "som_zoom",
        "verify",
    }
    frame = load_run(tmp_path / "run")
    assert (frame.groupby("pipeline").size() == n).all()
    som = frame[frame["pipeline"] == "som"]
    assert som["proposal_hit"].notna().all()
    marked = [p for paths in som["artifacts"] for p in paths]
    assert marked and all(Path(p).is_file() for p in marked)
    assert all(Path(p).is_relative_to(tmp_path / "run" / "artifacts") for p in marked)
    zoomed = frame[frame["pipeline"] == "som_zoom"]
    crops = [p for paths in zoomed["artifacts"] for p in paths if Path(p).name.startswith("zoom")]
    assert crops and all(Path(p).is_file() for p in crops)
    # the graph's settings are recorded with the run
    run_json = json.loads((tmp_path / "run" / "run.json").read_text())
    assert "top-proposal" in json.dumps(run_json)

    report = build_report(tmp_path / "run", n_boot=50)
    recall = (report.out_dir / "proposal_recall.md").read_text()
    assert "| som | AVERAGE |" in recall and "classical_cot" not in recall
    page = (report.out_dir / "report.html").read_text()
    assert "Proposal recall at IoU 0.5" in page and "shown to the model: image1_marks.png" in page


def test_training_free_config_validates(monkeypatch) -> None:
    for var in ("MIGBENCH_FILE", "MIGBENCH_ROOT", "QWEN2VL_PATH", "GDINO_PATH", "MIGICIAN_PATH"):
        monkeypatch.setenv(var, f"/nonexistent/{var.lower()}")
    config = load_config(EXPERIMENTS / "training_free.yaml")
    kinds = {name: pipe.kind for name, pipe in config.pipelines.items()}
    assert kinds == {
        "cot_paper": "cot",
        "som": "som",
        "perception_prompt": "perception-prompt",
        "som_zoom": "som",
        "verify": "verify",
        "migician": "e2e",
    }
    assert config.pipelines["som_zoom"].zoom == {
        "rounds": 2,
        "expand": 2.0,
        "min_size": 64,
        "tol": 0.01,
    }


def test_zoom_config_errors_name_the_key(tmp_path: Path, monkeypatch) -> None:
    from cot_ground.runner.config import ConfigError

    monkeypatch.setenv("MIG_LITE_DIR", str(tmp_path))
    text = (EXPERIMENTS / "training_free_lite.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        text.replace("zoom: {rounds: 1, expand: 2.0, min_size: 32}", "zoom: {rounds: 0}", 1)
    )
    with pytest.raises(ConfigError, match=r"pipelines\.classical_cot_zoom\.zoom\.rounds"):
        load_config(bad)
