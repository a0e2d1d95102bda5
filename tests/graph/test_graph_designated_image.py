"""Acceptance: no mode forces a wrong image. On every item of both MIG-Bench annotation files, a
scripted reasoner that names the target image and a scripted grounder that returns the
ground-truth box score 100.0 Acc@0.5 in official and strict mode, in `paper`, `oracle-image`
and `agent` mode. The graph's nodes run in the graph's order (its routing functions), without
LangGraph's per-invoke overhead, so ~26,000 runs take seconds.

Items whose ground-truth box is inverted or degenerate (MIG_data.json has a few; see
`cot-ground validate-bench`) have IoU 0 even with themselves: for them the test asserts the
image only, and the tables are taken over the other items."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest

from cot_ground.bench.migbench import load_benchmark
from cot_ground.graph import CoTConfig
from cot_ground.graph.cot import after_parse, after_step1, make_after_ground
from cot_ground.graph.nodes import FINALIZE, GROUND, PARSE, SELECT, CoTNodes
from cot_ground.graph.run import initial_state
from cot_ground.models.base import ChatRequest, GroundRequest, GroundResult, ReasonerResult
from cot_ground.prompts import load_prompts
from cot_ground.records import Candidate, Example, ParseStatus, Prediction
from cot_ground.scoring import ScoreRow, score_row, score_table

MODES = [("paper", "paper"), ("oracle-image", "structured"), ("agent", "structured")]


class TargetNamingReasoner:
    """Names the current example's target image in the form its prompt variant asks for."""

    name = "target-naming-reasoner"
    settings: ClassVar[dict[str, Any]] = {}

    def __init__(self, variant: str) -> None:
        self.variant = variant
        self.example: Example | None = None

    def reason(self, requests: list[ChatRequest]) -> list[ReasonerResult]:
        ex = self.example
        assert ex is not None
        kind = load_prompts("cot", self.variant, ex.task).fields["answer"]
        number = ex.target_image + 1
        text = {
            "image_and_description": f'{{"image": {number}, "description": "the target"}}',
            "image": f"Image{number}",
            "description": "the target",
        }[kind]
        return [ReasonerResult.from_text(text, r, {}) for r in requests]


class GroundTruthGrounder:
    """Returns the current example's ground-truth box on whatever image it is given."""

    name = "ground-truth-grounder"
    settings: ClassVar[dict[str, Any]] = {}

    def __init__(self) -> None:
        self.example: Example | None = None

    def ground(self, requests: list[GroundRequest]) -> list[GroundResult]:
        assert self.example is not None
        box = Candidate(box=self.example.gt_box)
        return [GroundResult(candidates=[box], status=ParseStatus.OK) for _ in requests]


def run_nodes(nodes: CoTNodes, example: Example) -> Prediction:
    """One example through the CoT graph's nodes, routed by the graph's own router functions."""
    state: dict[str, Any] = initial_state(example)
    routes = {SELECT: after_step1, PARSE: after_parse, GROUND: make_after_ground(0)}
    node = SELECT
    while True:
        update = getattr(nodes, node)(state)
        trace = (state.get("trace") or []) + (update.pop("trace", None) or [])
        state.update(update, trace=trace)
        if node == FINALIZE:
            return Prediction.model_validate(state["prediction"])
        node = routes[node](state)


def assert_every_example_scores_100(
    nodes: CoTNodes, models: tuple[Any, ...], examples: list[Example], label: str
) -> None:
    """Run every example through ``nodes`` (``models`` are told the current example): each is on
    its target image with IoU >= 0.5, officially and strictly, and both tables read 100.0."""
    rows, wrong = [], []
    for ex in examples:
        for model in models:
            model.example = ex
        pred = run_nodes(nodes, ex)
        row = ScoreRow.from_prediction(pred, ex)
        score = score_row(row)
        if pred.image_index != ex.target_image or not score.image_correct:
            wrong.append((ex.task, ex.target_rule, pred.image_index, ex.target_image))
        if ex.gt_box.is_inverted or ex.gt_box.area <= 0:
            continue
        if not (score.correct(0.5, "official") and score.correct(0.5, "strict")):
            wrong.append((ex.task, "iou", pred.box, ex.gt_box))
        rows.append(row)
    assert len(rows) > len(examples) - 20
    assert wrong == [], f"{label}: {len(wrong)} wrong, e.g. {wrong[:5]}"
    for scoring_mode in ("official", "strict"):
        table = score_table(rows, mode=scoring_mode)
        assert len(table["tasks"]) == 10
        assert {t: s["acc@0.5"] for t, s in table["tasks"].items()} == dict.fromkeys(
            table["tasks"], 100.0
        )
        assert table["average"]["acc@0.5"] == 100.0


@pytest.mark.shared
@pytest.mark.slow
@pytest.mark.parametrize("file", ["MIG_data.json", "revised_MIG_bench.json"])
def test_target_naming_reasoner_and_true_boxes_score_100_in_every_mode(
    migbench_dir: Path, file: str
) -> None:
    examples = load_benchmark(migbench_dir / "annotations" / file).examples
    assert len(examples) > 4000
    for mode, variant in MODES:
        reasoner, grounder = TargetNamingReasoner(variant), GroundTruthGrounder()
        nodes = CoTNodes(reasoner, grounder, CoTConfig(mode=mode, prompt_variant=variant))
        assert_every_example_scores_100(nodes, (reasoner, grounder), examples, f"{file} {mode}")
