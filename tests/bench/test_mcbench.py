"""MC-Bench loader and metrics on a hand-made fixture in the published format.

Fixture (tests/fixtures/mc-bench_fixture.json), every image 100x100 except image id 1 (200x100):
sample 0: one group, a target on each image; sample 1: two groups (group 1 on its first image,
group 2 on its second); samples 2 and 3: negative (no target).

Predictions used below (scores in brackets):
  s0 img0 exact (0.9) TP | s0 img1 IoU 0 (0.6) FP | s2 img0 box (0.8) FP on a negative sample
  s1 img0 exact, labelled group 2 (0.7) | s1 img1 exact, labelled group 1 (0.95)  -- swapped
Group matching renames s1's groups (swap), so both become TPs.
Group 1 (3 GT), detections by score: TP .9, FP .8, TP .7, FP .6 -> recall 1/3, 1/3, 2/3, 2/3,
precision 1, 1/2, 2/3, 1/2; interpolated precision 1 for recall thresholds 0..0.33 (34 of
COCO's 101) and 2/3 for 0.34..0.66 (33), 0 above: AP = (34 + 33 * 2/3) / 101 = 56/101.
Group 2 (1 GT): one TP at the top: AP = 1. Weighted by GT count: 3/4 * 56/101 + 1/4 = 269/404.
Without matching: group 1 gets FP .95, TP .9, FP .8, FP .6 -> AP = 34 * 1/2 / 101 = 17/101;
group 2 gets only an FP -> 0; weighted: 3/4 * 17/101 = 51/404.
Image-level: s0 right, s1 right, s2 wrong (a box on a negative sample), s3 right (no box) = 3/4.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from repo_paths import TESTS

from cot_ground.bench.mcbench import MCBenchError, load_mcbench
from cot_ground.bench.mcbench_metrics import as_image_boxes, mcbench_metrics
from cot_ground.boxes import Box
from cot_ground.records import ImageBox, Prediction

FIXTURE = TESTS / "fixtures" / "mc-bench_fixture.json"


def _box(image: int, coords: list[float], score: float, group: int = 1) -> ImageBox:
    return ImageBox(image_index=image, box=Box.from_unit(coords), score=score, group=group)


PREDICTIONS = {
    0: [_box(0, [0.1, 0.1, 0.5, 0.5], 0.9), _box(1, [0.0, 0.0, 0.3, 0.3], 0.6)],
    1: [_box(0, [0.0, 0.0, 0.5, 0.5], 0.7, group=2), _box(1, [0.2, 0.2, 0.8, 0.8], 0.95, group=1)],
    2: [_box(0, [0.1, 0.1, 0.2, 0.2], 0.8)],
    3: [],
}


def test_loader_converts_absolute_xywh_to_unit_xyxy(tmp_path: Path) -> None:
    bench = load_mcbench(FIXTURE, images_root=tmp_path / "mc-bench_images")
    assert len(bench) == 4 and len(bench.sha256) == 64
    s0, s1, s2, _ = bench.samples
    assert s0.images == (
        str(tmp_path / "mc-bench_images" / "COCO/fixture_0.jpg"),
        str(tmp_path / "mc-bench_images" / "COCO/fixture_1.jpg"),
    )
    assert s0.targets[0].box == Box.from_unit([0.1, 0.1, 0.5, 0.5])
    # image id 1 is 200 px wide: [100, 50, 60, 30] -> x 100/200 .. 160/200
    assert s0.targets[1].box == Box.from_unit([0.5, 0.5, 0.8, 0.8])
    assert s0.sizes == ((100, 100), (200, 100))
    assert s1.groups == [1, 2] and [t.image_index for t in s1.targets] == [0, 1]
    assert not s2.positive and s2.targets == ()
    assert bench.counts() == {"Referring": 2, "Comparison": 1, "Reasoning": 1, "negative": 2}
    assert bench.manifest()["box_frame"] == "absolute xywh pixels -> unit xyxy"


def test_loader_errors_name_the_item(tmp_path: Path) -> None:
    data = json.loads(FIXTURE.read_text())
    data["annotations"][1]["bbox"] = [1, 2, 0, 5]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(MCBenchError, match=r"annotation id 1 has bbox \[1, 2, 0, 5\]"):
        load_mcbench(bad)
    data = json.loads(FIXTURE.read_text())
    data["descriptions"][2]["images_id"] = [4, 99]
    bad.write_text(json.dumps(data))
    with pytest.raises(MCBenchError, match=r"descriptions\[2\] \(id 2\) names unknown image id"):
        load_mcbench(bad)
    with pytest.raises(MCBenchError, match="not found"):
        load_mcbench(tmp_path / "missing.json")


def test_metrics_hand_computed() -> None:
    bench = load_mcbench(FIXTURE)
    m = mcbench_metrics(bench, PREDICTIONS)
    assert m.ap50_per_group == {1: pytest.approx(56 / 101), 2: pytest.approx(1.0)}
    assert m.gt_per_group == {1: 3, 2: 1}
    assert m.ap50 == pytest.approx(269 / 404)
    assert m.accuracy == pytest.approx(3 / 4)


def test_metrics_without_group_matching() -> None:
    m = mcbench_metrics(load_mcbench(FIXTURE), PREDICTIONS, match_groups=False)
    assert m.ap50_per_group == {1: pytest.approx(17 / 101), 2: pytest.approx(0.0)}
    assert m.ap50 == pytest.approx(51 / 404)
    assert m.accuracy == pytest.approx(3 / 4)  # image-level accuracy ignores groups


def test_metrics_of_no_predictions_and_bad_input() -> None:
    bench = load_mcbench(FIXTURE)
    m = mcbench_metrics(bench, {})
    assert m.ap50 == 0.0 and m.accuracy == pytest.approx(2 / 4)  # both negatives right
    with pytest.raises(ValueError, match="unknown MC-Bench sample id 9"):
        mcbench_metrics(bench, {9: []})
    with pytest.raises(ValueError, match="image index 2 out of range"):
        mcbench_metrics(bench, {0: [_box(2, [0, 0, 1, 1], 1.0)]})


def test_prediction_record_holds_several_boxes_or_none() -> None:
    several = Prediction(example_id="s1", pipeline="p", task="Comparison", boxes=PREDICTIONS[1])
    back = Prediction.model_validate_json(several.model_dump_json())
    assert back.boxes == PREDICTIONS[1] and back.box is None
    assert Prediction(example_id="s3", pipeline="p", task="Referring", boxes=[]).boxes == []
    single = Prediction(example_id="x", pipeline="p", task="diff", box=Box.from_unit([0, 0, 1, 1]))
    assert single.boxes is None and single.model_dump()["box"] == {
        "x1": 0,
        "y1": 0,
        "x2": 1,
        "y2": 1,
    }


def test_single_box_predictions_become_mc_bench_answers() -> None:
    box = Box.from_unit([0.1, 0.1, 0.5, 0.5])
    single = Prediction(example_id="0", pipeline="som", task="Referring", image_index=0, box=box)
    assert as_image_boxes(single) == [ImageBox(image_index=0, box=box)]
    unnamed = Prediction(example_id="0", pipeline="e2e", task="Referring", box=box)
    assert as_image_boxes(unnamed) == []
    none = Prediction(example_id="0", pipeline="som", task="Referring", boxes=[])
    assert as_image_boxes(none) == []
    answers = {0: as_image_boxes(single), 1: [], 2: [], 3: []}
    m = mcbench_metrics(load_mcbench(FIXTURE), answers)
    # group 1: one TP among 3 GT -> recall 1/3 at precision 1: 34 of 101 thresholds
    assert m.ap50 == pytest.approx(3 / 4 * 34 / 101)
    assert m.accuracy == pytest.approx(2 / 4)  # s0 misses image 2; both negatives right
