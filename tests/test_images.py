"""The one image decoder (cot_ground.images) on generated files of every awkward kind."""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cot_ground.boxes import Box
from cot_ground.images import MAX_PIXELS_ENV, ImageCache, ImageLoadError, decode_rgb, max_pixels
from cot_ground.scoring import iou

W, H = 90, 60
OBJECT = (20, 10, 50, 40)  # x1, y1, x2, y2 in pixels of the displayed picture


def _object_mask() -> np.ndarray:
    mask = np.zeros((H, W), dtype=bool)
    x1, y1, x2, y2 = OBJECT
    mask[y1:y2, x1:x2] = True
    return mask


def _dark_box(picture: Image.Image) -> Box:
    """The unit-frame bounding box of the dark pixels of a decoded picture."""
    grey = np.asarray(picture.convert("L"))
    ys, xs = np.nonzero(grey < 128)
    w, h = picture.size
    return Box.from_unit([xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h])


def _truth() -> Box:
    x1, y1, x2, y2 = OBJECT
    return Box.from_unit([x1 / W, y1 / H, x2 / W, y2 / H])


def _exif_rotated_jpeg(path: Path) -> None:
    """Stored sideways; EXIF orientation 6 (rotate 90° clockwise to display) restores it."""
    displayed = np.full((H, W, 3), 230, dtype=np.uint8)
    displayed[_object_mask()] = 10
    stored = Image.fromarray(displayed).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(path, format="JPEG", quality=95, exif=exif)


def _alpha(mode: str) -> Callable[[Path], None]:
    """A black object on a fully transparent (black) background."""

    def make(path: Path) -> None:
        alpha = np.where(_object_mask(), 255, 0).astype(np.uint8)
        black = np.zeros((H, W), dtype=np.uint8)
        if mode == "RGBA":
            pixels = np.dstack([black, black, black, alpha])
        else:
            pixels = np.dstack([black, alpha])
        Image.fromarray(pixels, mode=mode).save(path, format="PNG")

    return make


def _palette_transparent(path: Path) -> None:
    """Palette picture: index 0 black and transparent (background), index 1 black (object)."""
    index = np.where(_object_mask(), 1, 0).astype(np.uint8)
    picture = Image.fromarray(index, mode="P")
    picture.putpalette([0, 0, 0, 0, 0, 0] + [0] * (256 * 3 - 6))
    picture.save(path, format="PNG", transparency=0)


def _grey16(path: Path) -> None:
    values = np.where(_object_mask(), 4000, 60000).astype(np.uint16)
    Image.fromarray(values).save(path, format="PNG")


def _grey32_int(path: Path) -> None:
    values = np.where(_object_mask(), 100_000, 3_000_000).astype(np.int32)
    Image.fromarray(values, mode="I").save(path, format="TIFF")


def _grey32_float(path: Path) -> None:
    values = np.where(_object_mask(), 0.05, 0.9).astype(np.float32)
    Image.fromarray(values, mode="F").save(path, format="TIFF")


NORMALISED = {
    "exif-rotated.jpg": _exif_rotated_jpeg,
    "rgba.png": _alpha("RGBA"),
    "la.png": _alpha("LA"),
    "palette-transparent.png": _palette_transparent,
    "grey16.png": _grey16,
    "grey32-int.tif": _grey32_int,
    "grey32-float.tif": _grey32_float,
}


@pytest.mark.parametrize("name", sorted(NORMALISED))
def test_decoded_picture_is_the_displayed_picture(tmp_path, name):
    path = tmp_path / name
    NORMALISED[name](path)
    picture = decode_rgb(path)
    assert picture.mode == "RGB"
    assert picture.size == (W, H)
    grey = np.asarray(picture.convert("L")).astype(int)
    background = grey[~_object_mask()]
    assert background.min() > 200, "background must be light (white, not black or saturated)"
    assert grey[_object_mask()].max() < 60, "the object must stay dark"
    # a box drawn on the displayed picture scores IoU ~1 against the decoded one
    assert iou(_dark_box(picture), _truth()) > 0.95


def test_sixteen_bit_is_scaled_by_its_fixed_range(tmp_path):
    _grey16(tmp_path / "g.png")
    grey = np.asarray(decode_rgb(tmp_path / "g.png").convert("L"))
    assert grey[0, 0] == round(60000 / 257)
    assert grey[OBJECT[1], OBJECT[0]] == round(4000 / 257)


def _png_claiming(path: Path, width: int, height: int) -> None:
    """A real 1×1 PNG whose header claims ``width`` × ``height`` pixels (a decompression bomb)."""
    Image.new("L", (1, 1)).save(path, format="PNG")
    data = bytearray(path.read_bytes())
    ihdr = 8 + 8  # signature, then length + type of the IHDR chunk
    data[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[12 : ihdr + 13]))
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))


def _truncated_jpeg(path: Path) -> None:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (200, 200, 3), dtype=np.uint8)).save(path, "JPEG")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


BROKEN = {
    "bomb.png": lambda p: _png_claiming(p, 40_000, 40_000),
    "truncated.jpg": _truncated_jpeg,
    "text.png": lambda p: p.write_text("not a picture\n"),
    "empty.jpg": lambda p: p.write_bytes(b""),
    "folder.png": lambda p: p.mkdir(),
    "missing.png": lambda p: None,
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_every_decoding_failure_is_an_image_load_error_naming_the_path(tmp_path, name):
    path = tmp_path / name
    BROKEN[name](path)
    with pytest.raises(ImageLoadError, match=re.escape(str(path))):
        decode_rgb(path)
    with pytest.raises(ImageLoadError, match=re.escape(str(path))):
        ImageCache().get(path)


def test_pixel_limit_is_configurable(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("RGB", (100, 50), "white").save(path)
    assert decode_rgb(path).size == (100, 50)
    with pytest.raises(ImageLoadError, match=r"5,000 pixels, above the limit of 4,999"):
        decode_rgb(path, limit=4999)
    monkeypatch.setenv(MAX_PIXELS_ENV, "4999")
    assert max_pixels() == 4999
    with pytest.raises(ImageLoadError, match=MAX_PIXELS_ENV):
        ImageCache().get(path)
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    with pytest.raises(ValueError, match=MAX_PIXELS_ENV):
        max_pixels()


def test_a_raised_limit_also_raises_pillows_own_limit(tmp_path, monkeypatch):
    path = tmp_path / "small.png"
    Image.new("RGB", (4, 4)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    decode_rgb(path, limit=2_000_000_000)
    assert Image.MAX_IMAGE_PIXELS == 2_000_000_000  # Pillow's check at open passes too


def test_cache_decodes_each_file_once(tmp_path):
    path = tmp_path / "a.png"
    _grey16(path)
    cache = ImageCache()
    first = cache.get(path)
    assert cache.get(path) is first
    assert (cache.hits, cache.misses) == (1, 1)


def _photo(path: Path, with_object: bool) -> None:
    """A textured 'photo' stored sideways with EXIF orientation 6; the object (a dark box at
    OBJECT in the displayed frame) only when ``with_object``."""
    rng = np.random.default_rng(7)
    displayed = (rng.random((H, W, 3)) * 60 + 150).astype(np.uint8)
    if with_object:
        displayed[_object_mask()] = 10
    stored = Image.fromarray(displayed).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(path, format="PNG", exif=exif)


def test_a_grounder_finds_the_box_drawn_on_the_displayed_photo(tmp_path):
    """A consumer (the classical difference grounder) sees the displayed frame: IoU ~1 with the
    box a person draws on the displayed photo (0.07 when the stored frame was used)."""
    from cot_ground.models.base import GroundRequest
    from cot_ground.models.registry import build
    from cot_ground.models.settings import ModelSettings

    _photo(tmp_path / "before.png", with_object=False)
    _photo(tmp_path / "after.png", with_object=True)
    grounder = build("diff-grounder", ModelSettings())
    request = GroundRequest(
        image=str(tmp_path / "after.png"),
        phrase="the difference",
        task="diff",
        reference_image=str(tmp_path / "before.png"),
    )
    [result] = grounder.ground([request])
    assert iou(result.candidates[0].box, _truth()) > 0.9


def test_the_pixel_limit_is_recorded_in_run_json(monkeypatch):
    from cot_ground.runner.manifest import build_manifest

    monkeypatch.setenv(MAX_PIXELS_ENV, "1234567")
    manifest = build_manifest(config={}, benchmark={}, shard=None, n_examples=0, argv=[])
    assert manifest["images"] == {"max_pixels": 1234567, "max_pixels_env": MAX_PIXELS_ENV}
