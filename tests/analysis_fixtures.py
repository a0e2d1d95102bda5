"""Small run folders for the analysis tests: real image files, and prediction records made by
the real graphs (:func:`cot_ground.graph.assemble.build_graph`) over scripted models.

The scripted models move a scripted clock (:data:`cot_ground.graph.calls.clock`) by a fixed
time per call, so the recorded timings are exact: step 1 takes :data:`STEP1_S`, step 2
:data:`GROUND_S` and an end-to-end answer :data:`PREDICT_S`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scripted_models import ScriptedGrounder, ScriptedReasoner, example_on

from cot_ground.boxes import Box
from cot_ground.graph import CoTConfig, E2EConfig, calls, run_example
from cot_ground.graph.assemble import build_graph
from cot_ground.models.base import EndToEndResult
from cot_ground.records import Candidate, Example, ParseStatus, Prediction

GT = Box.from_unit([0.2, 0.2, 0.6, 0.6])
GOOD = Box.from_unit([0.22, 0.2, 0.6, 0.62])  # IoU ~0.91 with GT
POOR = Box.from_unit([0.5, 0.5, 0.9, 0.9])  # IoU ~0.03 with GT

STEP1_S, GROUND_S, PREDICT_S = 0.5, 0.25, 1.0
DESCRIPTION = "a red cup"


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
    return example_on(task, images, question, GT, target)


class ScriptedClock:
    """Seconds that pass only when a scripted model says it worked."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@contextlib.contextmanager
def scripted_clock() -> Iterator[ScriptedClock]:
    """Time the graphs' model calls by a :class:`ScriptedClock` while the block runs."""
    clock, saved = ScriptedClock(), calls.clock
    calls.clock = clock
    try:
        yield clock
    finally:
        calls.clock = saved


class Timed:
    """An adapter that takes ``seconds`` of the scripted clock per call (any role)."""

    def __init__(self, inner: Any, clock: ScriptedClock, seconds: float) -> None:
        self.inner, self.clock, self.seconds = inner, clock, seconds
        self.name, self.settings = inner.name, inner.settings

    def _call(self, method: str, requests: list[Any]) -> list[Any]:
        self.clock.advance(self.seconds)
        return getattr(self.inner, method)(requests)

    def reason(self, requests: list[Any]) -> list[Any]:
        return self._call("reason", requests)

    def ground(self, requests: list[Any]) -> list[Any]:
        return self._call("ground", requests)

    def predict(self, requests: list[Any]) -> list[Any]:
        return self._call("predict", requests)


class ScriptedAnswer:
    """An end-to-end model that answers ``box`` (on ``image_index``) to every request, with
    ``calibration`` recorded as the adapter's when given."""

    def __init__(self, box: Box | None, image_index: int | None, raw_text: str, calibration):
        self.name = "scripted-answer"
        self.settings: dict[str, Any] = {"scripted": True}
        self.result = EndToEndResult(
            raw_text=raw_text,
            image_index=image_index,
            box=box,
            status=ParseStatus.OK if box is not None else ParseStatus.MALFORMED,
            settings={"calibration": calibration} if calibration else {},
        )

    def predict(self, requests: list[Any]) -> list[EndToEndResult]:
        return [self.result for _ in requests]


def cot_prediction(
    example: Example,
    pipeline: str,
    *,
    image_index: int | None,
    box: Box | None,
    step1_text: str | None = None,
    mode: str = "agent",
    max_retries: int = 0,
) -> Prediction:
    """The CoT graph's record when step 1 answers ``step1_text`` (default: image
    ``image_index`` and :data:`DESCRIPTION`, as structured JSON) and the grounder finds ``box``
    on image ``image_index`` only (nothing when None)."""
    if step1_text is None:
        step1_text = json.dumps({"image": image_index + 1, "description": DESCRIPTION})
    found = [Candidate(box=box, score=0.9, label="target")] if box is not None else []
    grounder = ScriptedGrounder({example.images[image_index]: found} if found else {})
    config = CoTConfig(mode=mode, pipeline=pipeline, max_retries=max_retries)
    with scripted_clock() as clock:
        adapters = {
            "reasoner": Timed(ScriptedReasoner([step1_text]), clock, STEP1_S),
            "grounder": Timed(grounder, clock, GROUND_S),
        }
        return run_example(build_graph("cot", adapters, config), example)


def e2e_prediction(
    example: Example,
    pipeline: str,
    *,
    box: Box | None,
    image_index: int | None = None,
    calibration: str | None = None,
    raw_text: str = "<|box_start|>(220,200),(600,620)<|box_end|>",
) -> Prediction:
    """The end-to-end graph's record when the model answers ``box`` on ``image_index`` (an
    unreadable answer when ``box`` is None)."""
    model = ScriptedAnswer(box, image_index, raw_text, calibration)
    with scripted_clock() as clock:
        graph = build_graph(
            "e2e", {"model": Timed(model, clock, PREDICT_S)}, E2EConfig(pipeline=pipeline)
        )
        return run_example(graph, example)


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


COT = {"kind": "cot", "reasoner": "qwen", "grounder": "gdino", "max_retries": 0}
PIPELINES = {
    "cot-agent": {**COT, "mode": "agent"},
    "cot-oracle": {**COT, "mode": "oracle-image"},
    "migician": {"kind": "e2e", "model": "migician"},
}


def standard_run(tmp_path: Path) -> Path:
    """Two tasks × 4 examples, three pipelines (:data:`PIPELINES`, run by the real graphs),
    every CoT failure category represented.

    cot-agent per task: success, wrong image, no box, low IoU (plus a step-1 format failure
    replacing the last one in ``group_grounding``); cot-oracle: always the target image, with
    success except one low-IoU example per task; migician: success on the first two examples.
    """
    examples, agent, oracle, e2e = [], [], [], []
    step1 = {"description": DESCRIPTION}
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
            else:  # the JSON names no image: malformed, the description read
                text = f"I think <script>alert(1)</script> it is there {json.dumps(step1)}"
                agent.append(
                    cot_prediction(ex, "cot-agent", image_index=None, box=None, step1_text=text)
                )
            oracle.append(
                cot_prediction(
                    ex,
                    "cot-oracle",
                    image_index=1,
                    box=POOR if k == 3 else GOOD,
                    mode="oracle-image",
                )
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
