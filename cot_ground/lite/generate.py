"""Write MIG-Lite to a folder in the MIG-Bench layout.

::

    OUT_DIR/MIG_data.json                      list of {task, images, question, answer,
                                               additional_info, need_format}; answer in the
                                               unit frame, image paths relative to OUT_DIR
    OUT_DIR/MIG-Bench/images/<task>/<group>_<k>.jpg
    OUT_DIR/lite_info.json                     seed, difficulty, perturbation strengths, counts,
                                               answer frame and the sha256 of MIG_data.json

Load it with ``load_benchmark(OUT_DIR / "MIG_data.json", root=OUT_DIR)``: the frame comes
from ``lite_info.json`` while ``MIG_data.json`` is the file the build wrote
(:func:`cot_ground.bench.migbench.stated_frame`).
Group ``g`` of task ``t`` draws from ``numpy.random.default_rng([seed, index of t, g])``, so
the same seed writes byte-identical files, whatever tasks or counts are asked for.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cot_ground.lite.builders import BUILDERS, LITE_TASKS, SCENE_SIDE, BuildContext
from cot_ground.lite.perturb import DEFAULT_DIFFICULTY, Perturbation
from cot_ground.records import BUILD_INFO_FILE as INFO_FILE
from cot_ground.records import file_sha256

DEFAULT_PER_TASK = 20
DATA_FILE = "MIG_data.json"
IMAGE_DIR = "MIG-Bench/images"


@dataclass(frozen=True)
class LiteBuild:
    """What :func:`generate_lite` wrote."""

    out_dir: Path
    data_file: Path
    counts: dict[str, int]
    images: int
    targets: list[int]
    """0-based image of each written item's answer, in file order."""


def generate_lite(
    out_dir: str | Path,
    seed: int = 0,
    per_task: int = DEFAULT_PER_TASK,
    difficulty: float = DEFAULT_DIFFICULTY,
    tasks: tuple[str, ...] | list[str] | None = None,
    force: bool = False,
) -> LiteBuild:
    """Generate MIG-Lite into ``out_dir`` (``per_task`` items of each task).

    The files are written into a fresh folder beside ``out_dir`` and swapped in when complete,
    so ``out_dir`` never mixes two builds and an interrupted build leaves it as it was. A
    non-empty ``out_dir`` raises ``ValueError`` unless ``force`` is set, and even then only
    an earlier MIG-Lite build (:func:`is_lite_build`) is replaced.
    """
    tasks = tuple(tasks) if tasks is not None else LITE_TASKS
    unknown = sorted(set(tasks) - set(LITE_TASKS))
    if unknown:
        raise ValueError(f"unknown MIG-Lite task(s) {unknown}; known: {', '.join(LITE_TASKS)}")
    if per_task < 1:
        raise ValueError(f"per_task must be at least 1, got {per_task}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    perturbation = Perturbation.at(difficulty)
    out = Path(out_dir)
    check_replaceable(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    try:
        build = _write(building, seed, per_task, perturbation, tasks)
        _swap_in(building, out)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return LiteBuild(
        out_dir=out,
        data_file=out / DATA_FILE,
        counts=build.counts,
        images=build.images,
        targets=build.targets,
    )


LITE_ENTRIES = frozenset({DATA_FILE, INFO_FILE, IMAGE_DIR.split("/")[0]})
"""What a MIG-Lite build holds at its top level (module docstring)."""


def is_lite_build(folder: Path) -> bool:
    """True when ``folder`` is a MIG-Lite build: its ``lite_info.json`` says
    ``"benchmark": "MIG-Lite"`` and it holds nothing a build does not write."""
    try:
        info = json.loads((folder / INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    marked = isinstance(info, dict) and info.get("benchmark") == "MIG-Lite"
    return marked and {p.name for p in folder.iterdir()} <= LITE_ENTRIES


def check_replaceable(out: Path, force: bool) -> None:
    """Raise ``ValueError`` unless ``out`` is absent, empty, or (with ``force``) a MIG-Lite
    build (:func:`is_lite_build`); a MIG-Bench download or any other folder is never
    replaced."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return
    entries = sum(1 for _ in out.iterdir())
    if not force:
        raise ValueError(
            f"{out} is not empty ({entries} entries); choose an empty folder, or give --force"
            " to replace an earlier MIG-Lite build"
        )
    if not is_lite_build(out):
        extra = sorted({p.name for p in out.iterdir()} - LITE_ENTRIES)
        why = (
            f"it holds {', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}, which"
            " make-lite does not write"
            if extra
            else f"its {INFO_FILE} does not mark a MIG-Lite build"
        )
        raise ValueError(
            f"{out} is not a MIG-Lite folder ({why}), so --force does not replace it;"
            " choose another folder"
        )


def _swap_in(built: Path, out: Path) -> None:
    """Move the finished build ``built`` to ``out``, replacing what was there."""
    if not out.exists():
        built.rename(out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    old.rmdir()
    out.rename(old)
    built.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def _write(
    out: Path,
    seed: int,
    per_task: int,
    perturbation: Perturbation,
    tasks: tuple[str, ...],
) -> LiteBuild:
    """Write the benchmark files into ``out`` (see the module docstring for the layout)."""
    records: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    targets: list[int] = []
    n_images = 0
    for task in tasks:
        folder = out / IMAGE_DIR / task
        folder.mkdir(parents=True, exist_ok=True)
        made = 0
        group_index = 0
        while made < per_task:
            rng = np.random.default_rng([seed, LITE_TASKS.index(task), group_index])
            ctx = BuildContext(perturbation, f"{task}_{group_index:03d}")
            group = BUILDERS[task](ctx, rng)
            group_index += 1
            paths = []
            for picture in group.pictures:
                file = folder / f"{picture.stem}.jpg"
                picture.image.save(file, format="JPEG", quality=picture.quality)
                paths.append(f"./{IMAGE_DIR}/{task}/{file.name}")
            n_images += len(paths)
            for item in group.items[: per_task - made]:
                records.append(
                    {
                        "task": task,
                        "images": paths,
                        "question": item.question,
                        "answer": item.answer.to_list(),
                        "additional_info": item.additional_info,
                        "need_format": item.need_format,
                    }
                )
                targets.append(item.target)
                made += 1
        counts[task] = made
    data_file = out / DATA_FILE
    data_file.write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")
    info = {
        "benchmark": "MIG-Lite",
        "seed": seed,
        "per_task": per_task,
        "difficulty": perturbation.difficulty,
        "perturbation": perturbation.to_dict(),
        "scene_side": SCENE_SIDE,
        "answer_frame": "unit",
        "data_sha256": file_sha256(data_file),
        "counts": counts,
        "images": n_images,
    }
    (out / INFO_FILE).write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    return LiteBuild(
        out_dir=out, data_file=data_file, counts=counts, images=n_images, targets=targets
    )
