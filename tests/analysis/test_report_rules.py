"""Which scoring rule each report table uses, on records made by the real graphs: the oracle
gain under strict and official, answers that copy the question's reference box, and the paired
files' p-values and TASK_MEAN row."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from analysis_fixtures import (
    GT,
    PIPELINES,
    POOR,
    cot_prediction,
    e2e_prediction,
    write_images,
    write_run,
)
from scripted_models import example_on

from cot_ground.analysis.attribution import oracle_gain
from cot_ground.analysis.guide import run_notes
from cot_ground.analysis.load import load_run, pipeline_specs, read_manifest
from cot_ground.analysis.report import build_report
from cot_ground.analysis.scores import score_tables, scores_frame
from cot_ground.boxes import Box, iou

# the box the questions state for the reference image (thousandths), IoU ~0.91 with GT
REFERENCE = (220, 200, 600, 620)
QUESTION = (
    "These are a sequence of images containing moving objects. For the object in the first"
    " image marked with red bounding box(<|box_start|>({},{}),({},{})<|box_end|>), please"
    " locate it in the 2th image. #{}"
)
# a good box that is not the reference box
CLOSE = Box.from_unit([0.2, 0.2, 0.6, 0.58])
# enough examples for an exact McNemar p-value far below 0.001: cot-agent is right (official)
# on every example and migician on the first two only, so p = 2 * 0.5**(N - 2)
N = 20


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """N object_tracking examples (target image 2 of 3). cot-agent grounds a good box on the
    wrong image (image 1) every time; cot-oracle the same box on the target; migician copies
    the question's reference box on the first two and answers a poor box on the others."""
    tmp = tmp_path_factory.mktemp("rules")
    examples, agent, oracle, e2e = [], [], [], []
    for k in range(N):
        images = write_images(tmp / "images", f"track{k}", 3, seed=k)
        ex = example_on("object_tracking", images, QUESTION.format(*REFERENCE, k), GT, 1)
        # "locate it in the 2th image": an answer naming no image is on image 2 (as loaded)
        ex = ex.model_copy(update={"target_rule": "question_ordinal"})
        examples.append(ex)
        agent.append(cot_prediction(ex, "cot-agent", image_index=0, box=CLOSE))
        oracle.append(
            cot_prediction(ex, "cot-oracle", image_index=1, box=CLOSE, mode="oracle-image")
        )
        copy = Box.from_qwen1000(REFERENCE)
        e2e.append(e2e_prediction(ex, "migician", box=copy if k < 2 else POOR))
    preds = {"cot-agent": agent, "cot-oracle": oracle, "migician": e2e}
    return write_run(tmp / "run", examples, preds, PIPELINES)


def test_oracle_gain_official_misses_wrong_image_choices_strict_counts_them(run):
    frame = load_run(run)
    assert iou(CLOSE, GT) >= 0.5
    assert (frame.loc[frame["pipeline"] == "cot-agent", "failure"] == "wrong_image").all()
    gain = oracle_gain(frame, pipeline_specs(read_manifest(run)))
    by_rule = {rule: part.set_index("task") for rule, part in gain.groupby("rule")}
    # official ignores the image: the good box on the wrong image scores, the choice costs 0
    assert by_rule["official"].loc["object_tracking", "agent_acc"] == pytest.approx(100.0)
    assert by_rule["official"].loc["AVERAGE", "gain"] == pytest.approx(0.0)
    # strict: every wrong image choice is a miss, and the gain is their cost
    assert by_rule["strict"].loc["object_tracking", "agent_acc"] == pytest.approx(0.0)
    assert by_rule["strict"].loc["object_tracking", "oracle_acc"] == pytest.approx(100.0)
    assert by_rule["strict"].loc["AVERAGE", "gain"] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="unknown rule"):
        oracle_gain(frame, rules=("lenient",))


def test_reference_box_echo_column_and_notes(run):
    frame = load_run(run).set_index(["pipeline", "example_id"])
    e2e = frame.loc["migician"]
    assert int(e2e["reference_box_echo"].sum()) == 2
    # a copy is scored as any box (this object did not move): both rules count it
    copies = e2e[e2e["reference_box_echo"]]
    assert copies["correct_50"].all() and copies["strict_correct_50"].all()
    assert not frame.loc["cot-agent", "reference_box_echo"].any()
    df = load_run(run)
    notes = run_notes(df, scores_frame(score_tables(df)), read_manifest(run))
    echo = [n for n in notes if "reference image" in n]
    assert len(echo) == 1
    assert "migician object_tracking: 2 of 2 official and 2 of 2 strict hits" in echo[0]


def test_report_files_name_their_rule_and_keep_small_p_values(run, tmp_path):
    result = build_report(run, out_dir=tmp_path / "report", sample_per_category=0, n_boot=50)
    gain_md = (tmp_path / "report" / "oracle_gain.md").read_text("utf-8")
    assert gain_md.startswith("Acc@0.5 (%) of oracle-image minus agent, under two rules")
    assert "| strict |" in gain_md and "| official |" in gain_md
    gain_csv = pd.read_csv(result.files["oracle_gain.csv"])
    assert set(gain_csv["rule"]) == {"strict", "official"}
    paired_md = (tmp_path / "report" / "paired.md").read_text("utf-8")
    assert paired_md.startswith("Acc@0.5 under the official rule")
    assert "unadjusted" in paired_md and "p_holm" in paired_md
    paired = pd.read_csv(result.files["paired.csv"])
    task_mean = paired[paired["task"] == "TASK_MEAN"]
    assert task_mean[["both", "only_a", "only_b", "neither"]].isna().all().all()
    pooled = paired[paired["task"] == "POOLED"]
    assert pooled[["both", "only_a", "only_b", "neither"]].notna().all().all()
    # cot-agent vs cot-oracle under the official rule: the wrong image is not seen, both right
    row = pooled[(pooled["a"] == "cot-agent") & (pooled["b"] == "cot-oracle")].iloc[0]
    assert (row["both"], row["diff"], float(row["p_value"])) == (N, 0.0, 1.0)
    # cot-agent vs migician: N - 2 examples only cot-agent got right, a p-value of ~7.6e-06
    small = 2 * 0.5 ** (N - 2)
    assert small < 1e-4
    row = pooled[(pooled["a"] == "cot-agent") & (pooled["b"] == "migician")].iloc[0]
    assert (row["only_a"], row["only_b"]) == (N - 2, 0)
    assert float(row["p_value"]) == small  # the CSV keeps every digit
    with open(result.files["paired.json"], encoding="utf-8") as fh:
        records = json.load(fh)
    (found,) = [
        r for r in records if (r["a"], r["b"], r["task"]) == ("cot-agent", "migician", "POOLED")
    ]
    assert found["p_value"] == small
    shown = f"{small:.1e}"
    assert shown == "7.6e-06"
    lines = [line.strip("|").split(" | ") for line in paired_md.splitlines() if line[:1] == "|"]
    cells = {tuple(c.strip() for c in line[:3]): line for line in lines}
    header = [c.strip() for c in lines[0]]
    md_row = [c.strip() for c in cells[("cot-agent", "migician", "POOLED")]]
    assert md_row[header.index("p_value")] == shown  # not rounded to 0.0000
    scores_md = (tmp_path / "report" / "scores.md").read_text("utf-8")
    assert "`reference_box_echo`" in scores_md
    page = (tmp_path / "report" / "report.html").read_text("utf-8")
    assert "Reference-box echo" in page and "(strict and official rules)" in page
    assert f"<td>{shown}</td>" in page
