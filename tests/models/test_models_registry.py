"""registry.resolve: registry names and import strings, one role check, one cache."""

from __future__ import annotations

import pytest
from scripted_models import ScriptedGrounder, ScriptedReasoner, candidate, make_example

from cot_ground.graph import CoTConfig, E2EConfig, run_example
from cot_ground.graph.assemble import build_graph
from cot_ground.models import registry
from cot_ground.models.settings import ModelSettings


@pytest.fixture
def scripted(monkeypatch):
    monkeypatch.setitem(
        registry.ADAPTERS,
        "scripted-reasoner",
        ("reasoner", "scripted_models:build_scripted_reasoner"),
    )
    monkeypatch.setattr(registry, "_CACHE", {})


def test_a_registry_name_and_an_import_string_resolve_alike(scripted) -> None:
    settings = ModelSettings(options={"answers": ["a car"]})
    by_name = registry.resolve("scripted-reasoner", settings, "reasoner")
    assert isinstance(by_name, ScriptedReasoner)
    assert registry.resolve("scripted-reasoner", settings) is by_name  # cached
    by_target = registry.resolve("scripted_models:build_scripted_reasoner", settings, "reasoner")
    assert isinstance(by_target, ScriptedReasoner) and by_target is not by_name
    assert registry.build("scripted-reasoner", settings) is by_name


def test_wrong_role_and_bad_names_are_named(scripted) -> None:
    with pytest.raises(
        registry.AdapterError, match="'scripted-reasoner' is a reasoner, not an e2e adapter"
    ):
        registry.resolve("scripted-reasoner", role="e2e")
    grounder_settings = ModelSettings(options={"box": [0, 0, 1, 1], "images": []})
    with pytest.raises(registry.AdapterError, match=r"has no reason\(\) method"):
        registry.resolve("scripted_models:build_scripted_grounder", grounder_settings, "reasoner")
    with pytest.raises(registry.AdapterError, match="cannot load adapter 'scripted_models:nope'"):
        registry.resolve("scripted_models:nope")
    with pytest.raises(KeyError, match="unknown adapter 'no-such-adapter'"):
        registry.resolve("no-such-adapter")
    with pytest.raises(KeyError, match="unknown adapter 'scripted_models:build_scripted_reasoner'"):
        registry.build("scripted_models:build_scripted_reasoner")  # build takes names only


def test_require_role_names_the_slot() -> None:
    grounder = ScriptedGrounder({})
    registry.require_role(grounder, "grounder")
    with pytest.raises(
        TypeError,
        match="fallback_grounder 'scripted-grounder' does not implement"
        r" Reasoner \(needs name, settings and reason\(list\)\)",
    ):
        registry.require_role(grounder, "reasoner", "fallback_grounder")


def test_install_registers_only_new_names(monkeypatch) -> None:
    monkeypatch.setattr(registry, "ADAPTERS", dict(registry.ADAPTERS))
    before = registry.ADAPTERS["rule-reasoner"]
    registry.install({"rule-reasoner": ("e2e", "x:y"), "shipped": ("grounder", "m:f")})
    assert registry.ADAPTERS["rule-reasoner"] == before
    assert registry.ADAPTERS["shipped"] == ("grounder", "m:f")
    with pytest.raises(ValueError, match="unknown adapter role 'judge'"):
        registry.install({"other": ("judge", "m:f")})


def test_build_graph_assembles_each_kind() -> None:
    ex = make_example("diff", 2)
    reasoner = ScriptedReasoner(["a car"])
    grounder = ScriptedGrounder({path: [candidate(0.1, 0.1, 0.4, 0.4)] for path in ex.images})
    config = CoTConfig(mode="paper", prompt_variant="paper", pipeline="p")
    cot = build_graph("cot", {"reasoner": reasoner, "grounder": grounder}, config)
    record = run_example(cot, ex)
    assert record.pipeline == "p" and record.box is not None
    with pytest.raises(ValueError, match="unknown pipeline kind 'telepathy'"):
        build_graph("telepathy", {}, E2EConfig())
    with pytest.raises(TypeError, match="grounder 'scripted-reasoner' does not implement Grounder"):
        build_graph("cot", {"reasoner": reasoner, "grounder": reasoner}, CoTConfig())
