"""Noise pictures written as PNG files, for the adapter tests (sizes matter, content does not)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def noise_pictures(folder: Path, sizes_wh: list[tuple[int, int]], seed: int) -> list[str]:
    """``folder/0.png``, ``1.png``... of the given (width, height) sizes, drawn from one
    generator seeded with ``seed``; their paths."""
    rng = np.random.default_rng(seed)
    paths = []
    for i, (w, h) in enumerate(sizes_wh):
        path = folder / f"{i}.png"
        Image.fromarray((rng.random((h, w, 3)) * 255).astype("uint8")).save(path)
        paths.append(str(path))
    return paths
