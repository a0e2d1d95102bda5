"""The ``finalize`` update every graph ends with: a last trace step and the prediction record."""

from __future__ import annotations

from typing import Any

from cot_ground.boxes import Box
from cot_ground.graph.calls import stage_timing, step
from cot_ground.records import ErrorCategory, Example, ParseStatus, Prediction

FINALIZE = "finalize"


def outcome_status(box: Box | None, error: dict[str, Any] | None) -> ParseStatus:
    """The status of a graph's answer: ``ok`` with a box, ``malformed`` after a format error,
    else ``no_box``."""
    if box is not None:
        return ParseStatus.OK
    if error is not None and error["category"] == ErrorCategory.FORMAT.value:
        return ParseStatus.MALFORMED
    return ParseStatus.NO_BOX


def prediction_record(
    ex: Example,
    config: Any,
    state: Any,
    *,
    image_index: int | None,
    box: Box | None,
    status: ParseStatus,
    raw_text: str | None,
    error: dict[str, Any] | None,
    summary: dict[str, Any] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """The ``finalize`` update: the ``finalize`` trace step (``{"status", "image_index"}`` plus
    ``summary``) and ``prediction``, the :class:`Prediction` of ``ex`` as plain JSON, with the
    whole trace, its timing, ``config``'s pipeline name and prompt variant, and the state's
    ``prompt_hash``. ``fields``: further :class:`Prediction` fields (settings, fallbacks,
    calibration, boxes)."""
    parsed = {"status": status.value, "image_index": image_index, **(summary or {})}
    trace = [*state.get("trace", []), step(FINALIZE, parsed=parsed)]
    prediction = Prediction(
        example_id=ex.id,
        pipeline=config.pipeline_name,
        task=ex.task,
        image_index=image_index,
        box=box,
        status=status,
        raw_text=raw_text,
        prompt_variant=config.prompt_variant,
        prompt_hash=state.get("prompt_hash"),
        timing=stage_timing(trace),
        error=error,
        trace=trace,
        **fields,
    )
    return {"prediction": prediction.model_dump(mode="json"), "trace": trace[-1:]}
