"""Acceptance figures of MIG-Lite with the classical baselines (printed; run with -s to see).

The classical CoT pipeline (rule reasoner + template / difference grounders) must reach
Acc@0.5 >= 0.9 on region and refer_grounding and >= 0.8 on diff at the default difficulty, and a
deliberately wrong coordinate conversion must drop each figure below 0.2.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from PIL import Image

from cot_ground.bench import load_benchmark
from cot_ground.boxes import Box
from cot_ground.lite import generate_lite
from cot_ground.models.base import ChatRequest, GroundRequest
from cot_ground.models.classical import ClassicalGrounder
from cot_ground.models.difference import DiffGrounder
from cot_ground.models.rule_reasoner import RuleReasoner
from cot_ground.models.template import TemplateGrounder
from cot_ground.records import Example
from cot_ground.scoring import iou

TASKS = ("region", "refer_grounding", "diff")
FLOOR = {"region": 0.9, "refer_grounding": 0.9, "diff": 0.8}
PER_TASK = 25

# every test builds or reads the 25-per-task MIG-Lite of the module fixture (or its own): > 2 s
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> list[Example]:
    build = generate_lite(tmp_path_factory.mktemp("lite"), seed=0, per_task=PER_TASK, tasks=TASKS)
    return load_benchmark(build.data_file, root=build.out_dir, answer_frame="unit").examples


@pytest.fixture(scope="module")
def predictions(examples: list[Example]) -> list[tuple[int | None, Box | None]]:
    """(image index, box) of the classical pipeline per example."""
    return _predict(examples)


def _predict(examples: list[Example]) -> list[tuple[int | None, Box | None]]:
    """(image index, box) of the classical pipeline per example, calling the adapters directly."""
    reasoner = RuleReasoner()
    grounder = ClassicalGrounder(TemplateGrounder(), DiffGrounder())
    out = []
    for ex in examples:
        step1 = reasoner.reason([ChatRequest(images=ex.images, prompt=f"Task: {ex.question}")])[0]
        if step1.image_index is None:
            out.append((None, None))
            continue
        ref = step1.reference_index
        request = GroundRequest(
            image=ex.images[step1.image_index],
            phrase=step1.description or "",
            task=ex.task,
            reference_image=None if ref is None else ex.images[ref],
            reference_box=step1.reference_box,
        )
        result = grounder.ground([request])[0]
        out.append((step1.image_index, result.candidates[0].box if result.candidates else None))
    return out


def _swap_xy(box: Box, size: tuple[int, int]) -> Box:
    return Box.from_unit([box.y1, box.x1, box.y2, box.x2])


def _pixels_as_1000(box: Box, size: tuple[int, int]) -> Box:
    return Box.from_qwen1000(box.to_pixels(*size))


def _accuracy(
    examples: list[Example],
    predictions: list[tuple[int | None, Box | None]],
    convert: Callable[[Box, tuple[int, int]], Box] | None = None,
) -> dict[str, float]:
    hits: dict[str, list[bool]] = {t: [] for t in TASKS}
    for ex, (index, box) in zip(examples, predictions, strict=True):
        if box is not None and convert is not None:
            with Image.open(ex.images[index]) as im:
                box = convert(box, im.size)
        hits[ex.task].append(index == ex.target_image and iou(box, ex.gt_box) >= 0.5)
    return {t: sum(v) / len(v) for t, v in hits.items()}


def test_classical_pipeline_reaches_the_floors(examples, predictions) -> None:
    acc = _accuracy(examples, predictions)
    print(
        "\nMIG-Lite Acc@0.5, classical (default difficulty):",
        {t: round(a, 3) for t, a in acc.items()},
    )
    for task in TASKS:
        assert acc[task] >= FLOOR[task], (task, acc[task])


@pytest.mark.parametrize("convert", [_swap_xy, _pixels_as_1000])
def test_wrong_coordinate_conversion_fails(examples, predictions, convert) -> None:
    acc = _accuracy(examples, predictions, convert)
    print(f"\nMIG-Lite Acc@0.5 with {convert.__name__}:", {t: round(a, 3) for t, a in acc.items()})
    assert all(a < 0.2 for a in acc.values()), acc


def test_classical_pipeline_through_the_cot_graph(examples) -> None:
    graph_mod = pytest.importorskip("cot_ground.graph")
    graph = graph_mod.build_cot_graph(
        RuleReasoner(),
        ClassicalGrounder(TemplateGrounder(), DiffGrounder()),
        config=graph_mod.CoTConfig(pipeline="classical"),
    )
    chosen = examples[::3]
    hits = []
    for ex in chosen:
        prediction = graph_mod.run_example(graph, ex)
        assert prediction.pipeline == "classical" and prediction.error is None
        hits.append(
            prediction.image_index == ex.target_image and iou(prediction.box, ex.gt_box) >= 0.5
        )
    print(f"\nMIG-Lite through the CoT graph: {sum(hits)}/{len(hits)} correct")
    assert sum(hits) / len(hits) >= 0.8


COMMON_FLOOR = 0.9  # measured 1.00 (seed 0, 25 items); window template search alone: 0.28


def test_common_object_keypoint_matching(tmp_path_factory: pytest.TempPathFactory) -> None:
    build = generate_lite(
        tmp_path_factory.mktemp("lite_common"), seed=0, per_task=PER_TASK, tasks=("common_object",)
    )
    common = load_benchmark(build.data_file, root=build.out_dir, answer_frame="unit").examples
    hits = [
        index == ex.target_image and box is not None and iou(box, ex.gt_box) >= 0.5
        for ex, (index, box) in zip(common, _predict(common), strict=True)
    ]
    acc = sum(hits) / len(hits)
    print(f"\nMIG-Lite common_object Acc@0.5, classical (keypoint matching): {acc:.3f}")
    assert acc >= COMMON_FLOOR
