"""MC-Bench (arXiv 2410.12332, "multi-context visual grounding") annotation files.

The published file (``mc-bench_v0.2_val.json``) is COCO-like:

* ``descriptions``: ``id``, ``images_id`` (the images of the sample, in prompt order), ``text``
  (the open-ended prompt), ``positive_sample`` (False: no image holds a target), ``text_style``
  (``Referring``, ``Comparison`` or ``Reasoning``);
* ``images``: ``id``, ``text_id``, ``inter_img_id``, ``file_name`` (relative to the images
  folder, e.g. ``COCO/...jpg``), ``height``, ``width``;
* ``annotations``: ``id``, ``image_id``, ``text_id``, ``category_id`` (the target group,
  ``group 1``, ``group 2``... of the sample), ``area``, ``bbox``, ``iscrowd``;
* ``categories``: ``id``, ``name``.

Frame: ``bbox`` is absolute ``[x, y, w, h]`` in pixels of the image (``width`` x ``height`` as
the file states them), top-left origin; the loader converts it to a unit-frame ``[x1, y1, x2,
y2]`` :class:`~cot_ground.boxes.Box` (``x1 = x / width``, ``x2 = (x + w) / width``...).

The images are not redistributed here: download ``MC-Bench_images.zip`` from the links in the
benchmark's repository (github.com/XuYunqiu/MC-Bench), unzip it, and pass the folder that holds
``COCO/``, ``D3/``... as ``images_root`` (the official layout is
``MC-Bench/mc-bench_images/``).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cot_ground.bench.migbench import read_json
from cot_ground.boxes import Box
from cot_ground.records import file_sha256

TEXT_STYLES: tuple[str, ...] = ("Referring", "Comparison", "Reasoning")


class MCBenchError(ValueError):
    """Bad MC-Bench input; the message names the file and the item."""


@dataclass(frozen=True)
class MCTarget:
    """One ground-truth instance: its image (0-based in the sample), box and target group."""

    image_index: int
    box: Box
    group: int
    iscrowd: int = 0


@dataclass(frozen=True)
class MCSample:
    """One MC-Bench sample: a prompt over an image pair (or more) and its targets (none for a
    negative sample)."""

    id: int
    text: str
    text_style: str
    positive: bool
    image_ids: tuple[int, ...]
    images: tuple[str, ...]
    """Image paths (resolved against ``images_root``), in the order of ``images_id``."""
    sizes: tuple[tuple[int, int], ...]
    """(width, height) of each image, as the file states them."""
    targets: tuple[MCTarget, ...] = ()

    @property
    def groups(self) -> list[int]:
        """The target groups of this sample, sorted."""
        return sorted({t.group for t in self.targets})


@dataclass
class MCBench:
    """A loaded MC-Bench file: its samples, what identifies it, and the file's data (the
    metrics in :mod:`cot_ground.bench.mcbench_metrics` read it)."""

    path: Path
    sha256: str
    images_root: Path | None
    samples: list[MCSample] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.samples)

    def counts(self) -> dict[str, int]:
        """Samples per text style, plus ``negative``."""
        out = dict(Counter(s.text_style for s in self.samples))
        out["negative"] = sum(not s.positive for s in self.samples)
        return out

    def manifest(self) -> dict[str, Any]:
        """What a run records about the benchmark."""
        return {
            "benchmark": "MC-Bench",
            "file": str(self.path),
            "sha256": self.sha256,
            "images_root": str(self.images_root) if self.images_root else None,
            "box_frame": "absolute xywh pixels -> unit xyxy",
            "samples": len(self.samples),
            "counts": self.counts(),
        }


def load_mcbench(
    file: str | os.PathLike[str], images_root: str | os.PathLike[str] | None = None
) -> MCBench:
    """Read an MC-Bench annotation file. Image paths are ``images_root / file_name`` (kept
    relative when ``images_root`` is None; images are not opened here).

    Raises :class:`MCBenchError` naming the file and the item for a missing file, bytes that are
    not UTF-8 (with their byte offset), invalid JSON,
    a missing key, an unknown image or description id, or a box that is not 4 numbers with
    positive width and height.
    """
    path = Path(file)
    data = read_json(path, MCBenchError, "MC-Bench annotation file")
    if not isinstance(data, dict):
        raise MCBenchError(f"{path}: expected a JSON object with descriptions, images, annotations")
    for key in ("descriptions", "images", "annotations"):
        if not isinstance(data.get(key), list):
            raise MCBenchError(f"{path}: key {key!r} is missing or not a list")
    root = Path(images_root) if images_root is not None else None
    images = {}
    for i, img in enumerate(data["images"]):
        _need(img, ("id", "file_name", "width", "height"), path, f"images[{i}]")
        if img["width"] <= 0 or img["height"] <= 0:
            raise MCBenchError(
                f"{path}: images[{i}] (id {img['id']}) has size {img['width']}x{img['height']}"
            )
        images[img["id"]] = img
    by_image: dict[int, list[dict[str, Any]]] = {}
    for i, ann in enumerate(data["annotations"]):
        _need(ann, ("image_id", "category_id", "bbox"), path, f"annotations[{i}]")
        if ann["image_id"] not in images:
            raise MCBenchError(
                f"{path}: annotations[{i}] (id {ann.get('id')}) names unknown "
                f"image id {ann['image_id']}"
            )
        by_image.setdefault(ann["image_id"], []).append(ann)
    samples = []
    for i, desc in enumerate(data["descriptions"]):
        _need(desc, ("id", "images_id", "text", "positive_sample"), path, f"descriptions[{i}]")
        unknown = [j for j in desc["images_id"] if j not in images]
        if unknown:
            raise MCBenchError(
                f"{path}: descriptions[{i}] (id {desc['id']}) names unknown image id(s) {unknown}"
            )
        targets = []
        for k, image_id in enumerate(desc["images_id"]):
            img = images[image_id]
            for ann in by_image.get(image_id, []):
                box = _box(ann, img, path)
                targets.append(
                    MCTarget(k, box, int(ann["category_id"]), int(ann.get("iscrowd", 0)))
                )
        if not desc["positive_sample"] and targets:
            raise MCBenchError(
                f"{path}: descriptions[{i}] (id {desc['id']}) is a negative "
                f"sample but has {len(targets)} annotation(s)"
            )
        names = [images[j]["file_name"] for j in desc["images_id"]]
        samples.append(
            MCSample(
                id=int(desc["id"]),
                text=str(desc["text"]),
                text_style=str(desc.get("text_style", "")),
                positive=bool(desc["positive_sample"]),
                image_ids=tuple(int(j) for j in desc["images_id"]),
                images=tuple(str(root / n) if root else n for n in names),
                sizes=tuple(
                    (int(images[j]["width"]), int(images[j]["height"])) for j in desc["images_id"]
                ),
                targets=tuple(targets),
            )
        )
    return MCBench(
        path=path, sha256=file_sha256(path), images_root=root, samples=samples, data=data
    )


def _need(item: Any, keys: tuple[str, ...], path: Path, where: str) -> None:
    if not isinstance(item, dict):
        raise MCBenchError(f"{path}: {where} is not an object")
    missing = [k for k in keys if k not in item]
    if missing:
        raise MCBenchError(f"{path}: {where} lacks {', '.join(missing)}")


def _box(ann: dict[str, Any], img: dict[str, Any], path: Path) -> Box:
    """Absolute ``[x, y, w, h]`` pixels of ``img`` → unit-frame xyxy."""
    bbox = ann["bbox"]
    if (
        not isinstance(bbox, list)
        or len(bbox) != 4
        or not all(isinstance(v, (int, float)) for v in bbox)
        or bbox[2] <= 0
        or bbox[3] <= 0
    ):
        raise MCBenchError(
            f"{path}: annotation id {ann.get('id')} has bbox {bbox!r} "
            "(need [x, y, w, h] with w, h > 0)"
        )
    x, y, w, h = (float(v) for v in bbox)
    return Box.from_pixels([x, y, x + w, y + h], img["width"], img["height"])
