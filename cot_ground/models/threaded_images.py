"""Image processors that pre-process the images of one call in worker threads.

The Qwen-VL image processors treat every image on its own (resize, rescale, normalize, cut into
patches) and concatenate the results: ``pixel_values`` holds the patches of all images one after
the other and ``image_grid_thw`` one row per image. :func:`threaded` returns a copy of such a
processor (same class name and attributes) whose calls cut the image list into contiguous
chunks, run the original call on each chunk in a worker thread (PIL's resize and numpy's array
arithmetic release the GIL, so chunks run in parallel) and concatenate the chunk outputs in
order: the same tensors as one call. :func:`open_images_threaded` decodes the files of a batch
the same way (each distinct file once, through the shared image cache).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

_SUBCLASSES: dict[type, type] = {}


def open_images_threaded(paths: Sequence[str], threads: int) -> list[Any]:
    """Decoded RGB images for ``paths`` in order (:func:`cot_ground.images.open_rgb`), each
    distinct file decoded once, in up to ``threads`` worker threads; ``ImageLoadError`` names a
    bad path."""
    from cot_ground.images import open_rgb

    unique = list(dict.fromkeys(paths))
    n = min(max(1, int(threads)), len(unique))
    if n <= 1:
        decoded = {p: open_rgb(p) for p in unique}
    else:
        with ThreadPoolExecutor(max_workers=n) as pool:
            decoded = dict(zip(unique, pool.map(open_rgb, unique), strict=True))
    return [decoded[p] for p in paths]


def threaded(image_processor: Any, threads: int) -> Any:
    """A copy of ``image_processor`` whose calls on several images with ``return_tensors="pt"``
    run in up to ``threads`` worker threads; ``image_processor`` itself is left as it is."""
    cls = type(image_processor)
    sub = _SUBCLASSES.get(cls)
    if sub is None:
        sub = type(cls.__name__, (cls,), {"__call__": _chunked_call(cls.__call__)})
        sub.__module__ = cls.__module__
        _SUBCLASSES[cls] = sub
    out = copy.copy(image_processor)
    out.__class__ = sub
    out._worker_threads = max(1, int(threads))
    return out


def _chunked_call(call: Any) -> Any:
    def __call__(self: Any, images: Any = None, **kwargs: Any) -> Any:
        import torch
        from transformers import BatchFeature

        threads = getattr(self, "_worker_threads", 1)
        if (
            threads == 1
            or not isinstance(images, Sequence)
            or len(images) < 2
            or kwargs.get("return_tensors") != "pt"
        ):
            return call(self, images=images, **kwargs)
        n = min(threads, len(images))
        bounds = [round(i * len(images) / n) for i in range(n + 1)]
        chunks = [list(images[a:b]) for a, b in itertools.pairwise(bounds)]
        with ThreadPoolExecutor(max_workers=n) as pool:
            parts = list(pool.map(lambda chunk: call(self, images=chunk, **kwargs), chunks))
        return BatchFeature(data={key: torch.cat([p[key] for p in parts]) for key in parts[0]})

    return __call__
