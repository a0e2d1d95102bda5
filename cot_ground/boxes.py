"""Bounding boxes and the coordinate frames models answer in.

Every box inside cot-ground is a :class:`Box` in *normalized* coordinates: ``[x1, y1, x2,
y2]`` as fractions of the image width and height. Model answers and annotation files use other
frames; each has a named constructor and nothing ever guesses a frame from the size of the
numbers.

Frames (see :class:`Frame`; the value in quotes is what configs, run.json and settings record):

* ``Frame.NORMALIZED`` (``"unit"``; ``Frame.UNIT`` is the same member) floats in ``[0, 1]``
  (MIG-Bench ``MIG_data.json`` ground truth).
* ``Frame.QWEN1000`` (``"qwen1000"``) integers in ``[0, 1000)`` (Qwen2-VL, Migician, the
  revised MIG-Bench file and the released evaluation logs) and ``Frame.QWEN3_1000``
  (``"qwen3_1000"``) integers in ``[0, 1000]`` (Qwen3-VL): one conversion (thousandths of the
  width and height, :meth:`Box.from_thousandths`), two documented ranges, kept apart because
  runs record which one a model answers in.
* ``Frame.PIXELS`` (``"pixels"``) absolute pixels of a stated ``(width, height)``; for
  Qwen2.5-VL that size is the *resized* model input, not the original picture.

Geometry on boxes lives here too: :func:`iou`, :func:`xyxy_iou` and greedy non-maximum
suppression (:func:`nms`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import Enum

from pydantic import BaseModel, ConfigDict, field_validator


class Frame(str, Enum):
    """A coordinate frame in which a model or a file states a box.

    ``Frame("normalized")`` is accepted for :attr:`NORMALIZED`, whose recorded value stays
    ``"unit"`` so that existing configs and run folders read the same.
    """

    NORMALIZED = "unit"
    UNIT = "unit"  # the same member as NORMALIZED (an Enum alias)
    QWEN1000 = "qwen1000"
    QWEN3_1000 = "qwen3_1000"
    PIXELS = "pixels"

    @classmethod
    def _missing_(cls, value: object) -> Frame | None:
        return cls.NORMALIZED if value == "normalized" else None


class Box(BaseModel):
    """A box in normalized coordinates. Inverted or out-of-range boxes are kept as given (see
    flags)."""

    model_config = ConfigDict(frozen=True)

    x1: float
    y1: float
    x2: float
    y2: float

    @field_validator("x1", "y1", "x2", "y2")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError(f"box coordinate must be finite, got {v!r}")
        return float(v)

    # ----------------------------------------------------------------- constructors
    @classmethod
    def from_unit(cls, coords: Sequence[float]) -> Box:
        """Box from ``[x1, y1, x2, y2]`` floats already in ``[0, 1]``."""
        x1, y1, x2, y2 = _four(coords)
        return cls(x1=x1, y1=y1, x2=x2, y2=y2)

    @classmethod
    def from_thousandths(cls, coords: Sequence[float]) -> Box:
        """Box from thousandths of the width and height: the Qwen2-VL / Migician frame
        ``[0, 1000)`` and the Qwen3-VL frame ``[0, 1000]``."""
        x1, y1, x2, y2 = _four(coords)
        return cls(x1=x1 / 1000, y1=y1 / 1000, x2=x2 / 1000, y2=y2 / 1000)

    from_qwen1000 = from_thousandths
    from_qwen3_1000 = from_thousandths

    @classmethod
    def from_pixels(cls, coords: Sequence[float], width: float, height: float) -> Box:
        """Box from absolute pixels of an image of ``width`` x ``height`` pixels."""
        if width <= 0 or height <= 0:
            raise ValueError(f"image size must be positive, got {width}x{height}")
        x1, y1, x2, y2 = _four(coords)
        return cls(x1=x1 / width, y1=y1 / height, x2=x2 / width, y2=y2 / height)

    @classmethod
    def from_frame(
        cls, coords: Sequence[float], frame: Frame | str, size: tuple[float, float] | None = None
    ) -> Box:
        """Box from coordinates in the named ``frame``; ``size`` is required for pixels."""
        frame = Frame(frame)
        if frame is Frame.PIXELS:
            if size is None:
                raise ValueError("the pixels frame needs the (width, height) of the image")
            return cls.from_pixels(coords, *size)
        if frame is Frame.NORMALIZED:
            return cls.from_unit(coords)
        return cls.from_thousandths(coords)

    # ----------------------------------------------------------------- conversions
    def to_list(self) -> list[float]:
        """``[x1, y1, x2, y2]`` in normalized coordinates."""
        return [self.x1, self.y1, self.x2, self.y2]

    def to_frame(self, frame: Frame | str, size: tuple[float, float] | None = None) -> list[float]:
        """Coordinates in ``frame`` (exact inverse of :meth:`from_frame`, no rounding)."""
        frame = Frame(frame)
        if frame is Frame.NORMALIZED:
            return self.to_list()
        if frame is Frame.PIXELS:
            if size is None:
                raise ValueError("the pixels frame needs the (width, height) of the image")
            w, h = size
            return [self.x1 * w, self.y1 * h, self.x2 * w, self.y2 * h]
        return [v * 1000 for v in self.to_list()]

    def to_pixels(self, width: float, height: float) -> list[float]:
        """Absolute pixel coordinates on an image of ``width`` x ``height``."""
        return self.to_frame(Frame.PIXELS, (width, height))

    def clipped(self) -> Box:
        """The box with every coordinate clipped to ``[0, 1]`` (order unchanged)."""
        c = [min(1.0, max(0.0, v)) for v in self.to_list()]
        return Box.from_unit(c)

    # ----------------------------------------------------------------- flags
    @property
    def is_inverted(self) -> bool:
        """True when ``x2 < x1`` or ``y2 < y1``."""
        return self.x2 < self.x1 or self.y2 < self.y1

    @property
    def in_unit_range(self) -> bool:
        """True when every coordinate lies in ``[0, 1]``."""
        return all(0.0 <= v <= 1.0 for v in self.to_list())

    @property
    def area(self) -> float:
        """Area as a fraction of the image area; 0 for inverted or degenerate boxes."""
        return max(0.0, self.x2 - self.x1) * max(0.0, self.y2 - self.y1)


def _four(coords: Sequence[float]) -> tuple[float, float, float, float]:
    values = list(coords)
    if len(values) != 4:
        raise ValueError(f"a box needs 4 numbers [x1, y1, x2, y2], got {len(values)}: {values!r}")
    try:
        x1, y1, x2, y2 = (float(v) for v in values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"box coordinates must be numbers, got {values!r}") from exc
    return x1, y1, x2, y2


def iou(pred: Box | None, gt: Box) -> float:
    """Intersection over union in normalized coordinates; 0 for None, inverted or degenerate
    boxes."""
    return 0.0 if pred is None else xyxy_iou(pred.to_list(), gt.to_list())


IOU_DECIMALS = 10
"""Decimals every IoU is rounded to (:func:`xyxy_iou`), so that a tie at a threshold counts.

Boxes of the ``[0, 1000]`` frames are stored as ``v / 1000``, so an IoU computed from them
carries floating-point error: ``[41, 265, 74, 328]`` against ``[41, 265, 107, 328]`` has IoU
exactly 1/2 (the public MIG-Bench script, computing on the integers, counts it at 0.5) but
gives ``0.4999999999999999``. Why rounding to 10 decimals is exact at the thresholds:

* the error: coordinates in ``[0, 1]`` carry at most ~1.1e-16 each; a side of at least one
  thousandth then carries a relative error of at most ~2.2e-13, so the IoU is off by well
  under 1e-11, which rounding to 10 decimals (a move of at most 5e-11) removes;
* no false tie: for integer boxes (thousandths, or pixels) the IoU is ``p / q`` with ``q`` the
  union area, an integer (at most 1e6 in the thousandths frames, 1e8 for pictures of up to
  10,000 x 10,000 pixels). A threshold with at most 2 decimals is ``a / 100``, so a value that
  is not a tie differs from it by ``|100 p - a q| / (100 q) >= 1 / (100 q) >= 1e-10``: rounding
  never carries it across the threshold.

The mean IoU moves by at most 5e-11.
"""


def xyxy_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two ``[x1, y1, x2, y2]`` boxes stated in one and the same frame (normalized,
    pixels...), rounded to :data:`IOU_DECIMALS` decimals so that an exact tie at a threshold
    compares equal to it (IoU >= t, as the public MIG-Bench rule); 0 when they do not overlap
    or either is inverted or degenerate."""
    ix = min(a[2], b[2]) - max(a[0], b[0])
    iy = min(a[3], b[3]) - max(a[1], b[1])
    if ix <= 0 or iy <= 0:  # also every inverted box: x2 < x1 makes ix negative
        return 0.0
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return round(inter / union, IOU_DECIMALS) if union > 0 else 0.0


def nms(boxes: Sequence[Sequence[float]], iou_threshold: float, k: int) -> list[int]:
    """Greedy non-maximum suppression over ``[x1, y1, x2, y2]`` boxes (one frame), best first.

    Walks ``boxes`` in the order given (the caller ranks them) and keeps a box unless its
    :func:`xyxy_iou` with a kept one is at least ``iou_threshold``; stops once ``k`` are kept.
    Returns the indices of the kept boxes, in input order.
    """
    kept: list[int] = []
    for i, box in enumerate(boxes):
        if all(xyxy_iou(box, boxes[j]) < iou_threshold for j in kept):
            kept.append(i)
        if len(kept) == k:
            break
    return kept
