"""The LangGraph CoT graph and end-to-end graph (see docs/graph.md)."""

from __future__ import annotations

from cot_ground.graph.config import CoTConfig, E2EConfig
from cot_ground.graph.cot import build_cot_graph
from cot_ground.graph.e2e import build_e2e_graph
from cot_ground.graph.run import initial_state, run_example, thread_config

__all__ = [
    "CoTConfig",
    "E2EConfig",
    "build_cot_graph",
    "build_e2e_graph",
    "initial_state",
    "run_example",
    "thread_config",
]
