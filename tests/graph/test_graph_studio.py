"""langgraph.json names importable factories that build both graphs from the environment."""

from __future__ import annotations

import importlib.util
import json

import pytest
from repo_paths import REPO
from scripted_models import make_example

from cot_ground.graph import CoTConfig, run_example
from cot_ground.models import registry


def _factory(spec: str):
    path, attr = spec.split(":")
    module_spec = importlib.util.spec_from_file_location("studio_under_test", REPO / path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return getattr(module, attr)


@pytest.fixture
def scripted_registry(monkeypatch):
    for name, role, factory in [
        ("scripted-reasoner", "reasoner", "build_scripted_reasoner"),
        ("scripted-grounder", "grounder", "build_scripted_grounder"),
        ("scripted-e2e", "e2e", "build_scripted_e2e"),
    ]:
        monkeypatch.setitem(registry.ADAPTERS, name, (role, f"scripted_models:{factory}"))
    monkeypatch.setattr(registry, "_CACHE", {})


def test_langgraph_json_graphs_build_and_run(monkeypatch, scripted_registry):
    graphs = json.loads((REPO / "langgraph.json").read_text())["graphs"]
    assert set(graphs) == {"cot", "e2e"}
    ex = make_example("diff", 2)
    monkeypatch.setenv("COT_GROUND_REASONER", "scripted-reasoner")
    monkeypatch.setenv(
        "COT_GROUND_REASONER_SETTINGS", json.dumps({"options": {"answers": ["a car"]}})
    )
    monkeypatch.setenv("COT_GROUND_GROUNDER", "scripted-grounder")
    monkeypatch.setenv(
        "COT_GROUND_GROUNDER_SETTINGS",
        json.dumps({"options": {"box": [0.1, 0.1, 0.4, 0.4], "images": ex.images}}),
    )
    monkeypatch.setenv("COT_GROUND_E2E", "scripted-e2e")
    monkeypatch.setenv("COT_GROUND_E2E_SETTINGS", json.dumps({"options": {"box": [0, 0, 1, 1]}}))

    paper = CoTConfig(mode="paper", prompt_variant="paper")  # the run's settings (context)
    cot = run_example(_factory(graphs["cot"])(), ex, context=paper)
    assert cot.pipeline == "cot-paper-paper" and cot.box is not None
    e2e = run_example(_factory(graphs["e2e"])(), ex)
    assert e2e.pipeline == "e2e-migician" and e2e.box is not None

    # LangGraph's server and Studio build their input forms from these schemas
    for name in ("cot", "e2e"):
        graph = _factory(graphs[name])()
        assert "example" in graph.get_input_jsonschema()["properties"]
        assert "prediction" in graph.get_output_jsonschema()["properties"]


def test_bad_run_config_names_itself(monkeypatch, scripted_registry):
    monkeypatch.setenv("COT_GROUND_REASONER", "scripted-reasoner")
    monkeypatch.setenv("COT_GROUND_REASONER_SETTINGS", '{"dtype": 3}')
    graphs = json.loads((REPO / "langgraph.json").read_text())["graphs"]
    with pytest.raises(ValueError, match="COT_GROUND_REASONER_SETTINGS"):
        _factory(graphs["cot"])()
    answers = json.dumps({"options": {"answers": ["a car"]}})
    monkeypatch.setenv("COT_GROUND_REASONER_SETTINGS", answers)
    graph = _factory(graphs["cot"])()
    with pytest.raises(ValueError, match="mode"):
        run_example(graph, make_example("diff", 2), context={"mode": "telepathy"})
