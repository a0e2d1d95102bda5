"""``build_graph``: the one way from a pipeline's kind, adapters and config to its compiled graph.

The runner (over batching and cache proxies), the sequential benchmark loop (over the adapters
themselves) and LangGraph Studio (over registry adapters) all call it, so a pipeline config
means the same graph everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cot_ground.graph.cot import build_cot_graph
from cot_ground.graph.e2e import build_e2e_graph
from cot_ground.graph.perception import build_perception_graph
from cot_ground.graph.selection_config import ZoomConfig
from cot_ground.graph.som import build_som_graph
from cot_ground.graph.verify import build_verify_graph
from cot_ground.graph.zoom import build_zoom_graph

PROPOSAL_GRAPHS = {
    "som": build_som_graph,
    "perception-prompt": build_perception_graph,
    "verify": build_verify_graph,
}
KINDS = ("cot", "e2e", *PROPOSAL_GRAPHS)


def build_graph(
    kind: str,
    adapters: Mapping[str, Any],
    config: Any,
    *,
    zoom: ZoomConfig | None = None,
    artifacts_dir: str | None = None,
    checkpointer: Any = None,
) -> Any:
    """The compiled graph of a pipeline of ``kind`` (``cot``, ``e2e``, ``som``,
    ``perception-prompt``, ``verify``).

    ``adapters`` maps slots (:data:`cot_ground.models.registry.SLOTS`) to adapters: ``reasoner``
    and ``grounder`` (``multi_image_grounder`` in CoT mode ``multi-image``), optional
    ``fallback_grounder``; ``model`` for ``e2e``. ``config`` is the graph's config object
    (``CoTConfig``, ``E2EConfig``, ``SoMConfig``...). With ``zoom`` the graph is wrapped in
    zoom-in refinement by ``adapters["zoom_grounder"]`` (else the ``grounder``).
    ``artifacts_dir``: the run folder's ``artifacts/`` (``<run>/artifacts``), where proposal
    graphs and zoom save marked images and crops unless the config names a folder (a temporary
    folder when both are None); traces name the files inside the run folder (its parent)
    relative to it (:mod:`cot_ground.graph.artifacts`).

    Raises ``ValueError`` for an unknown kind, ``KeyError`` for a missing slot, and what the
    graph builders raise (``TypeError`` for an adapter of the wrong role).
    """
    run_dir = Path(artifacts_dir).parent if artifacts_dir is not None else None
    if kind == "e2e":
        graph = build_e2e_graph(adapters["model"], config=config, checkpointer=checkpointer)
    elif kind == "cot":
        grounder = adapters.get("multi_image_grounder", adapters.get("grounder"))
        graph = build_cot_graph(
            adapters["reasoner"],
            grounder,
            config=config,
            fallback_grounder=adapters.get("fallback_grounder"),
            checkpointer=checkpointer,
        )
    elif kind in PROPOSAL_GRAPHS:
        if config.artifacts_dir is None and artifacts_dir is not None:
            config = config.model_copy(update={"artifacts_dir": artifacts_dir})
        graph = PROPOSAL_GRAPHS[kind](
            adapters["reasoner"],
            adapters["grounder"],
            config=config,
            checkpointer=checkpointer,
            run_dir=run_dir,
        )
    else:
        raise ValueError(f"unknown pipeline kind {kind!r}; known kinds: {', '.join(KINDS)}")
    if zoom is None:
        return graph
    return build_zoom_graph(
        graph,
        adapters.get("zoom_grounder", adapters.get("grounder")),
        config=zoom,
        pipeline=config.pipeline,
        artifacts_dir=artifacts_dir,
        checkpointer=checkpointer,
        run_dir=run_dir,
    )
