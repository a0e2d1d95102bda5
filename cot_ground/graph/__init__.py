"""The LangGraph graphs: CoT, end-to-end, Set-of-Mark, perception-prompt, verify, zoom (see
docs/graph.md)."""

from __future__ import annotations

from cot_ground.graph.config import CoTConfig, E2EConfig
from cot_ground.graph.cot import build_cot_graph
from cot_ground.graph.e2e import build_e2e_graph
from cot_ground.graph.perception import build_perception_graph
from cot_ground.graph.run import initial_state, run_example, thread_config
from cot_ground.graph.selection_config import PerceptionConfig, SoMConfig, VerifyConfig, ZoomConfig
from cot_ground.graph.som import build_som_graph
from cot_ground.graph.verify import build_verify_graph
from cot_ground.graph.zoom import build_zoom_graph

__all__ = [
    "CoTConfig",
    "E2EConfig",
    "PerceptionConfig",
    "SoMConfig",
    "VerifyConfig",
    "ZoomConfig",
    "build_cot_graph",
    "build_e2e_graph",
    "build_perception_graph",
    "build_som_graph",
    "build_verify_graph",
    "build_zoom_graph",
    "initial_state",
    "run_example",
    "thread_config",
]
