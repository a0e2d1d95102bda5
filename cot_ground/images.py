"""Opening images once: a small process-wide LRU cache of decoded RGB pictures keyed by path.

Graph state carries image *paths* only; adapters call :func:`open_rgb`, so step 1 and step 2 of
the same example decode each file once.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

from PIL import Image, UnidentifiedImageError


class ImageLoadError(RuntimeError):
    """An image file is missing, unreadable or corrupt; the message names the path."""


class ImageCache:
    """LRU cache of decoded RGB images keyed by (path, mtime, size)."""

    def __init__(self, capacity: int = 64) -> None:
        self.capacity = capacity
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[tuple[str, float, int], Image.Image] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: str | os.PathLike[str]) -> Image.Image:
        """The decoded RGB image at ``path``; raises :class:`ImageLoadError` naming it."""
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
        try:
            with Image.open(p) as im:
                im.load()
                rgb = im.convert("RGB")
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            raise ImageLoadError(f"cannot decode image {p}: {exc}") from exc
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
    """Decoded RGB image from the process-wide cache (do not mutate the returned object)."""
    return IMAGE_CACHE.get(path)
