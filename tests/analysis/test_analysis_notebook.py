"""experiments/analysis_example.ipynb runs top to bottom as shipped (executed with nbclient,
started in experiments/ as Jupyter would), creating the demo's run folder when it is missing,
and reproduces the report's tables (its last checks compare them with the report's CSVs)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import nbformat
import pytest
from analysis_fixtures import GOOD, e2e_prediction, make_example, write_run
from nbclient import NotebookClient

from cot_ground.analysis.report import build_report
from cot_ground.paths import experiments_dir

NOTEBOOK = experiments_dir() / "analysis_example.ipynb"


def _execute(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, str, list]:
    """Run the notebook as shipped from experiments/; (the executed notebook, its printed text,
    its error outputs)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    text = "\n".join(o.get("text", "") for o in outputs)
    return nb, text, [o for o in outputs if o.output_type == "error"]


def test_notebook_is_shipped_clean() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)


@pytest.mark.slow
def test_notebook_runs_on_a_fresh_demo_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    demo_dir = tmp_path / "demo"
    monkeypatch.delenv("COT_GROUND_RUN", raising=False)
    monkeypatch.setenv("COT_GROUND_DEMO_DIR", str(demo_dir))
    monkeypatch.setenv("COT_GROUND_DEMO_PER_TASK", "2")

    nb, text, errors = _execute(monkeypatch)

    assert (demo_dir / "run" / "run.json").is_file()  # created because it was missing
    assert f"run folder: {demo_dir.resolve() / 'run'}" in text
    for name in ("scores.csv", "attribution.csv", "paired.csv"):
        assert f"{name}: same" in text, name
    assert not errors
    # people see 1-based image numbers: the first table shows chosen_image / target_image_no
    first_table = nb.cells[3].outputs[0]["data"]["text/plain"]
    assert "chosen_image" in first_table and "target_image_no" in first_table
    assert not list(NOTEBOOK.parent.glob("cot-ground-demo"))  # nothing written in experiments/


@pytest.mark.slow
def test_notebook_on_a_one_pipeline_run_and_a_stale_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    examples = [make_example(tmp_path, "common_object", k, n_images=2) for k in range(3)]
    preds = [e2e_prediction(ex, "migician", box=GOOD) for ex in examples]
    run_dir = write_run(
        tmp_path / "run", examples, {"migician": preds}, {"migician": {"kind": "e2e"}}
    )
    build_report(run_dir)
    monkeypatch.setenv("COT_GROUND_RUN", str(run_dir))

    _, text, errors = _execute(monkeypatch)

    assert not errors
    assert "paired comparison skipped: the run has one pipeline (migician)" in text
    for name in ("scores.csv", "attribution.csv"):
        assert f"{name}: same" in text, name
    assert "paired.csv: not compared (one pipeline, no pairs)" in text
    assert "stale" not in text

    # predictions rewritten after the report (as --retry-failed does): said, not compared
    jsonl = run_dir / "predictions" / "migician.jsonl"
    later = (run_dir / "report" / "scores.csv").stat().st_mtime + 10
    os.utime(jsonl, (later, later))

    _, text, errors = _execute(monkeypatch)

    assert not errors
    assert f"the report in {run_dir / 'report'} is older than the run's predictions" in text
    assert "not compared: the report is stale" in text
    assert "scores.csv: same" not in text
