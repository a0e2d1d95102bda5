"""MC-Bench's two official metrics, computed with pycocotools (the ``mcbench`` extra).

* **Instance-level AP50** (``ap50``): COCO box evaluation at IoU 0.5 with one COCO category per
  target group (``group 1``, ``group 2``...). Before evaluation, in each sample whose ground
  truth has two or more groups, the predicted groups are renamed to the ground-truth groups by
  the assignment (over permutations) with the highest mean IoU of Hungarian-matched
  prediction/ground-truth pairs per image. Per group, precision at IoU 0.5, all areas, 100
  detections, averaged over COCO's 101 recall thresholds; the groups are averaged weighted by
  their ground-truth instance counts. Source: the benchmark's ``eval_mc_bench.py``
  (github.com/XuYunqiu/MC-Bench).
* **Image-level accuracy** (``accuracy``): a sample is right when, for every one of its images,
  "holds at least one target" agrees between prediction and ground truth (negative samples: no
  box anywhere). Every predicted box counts, whatever its score.

Difference from the public script: it renames groups one after another in place, so a swap
(predicted 1 → 2, then 2 → 1) renames the first group twice and both end up as group 1; here
the renaming is simultaneous (a swap stays a swap). ``match_groups=False`` skips the matching.

Predictions are :class:`~cot_ground.records.ImageBox` lists per sample id (normalized
coordinates; a sample without an entry, or with an empty list, answered "no target").
"""

from __future__ import annotations

import contextlib
import io
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from cot_ground.bench.mcbench import MCBench, MCSample
from cot_ground.records import ImageBox, Prediction


@dataclass(frozen=True)
class MCMetrics:
    """Both metrics (fractions in [0, 1]) and what they were computed over."""

    ap50: float
    accuracy: float
    n_samples: int
    ap50_per_group: dict[int, float] = field(default_factory=dict)
    gt_per_group: dict[int, int] = field(default_factory=dict)
    match_groups: bool = True


def _cocotools() -> tuple[Any, Any, Any]:
    try:
        from pycocotools import mask as mask_utils
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "MC-Bench metrics need pycocotools: pip install 'cot-ground[mcbench]'"
        ) from exc
    return COCO, COCOeval, mask_utils


def _xywh(box: ImageBox, size: tuple[int, int]) -> list[float]:
    x1, y1, x2, y2 = box.box.to_pixels(*size)
    return [x1, y1, x2 - x1, y2 - y1]


def mcbench_metrics(
    bench: MCBench,
    predictions: Mapping[int, Sequence[ImageBox]],
    *,
    match_groups: bool = True,
) -> MCMetrics:
    """Instance-level AP50 and image-level accuracy of ``predictions`` (sample id → boxes)
    over every sample of ``bench``. Raises ``ValueError`` for a prediction naming an unknown
    sample or an image index the sample does not have."""
    COCO, COCOeval, mask_utils = _cocotools()
    samples = {s.id: s for s in bench.samples}
    for sid, boxes in predictions.items():
        if sid not in samples:
            raise ValueError(f"prediction for unknown MC-Bench sample id {sid}")
        n = len(samples[sid].images)
        bad = [b.image_index for b in boxes if not 0 <= b.image_index < n]
        if bad:
            raise ValueError(f"sample {sid}: image index {bad[0]} out of range (it has {n})")

    gt = _gt_dataset(bench)
    results = []
    for sid, boxes in predictions.items():
        sample = samples[sid]
        groups = _group_map(sample, boxes, mask_utils) if match_groups else {}
        for b in boxes:
            results.append(
                {
                    "image_id": sample.image_ids[b.image_index],
                    "category_id": groups.get(b.group, b.group),
                    "bbox": _xywh(b, sample.sizes[b.image_index]),
                    "score": float(b.score),
                }
            )
    gt_counts = dict(sorted(_gt_counts(gt).items()))
    per_group = dict.fromkeys(gt_counts, 0.0)
    if results:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            coco_gt = COCO()
            coco_gt.dataset = gt
            coco_gt.createIndex()
            coco_dt = coco_gt.loadRes(results)
            evaluator = COCOeval(coco_gt, coco_dt, "bbox")
            evaluator.evaluate()
            evaluator.accumulate()
        precision = evaluator.eval["precision"]  # [iou, recall, category, area, max dets]
        for k, cat in enumerate(evaluator.params.catIds):
            values = precision[0, :, k, 0, 2]
            valid = values[values > -1]
            if cat in per_group and valid.size:
                per_group[cat] = float(np.mean(valid))
    total = sum(gt_counts.values())
    ap50 = sum(per_group[c] * gt_counts[c] / total for c in gt_counts) if total else 0.0
    accuracy = _image_accuracy(bench.samples, predictions)
    return MCMetrics(
        ap50=ap50,
        accuracy=accuracy,
        n_samples=len(bench.samples),
        ap50_per_group=per_group,
        gt_per_group=gt_counts,
        match_groups=match_groups,
    )


def as_image_boxes(prediction: Prediction) -> list[ImageBox]:
    """The MC-Bench answer of a prediction: its ``boxes`` when it has them (``[]`` = "no
    target"), else its single box on its image (score 1, group 1), else ``[]`` (a prediction
    without a box, or whose box names no image, found no target)."""
    if prediction.boxes is not None:
        return list(prediction.boxes)
    if prediction.box is None or prediction.image_index is None:
        return []
    return [ImageBox(image_index=prediction.image_index, box=prediction.box)]


def _gt_dataset(bench: MCBench) -> dict[str, Any]:
    """The COCO ground-truth dict of the samples' images (annotation ids renumbered from 1:
    pycocotools treats id 0 as "unmatched")."""
    image_ids = {j for s in bench.samples for j in s.image_ids}
    images = [
        {"id": img["id"], "width": img["width"], "height": img["height"]}
        for img in bench.data["images"]
        if img["id"] in image_ids
    ]
    annotations = []
    for ann in bench.data["annotations"]:
        if ann["image_id"] in image_ids:
            x, y, w, h = (float(v) for v in ann["bbox"])
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": ann["image_id"],
                    "category_id": int(ann["category_id"]),
                    "bbox": [x, y, w, h],
                    "area": float(ann.get("area", w * h)),
                    "iscrowd": int(ann.get("iscrowd", 0)),
                }
            )
    categories = bench.data.get("categories") or [
        {"id": c, "name": f"group {c}"} for c in sorted({a["category_id"] for a in annotations})
    ]
    return {"images": images, "annotations": annotations, "categories": categories}


def _gt_counts(gt: dict[str, Any]) -> dict[int, int]:
    counts = {int(c["id"]): 0 for c in gt["categories"]}
    for ann in gt["annotations"]:
        counts[ann["category_id"]] = counts.get(ann["category_id"], 0) + 1
    return {c: n for c, n in counts.items() if n}


def _group_map(sample: MCSample, boxes: Sequence[ImageBox], mask_utils: Any) -> dict[int, int]:
    """Predicted group → ground-truth group for a sample with two or more ground-truth groups:
    the permutation with the highest mean IoU of Hungarian-matched pairs (first on a tie)."""
    gt_groups = sample.groups
    dt_groups = sorted({b.group for b in boxes})
    if len(gt_groups) < 2 or not dt_groups:
        return {}
    best: tuple[float, tuple[int, ...]] | None = None
    for perm in itertools.permutations(gt_groups, len(dt_groups)):
        ious: list[float] = []
        for dt_group, gt_group in zip(dt_groups, perm, strict=True):
            for k, size in enumerate(sample.sizes):
                d = [_xywh(b, size) for b in boxes if b.group == dt_group and b.image_index == k]
                g = [t for t in sample.targets if t.group == gt_group and t.image_index == k]
                if not d or not g:
                    continue
                g_xywh = [_xywh(ImageBox(image_index=k, box=t.box), size) for t in g]
                matrix = np.asarray(mask_utils.iou(d, g_xywh, [t.iscrowd for t in g]))
                rows, cols = linear_sum_assignment(-matrix)
                ious.extend(float(matrix[r, c]) for r, c in zip(rows, cols, strict=True))
        score = sum(ious) / len(ious) if ious else 0.0
        if best is None or score > best[0]:
            best = (score, perm)
    if best is None:  # more predicted groups than ground-truth groups: no renaming
        return {}
    return dict(zip(dt_groups, best[1], strict=True))


def _image_accuracy(
    samples: Sequence[MCSample], predictions: Mapping[int, Sequence[ImageBox]]
) -> float:
    if not samples:
        return 0.0
    correct = 0
    for s in samples:
        predicted = {b.image_index for b in predictions.get(s.id, [])}
        truth = {t.image_index for t in s.targets}
        correct += all((k in predicted) == (k in truth) for k in range(len(s.images)))
    return correct / len(samples)
