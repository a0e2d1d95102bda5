"""The example notebook is valid nbformat-4 JSON and every code cell compiles (not executed)."""

from __future__ import annotations

import json
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parents[1] / "experiments" / "analysis_example.ipynb"


def test_notebook_parses_and_code_compiles():
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    assert nb["nbformat"] == 4
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code
    for i, cell in enumerate(code):
        assert cell["outputs"] == [] and cell["execution_count"] is None
        compile("".join(cell["source"]), f"{NOTEBOOK.name} code cell {i}", "exec")
    text = "".join("".join(c["source"]) for c in code)
    assert "load_run(" in text and "score_tables(" in text and "paired_comparison(" in text
