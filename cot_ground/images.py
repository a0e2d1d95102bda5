"""The one image decoder: every consumer gets the picture a person sees, decoded once per file.

Graph state carries image *paths* only; adapters, the HTML report, MIG-Lite and the classical
grounders call :func:`open_rgb`, so step 1 and step 2 of the same example decode each file once
(a small process-wide LRU cache keyed by path, mtime and size) and every model sees the same
pixels. :func:`decode_rgb` turns a file into an 8-bit RGB picture:

* the EXIF orientation tag is applied (a photo is used in its displayed frame, the frame the
  annotator drew the box in);
* transparency (RGBA, LA, PA, palette or RGB/L with a transparent colour) is composited onto
  white, as reference MLLM pre-processing does;
* high-bit-depth greyscale is scaled to 8 bits: ``I;16`` modes by their fixed 16-bit range
  (``v / 257``); ``I`` (32-bit integer) and ``F`` (32-bit float), which have no fixed range, by
  the picture's own range ``[min, max]`` stretched to ``[0, 255]``;
* a picture with more than the pixel limit (:func:`max_pixels`; environment variable
  ``COT_GROUND_MAX_IMAGE_PIXELS``, default Pillow's own limit of 89,478,485 pixels) is refused
  before its pixels are decoded.

Every failure (missing file, not an image, truncated or corrupt data, a decompression bomb)
raises :class:`ImageLoadError` naming the path; graphs and the runner record it on the example
with the error category ``image_error``.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

MAX_PIXELS_ENV = "COT_GROUND_MAX_IMAGE_PIXELS"
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's Image.MAX_IMAGE_PIXELS default (1024**3 // 4 // 3)
WHITE = (255, 255, 255)
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})

# The size check below replaces Pillow's warning zone; Pillow's own error (above twice its
# limit) still fires while decoding and becomes an ImageLoadError like any other failure.
warnings.simplefilter("ignore", Image.DecompressionBombWarning)


class ImageLoadError(RuntimeError):
    """An image file is missing, not an image, truncated, corrupt or too large; the message
    names the path."""


def max_pixels() -> int:
    """The pixel limit (width × height) above which a picture is refused.

    Read from ``COT_GROUND_MAX_IMAGE_PIXELS`` at each call (so Ray workers and subprocesses see
    the same value), else :data:`DEFAULT_MAX_PIXELS`. Raises ``ValueError`` for a value that is
    not a positive integer.
    """
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError(f"{MAX_PIXELS_ENV}={raw!r}: expected a positive integer pixel count")
    return value


def decode_rgb(path: str | os.PathLike[str], limit: int | None = None) -> Image.Image:
    """The 8-bit RGB picture a person sees in the file at ``path`` (see the module docstring).

    ``limit``: the pixel limit (default :func:`max_pixels`). Raises :class:`ImageLoadError`
    naming ``path`` for every failure.
    """
    p = Path(path)
    limit = max_pixels() if limit is None else limit
    if not p.exists():
        raise ImageLoadError(f"image not found: {p}")
    if Image.MAX_IMAGE_PIXELS is not None and limit > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = limit  # a raised limit must also pass Pillow's check at open
    try:
        with Image.open(p) as im:
            width, height = im.size
            if width * height > limit:
                raise ImageLoadError(
                    f"image {p} has {width}x{height} = {width * height:,} pixels, above the "
                    f"limit of {limit:,} ({MAX_PIXELS_ENV})"
                )
            im.load()
            return _normalise(ImageOps.exif_transpose(im))
    except ImageLoadError:
        raise
    except Exception as exc:  # Pillow raises many types (OSError, SyntaxError, bomb errors...)
        raise ImageLoadError(f"cannot decode image {p}: {type(exc).__name__}: {exc}") from exc


def _normalise(im: Image.Image) -> Image.Image:
    """8-bit RGB from any Pillow mode (transparency onto white, high bit depths scaled)."""
    if im.mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(im, dtype=np.float64) / 257.0
        return _grey_to_rgb(values)
    if im.mode in ("I", "F"):
        values = np.asarray(im, dtype=np.float64)
        finite = values[np.isfinite(values)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        scaled = (values - low) * (255.0 / (high - low)) if high > low else values - low
        return _grey_to_rgb(np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0))
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*WHITE, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")


def _grey_to_rgb(values: np.ndarray) -> Image.Image:
    grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, mode="L").convert("RGB")


class ImageCache:
    """LRU cache of decoded RGB pictures keyed by (path, mtime, size)."""

    def __init__(self, capacity: int = 64) -> None:
        self.capacity = capacity
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[tuple[str, float, int], Image.Image] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: str | os.PathLike[str]) -> Image.Image:
        """The decoded picture at ``path`` (:func:`decode_rgb`); raises :class:`ImageLoadError`."""
        p = Path(path)
        try:
            st = p.stat()
        except OSError as exc:
            raise ImageLoadError(f"image not found: {p}") from exc
        key = (str(p), st.st_mtime, st.st_size)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
        rgb = decode_rgb(p)
        with self._lock:
            self.misses += 1
            self._items[key] = rgb
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return rgb

    def ensure_capacity(self, capacity: int) -> None:
        """Grow the cache to hold at least ``capacity`` images (never shrinks it)."""
        with self._lock:
            self.capacity = max(self.capacity, capacity)

    def clear(self) -> None:
        """Forget every cached image and reset the counters."""
        with self._lock:
            self._items.clear()
            self.hits = self.misses = 0


IMAGE_CACHE = ImageCache()


def open_rgb(path: str | os.PathLike[str]) -> Image.Image:
    """Decoded RGB picture from the process-wide cache (do not mutate the returned object).

    Raises :class:`ImageLoadError` naming ``path`` (see :func:`decode_rgb`).
    """
    return IMAGE_CACHE.get(path)
