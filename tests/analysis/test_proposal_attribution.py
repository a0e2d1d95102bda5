"""Failure attribution and the recall bound of proposal graphs, on records the real som graph
wrote (scripted models)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from cot_ground.analysis.load import prediction_row
from cot_ground.analysis.proposal_recall import recall_table
from cot_ground.boxes import Box
from cot_ground.graph import SoMConfig, build_som_graph, run_example
from cot_ground.records import Candidate
from tests.scripted_models import ScriptedGrounder, ScriptedReasoner, make_example

GT = Box.from_unit([0.1, 0.1, 0.5, 0.5])  # make_example's ground truth, on image 2 (index 1)
FAR = Box.from_unit([0.6, 0.6, 0.9, 0.9])


@pytest.fixture
def example(tmp_path: Path):
    images = []
    for i in range(2):
        p = tmp_path / f"img{i}.png"
        Image.new("RGB", (64, 64), (30 * i, 60, 90)).save(p)
        images.append(str(p))
    ex = make_example("group_grounding", n_images=2, target=1, folder=str(tmp_path))
    return ex.model_copy(update={"images": images})


def _row(example, proposals: list[Box], answer: str, tmp_path: Path, first=()) -> dict:
    grounder = ScriptedGrounder(
        {
            example.images[0]: [Candidate(box=b) for b in first],
            example.images[1]: [Candidate(box=b) for b in proposals],
        }
    )
    cfg = SoMConfig(artifacts_dir=str(tmp_path / "art"), pipeline="som")
    pred = run_example(build_som_graph(ScriptedReasoner([answer]), grounder, config=cfg), example)
    return prediction_row(example, pred, {"kind": "som"})


def test_success_wrong_mark_and_no_proposal_hits(example, tmp_path: Path) -> None:
    right = _row(example, [FAR, GT], "image 2, mark 2", tmp_path)
    assert (right["failure"], right["proposal_hit"]) == ("success", True)
    assert right["artifacts"] and all(Path(p).is_file() for p in right["artifacts"])
    wrong = _row(example, [FAR, GT], "image 2, mark 1", tmp_path)
    assert (wrong["failure"], wrong["proposal_hit"]) == ("wrong_mark", True)
    missed = _row(example, [FAR], "image 2, mark 1", tmp_path)
    assert (missed["failure"], missed["proposal_hit"]) == ("no_proposal_hits", False)
    other_image = _row(example, [FAR, GT], "image 1, mark 1", tmp_path, first=[GT])
    assert other_image["failure"] == "wrong_image"
    out_of_range = _row(example, [FAR, GT], "image 1, mark 1", tmp_path)  # image 1 has none
    assert out_of_range["failure"] == "index_out_of_range"
    table = recall_table(pd.DataFrame([right, wrong, missed]))
    assert table.to_dict("records")[-1] == {
        "pipeline": "som",
        "task": "AVERAGE",
        "n": 3,
        "proposal_recall_50": pytest.approx(200 / 3),
        "acc_50": pytest.approx(100 / 3),
    }
