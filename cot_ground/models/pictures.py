"""Picture helpers shared by the classical grounders: shrinking, grey arrays, resampling."""

from __future__ import annotations

import numpy as np
from PIL import Image


def shrink(image: Image.Image, long_side: int) -> tuple[Image.Image, float]:
    """``image`` shrunk (box filter) so its long side is at most ``long_side``; the factor."""
    if max(image.size) <= long_side:
        return image, 1.0
    f = long_side / max(image.size)
    return image.resize((round(image.width * f), round(image.height * f)), Image.Resampling.BOX), f


def grey(image: Image.Image, long_side: int) -> tuple[np.ndarray, float]:
    """Grey float32 array of ``image`` (shrunk to ``long_side`` if larger) and the factor used."""
    image, f = shrink(image, long_side)
    return np.asarray(image.convert("L"), dtype=np.float32), f


def resize_array(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Float32 array ``arr`` resized (bilinear) to ``size`` = ``(width, height)``."""
    img = Image.fromarray(arr, mode="F").resize(size, Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.float32)
