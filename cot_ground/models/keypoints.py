"""Shared-object grounding by keypoint matching (``keypoint-grounder``, no weights).

For "the object these images share": SIFT keypoints of the target image are matched to those
of the reference image (nearest neighbour with Lowe's ratio test, kept only when mutual), a
similarity transform (rotation, uniform scale, shift) is fitted to the matches by RANSAC, and
the target's inlier keypoints locate the object. Keypoints sit inside the object, so their box
is too small; it is refined by warping the reference onto the target with the fitted transform
and keeping the connected region where the two agree (local normalized cross-correlation): the
shared object agrees, the different backgrounds do not. With too few inliers the request goes
to the fallback grounder (the template search).

SIFT comes from OpenCV (``cv2.SIFT_create``) when it is installed, else from scikit-image
(``skimage.feature.SIFT``, slower); matching, RANSAC (``skimage.measure.ransac`` with a fixed
seed) and the refinement are shared, so results are deterministic. The backend is recorded in
``settings``.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Protocol

import numpy as np
from PIL import Image
from scipy import ndimage

from cot_ground.boxes import Box
from cot_ground.images import open_rgb
from cot_ground.models.base import GroundRequest, GroundResult
from cot_ground.models.options import (
    OptionRule,
    any_number,
    choose_backend,
    number_list,
    one_of,
    option_problems,
    real_number,
    resolve_options,
    whole_number,
)
from cot_ground.models.settings import ModelSettings
from cot_ground.records import Candidate, ParseStatus
from cot_ground.tasks import KEYPOINT_TASKS


class _Grounder(Protocol):
    def ground(self, requests: list[GroundRequest]) -> list[GroundResult]: ...


def sift_features(
    grey: np.ndarray, backend: str, contrast: float, most: int
) -> tuple[np.ndarray, np.ndarray]:
    """SIFT keypoints ``(n, 2)`` as ``(x, y)`` pixels and descriptors ``(n, 128)`` of a
    ``uint8`` grey image; ``contrast`` is OpenCV's ``contrastThreshold``, ``most`` the largest
    number of keypoints kept (strongest first)."""
    if backend == "opencv":
        import cv2

        sift = cv2.SIFT_create(nfeatures=most, contrastThreshold=contrast)
        keypoints, descriptors = sift.detectAndCompute(grey, None)
        if descriptors is None:
            return np.zeros((0, 2)), np.zeros((0, 128), dtype=np.float32)
        return np.array([k.pt for k in keypoints], dtype=np.float64), descriptors
    from skimage.feature import SIFT

    sift = SIFT(c_dog=contrast / 3)  # OpenCV divides its threshold by the 3 scales per octave
    try:
        sift.detect_and_extract(grey.astype(np.float64) / 255.0)
    except RuntimeError:  # raised when no keypoint survives
        return np.zeros((0, 2)), np.zeros((0, 128), dtype=np.float32)
    points, descriptors = sift.keypoints[:most, ::-1], sift.descriptors[:most]
    return points.astype(np.float64), descriptors.astype(np.float32)


def mutual_ratio_matches(a: np.ndarray, b: np.ndarray, ratio: float) -> np.ndarray:
    """Index pairs ``(i, j)`` where ``b[j]`` is ``a[i]``'s nearest neighbour, passes the ratio
    test against the second nearest, and has ``a[i]`` as its own nearest neighbour."""
    if len(a) < 2 or len(b) < 2:
        return np.zeros((0, 2), dtype=int)
    a, b = a.astype(np.float64), b.astype(np.float64)
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    rows = np.arange(len(a))
    nearest = np.argmin(d2, axis=1)
    best = d2[rows, nearest]
    d2_second = d2.copy()
    d2_second[rows, nearest] = np.inf
    second = d2_second.min(axis=1)
    back = np.argmin(d2, axis=0)
    keep = (best < ratio**2 * second) & (back[nearest] == rows)
    return np.stack([rows[keep], nearest[keep]], axis=1)


def local_ncc(a: np.ndarray, b: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian-windowed normalized cross-correlation of two images and the smaller of their
    local grey-level spreads (per pixel)."""
    g = ndimage.gaussian_filter
    ma, mb = g(a, sigma), g(b, sigma)
    va = np.maximum(g(a * a, sigma) - ma * ma, 0.0)
    vb = np.maximum(g(b * b, sigma) - mb * mb, 0.0)
    cov = g(a * b, sigma) - ma * mb
    return cov / np.sqrt(va * vb + 1e-6), np.sqrt(np.minimum(va, vb))


class KeypointGrounder:
    """Finds the object the target and reference images share by matched SIFT keypoints."""

    name = "keypoint-grounder"
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "backend": "auto",
        "work_side": 512,  # images are shrunk to this long side before detection
        "contrast": 0.01,  # SIFT contrast threshold (OpenCV default 0.04: too few on flat objects)
        "max_keypoints": 2000,
        "ratio": 0.8,  # Lowe's ratio test on descriptor distances
        "ransac_px": 4.0,  # RANSAC inlier distance (work pixels)
        "ransac_trials": 1000,
        "ransac_seed": 0,
        "min_inliers": 6,  # fewer: the fallback grounder answers
        "scale_range": [0.25, 4.0],  # accepted scale of the reference-to-target similarity
        "ncc_sigma": 3.0,  # window of the agreement map (work pixels)
        "ncc_threshold": 0.5,  # agreement above this counts as the shared object
        "min_spread": 3.0,  # grey-level spread below which a pixel cannot agree
        "close_px": 9,  # closing that joins agreeing pieces of the object
        "erode_px": 4,  # the agreeing region is eroded by this much before boxing
        "top_k": 2,
    }
    RULES: ClassVar[dict[str, OptionRule]] = {
        "backend": one_of("auto", "opencv", "skimage"),
        "work_side": whole_number(1),
        "contrast": real_number(0),
        "max_keypoints": whole_number(1),
        "ratio": real_number(0),
        "ransac_px": real_number(0),
        "ransac_trials": whole_number(1),
        "ransac_seed": whole_number(0, optional=True),
        "min_inliers": whole_number(1),
        "scale_range": number_list(2, minimum=0),
        "ncc_sigma": real_number(0),
        "ncc_threshold": any_number,
        "min_spread": real_number(0),
        "close_px": whole_number(1),
        "erode_px": whole_number(0),
        "top_k": whole_number(1),
    }
    """What each option's value must be (:mod:`cot_ground.models.options`; ``ransac_seed``
    null draws a new seed per request)."""

    def __init__(self, options: dict[str, Any] | None = None, fallback: _Grounder | None = None):
        """Raises ``ValueError`` listing every unknown option and bad value."""
        opts = resolve_options(self.name, options or {}, self.DEFAULTS, self.RULES)
        opts["backend"] = choose_backend(opts["backend"], "keypoint-grounder")
        self.options = opts
        self.fallback = fallback
        self.settings: dict[str, Any] = {
            "adapter": self.name,
            **opts,
            "tasks": sorted(KEYPOINT_TASKS),
            "fallback": getattr(fallback, "name", None),
        }

    def ground(self, requests: list[GroundRequest]) -> list[GroundResult]:
        """Ranked boxes per request; the fallback's answer (or ``no_box``) when matching fails."""
        return [self._one(r) for r in requests]

    def _one(self, request: GroundRequest) -> GroundResult:
        if request.reference_image is None:
            return self._fail(request, "no reference picture to match")
        o = self.options
        target_rgb = open_rgb(request.image)
        target, f = _grey_u8(target_rgb, o["work_side"])
        reference, _ = _grey_u8(open_rgb(request.reference_image), o["work_side"])
        pt, dt = sift_features(target, o["backend"], o["contrast"], o["max_keypoints"])
        pr, dr = sift_features(reference, o["backend"], o["contrast"], o["max_keypoints"])
        pairs = mutual_ratio_matches(dt, dr, o["ratio"])
        info: dict[str, Any] = {"keypoints": [len(pt), len(pr)], "matches": len(pairs)}
        if len(pairs) < o["min_inliers"]:
            return self._fail(request, json.dumps({**info, "why": "too few matches"}))
        model, inliers = self._fit(pr[pairs[:, 1]], pt[pairs[:, 0]])
        n_in = 0 if inliers is None else int(inliers.sum())
        info["inliers"] = n_in
        if model is None or n_in < o["min_inliers"]:
            return self._fail(request, json.dumps({**info, "why": "too few consistent matches"}))
        info["scale"] = round(float(model.scale), 3)
        if not o["scale_range"][0] <= model.scale <= o["scale_range"][1]:
            return self._fail(request, json.dumps({**info, "why": "implausible scale"}))
        points = pt[pairs[inliers, 0]]
        core = (*points.min(axis=0), *(points.max(axis=0) + 1))
        refined = self._agreement_box(target, reference, model, points)
        found = [(1.0, refined, "agreement"), (0.5, core, "inlier_keypoints")]
        if refined is None:
            found = [(1.0, core, "inlier_keypoints")]
        w, h = target_rgb.size
        candidates = [
            Candidate(
                box=Box.from_pixels([v / f for v in box], w, h),
                score=score * min(1.0, n_in / (4 * o["min_inliers"])),
                label=label,
            )
            for score, box, label in found[: o["top_k"]]
        ]
        return GroundResult(
            candidates=candidates,
            raw_text=json.dumps({**info, "boxes": [c.label for c in candidates]}),
            status=ParseStatus.OK,
            settings=self.settings,
        )

    def _fit(self, src: np.ndarray, dst: np.ndarray) -> tuple[Any, np.ndarray | None]:
        from skimage.measure import ransac
        from skimage.transform import SimilarityTransform

        o = self.options
        return ransac(
            (src, dst),
            SimilarityTransform,
            min_samples=2,
            residual_threshold=o["ransac_px"],
            max_trials=o["ransac_trials"],
            rng=o["ransac_seed"],
        )

    def _agreement_box(
        self, target: np.ndarray, reference: np.ndarray, model: Any, points: np.ndarray
    ) -> tuple[float, float, float, float] | None:
        """Box of the agreeing region (warped reference vs target) holding most inliers."""
        from skimage.transform import warp

        o = self.options
        a = target.astype(np.float64)
        b = warp(reference.astype(np.float64), model.inverse, output_shape=a.shape, cval=np.nan)
        valid = ~np.isnan(b)
        b = np.where(valid, b, a.mean())
        ncc, spread = local_ncc(a, b, o["ncc_sigma"])
        agree = (ncc > o["ncc_threshold"]) & (spread > o["min_spread"]) & valid
        k = o["close_px"]
        agree = ndimage.binary_closing(agree, np.ones((k, k)), border_value=0)
        agree = ndimage.binary_fill_holes(agree)
        e = o["erode_px"]  # the correlation window reaches past the object's edge
        if e > 0:
            agree = ndimage.binary_erosion(agree, np.ones((2 * e + 1, 2 * e + 1)))
        labels, n = ndimage.label(agree)
        if n == 0:
            return None
        rows = np.clip(points[:, 1].astype(int), 0, a.shape[0] - 1)
        cols = np.clip(points[:, 0].astype(int), 0, a.shape[1] - 1)
        votes = np.bincount(labels[rows, cols], minlength=n + 1)[1:]
        if votes.max() == 0:
            return None
        ys, xs = ndimage.find_objects(labels)[int(np.argmax(votes))]
        return xs.start, ys.start, xs.stop, ys.stop

    def _fail(self, request: GroundRequest, why: str) -> GroundResult:
        if self.fallback is None:
            return GroundResult(raw_text=why, status=ParseStatus.NO_BOX, settings=self.settings)
        result = self.fallback.ground([request])[0]
        raw = json.dumps({"keypoints_failed": why, "fallback": result.raw_text})
        return result.model_copy(update={"raw_text": raw})


def _grey_u8(image: Image.Image, long_side: int) -> tuple[np.ndarray, float]:
    """Grey ``uint8`` array of ``image`` (shrunk to ``long_side`` if larger) and the factor."""
    f = 1.0
    if max(image.size) > long_side:
        f = long_side / max(image.size)
        size = (round(image.width * f), round(image.height * f))
        image = image.resize(size, Image.Resampling.BOX)
    return np.asarray(image.convert("L"), dtype=np.uint8), f


def settings_problems(name: str, settings: ModelSettings) -> list[str]:
    """Problems of the options of ``keypoint-grounder`` (``name``): unknown keys and bad values,
    all at once; for the pre-flight check."""
    return option_problems(
        name, settings.options, KeypointGrounder.DEFAULTS, KeypointGrounder.RULES
    )
