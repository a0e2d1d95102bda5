"""Small run folders for the analysis tests: real image files, Example and Prediction records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cot_ground.boxes import Box
from cot_ground.records import (
    ErrorInfo,
    Example,
    ParseStatus,
    Prediction,
    TraceStep,
    example_id,
)

GT = Box.from_unit([0.2, 0.2, 0.6, 0.6])
GOOD = Box.from_unit([0.22, 0.2, 0.6, 0.62])  # IoU ~0.91 with GT
POOR = Box.from_unit([0.5, 0.5, 0.9, 0.9])  # IoU ~0.03 with GT


def write_images(folder: Path, name: str, n: int, seed: int = 0) -> list[str]:
    """``n`` small random PNG pictures; their absolute paths."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = folder / f"{name}_{i}.png"
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(path)
        paths.append(str(path.resolve()))
    return paths


def make_example(folder: Path, task: str, k: int, n_images: int = 3, target: int = 1) -> Example:
    """An example of ``task`` with ``n_images`` real pictures and target image ``target``."""
    images = write_images(folder / "images", f"{task}{k}", n_images, seed=k)
    question = f"Find the object ({task} #{k})."
    return Example(
        id=example_id(task, images, question),
        task=task,
        images=images,
        question=question,
        gt_box=GT,
        target_image=target,
    )


def cot_prediction(
    example: Example,
    pipeline: str,
    *,
    image_index: int | None,
    box: Box | None,
    step1_status: str = "ok",
    step1_text: str | None = None,
    error: ErrorInfo | None = None,
) -> Prediction:
    """A CoT record traced like the CoT graph: step-1 call, its parse, step 2, finalize."""
    text = step1_text if step1_text is not None else '{"image": 2, "description": "a red cup"}'
    call = TraceStep(node="select_and_describe", raw_output=text, images=list(example.images))
    parse = TraceStep(
        node="parse_selection",
        parsed={"status": step1_status, "image_index": image_index, "description": "a red cup"},
    )
    ground = TraceStep(node="ground", parsed={"n_candidates": int(box is not None)})
    final = TraceStep(node="finalize", parsed={"image_index": image_index})
    return Prediction(
        example_id=example.id,
        pipeline=pipeline,
        task=example.task,
        image_index=image_index,
        box=box,
        status=ParseStatus.OK if box is not None else ParseStatus.NO_BOX,
        raw_text=text,
        timing={"select_and_describe": 0.5, "ground": 0.25, "total": 0.75},
        error=error,
        trace=[call, parse, ground, final],
    )


def e2e_prediction(
    example: Example,
    pipeline: str,
    *,
    box: Box | None,
    image_index: int | None = None,
    calibration: str | None = None,
    raw_text: str = "<|box_start|>(220,200),(600,620)<|box_end|>",
) -> Prediction:
    """An end-to-end record (no step-1 trace)."""
    return Prediction(
        example_id=example.id,
        pipeline=pipeline,
        task=example.task,
        image_index=image_index,
        box=box,
        status=ParseStatus.OK if box is not None else ParseStatus.MALFORMED,
        raw_text=raw_text,
        calibration=calibration,
        timing={"predict": 1.0},
        trace=[TraceStep(node="predict", raw_output=raw_text)],
    )


def write_run(
    run_dir: Path,
    examples: list[Example],
    predictions: dict[str, list[Prediction]],
    pipelines: dict[str, dict[str, Any]],
) -> Path:
    """A run folder in the format of docs/architecture.md."""
    (run_dir / "predictions").mkdir(parents=True, exist_ok=True)
    manifest = {"name": "test-run", "config": {"name": "test-run", "pipelines": pipelines}}
    (run_dir / "run.json").write_text(json.dumps(manifest), encoding="utf-8")
    with (run_dir / "examples.jsonl").open("w", encoding="utf-8") as fh:
        for ex in examples:
            fh.write(json.dumps(ex.model_dump(mode="json")) + "\n")
    for name, preds in predictions.items():
        with (run_dir / "predictions" / f"{name}.jsonl").open("w", encoding="utf-8") as fh:
            for p in preds:
                fh.write(json.dumps(p.model_dump(mode="json")) + "\n")
    return run_dir


PIPELINES = {
    "cot-agent": {"kind": "cot", "reasoner": "qwen", "grounder": "gdino", "mode": "agent"},
    "cot-oracle": {"kind": "cot", "reasoner": "qwen", "grounder": "gdino", "mode": "oracle-image"},
    "migician": {"kind": "e2e", "model": "migician"},
}


def standard_run(tmp_path: Path) -> Path:
    """Two tasks × 4 examples, three pipelines, every CoT failure category represented.

    cot-agent per task: success, wrong image, no box, low IoU (plus a step-1 format failure
    replacing the last one in ``group_grounding``); cot-oracle: always the target image, with
    success except one low-IoU example per task; migician: success on the first two examples.
    """
    examples, agent, oracle, e2e = [], [], [], []
    for task in ("common_object", "group_grounding"):
        for k in range(4):
            ex = make_example(tmp_path, task, k, n_images=2 + k % 2, target=1)
            examples.append(ex)
            if k == 0:
                agent.append(cot_prediction(ex, "cot-agent", image_index=1, box=GOOD))
            elif k == 1:
                agent.append(cot_prediction(ex, "cot-agent", image_index=0, box=GOOD))
            elif k == 2:
                agent.append(cot_prediction(ex, "cot-agent", image_index=1, box=None))
            elif task == "common_object":
                agent.append(cot_prediction(ex, "cot-agent", image_index=1, box=POOR))
            else:
                agent.append(
                    cot_prediction(
                        ex,
                        "cot-agent",
                        image_index=None,
                        box=None,
                        step1_status="malformed",
                        step1_text="I think <script>alert(1)</script> it is there",
                        error=ErrorInfo(
                            category="format_failure", message="no image", node="parse_selection"
                        ),
                    )
                )
            oracle.append(
                cot_prediction(ex, "cot-oracle", image_index=1, box=POOR if k == 3 else GOOD)
            )
            e2e.append(
                e2e_prediction(ex, "migician", box=GOOD if k < 2 else POOR, calibration=None)
            )
    return write_run(
        tmp_path / "run",
        examples,
        {"cot-agent": agent, "cot-oracle": oracle, "migician": e2e},
        PIPELINES,
    )
