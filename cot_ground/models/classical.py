"""Classical baselines (no weights): a rule-based reasoner and two picture-based grounders.

* :class:`RuleReasoner` (``rule-reasoner``) reads the question out of the step-1 prompt and
  answers which image holds the target with the loader's documented rule
  (:func:`cot_ground.bench.targets.target_image`), plus the picture step 2 should match
  (``reference_image``) and, when the question states one, the box on it (``reference_box``).
* :class:`TemplateGrounder` (``template-grounder``): multi-scale normalized cross-correlation of
  the reference picture (or of the reference box cut from it) over the target image.
* :class:`DiffGrounder` (``diff-grounder``): aligns the reference image to the target by phase
  correlation, thresholds their smoothed difference and boxes the largest changed component.
* :class:`ClassicalGrounder` (``classical-grounder``) sends difference tasks to the diff
  grounder, ``common_object`` to the keypoint grounder
  (:class:`cot_ground.models.keypoints.KeypointGrounder`, template search as its fallback) and
  every other task to the template grounder.

Correlation uses OpenCV's ``cv2.matchTemplate`` (``TM_CCOEFF_NORMED``) when OpenCV is
installed (it comes with the ``gdino`` extra) because it is about five times faster, and
``skimage.feature.match_template`` otherwise (scikit-image is a core dependency). Both compute
the same zero-mean normalized cross-correlation; the backend used is recorded in ``settings``.
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

import numpy as np
from PIL import Image
from scipy import ndimage

from cot_ground.bench.targets import TargetRuleError, target_image
from cot_ground.boxes import Box, nms
from cot_ground.images import open_rgb
from cot_ground.models.base import (
    ChatRequest,
    GroundRequest,
    GroundResult,
    ReasonerResult,
)
from cot_ground.models.keypoints import KeypointGrounder
from cot_ground.models.options import choose_backend, resolve_options
from cot_ground.models.settings import ModelSettings
from cot_ground.records import Candidate, ParseStatus
from cot_ground.tasks import (
    DIFF_TASKS,
    KEYPOINT_TASKS,
    SHARED_CONTENT_TASKS,
    get_task,
    reference_box,
    reference_image,
    task_of,
)

# ----------------------------------------------------------------------------- reasoner
_TASK_LINE = re.compile(r"^\s*Task:\s*(.+)$", re.MULTILINE)
_OBJECT_REF = re.compile(r"<\|object_ref_start\|>(.*?)<\|object_ref_end\|>", re.DOTALL)


def question_of(prompt: str) -> str:
    """The question inside a step-1 prompt: the ``Task:`` line if any, else the whole prompt."""
    match = _TASK_LINE.search(prompt)
    return match.group(1).strip() if match else prompt


class RuleReasoner:
    """Step 1 without a model: the target image and the reference come from the question text.

    Relies on the MIG-Bench question being in the prompt verbatim (the ``structured`` prompts
    put it on a ``Task:`` line; other prompts must contain it somewhere). Group-grounding
    questions name no image, so they get ``image_index=None`` and status ``malformed``.
    """

    name = "rule-reasoner"

    def __init__(self) -> None:
        self.settings: dict[str, Any] = {"adapter": self.name, "target_rule": "bench.targets"}

    def reason(self, requests: list[ChatRequest]) -> list[ReasonerResult]:
        """One answer per request (never raises for an unreadable question)."""
        return [self._one(r) for r in requests]

    def _one(self, request: ChatRequest) -> ReasonerResult:
        question = question_of(request.prompt)
        n = len(request.images)
        task = task_of(question)
        ref = _OBJECT_REF.search(question)
        if task is None or task == "group_grounding":
            why = "unknown question wording" if task is None else "the question names no image"
            return self._result(None, ref.group(1).strip() if ref else None, None, None, why)
        try:
            index, rule = target_image(task, question, "", n)
        except TargetRuleError as exc:
            return self._result(None, None, None, None, str(exc))
        if task in SHARED_CONTENT_TASKS:
            ref_image = 0 if index != 0 else 1
        else:
            ref_image = reference_image(get_task(task), question, n, index)
        ref_box = reference_box(get_task(task), question) if ref_image is not None else None
        if ref_image is None:
            description = f"the {task.replace('_', ' ')} target in image {index + 1}"
        elif task in DIFF_TASKS:
            description = f"what differs from image {ref_image + 1}"
        else:
            marked = " inside the marked box" if ref_box is not None else ""
            description = f"what image {ref_image + 1} shows{marked}"
        return self._result(index, description, ref_image, ref_box, f"{task}: {rule}")

    def _result(
        self,
        index: int | None,
        description: str | None,
        ref_image: int | None,
        ref_box: Box | None,
        why: str,
    ) -> ReasonerResult:
        raw = {"image": None if index is None else index + 1, "description": description}
        raw["rule"] = why
        return ReasonerResult(
            raw_text=json.dumps(raw),
            image_index=index,
            description=description,
            status=ParseStatus.OK if index is not None else ParseStatus.MALFORMED,
            settings=self.settings,
            reference_image=ref_image,
            reference_box=ref_box,
        )


# ----------------------------------------------------------------------------- correlation
def _ncc(image: np.ndarray, template: np.ndarray, backend: str) -> np.ndarray:
    """Zero-mean normalized cross-correlation of ``template`` at every valid offset."""
    if backend == "opencv":
        import cv2

        return cv2.matchTemplate(image, template, cv2.TM_CCOEFF_NORMED)
    from skimage.feature import match_template

    return match_template(image, template)


def _shrink(image: Image.Image, long_side: int) -> tuple[Image.Image, float]:
    """``image`` shrunk (box filter) so its long side is at most ``long_side``; the factor."""
    if max(image.size) <= long_side:
        return image, 1.0
    f = long_side / max(image.size)
    return image.resize((round(image.width * f), round(image.height * f)), Image.Resampling.BOX), f


def _grey(image: Image.Image, long_side: int) -> tuple[np.ndarray, float]:
    """Grey float32 array of ``image`` (shrunk to ``long_side`` if larger) and the factor used."""
    image, f = _shrink(image, long_side)
    return np.asarray(image.convert("L"), dtype=np.float32), f


def _unscaled(x: int, y: int, w: int, h: int, f: float) -> tuple[int, int, int, int]:
    """Pixel box of the ``w`` x ``h`` window at ``(x, y)`` of an image shrunk by ``f``, on the
    original image."""
    return round(x / f), round(y / f), round((x + w) / f), round((y + h) / f)


def _resize(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    img = Image.fromarray(arr, mode="F").resize(size, Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.float32)


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

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        opts = resolve_options(self.name, options or {}, self.DEFAULTS)
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
        image, f = _grey(target, o["work_side"])
        image = self._smooth(image)
        h, w = image.shape
        coarse = _resize(image, (max(1, w // 2), max(1, h // 2)))
        coarse_integrals = _integrals(coarse)
        tmpl = np.asarray(template.convert("L"), dtype=np.float32)
        sizes = self._sizes((tmpl.shape[1], tmpl.shape[0]), (w, h))
        integrals = _integrals(image)
        coarse_found, found = [], []
        for i, (tw, th) in enumerate(sizes):
            small = min(tw, th) < 2 * o["min_template_px"]  # too small to halve: full size
            level, level_integrals = (image, integrals) if small else (coarse, coarse_integrals)
            t = self._smooth(_resize(tmpl, (tw, th) if small else (tw // 2, th // 2)))
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
                scores = self._scores(sub, _integrals(sub), self._smooth(_resize(tmpl, (tw, th))))
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
        image, f = _grey(target, o["shared_side"])
        ref, _ = _grey(reference, o["shared_side"])
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


# ----------------------------------------------------------------------------- difference
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

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.options = resolve_options(self.name, options or {}, self.DEFAULTS)
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
    image, f = _shrink(image, long_side)
    arr = np.asarray(image, dtype=np.float32)
    mean = arr.mean(axis=(0, 1), keepdims=True)
    std = arr.std(axis=(0, 1), keepdims=True)
    return (arr - mean) / np.maximum(std, 1.0), f


# ----------------------------------------------------------------------------- dispatch
class ClassicalGrounder:
    """Difference tasks go to :class:`DiffGrounder`, ``common_object`` to a
    :class:`KeypointGrounder` (falling back to the template grounder), all others to
    :class:`TemplateGrounder`."""

    name = "classical-grounder"

    def __init__(
        self,
        template: TemplateGrounder,
        diff: DiffGrounder,
        keypoint_options: dict[str, Any] | None = None,
    ) -> None:
        self.template = template
        self.diff = diff
        self.keypoint = KeypointGrounder(keypoint_options, fallback=template)
        self.settings: dict[str, Any] = {
            "adapter": self.name,
            "template": template.settings,
            "diff": diff.settings,
            "keypoint": self.keypoint.settings,
            "diff_tasks": sorted(DIFF_TASKS),
            "keypoint_tasks": sorted(KEYPOINT_TASKS),
        }

    def ground(self, requests: list[GroundRequest]) -> list[GroundResult]:
        """Each request answered by the grounder its task calls for (order kept)."""
        return [self._grounder(r.task).ground([r])[0] for r in requests]

    def _grounder(self, task: str | None) -> TemplateGrounder | DiffGrounder | KeypointGrounder:
        if task in DIFF_TASKS:
            return self.diff
        return self.keypoint if task in KEYPOINT_TASKS else self.template


def build_rule_reasoner(settings: ModelSettings) -> RuleReasoner:
    """``rule-reasoner``: takes no options."""
    resolve_options("rule-reasoner", settings.options, {})
    return RuleReasoner()


def build_template_grounder(settings: ModelSettings) -> TemplateGrounder:
    """``template-grounder``: options are :attr:`TemplateGrounder.DEFAULTS` keys."""
    return TemplateGrounder(settings.options)


def build_diff_grounder(settings: ModelSettings) -> DiffGrounder:
    """``diff-grounder``: options are :attr:`DiffGrounder.DEFAULTS` keys."""
    return DiffGrounder(settings.options)


def build_keypoint_grounder(settings: ModelSettings) -> KeypointGrounder:
    """``keypoint-grounder``: options are :attr:`KeypointGrounder.DEFAULTS` keys; the template
    grounder (default options) answers when matching fails."""
    return KeypointGrounder(settings.options, fallback=TemplateGrounder())


def build_classical_grounder(settings: ModelSettings) -> ClassicalGrounder:
    """``classical-grounder``: options ``{"template": {...}, "diff": {...}, "keypoint": {...}}``."""
    opts = resolve_options(
        "classical-grounder", settings.options, {"template": {}, "diff": {}, "keypoint": {}}
    )
    return ClassicalGrounder(
        TemplateGrounder(opts["template"]), DiffGrounder(opts["diff"]), opts["keypoint"]
    )
