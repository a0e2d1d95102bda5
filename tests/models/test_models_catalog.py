"""The model table: one row per registered adapter, the same in docs/models.md and in
``cot-ground models``."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cot_ground.cli.app import _register_commands, app
from cot_ground.models.catalog import ADAPTER_INFO, COLUMNS, markdown_table, model_table
from cot_ground.models.registry import ADAPTERS
from cot_ground.paths import REPO_ROOT

START = "<!-- model-table:"
END = "<!-- /model-table -->"


def test_every_registered_adapter_has_a_row_and_every_row_an_adapter():
    assert set(ADAPTER_INFO) == set(ADAPTERS)
    rows = model_table()
    assert [r["name"].strip("`") for r in rows] == list(ADAPTERS)
    for row in rows:
        assert all(row[field] and "|" not in row[field] for field, _ in COLUMNS)
    roles = {r["name"].strip("`"): r["role"] for r in rows}
    assert roles["hf-chat-reasoner"].startswith("reasoner")
    assert roles["owlv2"].startswith("grounder") and roles["hf-chat-e2e"] == "end-to-end"


def test_docs_open_with_the_registry_table():
    text = (REPO_ROOT / "docs" / "models.md").read_text(encoding="utf-8")
    start = text.index("\n", text.index(START)) + 1
    assert text[start : text.index(END)] == markdown_table()
    assert text.index(START) < text.index("## ")  # the table comes before every section


def test_models_command_prints_the_table():
    _register_commands()
    cli = CliRunner()
    res = cli.invoke(app, ["models", "--markdown"])
    assert res.exit_code == 0 and res.output == markdown_table()
    res = cli.invoke(app, ["models"], env={"COLUMNS": "400"})
    assert res.exit_code == 0
    for name in ADAPTERS:
        assert name in res.output


@pytest.mark.parametrize("columns", ["200", "100"])
def test_models_command_cuts_no_checkpoint_id(columns: str) -> None:
    """Long cells wrap: each row's checkpoints cell, read back from the printed table, holds
    the whole text (no "…")."""
    _register_commands()
    res = CliRunner().invoke(app, ["models"], env={"COLUMNS": columns})
    assert res.exit_code == 0
    assert "…" not in res.output
    lines = res.output.splitlines()
    header = next(line for line in lines if line.startswith("┃"))
    bars = [i for i, ch in enumerate(header) if ch == "┃"]
    column = [title for _, title in COLUMNS].index("checkpoints")
    left, right = bars[column] + 1, bars[column + 1]
    cells, piece = [], ""
    for line in lines[lines.index(header) + 2 :]:
        if line.startswith("│"):
            piece += "".join(line[left:right].split())
        elif piece:
            cells.append(piece)
            piece = ""
    expected = ["".join(row["checkpoints"].replace("`", "").split()) for row in model_table()]
    assert cells == expected
