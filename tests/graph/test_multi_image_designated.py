"""Acceptance for mode ``multi-image``: on every item of both MIG-Bench annotation files, a
reasoner naming the target and a multi-image grounder answering the ground-truth box score
100.0 Acc@0.5, official and strict, in both answer forms (the image comes from the paper's
rules in ``polling`` and from the answer's ``Image-k:`` line in ``all``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
from test_graph_designated_image import TargetNamingReasoner, assert_every_example_scores_100

from cot_ground.bench.migbench import load_benchmark
from cot_ground.graph import CoTConfig
from cot_ground.graph.nodes import CoTNodes
from cot_ground.models.base import ChatRequest, EndToEndResult
from cot_ground.records import Example, ParseStatus


class GroundTruthMultiImage:
    """Answers the current example's ground-truth box, as a Qwen2-VL-style text for ``all``
    (every image listed, the target's line holding the true box) and as a bare box otherwise."""

    name = "ground-truth-multi-image"
    settings: ClassVar[dict[str, Any]] = {"frame": "qwen1000"}

    def __init__(self) -> None:
        self.example: Example | None = None

    def predict(self, requests: list[ChatRequest]) -> list[EndToEndResult]:
        ex = self.example
        assert ex is not None
        gt = ex.gt_box
        true = "({},{}),({},{})".format(*(round(v * 1000) for v in gt.to_list()))
        other = "(0,0),(10,10)"
        out = []
        for request in requests:
            if request.prompt.startswith("Find "):  # the all form
                lines = [
                    f"Image-{i + 1}: {true if i == ex.target_image else other}"
                    for i in range(len(ex.images))
                ]
                out.append(EndToEndResult(raw_text="\n".join(lines), status=ParseStatus.OK))
            else:
                out.append(EndToEndResult(raw_text=true, box=gt, status=ParseStatus.OK))
        return out


@pytest.mark.shared
@pytest.mark.slow
@pytest.mark.parametrize("file", ["MIG_data.json", "revised_MIG_bench.json"])
def test_true_answers_score_100_in_both_answer_forms(migbench_dir: Path, file: str) -> None:
    examples = load_benchmark(migbench_dir / "annotations" / file).examples
    for form in ("polling", "all"):
        reasoner, grounder = TargetNamingReasoner("paper"), GroundTruthMultiImage()
        config = CoTConfig(mode="multi-image", prompt_variant="paper", answer_form=form)
        nodes = CoTNodes(reasoner, grounder, config)  # an EndToEndGrounder in this mode
        assert_every_example_scores_100(nodes, (reasoner, grounder), examples, f"{file} {form}")
