"""``build_perception_graph``: detector output written into the prompt (perception-prompt).

propose ─(no proposals / error)→ finalize
        ─→ choose → parse_choice ─(unreadable or unknown id, retries left)→ choose
                                 ─(else)→ finalize

The same proposals as :mod:`cot_ground.graph.som`, listed in the prompt as text: one line per
proposal with its id, image, label and box in the reasoner's own frame
(:attr:`~cot_ground.graph.selection_config.PerceptionConfig.frame`). The reasoner answers an
id (the box is that proposal's) or, when no listed box fits, a box of its own in the same frame
with the image it is on (recorded with ``rule: reasoner-box``), or "none". Comparing it with
``som`` separates drawing marks from listing coordinates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cot_ground.graph.selection_config import PerceptionConfig
from cot_ground.graph.som import build_selector_graph
from cot_ground.models.base import Grounder, Reasoner


def build_perception_graph(
    reasoner: Reasoner,
    grounder: Grounder,
    *,
    config: PerceptionConfig | None = None,
    checkpointer: Any = None,
    run_dir: str | Path | None = None,
) -> Any:
    """The compiled perception-prompt graph (``run_dir``: as for
    :func:`~cot_ground.graph.som.build_som_graph`). Raises ``TypeError`` for an adapter of the
    wrong role and :class:`~cot_ground.prompts.PromptError` for an unknown prompt variant."""
    return build_selector_graph(
        reasoner,
        grounder,
        config or PerceptionConfig(),
        style="text",
        checkpointer=checkpointer,
        run_dir=run_dir,
    )
