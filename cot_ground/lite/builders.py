"""One builder per MIG-Lite task: a group of pictures and the items (questions) asked on them.

Every builder takes a :class:`BuildContext` and a ``numpy`` generator and returns a
:class:`Group`; all items of a group share its pictures (as in MIG-Bench, where several
questions are asked on one set of images). Ground-truth boxes are exact: the builder made the
change they mark. Pixel boxes are ``(x1, y1, x2, y2)`` with exclusive right/bottom edges.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from cot_ground.boxes import Box, xyxy_iou
from cot_ground.lite import phrasing
from cot_ground.lite.perturb import Perturbation, render_patch, resize_long_side
from cot_ground.lite.sources import (
    DISTINCT_PHOTOS,
    PHOTOS,
    NamedObject,
    gray_std,
    load_photo,
    load_table,
)

SCENE_SIDE = 384  # long side of every scene picture, pixels
# star fields: a blurred or rotated crop of scattered points matches many places equally well
SPARSE_PHOTOS = ("hubble_deep_field.jpg",)
RED_BOX_GAP = 3  # the red mark is drawn this many pixels outside the marked box
PixelBox = tuple[int, int, int, int]


@dataclass
class Picture:
    """One picture of a group: file stem, pixels and the JPEG quality it is saved with."""

    stem: str
    image: Image.Image
    quality: int


@dataclass
class Item:
    """One question on a group's pictures; ``target`` is the 0-based image of ``answer``."""

    question: str
    answer: Box
    target: int
    additional_info: str = ""
    need_format: bool = True


@dataclass
class Group:
    """Pictures (in prompt order) and the items asked on them."""

    task: str
    pictures: list[Picture]
    items: list[Item] = field(default_factory=list)


@dataclass(frozen=True)
class BuildContext:
    """What every builder needs: the perturbation strengths and the group's name."""

    perturbation: Perturbation
    name: str

    @property
    def difficulty(self) -> float:
        """The difficulty in ``[0, 1]``."""
        return self.perturbation.difficulty

    def picture(self, k: int, image: Image.Image, rng: np.random.Generator) -> Picture:
        """Picture ``k`` of the group, saved with a drawn JPEG quality."""
        return Picture(f"{self.name}_{k}", image, self.perturbation.jpeg_quality(rng))


@functools.lru_cache(maxsize=64)
def scene(photo: str) -> Image.Image:
    """``photo`` scaled to :data:`SCENE_SIDE` on its long side (do not mutate)."""
    return resize_long_side(load_photo(photo), SCENE_SIDE)


def scene_scale(photo: str) -> float:
    """Factor from pixels of the original photo to pixels of :func:`scene`."""
    return scene(photo).width / load_photo(photo).width


def unit_box(box: tuple[float, float, float, float], size: tuple[int, int]) -> Box:
    """A pixel box on a picture of ``size`` in normalized coordinates (rounded to 4 decimals)."""
    w, h = size
    x1, y1, x2, y2 = box
    return Box.from_unit([round(x1 / w, 4), round(y1 / h, 4), round(x2 / w, 4), round(y2 / h, 4)])


def _pick(rng: np.random.Generator, options: list | tuple):
    return options[int(rng.integers(len(options)))]


def _other_photos(rng: np.random.Generator, exclude: set[str], n: int) -> list[str]:
    """``n`` photos from ``n`` different scenes, none of the scenes in ``exclude``."""
    by_scene: dict[str, list[str]] = {}
    for photo, scene_name in PHOTOS.items():
        if scene_name not in exclude:
            by_scene.setdefault(scene_name, []).append(photo)
    names = sorted(by_scene)
    chosen = rng.choice(len(names), size=n, replace=False)
    return [_pick(rng, by_scene[names[int(i)]]) for i in chosen]


def _size_for(obj_box: PixelBox, long_side: float) -> tuple[int, int]:
    w, h = obj_box[2] - obj_box[0], obj_box[3] - obj_box[1]
    f = long_side / max(w, h)
    return max(8, round(w * f)), max(8, round(h * f))


def _paste_object(
    ctx: BuildContext,
    rng: np.random.Generator,
    canvas: Image.Image,
    obj: NamedObject,
    long_side: float,
    angle: float | None = None,
    at: tuple[int, int] | None = None,
) -> PixelBox:
    """Paste a perturbed copy of ``obj`` into ``canvas`` (in place); its pixel box."""
    p = ctx.perturbation
    size = _size_for(obj.box, long_side)
    size = (min(size[0], canvas.width - 2), min(size[1], canvas.height - 2))
    patch = render_patch(
        load_photo(obj.photo), obj.box, size, p.angle(rng) if angle is None else angle
    )
    patch = p.photometric(patch, rng)
    if at is None:
        at = (
            int(rng.integers(0, canvas.width - size[0] + 1)),
            int(rng.integers(0, canvas.height - size[1] + 1)),
        )
    canvas.paste(patch, at)
    return at[0], at[1], at[0] + size[0], at[1] + size[1]


def _mark(image: Image.Image, box: PixelBox) -> Image.Image:
    """``image`` with a red rectangle drawn just outside ``box``."""
    out = image.copy()
    g = RED_BOX_GAP
    ImageDraw.Draw(out).rectangle(
        [box[0] - g, box[1] - g, box[2] - 1 + g, box[3] - 1 + g], outline=(255, 0, 0), width=2
    )
    return out


# ---------------------------------------------------------------------------- region
def build_region(ctx: BuildContext, rng: np.random.Generator) -> Group:
    """A photo and 2-3 perturbed crops of it; locate the k-th crop in the photo."""
    p = ctx.perturbation
    photo = _pick(rng, [name for name in DISTINCT_PHOTOS if name not in SPARSE_PHOTOS])
    src = scene(photo)
    w, h = src.size
    wanted = int(rng.integers(2, 4))
    boxes: list[PixelBox] = []
    for _ in range(200):
        if len(boxes) == wanted:
            break
        bw, bh = (rng.uniform(0.2, 0.45, size=2) * (w, h)).astype(int)
        x, y = int(rng.integers(0, w - bw + 1)), int(rng.integers(0, h - bh + 1))
        box = (x, y, x + int(bw), y + int(bh))
        if gray_std(src.crop(box)) < 25 or any(xyxy_iou(box, b) > 0.3 for b in boxes):
            continue
        boxes.append(box)
    pictures = [ctx.picture(0, p.photometric(src, rng), rng)]
    for k, box in enumerate(boxes, start=1):
        s = p.scale(rng)
        size = (max(8, round((box[2] - box[0]) * s)), max(8, round((box[3] - box[1]) * s)))
        crop = render_patch(src, box, size, p.angle(rng))
        pictures.append(ctx.picture(k, p.photometric(crop, rng), rng))
    items = [
        Item(phrasing.region_question(k), unit_box(box, (w, h)), 0)
        for k, box in enumerate(boxes, start=1)
    ]
    return Group("region", pictures, items)


# ---------------------------------------------------------------------------- diff
def _recolour(image: Image.Image, box: PixelBox, rng: np.random.Generator) -> None:
    colour = np.array(rng.integers(0, 256, size=3), dtype=np.float32)
    patch = np.asarray(image.crop(box), dtype=np.float32)
    image.paste(Image.fromarray((0.4 * patch + 0.6 * colour + 0.5).astype(np.uint8)), box[:2])


def _remove(image: Image.Image, box: PixelBox) -> None:
    """Blur the content of ``box`` away (its surroundings smeared over it)."""
    w, h = box[2] - box[0], box[3] - box[1]
    ctx_box = (max(0, box[0] - w // 2), max(0, box[1] - h // 2))
    ctx_box += (min(image.width, box[2] + w // 2), min(image.height, box[3] + h // 2))
    smeared = image.crop(ctx_box).filter(ImageFilter.GaussianBlur(radius=max(w, h) / 3))
    offset = (box[0] - ctx_box[0], box[1] - ctx_box[1])
    image.paste(smeared.crop((*offset, offset[0] + w, offset[1] + h)), box[:2])


def build_diff(ctx: BuildContext, rng: np.random.Generator) -> Group:
    """Two versions of a photo, one changed in one region (pasted, recoloured or removed)."""
    p = ctx.perturbation
    photo = _pick(rng, DISTINCT_PHOTOS)
    base = scene(photo)
    w, h = base.size
    changed = base.copy()
    shift = round(6 * ctx.difficulty)
    objects, _ = load_table()
    own = [o for o in objects if o.photo == photo]
    kind = _pick(rng, ("paste", "recolour", "remove") if own else ("paste", "recolour"))
    if kind == "paste":
        obj = _pick(rng, [o for o in objects if o.scene != PHOTOS[photo]])
        long_side = rng.uniform(0.18, 0.32) * max(w, h)
        box = _paste_object(ctx, rng, changed, obj, long_side)
    elif kind == "remove":
        obj = _pick(rng, own)
        f = scene_scale(photo)
        box = tuple(round(v * f) for v in obj.box)
        _remove(changed, box)
    else:
        for _ in range(50):
            bw, bh = (rng.uniform(0.15, 0.3, size=2) * (w, h)).astype(int)
            x, y = int(rng.integers(0, w - bw + 1)), int(rng.integers(0, h - bh + 1))
            box = (x, y, x + int(bw), y + int(bh))
            if gray_std(base.crop(box)) >= 15:
                break
        _recolour(changed, box, rng)
    # two views cut with a small relative shift, so the pair must be aligned before differencing
    dx, dy = (int(v) for v in rng.integers(-shift, shift + 1, size=2))
    cut_w, cut_h = w - 2 * shift, h - 2 * shift
    origins = [(shift, shift), (shift + dx, shift + dy)]
    versions = [base, changed]
    if rng.random() < 0.5:
        origins.reverse()
        versions.reverse()
    pictures = []
    for k, (img, (ox, oy)) in enumerate(zip(versions, origins, strict=True)):
        cut = img.crop((ox, oy, ox + cut_w, oy + cut_h))
        pictures.append(ctx.picture(k, p.photometric(cut, rng), rng))
    target = int(rng.integers(0, 2))
    ox, oy = origins[target]
    local = (
        max(0, box[0] - ox),
        max(0, box[1] - oy),
        min(cut_w, box[2] - ox),
        min(cut_h, box[3] - oy),
    )
    item = Item(phrasing.diff_question(target), unit_box(local, (cut_w, cut_h)), target)
    return Group("diff", pictures, [item])


# ---------------------------------------------------------------------------- refer_grounding
def _reference_picture(
    ctx: BuildContext, rng: np.random.Generator, obj: NamedObject
) -> Image.Image:
    ref = render_patch(load_photo(obj.photo), obj.box, _size_for(obj.box, rng.integers(112, 193)))
    return ctx.perturbation.photometric(ref, rng)


def build_refer(ctx: BuildContext, rng: np.random.Generator) -> Group:
    """An object picture and a scene it was pasted into; locate the object in the scene."""
    objects, _ = load_table()
    obj = _pick(rng, objects)
    ref = _reference_picture(ctx, rng, obj)
    (bg,) = _other_photos(rng, {obj.scene}, 1)
    canvas = scene(bg).copy()
    box = _paste_object(ctx, rng, canvas, obj, rng.uniform(0.22, 0.45) * SCENE_SIDE)
    pictures = [ctx.picture(0, ref, rng), ctx.picture(1, canvas, rng)]
    item = Item(phrasing.refer_question(), unit_box(box, canvas.size), 1)
    return Group("refer_grounding", pictures, [item])


# ---------------------------------------------------------------------------- common_object
def build_common(ctx: BuildContext, rng: np.random.Generator) -> Group:
    """The same object pasted into 3-4 scenes; locate it in the k-th scene."""
    objects, _ = load_table()
    obj = _pick(rng, objects)
    backgrounds = _other_photos(rng, {obj.scene}, int(rng.integers(3, 5)))
    pictures, items = [], []
    for k, bg in enumerate(backgrounds):
        canvas = scene(bg).copy()
        box = _paste_object(ctx, rng, canvas, obj, rng.uniform(0.22, 0.42) * SCENE_SIDE)
        pictures.append(ctx.picture(k, canvas, rng))
        items.append(Item(phrasing.common_question(k), unit_box(box, canvas.size), k))
    return Group("common_object", pictures, items)


# ---------------------------------------------------------------------------- object_tracking
def build_tracking(ctx: BuildContext, rng: np.random.Generator, frames: int = 6) -> Group:
    """An object moving and changing scale over a still scene; frame 1 box given."""
    p = ctx.perturbation
    objects, _ = load_table()
    obj = _pick(rng, objects)
    (bg,) = _other_photos(rng, {obj.scene}, 1)
    background = scene(bg)
    w, h = background.size
    side0 = rng.uniform(0.2, 0.34) * SCENE_SIDE
    sides = np.linspace(side0, side0 * p.scale(rng) * p.scale(rng), frames)
    sizes = [_size_for(obj.box, s) for s in sides]
    fit = min(1.0, (w - 2) / max(s[0] for s in sizes), (h - 2) / max(s[1] for s in sizes))
    sides = sides * fit
    sizes = [_size_for(obj.box, s) for s in sides]
    room = np.array((w - max(s[0] for s in sizes), h - max(s[1] for s in sizes)))
    start, end = rng.uniform(0, 1, size=2) * room, rng.uniform(0, 1, size=2) * room
    angles = rng.uniform(-p.max_rotation_deg, p.max_rotation_deg, size=2)
    pictures, boxes = [], []
    for k, t in enumerate(np.linspace(0, 1, frames)):
        canvas = p.photometric(background, rng)
        at = tuple(int(v) for v in start + (end - start) * t)
        angle = float(angles[0] + (angles[1] - angles[0]) * t)
        box = _paste_object(ctx, rng, canvas, obj, float(sides[k]), angle=angle, at=at)
        boxes.append(box)
        pictures.append(ctx.picture(k, _mark(canvas, box) if k == 0 else canvas, rng))
    first = unit_box(boxes[0], (w, h))
    items = [
        Item(phrasing.tracking_question(first, k), unit_box(boxes[k], (w, h)), k, need_format=False)
        for k in range(1, frames)
    ]
    return Group("object_tracking", pictures, items)


# ---------------------------------------------------------------------------- group_grounding
def build_group(ctx: BuildContext, rng: np.random.Generator) -> Group:
    """3-5 photos of different scenes; a named object of one of them is to be found."""
    p = ctx.perturbation
    objects, _ = load_table()
    with_objects = sorted({o.scene for o in objects})
    n = int(rng.integers(3, 6))
    scenes = [with_objects[int(i)] for i in rng.choice(len(with_objects), size=n, replace=False)]
    pictures, items = [], []
    for k, scene_name in enumerate(scenes):
        obj = _pick(rng, [o for o in objects if o.scene == scene_name])
        base = load_photo(obj.photo)
        img = resize_long_side(base, round(SCENE_SIDE * rng.uniform(0.8, 1.0)))
        img = p.photometric(img, rng)
        pictures.append(ctx.picture(k, img, rng))
        box = unit_box(obj.box, base.size)
        question = phrasing.group_question(
            int(rng.integers(len(phrasing.GROUP_TEMPLATES))), obj.name
        )
        info = phrasing.group_answer_info(k, box)
        items.append(Item(question, box, k, additional_info=info, need_format=False))
    order = rng.permutation(len(items))
    return Group("group_grounding", pictures, [items[int(i)] for i in order])


# ---------------------------------------------------------------------------- multi_view
def build_multi_view(ctx: BuildContext, rng: np.random.Generator) -> Group:
    """The motorcycle stereo pair plus a zoomed view; locate the boxed object in view 2 or 3."""
    p = ctx.perturbation
    _, pairs = load_table()
    pair = _pick(rng, pairs)
    views = [("motorcycle_left.png", pair.left), ("motorcycle_right.png", pair.right)]
    if rng.random() < 0.5:
        views.reverse()
    (first_photo, first_box), (second_photo, second_box) = views
    first = scene(first_photo)
    f = scene_scale(first_photo)
    marked_box = tuple(round(v * f) for v in first_box)
    second = resize_long_side(load_photo(second_photo), round(SCENE_SIDE * p.scale(rng)))
    g = second.width / load_photo(second_photo).width
    box2 = tuple(v * g for v in second_box)
    # third view: a zoomed cut of the second one that still holds the whole object
    w2, h2 = second.size
    zoom = 1.0 + rng.uniform(0.1, 0.1 + 0.4 * ctx.difficulty)
    cw = max(box2[2] - box2[0] + 4, w2 / zoom)
    ch = max(box2[3] - box2[1] + 4, h2 / zoom)
    cx = rng.uniform(max(0.0, box2[2] + 2 - cw), min(w2 - cw, box2[0] - 2) + 1e-9)
    cy = rng.uniform(max(0.0, box2[3] + 2 - ch), min(h2 - ch, box2[1] - 2) + 1e-9)
    cut = (round(cx), round(cy), round(cx + cw), round(cy + ch))
    third = second.crop(cut).resize(second.size, Image.Resampling.BICUBIC)
    sx, sy = w2 / (cut[2] - cut[0]), h2 / (cut[3] - cut[1])
    box3 = (
        max(0.0, (box2[0] - cut[0]) * sx),
        max(0.0, (box2[1] - cut[1]) * sy),
        min(w2, (box2[2] - cut[0]) * sx),
        min(h2, (box2[3] - cut[1]) * sy),
    )
    marked = _mark(p.photometric(first, rng), marked_box)
    pictures = [
        ctx.picture(0, marked, rng),
        ctx.picture(1, p.photometric(second, rng), rng),
        ctx.picture(2, p.photometric(third, rng), rng),
    ]
    first_unit = unit_box(marked_box, first.size)
    items = [
        Item(phrasing.multi_view_question(first_unit, 1), unit_box(box2, second.size), 1),
        Item(phrasing.multi_view_question(first_unit, 2), unit_box(box3, second.size), 2),
    ]
    return Group("multi_view", pictures, items)


BUILDERS: dict[str, Callable[[BuildContext, np.random.Generator], Group]] = {
    "region": build_region,
    "diff": build_diff,
    "refer_grounding": build_refer,
    "common_object": build_common,
    "object_tracking": build_tracking,
    "group_grounding": build_group,
    "multi_view": build_multi_view,
}
LITE_TASKS: tuple[str, ...] = tuple(BUILDERS)
