"""Perturbations of MIG-Lite pictures (scale, small rotation, colour jitter, blur, noise, JPEG).

Their strength follows one ``difficulty`` number in ``[0, 1]``: 0 leaves copies pixel-exact
(up to resampling), 1 is the strongest setting. Every random draw comes from the
``numpy.random.Generator`` passed in, so a seed fixes every picture.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

DEFAULT_DIFFICULTY = 0.5


@dataclass(frozen=True)
class Perturbation:
    """Strength of each perturbation at one difficulty."""

    difficulty: float
    scale_jitter: float
    """A copied object or region is rescaled by a factor in ``[1/(1+j), 1+j]`` (log-uniform)."""
    max_rotation_deg: float
    """Copies are rotated by up to this many degrees either way."""
    colour_jitter: float
    """Brightness, contrast and saturation factors are drawn from ``[1-c, 1+c]``."""
    max_blur_sigma: float
    """Half of the pictures are blurred with a Gaussian of sigma up to this (pixels)."""
    noise_sigma: float
    """Standard deviation of additive Gaussian noise (grey levels 0-255)."""
    min_jpeg_quality: int
    """Pictures are saved as JPEG with a quality drawn from ``[min, 95]``."""

    @classmethod
    def at(cls, difficulty: float) -> Perturbation:
        """The perturbation strengths of ``difficulty`` (0 = none, 1 = strongest)."""
        if not 0.0 <= difficulty <= 1.0:
            raise ValueError(f"difficulty must lie in [0, 1], got {difficulty}")
        d = float(difficulty)
        return cls(
            difficulty=d,
            scale_jitter=0.5 * d,
            max_rotation_deg=10.0 * d,
            colour_jitter=0.3 * d,
            max_blur_sigma=1.6 * d,
            noise_sigma=6.0 * d,
            min_jpeg_quality=round(95 - 60 * d),
        )

    def to_dict(self) -> dict[str, Any]:
        """The strengths as a JSON-ready dict."""
        return asdict(self)

    # ------------------------------------------------------------------ draws
    def scale(self, rng: np.random.Generator) -> float:
        """A rescaling factor for a copy."""
        j = math.log1p(self.scale_jitter)
        return math.exp(rng.uniform(-j, j))

    def angle(self, rng: np.random.Generator) -> float:
        """A rotation angle in degrees for a copy."""
        return float(rng.uniform(-self.max_rotation_deg, self.max_rotation_deg))

    def jpeg_quality(self, rng: np.random.Generator) -> int:
        """The JPEG quality a picture is saved with."""
        return int(rng.integers(self.min_jpeg_quality, 96))

    def photometric(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        """Colour jitter, then (half of the time) blur, then noise."""
        c = self.colour_jitter
        brightness, contrast, saturation = rng.uniform(1 - c, 1 + c, size=3)
        blur = rng.uniform(0.0, self.max_blur_sigma) if rng.random() < 0.5 else 0.0
        arr = np.asarray(image, dtype=np.float32)
        grey = arr.mean(axis=2, keepdims=True)
        arr = grey + (arr - grey) * saturation
        mean = arr.mean()
        arr = ((arr - mean) * contrast + mean) * brightness
        out = Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8))
        if blur > 0.05:
            out = out.filter(ImageFilter.GaussianBlur(radius=float(blur)))
        if self.noise_sigma > 0:
            noisy = np.asarray(out, dtype=np.float32)
            noisy = noisy + rng.normal(0.0, self.noise_sigma, size=noisy.shape)
            out = Image.fromarray(np.clip(noisy + 0.5, 0, 255).astype(np.uint8))
        return out


def render_patch(
    photo: Image.Image,
    box: tuple[float, float, float, float],
    size: tuple[int, int],
    angle_deg: float = 0.0,
) -> Image.Image:
    """The content of ``box`` on ``photo``, rotated by ``angle_deg`` and resized to ``size``.

    The rotation turns the content inside an unrotated rectangle (context around the box fills
    the corners, mirrored at the photo's border), so the copy's exact box is the rectangle it
    is pasted into.
    """
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    theta = math.radians(abs(angle_deg))
    mx = (w * math.cos(theta) + h * math.sin(theta) - w) / 2 + 2
    my = (h * math.cos(theta) + w * math.sin(theta) - h) / 2 + 2
    ctx = (math.floor(x1 - mx), math.floor(y1 - my), math.ceil(x2 + mx), math.ceil(y2 + my))
    context = _crop_mirrored(photo, ctx)
    out_w, out_h = size
    sx, sy = out_w / w, out_h / h
    cw, ch = max(1, round(context.width * sx)), max(1, round(context.height * sy))
    context = context.resize((cw, ch), Image.Resampling.BICUBIC)
    if abs(angle_deg) > 1e-3:
        context = context.rotate(angle_deg, resample=Image.Resampling.BICUBIC)
    left = (x1 - ctx[0]) * sx
    top = (y1 - ctx[1]) * sy
    left_i, top_i = round(left), round(top)
    return context.crop((left_i, top_i, left_i + out_w, top_i + out_h))


def _crop_mirrored(photo: Image.Image, box: tuple[int, int, int, int]) -> Image.Image:
    """``photo.crop(box)`` with parts outside the photo filled by mirroring its border."""
    x1, y1, x2, y2 = box
    w, h = photo.size
    ix1, iy1, ix2, iy2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
    inner = np.asarray(photo.crop((ix1, iy1, ix2, iy2)))
    pad = ((iy1 - y1, y2 - iy2), (ix1 - x1, x2 - ix2), (0, 0))
    if any(p for pair in pad for p in pair):
        inner = np.pad(inner, pad, mode="symmetric")
    return Image.fromarray(inner)


def resize_long_side(image: Image.Image, long_side: int) -> Image.Image:
    """``image`` scaled so that its longer side is ``long_side`` pixels."""
    w, h = image.size
    f = long_side / max(w, h)
    return image.resize((max(1, round(w * f)), max(1, round(h * f))), Image.Resampling.LANCZOS)
