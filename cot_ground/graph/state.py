"""Graph state: plain JSON data only (paths, strings, numbers, ``model_dump`` dicts).

Any LangGraph checkpointer can therefore save it. Nodes return partial updates; ``trace`` is
appended to (one :class:`~cot_ground.records.TraceStep` dict per node execution), every other
key is overwritten. A ``trace`` of ``None`` empties it: the input of a new invocation
(:func:`cot_ground.graph.initial_state`) sends it, so a checkpointer thread that already ran an
example starts from a fresh state.
"""

from __future__ import annotations

from typing import Annotated, Any, TypedDict


def extend_trace(
    old: list[dict[str, Any]], new: list[dict[str, Any]] | None
) -> list[dict[str, Any]]:
    """Reducer of ``trace``: ``old + new``; ``new=None`` clears it (a new invocation)."""
    return [] if new is None else old + new


class CoTState(TypedDict, total=False):
    """State of the two-step CoT graph for one example."""

    example: dict[str, Any]
    """The example, ``Example.model_dump(mode="json")`` (images are paths)."""
    attempt: int
    """Step-1 calls made so far (the first prompt, then re-format prompts)."""
    step1_raw: str | None
    """Raw text of the latest step-1 answer."""
    prompt_hash: str | None
    """Hash of the first step-1 prompt sent (the one written into the prediction)."""
    reasoner_reference: dict[str, Any]
    """``{"image": int | None, "box": Box dict | None}`` offered by the reasoner, if any."""
    selection: dict[str, Any] | None
    """What step 2 will do: ``image_index`` (step 1's choice), ``description``, ``phrase``,
    ``step2_prompt`` (the variant's ``step2`` text or None), ``step2_image``, ``step2_rule``,
    ``reference_image``, ``reference_box``."""
    ground: dict[str, Any] | None
    """Latest grounding: ``image_index``, ``grounder``, ``candidates``, ``raw_text``,
    ``status``, ``node``."""
    tried_images: list[int]
    """Images step 2 has grounded in, in order."""
    fallback_pos: int
    """Position of the next fallback policy to try in the config's list."""
    fallbacks: list[str]
    """Fallback policies taken so far."""
    error: dict[str, Any] | None
    """``ErrorInfo`` dict that ends the example early, or None."""
    trace: Annotated[list[dict[str, Any]], extend_trace]
    """One ``TraceStep`` dict per node execution, in order."""
    prediction: dict[str, Any] | None
    """The final ``Prediction.model_dump(mode="json")`` written by ``finalize``."""


class E2EState(TypedDict, total=False):
    """State of the end-to-end graph for one example."""

    example: dict[str, Any]
    """The example, ``Example.model_dump(mode="json")``."""
    prompt_hash: str | None
    """Hash of the prompt sent."""
    result: dict[str, Any] | None
    """The model's ``EndToEndResult`` dict."""
    error: dict[str, Any] | None
    """``ErrorInfo`` dict when the model call failed, or None."""
    trace: Annotated[list[dict[str, Any]], extend_trace]
    """One ``TraceStep`` dict per node execution, in order."""
    prediction: dict[str, Any] | None
    """The final ``Prediction.model_dump(mode="json")`` written by ``finalize``."""
