"""Every report table equals an aggregate of ``load_run``, on predictions made by the real graphs.

The examples come from MIG-Bench-shaped items through the real loader (so their target rules
are the real ones); the predictions from the CoT and end-to-end graphs driven by scripted
adapters. Among them: end-to-end answers with a perfect box that name no image, which strict
mode must count on ``diff`` (the question designates image 2) and not on ``group_grounding``.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from analysis_fixtures import write_images, write_run
from scripted_models import ScriptedEndToEnd, ScriptedGrounder, ScriptedReasoner, candidate

from cot_ground.analysis.load import load_run
from cot_ground.analysis.paired import POOLED, TASK_MEAN
from cot_ground.analysis.report import build_report
from cot_ground.bench.migbench import item_to_example
from cot_ground.boxes import Box, Frame
from cot_ground.graph import CoTConfig, build_cot_graph, build_e2e_graph, run_example
from cot_ground.graph.config import E2EConfig
from cot_ground.scoring import METRICS
from cot_ground.tasks import TASK_GROUPS

GT_UNIT = [0.1, 0.2, 0.5, 0.6]
GT_TEXT = "<|box_start|>(100,200),(500,600)<|box_end|>"
ITEMS = [
    # (task, n_images, question, additional_info)
    (
        "diff",
        2,
        "Compare these two images carefully and give me the coordinates of their difference. ",
        "",
    ),
    (
        "diff",
        2,
        "Compare these two images carefully and give me the coordinates of their "
        "difference in the 1th image. ",
        "",
    ),
    (
        "group_grounding",
        3,
        "Please find the bounding box coordinates for the area described "
        "by: <|object_ref_start|>a red cup<|object_ref_end|>.",
        "It is in the second image. ",
    ),
    (
        "group_grounding",
        2,
        "Please find the bounding box coordinates for the area described "
        "by: <|object_ref_start|>a blue car<|object_ref_end|>.",
        "It is in the first image. ",
    ),
    (
        "common_object",
        3,
        "These images share one object in common. Recognize and locate this "
        "object in the 3th image. ",
        "",
    ),
    (
        "region",
        3,
        "You are given a source image followed by its several regions. Please "
        "locate the 1th region picture in the source image. ",
        "",
    ),
]
PIPELINES = {
    "cot-agent": {"kind": "cot", "mode": "agent", "reasoner": "scripted"},
    "cot-oracle": {"kind": "cot", "mode": "oracle-image", "reasoner": "scripted"},
    "e2e-box-only": {"kind": "e2e", "model": "scripted-box"},
    "e2e-first-image": {"kind": "e2e", "model": "scripted-first"},
}


def _examples(tmp_path):
    examples = []
    for k, (task, n, question, info) in enumerate(ITEMS * 2):  # each item twice, new pictures
        images = write_images(tmp_path / "images", f"{task}{k}", n, seed=k)
        item = {
            "task": task,
            "images": images,
            "question": question + ("" if k < len(ITEMS) else " "),
            "answer": GT_UNIT,
            "additional_info": info + GT_TEXT if info else "",
        }
        examples.append(item_to_example(item, f"item {k}", Frame.UNIT, tmp_path))
    return examples


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("consistency")
    examples = _examples(tmp)
    by_images = {tuple(e.images): e for e in examples}
    order = {e.id: i for i, e in enumerate(examples)}

    def answer(request) -> str:
        # right image on even examples, the next one (wrong) on odd ones; 1-based in the text
        ex = by_images[tuple(request.images)]
        shift = order[ex.id] % 2
        return json.dumps(
            {"image": (ex.target_image + shift) % len(ex.images) + 1, "description": "the target"}
        )

    gt = candidate(*GT_UNIT)
    grounder = ScriptedGrounder({p: [gt] for e in examples for p in e.images})
    near = Box.from_unit([0.1, 0.2, 0.5, 0.45])  # IoU 0.625 with the ground truth
    graphs = {
        "cot-agent": build_cot_graph(
            ScriptedReasoner(answer), grounder, config=CoTConfig(mode="agent", pipeline="cot-agent")
        ),
        "cot-oracle": build_cot_graph(
            ScriptedReasoner(answer),
            grounder,
            config=CoTConfig(mode="oracle-image", pipeline="cot-oracle"),
        ),
        "e2e-box-only": build_e2e_graph(
            ScriptedEndToEnd(Box.from_unit(GT_UNIT), "(100,200),(500,600)"),
            config=E2EConfig(pipeline="e2e-box-only"),
        ),
        "e2e-first-image": build_e2e_graph(
            ScriptedEndToEnd(near, "In the first image: (100,200),(500,450)", image_index=0),
            config=E2EConfig(pipeline="e2e-first-image"),
        ),
    }
    predictions = {name: [run_example(g, e) for e in examples] for name, g in graphs.items()}
    run_dir = write_run(tmp / "run", examples, predictions, PIPELINES)
    report = build_report(run_dir, sample_per_category=0, n_boot=100)
    return run_dir, report, load_run(run_dir)


def _expected(frame: pd.DataFrame, pipeline: str, mode: str) -> dict[str, dict[str, float]]:
    """Per-task figures computed straight from the load_run columns."""
    iou_col = "iou" if mode == "official" else "strict_iou"
    prefix = "" if mode == "official" else "strict_"
    out = {}
    for task, part in frame[frame["pipeline"] == pipeline].groupby("task"):
        out[task] = {
            "n": len(part),
            "acc@0.3": 100 * part[f"{prefix}correct_30"].mean(),
            "acc@0.5": 100 * part[f"{prefix}correct_50"].mean(),
            "acc@0.7": 100 * part[f"{prefix}correct_70"].mean(),
            "miou": 100 * part[iou_col].mean(),
            "image_stated": 100 * part["image_stated"].mean(),
        }
    return out


def _mean(figures: list[dict[str, float]]) -> dict[str, float]:
    out = {"n": sum(f["n"] for f in figures)}
    for key in (*METRICS, "image_stated"):
        out[key] = sum(f[key] for f in figures) / len(figures)
    return out


def test_score_tables_equal_load_run_aggregates(run):
    _, report, frame = run
    tables = json.loads((report.out_dir / "scores.json").read_text())
    csv = pd.read_csv(report.out_dir / "scores.csv")
    assert set(frame["pipeline"]) == set(PIPELINES)
    checked = 0
    for mode in ("official", "strict"):
        for pipeline in PIPELINES:
            expected = _expected(frame, pipeline, mode)
            table = tables[mode][pipeline]
            assert (
                set(table["tasks"])
                == set(expected)
                == {"diff", "group_grounding", "common_object", "region"}
            )
            summary = {"AVERAGE": _mean(list(expected.values()))}
            for group, members in TASK_GROUPS.items():
                summary[group.upper()] = _mean([expected[t] for t in members if t in expected])
                assert table["groups"][group] == pytest.approx(summary[group.upper()])
            assert table["average"] == pytest.approx(summary["AVERAGE"])
            for task, figures in {**expected, **summary}.items():
                if task in expected:
                    assert table["tasks"][task] == pytest.approx(figures), (mode, pipeline, task)
                row = csv[
                    (csv["mode"] == mode) & (csv["pipeline"] == pipeline) & (csv["task"] == task)
                ]
                assert len(row) == 1, (mode, pipeline, task)
                for key, value in figures.items():
                    assert row.iloc[0][key] == pytest.approx(value, abs=1e-4), (key, task)
                checked += 1
    assert checked == 2 * 4 * (4 + 3)


def test_markdown_overview_rows_equal_load_run_aggregates(run):
    _, report, frame = run
    markdown = (report.out_dir / "scores.md").read_text()
    official, strict = markdown.split("## Acc@0.5 (strict)")
    strict = strict.split("## All metrics")[0]
    columns = ["diff", "common_object", "region", "group_grounding"]
    for mode, section in (("official", official), ("strict", strict)):
        assert "| pipeline | figure | diff | common_object | region | group_grounding |" in section
        for pipeline in PIPELINES:
            expected = _expected(frame, pipeline, mode)
            groups = [
                _mean([expected[t] for t in members if t in expected])
                for members in TASK_GROUPS.values()
            ]
            cells = [*(expected[t] for t in columns), *groups, _mean(list(expected.values()))]
            acc = " | ".join(f"{c['acc@0.5']:.2f}" for c in cells)
            n = " | ".join(str(c["n"]) for c in cells)
            assert f"| {pipeline} | acc@0.5 | {acc} |" in section, (mode, pipeline)
            assert f"| {pipeline} | n | {n} |" in section, (mode, pipeline)
            stated = " | ".join(f"{c['image_stated']:.2f}" for c in cells)
            assert (f"| {pipeline} | image_stated | {stated} |" in section) == (mode == "strict")


def test_box_without_image_is_strict_correct_where_the_question_designates_the_target(run):
    _, report, frame = run
    e2e = frame[frame["pipeline"] == "e2e-box-only"].set_index("task")
    assert not e2e["image_stated"].any() and e2e["correct_50"].all()
    # diff, common_object, region: the question (or the task layout) designates the target
    for task in ("diff", "common_object", "region"):
        assert e2e.loc[[task], "strict_correct_50"].all(), task
    # group_grounding: the model must say which image; a bare box cannot be strict-correct
    assert not e2e.loc[["group_grounding"], "strict_correct_50"].any()
    tables = json.loads((report.out_dir / "scores.json").read_text())
    strict = tables["strict"]["e2e-box-only"]["tasks"]
    assert strict["diff"]["acc@0.5"] == 100.0 and strict["group_grounding"]["acc@0.5"] == 0.0
    assert strict["group_grounding"]["image_stated"] == 0.0
    # the report says in one sentence where and why strict differs from official
    markdown = (report.out_dir / "scores.md").read_text()
    assert "e2e-box-only group_grounding (4 naming no image)" in markdown
    assert "e2e-box-only diff" not in markdown
    assert "e2e-box-only group_grounding" in (report.out_dir / "report.html").read_text()
    # the answer naming image 1 is right only where image 1 is the target
    first = frame[frame["pipeline"] == "e2e-first-image"]
    assert (first["strict_correct_50"] == (first["target_image"] == 0)).all()
    assert first["image_stated"].all()


def test_attribution_and_paired_tables_equal_load_run_aggregates(run):
    _, report, frame = run
    attribution = pd.read_csv(report.out_dir / "attribution.csv")
    for (pipeline, task), part in frame[frame["kind"] == "cot"].groupby(["pipeline", "task"]):
        row = attribution[(attribution["pipeline"] == pipeline) & (attribution["task"] == task)]
        counts = part["failure"].value_counts()
        assert int(row["n"].iloc[0]) == len(part)
        for category in counts.index:
            assert int(row[category].iloc[0]) == counts[category], (pipeline, task, category)
    agent = frame[frame["pipeline"] == "cot-agent"]
    assert set(agent["failure"]) == {"success", "wrong_image"}
    assert ((agent["failure"] == "success") == agent["strict_correct_50"]).all()
    paired = pd.read_csv(report.out_dir / "paired.csv")
    pair = paired[(paired["a"] == "cot-agent") & (paired["b"] == "e2e-box-only")]
    a = frame[frame["pipeline"] == "cot-agent"].set_index("example_id")["correct_50"]
    b = frame[frame["pipeline"] == "e2e-box-only"].set_index("example_id")["correct_50"]
    b = b.loc[a.index]
    pooled = pair[pair["task"] == POOLED].iloc[0]
    assert (pooled["both"], pooled["only_a"], pooled["only_b"], pooled["neither"]) == (
        int((a & b).sum()),
        int((a & ~b).sum()),
        int((~a & b).sum()),
        int((~a & ~b).sum()),
    )
    assert pooled["diff"] == pytest.approx(100 * (a.mean() - b.mean()), abs=1e-4)
    assert pair[pair["task"] == TASK_MEAN].iloc[0]["n"] == len(a)
