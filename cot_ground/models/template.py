"""Template grounder (``template-grounder``, no weights): multi-scale zero-mean normalized
cross-correlation of the reference picture (or of the reference box cut from it) over the target
image; for the shared-content tasks, windows of the reference matched over the target.

Correlation uses OpenCV's ``cv2.matchTemplate`` (``TM_CCOEFF_NORMED``) when OpenCV is
installed (it comes with the ``gdino`` extra) because it is about five times faster, and
``skimage.feature.match_template`` otherwise (scikit-image is a core dependency). Both compute
the same zero-mean normalized cross-correlation; the backend used is recorded in ``settings``.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import numpy as np
from PIL import Image
from scipy import ndimage

from cot_ground.boxes import Box, nms
from cot_ground.images import open_rgb
from cot_ground.models.base import GroundRequest, GroundResult
from cot_ground.models.options import (
    OptionRule,
    choose_backend,
    number_list,
    one_of,
    option_problems,
    real_number,
    resolve_options,
    whole_number,
)
from cot_ground.models.pictures import grey, resize_array
from cot_ground.models.settings import ModelSettings
from cot_ground.records import Candidate, ParseStatus
from cot_ground.tasks import SHARED_CONTENT_TASKS


def _ncc(image: np.ndarray, template: np.ndarray, backend: str) -> np.ndarray:
    """Zero-mean normalized cross-correlation of ``template`` at every valid offset."""
    if backend == "opencv":
        import cv2

        return cv2.matchTemplate(image, template, cv2.TM_CCOEFF_NORMED)
    from skimage.feature import match_template

    return match_template(image, template)


def _unscaled(x: int, y: int, w: int, h: int, f: float) -> tuple[int, int, int, int]:
    """Pixel box of the ``w`` x ``h`` window at ``(x, y)`` of an image shrunk by ``f``, on the
    original image."""
    return round(x / f), round(y / f), round((x + w) / f), round((y + h) / f)


def _integrals(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Summed-area tables of ``image`` and its square (float64, zero row/column first)."""
    x = image.astype(np.float64)
    return (
        np.pad(x.cumsum(0).cumsum(1), ((1, 0), (1, 0))),
        np.pad((x * x).cumsum(0).cumsum(1), ((1, 0), (1, 0))),
    )


def _window_std(integrals: tuple[np.ndarray, np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Grey-level std of every ``shape`` window (the valid offsets of a template match)."""
    h, w = shape
    sums = []
    for ii in integrals:
        sums.append(ii[h:, w:] - ii[:-h, w:] - ii[h:, :-w] + ii[:-h, :-w])
    n = h * w
    var = sums[1] / n - (sums[0] / n) ** 2
    return np.sqrt(np.maximum(var, 0.0))


def _best(found: list[tuple], k: int) -> list[tuple]:
    """The ``k`` best ``(score, box, ...)`` entries by score, skipping boxes overlapping a
    better one (:func:`cot_ground.boxes.nms` at IoU 0.5; ties keep their order)."""
    ranked = sorted(found, key=lambda t: -t[0])
    return [ranked[i] for i in nms([t[1] for t in ranked], 0.5, k)]


class TemplateGrounder:
    """Finds the reference picture (or the reference box cut from it) in the target image."""

    name = "template-grounder"
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "backend": "auto",
        "work_side": 384,  # images are shrunk to this long side before matching
        "min_size": 0.06,  # smallest template long side, fraction of the target's long side
        "max_size": 0.95,  # largest template long side, fraction of the target's long side
        "scale_step": 1.08,  # ratio between successive template sizes
        "min_template_px": 10,
        "smooth_sigma": 1.0,  # Gaussian smoothing of image and template (work pixels)
        "min_spread": 2.0,  # grey-level std below which a template or window counts as flat
        "box_inset": 0.04,  # a reference box is shrunk by this fraction per side (red marks)
        "shared_windows": [0.25, 0.4],  # window sizes (fraction of long side), shared search
        "shared_side": 192,  # long side for the shared-content search
        "refine_top": 3,  # coarse matches refined at full resolution
        "top_k": 3,
    }
    RULES: ClassVar[dict[str, OptionRule]] = {
        "backend": one_of("auto", "opencv", "skimage"),
        "work_side": whole_number(1),
        "min_size": real_number(0, strict=True),
        "max_size": real_number(0, strict=True),
        "scale_step": real_number(1, strict=True),
        "min_template_px": whole_number(1),
        "smooth_sigma": real_number(0),
        "min_spread": real_number(0),
        "box_inset": real_number(0),
        "shared_windows": number_list(minimum=0),
        "shared_side": whole_number(1),
        "refine_top": whole_number(1),
        "top_k": whole_number(1),
    }
    """What each option's value must be (:mod:`cot_ground.models.options`)."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        """Raises ``ValueError`` listing every unknown option and bad value."""
        opts = resolve_options(self.name, options or {}, self.DEFAULTS, self.RULES)
        opts["backend"] = choose_backend(opts["backend"], "template-grounder")
        self.options = opts
        self.settings: dict[str, Any] = {"adapter": self.name, **opts}

    def ground(self, requests: list[GroundRequest]) -> list[GroundResult]:
        """Ranked boxes per request; ``no_box`` when a request has no reference picture."""
        return [self._one(r) for r in requests]

    def _one(self, request: GroundRequest) -> GroundResult:
        if request.reference_image is None:
            return GroundResult(
                raw_text="no reference picture to match",
                status=ParseStatus.NO_BOX,
                settings=self.settings,
            )
        target = open_rgb(request.image)
        reference = open_rgb(request.reference_image)
        if request.reference_box is not None:
            mode = "reference_box"
            found = self._match(target, self._cut(reference, request.reference_box))
        elif request.task in SHARED_CONTENT_TASKS:
            mode = "shared_content"
            found = self._shared(target, reference)
        else:
            mode = "whole_reference"
            found = self._match(target, reference)
        w, h = target.size
        candidates = [
            Candidate(box=Box.from_pixels(box, w, h), score=round(score, 4), label=mode)
            for score, box in _best(found, self.options["top_k"])
        ]
        return GroundResult(
            candidates=candidates,
            raw_text=json.dumps({"mode": mode, "scores": [c.score for c in candidates]}),
            status=ParseStatus.OK if candidates else ParseStatus.NO_BOX,
            settings=self.settings,
        )

    def _cut(self, image: Image.Image, box: Box) -> Image.Image:
        b = box.clipped()
        inset = self.options["box_inset"]
        dx, dy = (b.x2 - b.x1) * inset, (b.y2 - b.y1) * inset
        x1, y1, x2, y2 = Box.from_unit([b.x1 + dx, b.y1 + dy, b.x2 - dx, b.y2 - dy]).to_pixels(
            *image.size
        )
        return image.crop(
            (round(x1), round(y1), max(round(x2), round(x1) + 1), max(round(y2), round(y1) + 1))
        )

    def _sizes(self, template: tuple[int, int], target: tuple[int, int]) -> list[tuple[int, int]]:
        o = self.options
        tw, th = template
        W, H = target
        long_t, long_w = max(tw, th), max(W, H)
        n = int(np.floor(np.log(o["max_size"] / o["min_size"]) / np.log(o["scale_step"]))) + 1
        sizes = []
        for i in range(n):
            f = o["min_size"] * o["scale_step"] ** i * long_w / long_t
            size = (round(tw * f), round(th * f))
            if min(size) >= o["min_template_px"] and size[0] <= W and size[1] <= H:
                sizes.append(size)
        return sizes

    def _match(self, target: Image.Image, template: Image.Image) -> list:
        """Coarse to fine: every template size on a half-size image, the best few refined."""
        o = self.options
        image, f = grey(target, o["work_side"])
        image = self._smooth(image)
        h, w = image.shape
        coarse = resize_array(image, (max(1, w // 2), max(1, h // 2)))
        coarse_integrals = _integrals(coarse)
        tmpl = np.asarray(template.convert("L"), dtype=np.float32)
        sizes = self._sizes((tmpl.shape[1], tmpl.shape[0]), (w, h))
        integrals = _integrals(image)
        coarse_found, found = [], []
        for i, (tw, th) in enumerate(sizes):
            small = min(tw, th) < 2 * o["min_template_px"]  # too small to halve: full size
            level, level_integrals = (image, integrals) if small else (coarse, coarse_integrals)
            t = self._smooth(resize_array(tmpl, (tw, th) if small else (tw // 2, th // 2)))
            scores = self._scores(level, level_integrals, t)
            if scores is None:
                continue
            y, x = np.unravel_index(int(np.argmax(scores)), scores.shape)
            if small:
                box = _unscaled(x, y, tw, th, f)
                found.append((float(scores[y, x]), box))
            else:
                box = (2 * x, 2 * y, 2 * x + tw, 2 * y + th)
                coarse_found.append((float(scores[y, x]), box, i))
        for _, box, i in _best(coarse_found, o["refine_top"]):
            for j in range(max(0, i - 1), min(len(sizes), i + 2)):
                tw, th = sizes[j]
                m = 4 + max(tw, th) // 10
                x0, y0 = max(0, box[0] - m), max(0, box[1] - m)
                sub = image[y0 : min(h, box[1] + th + m), x0 : min(w, box[0] + tw + m)]
                if sub.shape[0] < th or sub.shape[1] < tw:
                    continue
                scores = self._scores(
                    sub, _integrals(sub), self._smooth(resize_array(tmpl, (tw, th)))
                )
                if scores is None:
                    continue
                y, x = np.unravel_index(int(np.argmax(scores)), scores.shape)
                x, y = x + x0, y + y0
                fine = _unscaled(x, y, tw, th, f)
                found.append((float(scores[y - y0, x - x0]), fine))
        return found

    def _scores(
        self, image: np.ndarray, integrals: tuple[np.ndarray, np.ndarray], template: np.ndarray
    ) -> np.ndarray | None:
        """NCC map, -1 where the image window is too flat to compare; None for a flat template."""
        spread = float(template.std())
        if spread < self.options["min_spread"]:
            return None
        scores = _ncc(image, template, self.options["backend"])
        flat = _window_std(integrals, template.shape) < max(
            self.options["min_spread"], 0.2 * spread
        )
        return np.where(flat, -1.0, scores)

    def _smooth(self, arr: np.ndarray) -> np.ndarray:
        sigma = self.options["smooth_sigma"]
        return ndimage.gaussian_filter(arr, sigma) if sigma > 0 else arr

    def _shared(self, target: Image.Image, reference: Image.Image) -> list:
        """Windows of the reference matched over the target; the best window's place."""
        o = self.options
        image, f = grey(target, o["shared_side"])
        ref, _ = grey(reference, o["shared_side"])
        image, ref = self._smooth(image), self._smooth(ref)
        integrals = _integrals(image)
        rh, rw = ref.shape
        found = []
        for frac in o["shared_windows"]:
            side = max(o["min_template_px"], round(frac * max(rw, rh)))
            stride = max(1, side // 2)
            for y0 in range(0, max(1, rh - side + 1), stride):
                for x0 in range(0, max(1, rw - side + 1), stride):
                    window = ref[y0 : y0 + side, x0 : x0 + side]
                    if (
                        float(window.std()) < 8
                        or window.shape[0] > image.shape[0]
                        or window.shape[1] > image.shape[1]
                    ):
                        continue
                    scores = self._scores(image, integrals, np.ascontiguousarray(window))
                    if scores is None:
                        continue
                    y, x = np.unravel_index(int(np.argmax(scores)), scores.shape)
                    wh, ww = window.shape
                    box = _unscaled(x, y, ww, wh, f)
                    found.append((float(scores[y, x]), box))
        return found


def settings_problems(name: str, settings: ModelSettings) -> list[str]:
    """Problems of the options of ``template-grounder`` (``name``): unknown keys and bad values,
    all at once; for the pre-flight check."""
    return option_problems(
        name, settings.options, TemplateGrounder.DEFAULTS, TemplateGrounder.RULES
    )


def build_template_grounder(settings: ModelSettings) -> TemplateGrounder:
    """``template-grounder``: options are :attr:`TemplateGrounder.DEFAULTS` keys."""
    return TemplateGrounder(settings.options)
