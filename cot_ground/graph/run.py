"""Running one example through either graph."""

from __future__ import annotations

from typing import Any

from cot_ground.records import Example, Prediction


def initial_state(example: Example) -> dict[str, Any]:
    """The input of both graphs for ``example`` (plain JSON data)."""
    return {"example": example.model_dump(mode="json"), "trace": []}


def thread_config(example: Example, thread_id: str | None = None) -> dict[str, Any]:
    """LangGraph config addressing this example's checkpoints (thread id defaults to its id)."""
    return {"configurable": {"thread_id": thread_id or example.id}}


def run_example(graph: Any, example: Example, *, thread_id: str | None = None) -> Prediction:
    """Run ``example`` to the end and return its :class:`Prediction`.

    With a checkpointer compiled in, the run is stored under ``thread_id`` (default: the
    example id) so it can be replayed with ``graph.get_state_history(thread_config(example))``.
    """
    config = thread_config(example, thread_id) if graph.checkpointer else None
    final = graph.invoke(initial_state(example), config=config)
    return Prediction.model_validate(final["prediction"])
