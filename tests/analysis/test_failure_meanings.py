"""The report explains a failure category by the pipeline kind that produced it: records of the
real verify and CoT graphs (scripted models), explained in the run notes and the report's
category table."""

from __future__ import annotations

import html
from pathlib import Path

from analysis_fixtures import GT, cot_prediction, make_example, write_run
from scripted_models import ScriptedGrounder, ScriptedReasoner

from cot_ground.analysis.guide import (
    CATEGORY_MEANINGS,
    KIND_MEANINGS,
    ZOOM_NOTE,
    category_meaning,
    category_rows,
)
from cot_ground.analysis.load import load_run, read_manifest
from cot_ground.analysis.report import build_report
from cot_ground.graph import VerifyConfig, build_verify_graph, run_example
from cot_ground.models.base import ChatRequest
from cot_ground.records import Candidate

STEP1 = '{"image": 2, "description": "a red cup"}'


def _verify(ex, tmp_path: Path, step1: str):
    """The verify graph's record: step 1 answers ``step1``; every cropped proposal gets "No"."""

    def answer(request: ChatRequest) -> str:
        return "No." if request.prompt.startswith("Is this") else step1

    grounder = ScriptedGrounder({ex.images[1]: [Candidate(box=GT, score=0.9)]})
    cfg = VerifyConfig(pipeline="verify", artifacts_dir=str(tmp_path / "art"), max_retries=0)
    return run_example(build_verify_graph(ScriptedReasoner(answer), grounder, config=cfg), ex)


def test_verify_failures_are_explained_as_verify_failures(tmp_path: Path) -> None:
    said_no = [make_example(tmp_path, "common_object", k, n_images=2) for k in range(2)]
    unreadable = [make_example(tmp_path, "group_grounding", k, n_images=2) for k in range(2)]
    examples = said_no + unreadable
    verify = [_verify(ex, tmp_path, STEP1) for ex in said_no]
    verify += [_verify(ex, tmp_path, "I cannot tell.") for ex in unreadable]
    cot = [cot_prediction(ex, "cot", image_index=1, box=None) for ex in examples]
    run = write_run(
        tmp_path / "run",
        examples,
        {"cot": cot, "verify": verify},
        {"cot": {"kind": "cot"}, "verify": {"kind": "verify"}},
    )
    df = load_run(run)
    failures = df.groupby(["pipeline", "task"])["failure"].agg(set).to_dict()
    assert failures[("verify", "common_object")] == {"no_box"}
    assert failures[("verify", "group_grounding")] == {"format_failure"}
    assert failures[("cot", "common_object")] == {"no_box"}

    rows = category_rows(df, read_manifest(run))
    meanings = {(r.category, r.pipelines): r.meaning for r in rows.itertuples()}
    assert meanings[("no_box", "verify")] == KIND_MEANINGS["verify"]["no_box"]
    assert meanings[("no_box", "cot")] == CATEGORY_MEANINGS["no_box"]  # the grounder's nothing
    assert meanings[("format_failure", "verify")] == KIND_MEANINGS["verify"]["format_failure"]
    assert "end-to-end" not in meanings[("format_failure", "verify")]

    page = build_report(run).files["report.html"].read_text(encoding="utf-8")
    for text in (
        "verify scores 0 on common_object: all 2 examples are no_box"
        f" ({KIND_MEANINGS['verify']['no_box']})",
        "verify scores 0 on group_grounding: all 2 examples are format_failure"
        f" ({KIND_MEANINGS['verify']['format_failure']})",
        f"cot scores 0 on common_object: all 2 examples are no_box ({CATEGORY_MEANINGS['no_box']})",
    ):
        assert html.escape(text) in page, text
    assert html.escape(CATEGORY_MEANINGS["format_failure"]) not in page  # no end-to-end here


def test_meanings_per_kind_and_zoom() -> None:
    assert "end-to-end" in category_meaning("format_failure", "e2e")
    assert category_meaning("format_failure", "som") == KIND_MEANINGS["som"]["format_failure"]
    assert "mark" in category_meaning("format_failure", "som")
    assert "id" in category_meaning("format_failure", "perception-prompt")
    assert "grounder found nothing" in category_meaning("no_box", "cot")
    assert "grounder found nothing" not in category_meaning("no_box", "e2e")
    assert category_meaning("low_iou", "som", zoom=True).endswith(ZOOM_NOTE)
    assert ZOOM_NOTE not in category_meaning("no_box", "cot", zoom=True)  # zoom needs a box
    assert category_meaning("low_iou") == CATEGORY_MEANINGS["low_iou"]
