"""The report explains itself: a how-to-read box, a caption per table and chart, a reason for
every empty section, readable run facts, and a legend that says when a pipeline drew no box."""

from __future__ import annotations

import html
from pathlib import Path

import pytest
from analysis_fixtures import GOOD, cot_prediction, e2e_prediction, make_example, write_run

from cot_ground.analysis.attribution import CATEGORIES
from cot_ground.analysis.guide import (
    CAPTIONS,
    CATEGORY_MEANINGS,
    EMPTY_REASONS,
    HOW_TO_READ,
)
from cot_ground.analysis.report import build_report


def test_every_failure_category_has_a_meaning() -> None:
    assert set(CATEGORIES) <= set(CATEGORY_MEANINGS)


@pytest.fixture(scope="module")
def classical_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The demo's classical pipeline (the real graph) on 2 MIG-Lite items per task."""
    from cot_ground.demo import run_demo

    out = tmp_path_factory.mktemp("demo")
    result = run_demo(out, per_task=2, with_tiny_models=False, log=lambda _: None)
    return result.report_html.parent, result.report_html.read_text(encoding="utf-8")


@pytest.mark.slow
def test_report_opens_with_how_to_read_and_notes_on_this_run(classical_report) -> None:
    _, page = classical_report
    assert page.index("How to read this report") < page.index("<h2>Run</h2>")
    for line in HOW_TO_READ:
        assert html.escape(line) in page
    # the rule-based reasoner cannot choose an image for group_grounding: said, not guessed
    assert "classical_cot scores 0 on group_grounding" in page
    assert "rule-reasoner reads the target image from the question" in page


@pytest.mark.slow
def test_every_section_has_a_caption_or_says_why_it_is_empty(classical_report) -> None:
    report_dir, page = classical_report
    shown = ["run", "overview.official", "overview.strict", "chart.acc_per_task"]
    shown += ["chart.failure_categories", "attribution", "shares", "categories", "scores"]
    shown += ["examples"]
    for key in shown:
        assert html.escape(CAPTIONS[key]) in page, key
    # one pipeline and no agent/oracle-image pair: both sections say why they are empty
    for key in ("oracle_gain", "paired"):
        assert html.escape(EMPTY_REASONS[key]) in page, key
        assert (report_dir / f"{key}.md").read_text(encoding="utf-8").strip() == (
            EMPTY_REASONS[key]
        )
    # every category that occurs is explained in the page
    assert "step1_format" in page and html.escape(CATEGORY_MEANINGS["step1_format"]) in page


@pytest.mark.slow
def test_run_facts_are_readable(classical_report) -> None:
    _, page = classical_report
    assert "None" not in page.split("<h2>Run</h2>")[1].split("</dl>")[0]
    assert "tasks: all" in page
    assert "not sharded" in page


def test_legend_says_which_pipeline_drew_no_box(tmp_path: Path) -> None:
    examples = [make_example(tmp_path, "common_object", k, n_images=2, target=1) for k in range(2)]
    run = write_run(
        tmp_path / "run",
        examples,
        {
            "cot-agent": [
                cot_prediction(ex, "cot-agent", image_index=1, box=GOOD) for ex in examples
            ],
            "silent": [e2e_prediction(ex, "silent", box=None) for ex in examples],
        },
        {
            "cot-agent": {"kind": "cot", "reasoner": "q", "grounder": "g", "mode": "agent"},
            "silent": {"kind": "e2e", "model": "m"},
        },
    )
    page = build_report(run, n_boot=50).files["report.html"].read_text(encoding="utf-8")
    assert "silent (drew no box in this run)" in page
    assert "silent: no box (format_failure)" in page  # per card
    assert "cot-agent: image 2" in page  # 1-based image numbers
