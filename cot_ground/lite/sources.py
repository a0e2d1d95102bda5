"""Source pictures of MIG-Lite: photographs inside the installed scikit-image package.

Only files that ship inside the wheel (``skimage/data/*``) are read, by path; no ``skimage.data``
function is called, because some of them download files at run time. The hand-made table of
named object boxes on these photos is ``objects.json`` beside this module.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cot_ground.images import decode_rgb

OBJECTS_FILE = Path(__file__).with_name("objects.json")

# Photographs used as scenes, by file name in skimage/data, with the scene they show (photos of
# one scene share a name so that a scene never serves as its own distractor).
PHOTOS: dict[str, str] = {
    "astronaut.png": "astronaut",
    "camera.png": "camera",
    "chelsea.png": "chelsea",
    "clock_motion.png": "clock",
    "coffee.png": "coffee",
    "coins.png": "coins",
    "horse.png": "horse",
    "hubble_deep_field.jpg": "hubble",
    "moon.png": "moon",
    "motorcycle_left.png": "motorcycle",
    "motorcycle_right.png": "motorcycle",
    "retina.jpg": "retina",
    "rocket.jpg": "rocket",
    "brick.png": "brick",
    "gravel.png": "gravel",
    "grass.png": "grass",
    "ihc.png": "ihc",
    "page.png": "page",
}
# Photos with enough distinct structure that a crop of them is unambiguous (region, diff).
DISTINCT_PHOTOS: tuple[str, ...] = (
    "astronaut.png",
    "camera.png",
    "chelsea.png",
    "coffee.png",
    "coins.png",
    "hubble_deep_field.jpg",
    "moon.png",
    "motorcycle_left.png",
    "retina.jpg",
    "rocket.jpg",
    "ihc.png",
)


class SourceError(RuntimeError):
    """A source photo or the object table is missing or inconsistent (message names it)."""


@dataclass(frozen=True)
class NamedObject:
    """A named box on a source photo, in pixels of the original file."""

    id: str
    photo: str
    scene: str
    name: str
    box: tuple[int, int, int, int]


@dataclass(frozen=True)
class StereoPair:
    """Corresponding boxes of one object on motorcycle_left.png and motorcycle_right.png."""

    name: str
    left: tuple[int, int, int, int]
    right: tuple[int, int, int, int]


def data_dir() -> Path:
    """``skimage/data`` of the installed scikit-image package."""
    import skimage

    path = Path(skimage.__file__).resolve().parent / "data"
    if not path.is_dir():
        raise SourceError(f"scikit-image data folder not found: {path}")
    return path


@functools.lru_cache(maxsize=64)
def load_photo(name: str) -> Image.Image:
    """The photo ``name`` of ``skimage/data`` as RGB (do not mutate the returned image), decoded
    by :func:`cot_ground.images.decode_rgb` (raises its ``ImageLoadError`` for a bad file)."""
    path = data_dir() / name
    if not path.is_file():
        raise SourceError(f"photo {name!r} not found in {path.parent} (scikit-image install?)")
    return decode_rgb(path)  # the one decoder: EXIF orientation, transparency onto white


@functools.lru_cache(maxsize=1)
def load_table() -> tuple[tuple[NamedObject, ...], tuple[StereoPair, ...]]:
    """The object table and the stereo pairs of ``objects.json``, validated against the photos."""
    try:
        raw = json.loads(OBJECTS_FILE.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SourceError(f"cannot read the object table {OBJECTS_FILE}: {exc}") from exc
    objects = []
    for entry in raw["objects"]:
        obj = NamedObject(
            id=entry["id"],
            photo=entry["photo"],
            scene=entry["scene"],
            name=entry["name"],
            box=tuple(entry["box"]),
        )
        _check_box(obj.box, obj.photo, f"object {obj.id!r}")
        if PHOTOS.get(obj.photo) != obj.scene:
            raise SourceError(f"{OBJECTS_FILE}: object {obj.id!r}: scene does not match its photo")
        objects.append(obj)
    pairs = []
    for entry in raw["stereo"]:
        pair = StereoPair(
            name=entry["name"], left=tuple(entry["left"]), right=tuple(entry["right"])
        )
        _check_box(pair.left, "motorcycle_left.png", f"stereo {pair.name!r}")
        _check_box(pair.right, "motorcycle_right.png", f"stereo {pair.name!r}")
        pairs.append(pair)
    return tuple(objects), tuple(pairs)


def _check_box(box: tuple[int, ...], photo: str, what: str) -> None:
    w, h = load_photo(photo).size
    if len(box) != 4 or not (0 <= box[0] < box[2] <= w and 0 <= box[1] < box[3] <= h):
        raise SourceError(
            f"{OBJECTS_FILE}: {what}: box {list(box)} is not inside {photo} ({w}x{h})"
        )


def gray_std(image: Image.Image) -> float:
    """Standard deviation of the grey levels (0-255): how much structure a picture has."""
    return float(np.asarray(image.convert("L"), dtype=np.float32).std())
