"""Graph factories for LangGraph's own tools (``langgraph.json`` → ``langgraph dev`` / Studio).

Adapters are built by :func:`~cot_ground.models.registry.resolve` (a registry name or
``module:factory``, role checked) when a graph is made, chosen by environment variables (JSON
values are validated; a typo is an error naming the variable):

* ``COT_GROUND_REASONER`` (default ``rule-reasoner``), ``COT_GROUND_GROUNDER`` (default
  ``classical-grounder``), ``COT_GROUND_FALLBACK_GROUNDER`` (optional), ``COT_GROUND_E2E``
  (default ``migician``): adapter names;
* ``COT_GROUND_<ROLE>_SETTINGS`` (ROLE = REASONER, GROUNDER, FALLBACK_GROUNDER, E2E): a JSON
  :class:`~cot_ground.models.settings.ModelSettings`, e.g. ``{"path": "/models/qwen2-vl-7b"}``;
* ``COT_GROUND_COT_CONFIG`` / ``COT_GROUND_E2E_CONFIG``: JSON CoTConfig / E2EConfig.

The LangGraph server supplies its own checkpointer, so these graphs are compiled without one.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ValidationError

from cot_ground.graph.assemble import build_graph
from cot_ground.graph.config import CoTConfig, E2EConfig
from cot_ground.models.registry import SLOTS, resolve
from cot_ground.models.settings import ModelSettings

DEFAULTS = {
    "REASONER": "rule-reasoner",
    "GROUNDER": "classical-grounder",
    "E2E": "migician",
}


def _model(var: str, model: type[BaseModel]) -> Any:
    raw = os.environ.get(var)
    if not raw:
        return model()
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise ValueError(
            f"environment variable {var} is not a valid {model.__name__}: {exc}"
        ) from exc


def _adapters(slots: dict[str, str]) -> dict[str, Any]:
    """Slot -> adapter for each ``{variable stem: slot}`` whose variable (or default) names
    an adapter."""
    adapters = {}
    for stem, slot in slots.items():
        name = os.environ.get(f"COT_GROUND_{stem}") or DEFAULTS.get(stem)
        if name is not None:
            settings = _model(f"COT_GROUND_{stem}_SETTINGS", ModelSettings)
            adapters[slot] = resolve(name, settings, SLOTS[slot])
    return adapters


def make_cot_graph() -> Any:
    """The CoT graph with adapters and config from the environment."""
    config = _model("COT_GROUND_COT_CONFIG", CoTConfig)  # before any model is loaded
    grounder = "multi_image_grounder" if config.mode == "multi-image" else "grounder"
    slots = {"REASONER": "reasoner", "GROUNDER": grounder, "FALLBACK_GROUNDER": "fallback_grounder"}
    return build_graph("cot", _adapters(slots), config)


def make_e2e_graph() -> Any:
    """The end-to-end graph with the model and config from the environment."""
    config = _model("COT_GROUND_E2E_CONFIG", E2EConfig)
    return build_graph("e2e", _adapters({"E2E": "model"}), config)
