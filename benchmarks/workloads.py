"""Inputs of the workloads: MIG-Lite examples on disk, experiment configs, fixed-length decoding."""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

from cot_ground.lite.builders import LITE_TASKS
from cot_ground.lite.generate import DATA_FILE, generate_lite
from cot_ground.records import BUILD_INFO_FILE, file_sha256

# Random weights cannot name an image, so tasks whose step 1 must (group_grounding in the
# paper prompts) would stop after step 1; the model workloads leave them out.
MODEL_TASKS = tuple(t for t in LITE_TASKS if t != "group_grounding")


def lite_benchmark(
    folder: str | Path, n_examples: int, tasks: tuple[str, ...], image_side: int | None = None
) -> Path:
    """MIG-Lite (seed 0) with at least ``n_examples`` items over ``tasks``; its data file.

    Reuses ``folder`` when it already holds a build with as many items per task, otherwise
    generates it again (``generate_lite`` replaces only a MIG-Lite build). The build itself is
    never edited: with ``image_side`` the returned data file is that of :func:`upscaled_copy`
    (pictures resized to ``image_side`` px on their long side). A build whose pictures an
    earlier version of these scripts resized in place (it holds an ``.upscaled-<side>``
    marker) is generated again once.
    """
    folder = Path(folder)
    per_task = max(1, math.ceil(n_examples / len(tasks)))
    resized_in_place = sorted(folder.glob(".upscaled-*"))
    info = folder / BUILD_INFO_FILE
    if info.is_file() and not resized_in_place:
        known = json.loads(info.read_text(encoding="utf-8"))
        if (
            known.get("seed") == 0
            and known.get("per_task", 0) >= per_task
            and set(tasks) <= set(known.get("counts", {}))
        ):
            return _pictures(folder / DATA_FILE, image_side)
    for marker in resized_in_place:  # what remains is a MIG-Lite build generate_lite replaces
        marker.unlink()
    generate_lite(folder, seed=0, per_task=per_task, tasks=tasks, force=True)
    return _pictures(folder / DATA_FILE, image_side)


def _pictures(data_file: Path, image_side: int | None) -> Path:
    return data_file if image_side is None else upscaled_copy(data_file, image_side)


UPSCALE_QUALITY = 90
"""JPEG quality of the resized pictures of :func:`upscaled_copy`."""
UPSCALE_KEY = "upscaled"
"""The key of :func:`upscaled_copy`'s record in the copy's ``lite_info.json``."""


def upscaled_copy(data_file: Path, side: int) -> Path:
    """The data file of a copy of the MIG-Lite build holding ``data_file`` whose pictures are
    resized (bicubic, JPEG quality :data:`UPSCALE_QUALITY`) to ``side`` pixels on their long side.

    The copy lives beside the build in ``<build>-<side>px`` (one folder per side) and holds the
    same annotation file, so answers in the ``unit`` frame stay right. Every picture is resized
    once from the build's own file, never from an already resized one. The copy is reused while
    its annotation file equals the build's and its ``lite_info.json`` records ``side``;
    otherwise it is written again into a fresh folder and swapped in when complete. Raises
    ``ValueError`` when ``side`` < 1 or when the target folder exists but is not such a copy.
    """
    from PIL import Image

    from cot_ground.images import decode_rgb

    if side < 1:
        raise ValueError(f"image side must be at least 1 pixel, got {side}")
    source = data_file.parent
    out = source.with_name(f"{source.name}-{side}px")
    sha = file_sha256(data_file)
    if out.exists():
        made = _upscale_record(out)
        if made is None:
            raise ValueError(
                f"{out} exists but is not a resized copy of a MIG-Lite build (no "
                f"'{UPSCALE_KEY}' in its {BUILD_INFO_FILE}); move it away or choose another "
                "--models-dir"
            )
        data = out / data_file.name
        if made.get("long_side") == side and data.is_file() and file_sha256(data) == sha:
            return data
    building = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=source.parent))
    try:
        for path in sorted(source.rglob("*")):
            target = building / path.relative_to(source)
            if path.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            elif path.suffix.lower() in (".jpg", ".jpeg"):
                im = decode_rgb(path)
                scale = side / max(im.size)
                size = (round(im.width * scale), round(im.height * scale))
                im.resize(size, Image.Resampling.BICUBIC).save(
                    target, format="JPEG", quality=UPSCALE_QUALITY
                )
            elif path.name != BUILD_INFO_FILE:
                shutil.copyfile(path, target)
        info = json.loads((source / BUILD_INFO_FILE).read_text(encoding="utf-8"))
        info[UPSCALE_KEY] = {
            "long_side": side,
            "resampling": "bicubic",
            "jpeg_quality": UPSCALE_QUALITY,
            "from": str(source),
        }
        (building / BUILD_INFO_FILE).write_text(json.dumps(info, indent=1) + "\n", "utf-8")
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            building.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            building.rename(out)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return out / data_file.name


def _upscale_record(folder: Path) -> dict[str, Any] | None:
    """What :func:`upscaled_copy` recorded in ``folder`` (None when it is not such a copy)."""
    try:
        info = json.loads((folder / BUILD_INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    made = info.get(UPSCALE_KEY) if isinstance(info, dict) else None
    return made if isinstance(made, dict) else None


def benchmark_section(data_file: Path, n_examples: int, tasks: tuple[str, ...]) -> dict[str, Any]:
    """The ``benchmark`` part of a config for a MIG-Lite data file."""
    return {
        "file": str(data_file),
        "root": str(data_file.parent),
        "answer_frame": "unit",
        "tasks": list(tasks),
        "limit": n_examples,
    }


def instant_config(data_file: Path, n_examples: int) -> dict[str, Any]:
    """The overhead workload: instant adapters, the CoT graph (agent mode, structured prompts)
    and the end-to-end graph."""
    return {
        "name": "bench-overhead",
        "benchmark": benchmark_section(data_file, n_examples, LITE_TASKS),
        "models": {
            "reasoner": {"adapter": "benchmarks.scripted:build_reasoner"},
            "grounder": {"adapter": "benchmarks.scripted:build_grounder"},
            "e2e": {"adapter": "benchmarks.scripted:build_end_to_end"},
        },
        "pipelines": {
            "cot": {"kind": "cot", "reasoner": "reasoner", "grounder": "grounder"},
            "e2e": {"kind": "e2e", "model": "e2e"},
        },
        "cache": {"enabled": False},
    }


def model_config(
    name: str,
    data_file: Path,
    n_examples: int,
    qwen_dir: str | Path,
    gdino_dir: str | Path,
    *,
    device: str,
    qwen_dtype: str,
    new_tokens: int,
    batch_size: int,
    qwen_options: dict[str, Any] | None = None,
    gdino_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Qwen-VL reasoner/end-to-end model plus a GroundingDINO grounder: the CoT graph in
    ``paper`` mode (step 1 answers a description, step 2 sees the task's image, so both steps
    always run) and the end-to-end graph. Every model takes up to ``batch_size`` requests a call
    (the largest batch measured), plus any ``qwen_options`` / ``gdino_options``; the grounder
    runs in float32."""
    qwen = {
        "path": str(qwen_dir),
        "device": device,
        "dtype": qwen_dtype,
        "max_new_tokens": new_tokens,
        "options": {"batch_size": batch_size, **(qwen_options or {})},
    }
    gdino = {
        "path": str(gdino_dir),
        "device": device,
        "dtype": "float32",
        "options": {"batch_size": batch_size, **(gdino_options or {})},
    }
    return {
        "name": name,
        "benchmark": benchmark_section(data_file, n_examples, MODEL_TASKS),
        "models": {
            "reasoner": {"adapter": "qwen-vl-reasoner", **qwen},
            "grounder": {"adapter": "gdino-hf", **gdino},
            "e2e": {"adapter": "qwen-vl-e2e", **qwen},
        },
        "pipelines": {
            "cot": {
                "kind": "cot",
                "reasoner": "reasoner",
                "grounder": "grounder",
                "mode": "paper",
                "prompt_variant": "paper",
            },
            "e2e": {"kind": "e2e", "model": "e2e"},
        },
        "cache": {"enabled": False},
    }


def fix_generation_length(folder: str | Path, new_tokens: int) -> None:
    """Make a checkpoint always decode exactly ``new_tokens`` tokens: its
    ``generation_config.json`` gets ``min_new_tokens = max_new_tokens = new_tokens`` and every
    stop id (eos and pad) in ``eos_token_id``, so none can end a sequence early."""
    path = Path(folder) / "generation_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    eos = config.get("eos_token_id")
    stops = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if config.get("pad_token_id") is not None:
        stops.add(config["pad_token_id"])
    config.update(
        {
            "min_new_tokens": new_tokens,
            "max_new_tokens": new_tokens,
            "eos_token_id": sorted(stops),
            "do_sample": False,
        }
    )
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
