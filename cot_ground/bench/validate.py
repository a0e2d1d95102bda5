"""Data validation report for a MIG-Bench annotation file. It reports; it never fixes."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from cot_ground.bench.migbench import (
    KNOWN_FILES,
    BenchmarkError,
    item_to_example,
    open_annotations,
)
from cot_ground.records import Example
from cot_ground.tasks import order_key


def validate_benchmark(
    path: str | Path,
    root: str | Path | None = None,
    answer_frame: str | None = None,
    check_images: bool = False,
    allow_outside_root: bool = False,
) -> dict[str, Any]:
    """Report on one annotation file.

    Keys: ``path``, ``name``, ``sha256``, ``answer_frame``, ``items``, ``tasks`` (items per
    task), ``target_rules`` (task → rule → count), ``inverted`` and ``outside_unit`` (items
    whose ground-truth box has x2 < x1 or y2 < y1, or a coordinate outside [0, 1]),
    ``duplicates`` (items repeating an earlier one verbatim), ``missing_images`` (with
    ``check_images``) and ``errors`` (items the loader rejects, with the reason: among them
    image paths that leave ``root`` unless ``allow_outside_root``). A file that is not UTF-8 or
    not JSON raises :class:`BenchmarkError` naming it (and the byte offset).
    """
    path = Path(path)
    items, sha, frame, root_dir = open_annotations(path, root, answer_frame)
    known = KNOWN_FILES.get(sha)
    tasks: Counter[str] = Counter()
    rules: dict[str, Counter[str]] = {}
    inverted: list[dict[str, Any]] = []
    outside: list[dict[str, Any]] = []
    duplicates: list[dict[str, Any]] = []
    missing: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    first_seen: dict[str, int] = {}
    for number, item in enumerate(items):
        where = f"{path} item {number}"
        try:
            example = item_to_example(
                item, where, frame, root_dir, allow_outside_root=allow_outside_root
            )
        except BenchmarkError as exc:
            errors.append({"item": number, "error": str(exc)})
            continue
        tasks[example.task] += 1
        rules.setdefault(example.task, Counter())[example.target_rule] += 1
        entry = _entry(number, example)
        if example.gt_box.is_inverted:
            inverted.append(entry)
        if not example.gt_box.in_unit_range:
            outside.append(entry)
        if example.id in first_seen:
            duplicates.append({**entry, "same_as": first_seen[example.id]})
        else:
            first_seen[example.id] = number
        if check_images:
            missing.extend(
                {"item": number, "task": example.task, "image": p}
                for p in example.images
                if not Path(p).is_file()
            )
    order = sorted(tasks, key=order_key)
    return {
        "path": str(path),
        "name": known.name if known else path.name,
        "sha256": sha,
        "answer_frame": frame.value,
        "root": str(root_dir),
        "items": len(items),
        "tasks": {t: tasks[t] for t in order},
        "target_rules": {t: dict(rules[t]) for t in order},
        "inverted": inverted,
        "outside_unit": outside,
        "duplicates": duplicates,
        "images_checked": check_images,
        "missing_images": missing,
        "errors": errors,
    }


def _entry(number: int, example: Example) -> dict[str, Any]:
    return {
        "item": number,
        "task": example.task,
        "id": example.id,
        "box": [round(v, 6) for v in example.gt_box.to_list()],
    }
