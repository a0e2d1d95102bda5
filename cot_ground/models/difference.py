"""Difference grounder (``diff-grounder``, no weights): aligns the reference image to the target
by phase correlation, thresholds their smoothed difference and boxes the largest changed
components."""

from __future__ import annotations

import json
from typing import Any, ClassVar

import numpy as np
from PIL import Image
from scipy import ndimage

from cot_ground.boxes import Box
from cot_ground.images import open_rgb
from cot_ground.models.base import GroundRequest, GroundResult
from cot_ground.models.options import (
    OptionRule,
    option_problems,
    real_number,
    resolve_options,
    true_or_false,
    whole_number,
)
from cot_ground.models.pictures import shrink
from cot_ground.models.settings import ModelSettings
from cot_ground.records import Candidate, ParseStatus


class DiffGrounder:
    """Boxes the largest region where the target differs from the (aligned) reference image."""

    name = "diff-grounder"
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "work_side": 384,  # images are shrunk to this long side before differencing
        "smooth_sigma": 2.0,  # Gaussian smoothing of both images (pixels), against noise/JPEG
        "mad_k": 6.0,  # threshold = median + k * 1.4826 * MAD of the difference ...
        "peak_fraction": 0.3,  # ... and at least this fraction of the largest difference
        "close_px": 7,  # closing (pixels) that joins the pieces of one changed region
        "align": True,  # estimate a translation by phase correlation first
        "top_k": 3,
    }
    RULES: ClassVar[dict[str, OptionRule]] = {
        "work_side": whole_number(1),
        "smooth_sigma": real_number(0),
        "mad_k": real_number(0),
        "peak_fraction": real_number(0),
        "close_px": whole_number(1),
        "align": true_or_false,
        "top_k": whole_number(1),
    }
    """What each option's value must be (:mod:`cot_ground.models.options`)."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        """Raises ``ValueError`` listing every unknown option and bad value."""
        self.options = resolve_options(self.name, options or {}, self.DEFAULTS, self.RULES)
        self.settings: dict[str, Any] = {"adapter": self.name, **self.options}

    def ground(self, requests: list[GroundRequest]) -> list[GroundResult]:
        """Ranked changed regions per request; ``no_box`` without a reference image."""
        return [self._one(r) for r in requests]

    def _one(self, request: GroundRequest) -> GroundResult:
        if request.reference_image is None:
            return GroundResult(
                raw_text="no reference image to compare with",
                status=ParseStatus.NO_BOX,
                settings=self.settings,
            )
        o = self.options
        target = open_rgb(request.image)
        a, f = _standardised(target, o["work_side"])
        reference = open_rgb(request.reference_image).resize(target.size, Image.Resampling.BILINEAR)
        b, _ = _standardised(reference, o["work_side"])
        shift = (0.0, 0.0)
        if o["align"]:
            from skimage.registration import phase_cross_correlation

            shift, _, _ = phase_cross_correlation(a.mean(axis=2), b.mean(axis=2), upsample_factor=1)
            b = ndimage.shift(b, (shift[0], shift[1], 0), order=1, mode="nearest")
        s = o["smooth_sigma"]
        diff = np.abs(
            ndimage.gaussian_filter(a, (s, s, 0)) - ndimage.gaussian_filter(b, (s, s, 0))
        ).max(axis=2)
        border = int(np.ceil(max(abs(shift[0]), abs(shift[1])))) + 2
        diff[:border], diff[-border:], diff[:, :border], diff[:, -border:] = 0, 0, 0, 0
        med = float(np.median(diff))
        mad = float(np.median(np.abs(diff - med))) * 1.4826
        threshold = max(med + o["mad_k"] * mad, o["peak_fraction"] * float(diff.max()))
        mask = diff > threshold
        mask = ndimage.binary_closing(mask, structure=np.ones((o["close_px"], o["close_px"])))
        labels, n = ndimage.label(mask)
        found = []
        if n:
            mass = ndimage.sum(diff, labels, index=np.arange(1, n + 1))
            for i, sl in enumerate(ndimage.find_objects(labels)):
                ys, xs = sl
                box = (xs.start / f, ys.start / f, xs.stop / f, ys.stop / f)
                found.append((float(mass[i]), box))
        total = sum(m for m, _ in found) or 1.0
        w, h = target.size
        candidates = [
            Candidate(box=Box.from_pixels(box, w, h), score=round(m / total, 4), label="difference")
            for m, box in sorted(found, key=lambda t: -t[0])[: o["top_k"]]
        ]
        raw = {
            "shift": [round(float(v), 2) for v in shift],
            "threshold": round(threshold, 4),
            "components": n,
        }
        return GroundResult(
            candidates=candidates,
            raw_text=json.dumps(raw),
            status=ParseStatus.OK if candidates else ParseStatus.NO_BOX,
            settings=self.settings,
        )


def _standardised(image: Image.Image, long_side: int) -> tuple[np.ndarray, float]:
    """RGB float array (shrunk to ``long_side``) with each channel at zero mean, unit spread."""
    image, f = shrink(image, long_side)
    arr = np.asarray(image, dtype=np.float32)
    mean = arr.mean(axis=(0, 1), keepdims=True)
    std = arr.std(axis=(0, 1), keepdims=True)
    return (arr - mean) / np.maximum(std, 1.0), f


def settings_problems(name: str, settings: ModelSettings) -> list[str]:
    """Problems of the options of ``diff-grounder`` (``name``): unknown keys and bad values, all
    at once; for the pre-flight check."""
    return option_problems(name, settings.options, DiffGrounder.DEFAULTS, DiffGrounder.RULES)


def build_diff_grounder(settings: ModelSettings) -> DiffGrounder:
    """``diff-grounder``: options are :attr:`DiffGrounder.DEFAULTS` keys."""
    return DiffGrounder(settings.options)
