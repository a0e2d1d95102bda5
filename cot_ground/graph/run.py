"""Running one example through either graph."""

from __future__ import annotations

from typing import Any

from cot_ground.records import Example, Prediction

# the keys of CoTState and E2EState whose start value is None; ``trace: None`` empties the trace
_NONE_KEYS = (
    "step1_raw",
    "step1",
    "prompt_hash",
    "selection",
    "ground",
    "result",
    "error",
    "prediction",
)


def initial_state(example: Example) -> dict[str, Any]:
    """The input of both graphs for ``example`` (plain JSON data).

    Every state key is given its start value, so invoking a graph again on a checkpointer
    thread that already holds a run of this example starts afresh (no old trace, no re-format
    prompt); keys the graph does not have are ignored by LangGraph.
    """
    return {
        "example": example.model_dump(mode="json"),
        **dict.fromkeys(_NONE_KEYS),
        "attempt": 0,
        "tried_images": [],
        "fallback_pos": 0,
        "fallbacks": [],
        "trace": None,
    }


def thread_config(example: Example, thread_id: str | None = None) -> dict[str, Any]:
    """LangGraph config addressing this example's checkpoints (thread id defaults to its id)."""
    return {"configurable": {"thread_id": thread_id or example.id}}


def run_example(
    graph: Any, example: Example, *, thread_id: str | None = None, context: Any = None
) -> Prediction:
    """Run ``example`` to the end and return its :class:`Prediction`.

    With a checkpointer compiled in, the run is stored under ``thread_id`` (default: the
    example id) so it can be replayed with ``graph.get_state_history(thread_config(example))``;
    a second run on the same thread replaces the first (its history stays readable).
    ``context``: the run's settings (the graph's config class, e.g. ``CoTConfig``, or its dict),
    in place of those the graph was built with.
    """
    config = thread_config(example, thread_id) if graph.checkpointer else None
    final = graph.invoke(initial_state(example), config=config, context=context)
    return Prediction.model_validate(final["prediction"])
