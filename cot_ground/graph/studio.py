"""Graph factories for LangGraph's own tools (``langgraph.json`` → ``langgraph dev`` / Studio).

Adapters are built by :func:`~cot_ground.models.registry.resolve` (a registry name or
``module:factory``, role checked) when a graph is made, chosen by environment variables (JSON
values are validated; a typo is an error naming the variable):

* ``COT_GROUND_REASONER`` (default ``rule-reasoner``), ``COT_GROUND_GROUNDER`` (default
  ``classical-grounder``), ``COT_GROUND_FALLBACK_GROUNDER`` (optional), ``COT_GROUND_E2E``
  (default ``migician``): adapter names;
* ``COT_GROUND_<ROLE>_SETTINGS`` (ROLE = REASONER, GROUNDER, FALLBACK_GROUNDER, E2E): a JSON
  :class:`~cot_ground.models.settings.ModelSettings`, e.g. ``{"path": "/models/qwen2-vl-7b"}``.

Run settings are not environment variables: each run sends its
:class:`~cot_ground.graph.config.CoTConfig` / :class:`~cot_ground.graph.config.E2EConfig` as
LangGraph's ``context`` (the graphs' ``context_schema``, which the LangGraph server and Studio
take per run), checked against the adapters before any node runs a model. Without one, a run
uses the default config; the CoT graph defaults to mode ``multi-image`` when
``COT_GROUND_GROUNDER`` names an end-to-end adapter (the grounder that mode needs), else to
``agent``.

The LangGraph server supplies its own checkpointer, so these graphs are compiled without one.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import ValidationError

from cot_ground.graph.assemble import build_graph
from cot_ground.graph.config import CoTConfig, E2EConfig
from cot_ground.models.registry import ADAPTERS, SLOTS, resolve
from cot_ground.models.settings import ModelSettings

DEFAULTS = {
    "REASONER": "rule-reasoner",
    "GROUNDER": "classical-grounder",
    "E2E": "migician",
}


def _settings(var: str) -> ModelSettings:
    raw = os.environ.get(var)
    if not raw:
        return ModelSettings()
    try:
        return ModelSettings.model_validate_json(raw)
    except ValidationError as exc:
        raise ValueError(f"environment variable {var} is not a valid ModelSettings: {exc}") from exc


def _name(stem: str) -> str | None:
    return os.environ.get(f"COT_GROUND_{stem}") or DEFAULTS.get(stem)


def _adapters(slots: dict[str, str]) -> dict[str, Any]:
    """Slot -> adapter for each ``{variable stem: slot}`` whose variable (or default) names
    an adapter."""
    adapters = {}
    for stem, slot in slots.items():
        name = _name(stem)
        if name is not None:
            settings = _settings(f"COT_GROUND_{stem}_SETTINGS")
            adapters[slot] = resolve(name, settings, SLOTS[slot])
    return adapters


def make_cot_graph() -> Any:
    """The CoT graph with adapters from the environment (run settings: the run's context)."""
    entry = ADAPTERS.get(_name("GROUNDER") or "")
    multi_image = entry is not None and entry[0] == "e2e"
    config = CoTConfig(mode="multi-image") if multi_image else CoTConfig()
    grounder = "multi_image_grounder" if multi_image else "grounder"
    slots = {"REASONER": "reasoner", "GROUNDER": grounder, "FALLBACK_GROUNDER": "fallback_grounder"}
    return build_graph("cot", _adapters(slots), config)


def make_e2e_graph() -> Any:
    """The end-to-end graph with the model from the environment (run settings: the run's
    context)."""
    return build_graph("e2e", _adapters({"E2E": "model"}), E2EConfig())
