"""Zoom-in refinement: crop around a predicted box, ground again in the crop, map the box back.

``build_zoom_graph(inner, grounder)`` wraps any compiled graph that writes a single-box
prediction (the CoT graph, ``som``, ``perception-prompt``, ``verify``)::

    inner ─→ zoom ─(rounds left, box moved ≥ tol)→ zoom ↺
                  ─(else)→ finalize

Geometry (pixels of the full image, ``W`` x ``H``): the box is clipped to the image; the crop
window is centred on it, each side ``max(box side x expand, min_size)`` rounded up to whole
pixels and capped at the image side, its start rounded half up to a whole pixel, then shifted
to lie inside the image. A box found in the
crop (unit frame of the crop) maps back exactly: ``x = (left + u * (right - left)) / W``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from cot_ground.boxes import Box
from cot_ground.graph.artifacts import ArtifactFolder
from cot_ground.graph.calls import call_one, stage_timing, step
from cot_ground.graph.proposals import crop_image, image_size
from cot_ground.graph.run import initial_state
from cot_ground.graph.selection_config import ZoomConfig
from cot_ground.graph.state import example_of, extend_trace
from cot_ground.images import ImageLoadError
from cot_ground.models.base import Grounder, GroundRequest
from cot_ground.records import Candidate, ErrorCategory, ErrorInfo, Prediction
from cot_ground.tasks import get_task, reference_box, reference_image

INNER = "inner"
ZOOM = "zoom"
FINALIZE = "finalize"

Window = tuple[int, int, int, int]


def crop_window(box: Box, width: int, height: int, expand: float, min_size: int) -> Window | None:
    """The pixel window ``(left, top, right, bottom)`` to crop around ``box`` (unit frame) on a
    ``width`` x ``height`` image, or None when the box does not overlap the image (nothing to
    zoom into). See the module docstring for the rule."""
    b = box.clipped()
    if box.is_inverted or b.x2 <= b.x1 or b.y2 <= b.y1:
        return None
    x1, y1, x2, y2 = b.to_pixels(width, height)
    left, right = _axis(x1, x2, width, expand, min_size)
    top, bottom = _axis(y1, y2, height, expand, min_size)
    return left, top, right, bottom


def _axis(lo: float, hi: float, size: int, expand: float, min_size: int) -> tuple[int, int]:
    # pixel values are rounded to 1e-6 first so that float noise (0.3 * 100 = 30.000000000000004)
    # cannot add a pixel
    side = min(size, math.ceil(round(max((hi - lo) * expand, min_size), 6)))
    start = math.floor(round((lo + hi) / 2 - side / 2 + 0.5, 6))  # rounded half up
    start = min(max(0, start), size - side)
    return start, start + side


def to_full(box_in_crop: Box, window: Window, width: int, height: int) -> Box:
    """Map a box in the unit frame of the crop ``window`` back to the unit frame of the image."""
    left, top, right, bottom = window
    cw, ch = right - left, bottom - top
    return Box(
        x1=(left + box_in_crop.x1 * cw) / width,
        y1=(top + box_in_crop.y1 * ch) / height,
        x2=(left + box_in_crop.x2 * cw) / width,
        y2=(top + box_in_crop.y2 * ch) / height,
    )


def moved(a: Box, b: Box) -> float:
    """The largest change of any coordinate between two boxes (unit frame)."""
    return max(abs(u - v) for u, v in zip(a.to_list(), b.to_list(), strict=True))


class ZoomState(TypedDict, total=False):
    """State of the zoom wrapper for one example."""

    example: dict[str, Any]
    inner: dict[str, Any] | None
    """The wrapped graph's prediction dict."""
    phrase: str
    """Phrase the zoom rounds ground (the wrapped graph's step-2 phrase, else the question's)."""
    reference: dict[str, Any]
    """``{"image": int | None, "box": Box dict | None}`` for picture-based grounders."""
    box: dict[str, Any] | None
    """Current box (unit frame of the full image)."""
    round: int
    stop: str | None
    """Why zooming stopped, once it has."""
    trace: Annotated[list[dict[str, Any]], extend_trace]
    prediction: dict[str, Any] | None


def build_zoom_graph(
    inner: Any,
    grounder: Grounder,
    *,
    config: ZoomConfig | None = None,
    pipeline: str | None = None,
    artifacts_dir: str | None = None,
    checkpointer: Any = None,
    run_dir: str | Path | None = None,
) -> Any:
    """The compiled zoom wrapper around the compiled graph ``inner``. Crops are saved under
    ``<artifacts_dir>/<pipeline>/<example id>/zoom<round>_image<N>.png`` (a temporary folder
    when None); traces name those inside ``run_dir`` relative to it
    (:mod:`cot_ground.graph.artifacts`), others by their absolute path. ``pipeline`` names the
    records (default ``<inner name>+zoom``)."""
    config = config or ZoomConfig()
    name = pipeline or f"{getattr(inner, 'name', 'graph')}+zoom"
    artifacts = ArtifactFolder.open(artifacts_dir, name, run_dir)

    def run_inner(state: ZoomState) -> dict[str, Any]:
        final = inner.invoke(initial_state(example_of(state)))
        pred = final["prediction"]
        ex = example_of(state)
        selection = final.get("selection") or {}
        phrase = selection.get("phrase") or final.get("phrase") or ex.question
        image = pred.get("image_index")
        ref_image, ref_box = selection.get("reference_index"), selection.get("reference_box")
        if ref_image is None and image is not None:
            rule = get_task(ex.task)
            ref_image = reference_image(rule, ex.question, len(ex.images), image)
            table_box = reference_box(rule, ex.question) if ref_image is not None else None
            ref_box = table_box.model_dump() if table_box else None
        stop = None if pred.get("box") is not None and image is not None else "no box to zoom"
        return {
            "inner": pred,
            "phrase": phrase,
            "reference": {"image": ref_image, "box": ref_box},
            "box": pred.get("box"),
            "round": 0,
            "stop": stop,
            "trace": pred.get("trace", []),
        }

    def zoom(state: ZoomState) -> dict[str, Any]:
        ex = example_of(state)
        pred = state["inner"] or {}
        image = pred["image_index"]
        r = state.get("round", 0) + 1
        box = Box.model_validate(state["box"])
        info: dict[str, Any] = {"round": r, "image_index": image, "box_before": box.to_list()}
        try:
            width, height = image_size(ex.images[image])
        except ImageLoadError as exc:
            error = ErrorInfo(category=ErrorCategory.IMAGE, message=str(exc), node=ZOOM)
            return {
                "round": r,
                "stop": "image error",
                "trace": [step(ZOOM, parsed=info, error=error)],
            }
        window = crop_window(box, width, height, config.expand, config.min_size)
        if window is None:
            info["stop"] = "the box lies outside the image"
            return {"round": r, "stop": info["stop"], "trace": [step(ZOOM, parsed=info)]}
        crop_path = artifacts.file(ex.id, f"zoom{r}_image{image + 1}.png")
        crop_image(ex.images[image], window, crop_path)
        ref = state.get("reference") or {}
        ref_image = ref.get("image")
        request = GroundRequest(
            image=str(crop_path),
            phrase=state["phrase"],
            task=ex.task,
            reference_image=ex.images[ref_image] if ref_image is not None else None,
            reference_box=Box.model_validate(ref["box"]) if ref.get("box") else None,
        )
        result, error, wall = call_one(grounder.ground, request, adapter=grounder.name, node=ZOOM)
        info.update({"window_px": list(window), "image_size": [width, height]})
        candidates = list(result.candidates) if result else []
        update: dict[str, Any] = {"round": r}
        if not candidates:
            info["stop"] = "no box in the crop" if error is None else "grounder error"
            update["stop"] = info["stop"]
        else:
            in_crop = candidates[0].box
            new = to_full(in_crop, window, width, height)
            delta = moved(box, new)
            info.update(
                {"box_in_crop": in_crop.to_list(), "box_after": new.to_list(), "moved": delta}
            )
            update["box"] = new.model_dump()
            if delta < config.tol:
                info["stop"] = "converged"
            elif r >= config.rounds:
                info["stop"] = "rounds done"
            update["stop"] = info.get("stop")
        mapped = [
            Candidate(box=to_full(c.box, window, width, height), score=c.score, label=c.label)
            for c in candidates
        ]
        update["trace"] = [
            step(
                ZOOM,
                attempt=r - 1,
                prompt=request.phrase,
                images=[artifacts.recorded(crop_path)],
                raw_output=result.raw_text if result else None,
                parsed={
                    **info,
                    "request": {
                        **request.model_dump(mode="json"),
                        "image": artifacts.recorded(crop_path),
                    },
                    "config": config.model_dump(),
                },
                candidates=mapped,
                settings=dict(grounder.settings),
                wall_s=wall,
                error=error,
            )
        ]
        return update

    def finalize(state: ZoomState) -> dict[str, Any]:
        pred = dict(state["inner"] or {})
        summary = {
            "rounds": state.get("round", 0),
            "stop": state.get("stop"),
            "box_before": (pred.get("box") and Box.model_validate(pred["box"]).to_list()),
            "box_after": state["box"] and Box.model_validate(state["box"]).to_list(),
        }
        trace = [*state.get("trace", []), step(FINALIZE, parsed={"zoom": summary})]
        pred.update(pipeline=name, box=state.get("box"), trace=trace, timing=stage_timing(trace))
        prediction = Prediction.model_validate(pred)
        return {"prediction": prediction.model_dump(mode="json"), "trace": trace[-1:]}

    def after(state: ZoomState) -> Literal["zoom", "finalize"]:
        return FINALIZE if state.get("stop") else ZOOM

    graph = StateGraph(ZoomState)
    graph.add_node(INNER, run_inner)
    graph.add_node(ZOOM, zoom)
    graph.add_node(FINALIZE, finalize)
    graph.add_edge(START, INNER)
    graph.add_conditional_edges(INNER, after)
    graph.add_conditional_edges(ZOOM, after)
    graph.add_edge(FINALIZE, END)
    compiled = graph.compile(checkpointer=checkpointer, name=name)
    # inner + one zoom per round + finalize, plus one
    return compiled.with_config(recursion_limit=config.rounds + 3)
