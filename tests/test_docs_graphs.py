"""docs/graph.md draws every graph with LangGraph's Mermaid export; the drawings must match."""

from __future__ import annotations

import pytest
from repo_paths import REPO

from cot_ground.graph import (
    build_cot_graph,
    build_e2e_graph,
    build_perception_graph,
    build_som_graph,
    build_verify_graph,
    build_zoom_graph,
)
from tests.scripted_models import ScriptedEndToEnd, ScriptedGrounder, ScriptedReasoner

DOC = REPO / "docs" / "graph.md"


def _graphs() -> dict[str, object]:
    r, g = ScriptedReasoner(["x"]), ScriptedGrounder({})
    return {
        "cot": build_cot_graph(r, g),
        "e2e": build_e2e_graph(ScriptedEndToEnd(None, "")),
        "som": build_som_graph(r, g),
        "perception-prompt": build_perception_graph(r, g),
        "verify": build_verify_graph(r, g),
        "zoom (here around som)": build_zoom_graph(build_som_graph(r, g), g),
    }


def _body(mermaid: str) -> str:
    lines = mermaid.strip().splitlines()
    if lines[0] == "---":  # LangGraph's front matter (curve style)
        lines = lines[lines.index("---", 1) + 1 :]
    return "\n".join(lines)


@pytest.mark.parametrize("name", list(_graphs()))
def test_drawing_matches_the_graph(name: str) -> None:
    text = DOC.read_text(encoding="utf-8")
    drawing = _body(_graphs()[name].get_graph().draw_mermaid())
    assert f"#### `{name}`\n\n```mermaid\n{drawing}\n```" in text, (
        f"docs/graph.md: the drawing of {name!r} is out of date; regenerate it with "
        "graph.get_graph().draw_mermaid()"
    )
