"""Box proposals from a grounder on the images of an example, the ``propose`` node, the numbered
marks drawn on copies of the images, and the proposal-recall upper bound.

A proposal is plain JSON data: ``{"id": global 1-based, "image": 0-based image, "mark": 1-based
number on its image, "box": Box dict (unit frame), "score": float | None, "label": str | None}``.
The proposal-recall bound is computed from traces in :mod:`cot_ground.analysis.proposal_recall`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from PIL import ImageDraw, ImageFont

from cot_ground.boxes import Box
from cot_ground.boxes import nms as box_nms
from cot_ground.graph.calls import step
from cot_ground.images import ImageLoadError, open_rgb
from cot_ground.models.base import Grounder, GroundRequest, GroundResult
from cot_ground.records import ErrorCategory, ErrorInfo, Example
from cot_ground.tasks import SHARED_CONTENT_TASKS, get_task, reference_box, reference_image

PROPOSE = "propose"
# distinct, legible mark colours (tab10 without grey); text is white on each
MARK_COLOURS = (
    (31, 119, 180),
    (214, 39, 40),
    (44, 160, 44),
    (148, 103, 189),
    (255, 127, 14),
    (140, 86, 75),
    (227, 119, 194),
    (23, 190, 207),
    (188, 189, 34),
)


def nms(candidates: Sequence[dict[str, Any]], iou_threshold: float, k: int) -> list[dict[str, Any]]:
    """The ``k`` best candidates (``{"box": Box dict, "score": ...}``, best first as given),
    dropping any whose IoU with a kept one is at least ``iou_threshold``. The input order is
    the grounder's ranking (scores may be None), so it is kept."""
    boxes = [Box.model_validate(cand["box"]).to_list() for cand in candidates]
    return [candidates[i] for i in box_nms(boxes, iou_threshold, k)]


def proposal_request(ex: Example, image: int, phrase: str) -> GroundRequest:
    """The grounder request proposing boxes on ``image``; picture-based grounders also get the
    task table's reference image (and box) for it, and, for the shared-content tasks
    (``common_object``, ``correspondence``) without one, image 1 (image 2 when proposing on
    image 1) -- the reference ``rule-reasoner`` offers the CoT graph for them."""
    rule = get_task(ex.task)
    ref = reference_image(rule, ex.question, len(ex.images), image)
    if ref is None and ex.task in SHARED_CONTENT_TASKS and len(ex.images) > 1:
        ref = 0 if image != 0 else 1
    box = reference_box(rule, ex.question) if ref is not None else None
    return GroundRequest(
        image=ex.images[image],
        phrase=phrase,
        task=ex.task,
        reference_image=ex.images[ref] if ref is not None else None,
        reference_box=box,
    )


def propose(
    grounder: Grounder,
    ex: Example,
    images: Sequence[int],
    phrase: str,
    *,
    top_k: int,
    nms_iou: float,
) -> dict[str, Any]:
    """Run the grounder once per image in ``images`` (one batched call) and return a partial
    graph-state update: ``proposals`` (ids numbered across images in image order), and one
    ``propose`` trace step; a failed call sets ``error``."""
    requests = [proposal_request(ex, i, phrase) for i in images]
    start = time.perf_counter()
    error: ErrorInfo | None = None
    results: list[GroundResult] = []
    try:
        results = list(grounder.ground(requests))
        if len(results) != len(requests):
            raise RuntimeError(f"returned {len(results)} results for {len(requests)} requests")
    except ImageLoadError as exc:
        error = ErrorInfo(
            category=ErrorCategory.IMAGE, message=f"{grounder.name}: {exc}", node=PROPOSE
        )
    except Exception as exc:  # an adapter failure ends this example only
        message = f"{grounder.name}: {type(exc).__name__}: {exc}"
        error = ErrorInfo(category=ErrorCategory.MODEL, message=message, node=PROPOSE)
    wall = time.perf_counter() - start
    proposals: list[dict[str, Any]] = []
    raw: dict[str, str | None] = {}
    for image, result in zip(images, results, strict=False):
        raw[str(image + 1)] = result.raw_text
        cands = [c.model_dump(mode="json") for c in result.candidates]
        for mark, cand in enumerate(nms(cands, nms_iou, top_k), start=1):
            proposals.append(
                {
                    "id": len(proposals) + 1,
                    "image": image,
                    "mark": mark,
                    "box": cand["box"],
                    "score": cand.get("score"),
                    "label": cand.get("label"),
                }
            )
    update: dict[str, Any] = {"proposals": proposals}
    if error is not None:
        update["error"] = error.model_dump(mode="json")
    update["trace"] = [
        step(
            PROPOSE,
            prompt=phrase,
            images=[r.image for r in requests],
            raw_output=json.dumps(raw),
            parsed={
                "phrase": phrase,
                "images": [i + 1 for i in images],
                "top_k": top_k,
                "nms_iou": nms_iou,
                "requests": [r.model_dump(mode="json") for r in requests],
                "proposals": proposals,
            },
            settings=dict(grounder.settings),
            wall_s=wall,
            error=error,
        )
    ]
    return update


def on_image(proposals: Iterable[dict[str, Any]], image: int) -> list[dict[str, Any]]:
    """The proposals on ``image``, in mark order."""
    return [p for p in proposals if p["image"] == image]


# ----------------------------------------------------------------------------- marks
def draw_marks(image_path: str, proposals: Sequence[dict[str, Any]], out_path: Path) -> Path:
    """Save a copy of the image with each proposal's box outlined and its mark number written in
    a filled tag at the box's top-left corner (inside the image). Returns ``out_path`` (PNG).
    Raises :class:`~cot_ground.images.ImageLoadError` for an unreadable image."""
    image = open_rgb(image_path).copy()
    w, h = image.size
    draw = ImageDraw.Draw(image)
    line = max(2, round(min(w, h) / 150))
    font = ImageFont.load_default(size=max(12, min(w, h) // 18))
    for p in proposals:
        colour = MARK_COLOURS[(p["mark"] - 1) % len(MARK_COLOURS)]
        x1, y1, x2, y2 = Box.model_validate(p["box"]).clipped().to_pixels(w, h)
        draw.rectangle([x1, y1, max(x1, x2), max(y1, y2)], outline=colour, width=line)
        text = str(p["mark"])
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left + 2 * line, bottom - top + 2 * line
        tx = min(max(0.0, x1), w - tw)
        ty = min(max(0.0, y1), h - th)
        draw.rectangle([tx, ty, tx + tw, ty + th], fill=colour)
        draw.text((tx + line - left, ty + line - top), text, fill=(255, 255, 255), font=font)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    image.save(out_path, format="PNG")
    return out_path


def crop_image(image_path: str, window: tuple[int, int, int, int], out_path: Path) -> Path:
    """Save the pixel window ``(left, top, right, bottom)`` of the image as PNG; returns it."""
    image = open_rgb(image_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    image.crop(window).save(out_path, format="PNG")
    return out_path


def image_size(image_path: str) -> tuple[int, int]:
    """(width, height) in pixels of the picture the models see (:func:`open_rgb`: EXIF
    orientation applied); raises :class:`ImageLoadError` for an unreadable image."""
    return open_rgb(image_path).size
