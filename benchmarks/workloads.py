"""Inputs of the workloads: MIG-Lite examples on disk, experiment configs, fixed-length decoding."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from cot_ground.lite.builders import LITE_TASKS
from cot_ground.lite.generate import DATA_FILE, generate_lite

# Random weights cannot name an image, so tasks whose step 1 must (group_grounding in the
# paper prompts) would stop after step 1; the model workloads leave them out.
MODEL_TASKS = tuple(t for t in LITE_TASKS if t != "group_grounding")


def lite_benchmark(folder: str | Path, n_examples: int, tasks: tuple[str, ...]) -> Path:
    """MIG-Lite (seed 0) with at least ``n_examples`` items over ``tasks``; its data file.

    Reuses ``folder`` when it already holds a build with as many items per task."""
    folder = Path(folder)
    per_task = max(1, math.ceil(n_examples / len(tasks)))
    info = folder / "lite_info.json"
    if info.is_file():
        known = json.loads(info.read_text(encoding="utf-8"))
        if known.get("per_task", 0) >= per_task and set(tasks) <= set(known.get("counts", {})):
            return folder / DATA_FILE
    generate_lite(folder, seed=0, per_task=per_task, tasks=tasks, force=True)  # a smaller build
    return folder / DATA_FILE


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
