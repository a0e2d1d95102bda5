"""Box: named frame constructors, exact inverses, flags and clear errors."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cot_ground.boxes import Box, Frame, nms


def test_unit_and_qwen_frames() -> None:
    assert Box.from_unit([0.1, 0.2, 0.3, 0.4]).to_list() == [0.1, 0.2, 0.3, 0.4]
    assert Box.from_qwen1000([100, 200, 300, 400]).to_list() == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert Box.from_qwen3_1000([0, 0, 1000, 1000]).to_list() == [0.0, 0.0, 1.0, 1.0]


def test_pixels_frame_uses_the_stated_size() -> None:
    box = Box.from_pixels([64, 48, 320, 240], width=640, height=480)
    assert box.to_list() == pytest.approx([0.1, 0.1, 0.5, 0.5])
    assert box.to_pixels(640, 480) == pytest.approx([64, 48, 320, 240])
    with pytest.raises(ValueError, match="width, height"):
        Box.from_frame([1, 2, 3, 4], Frame.PIXELS)
    with pytest.raises(ValueError, match="positive"):
        Box.from_pixels([1, 2, 3, 4], 0, 10)


@pytest.mark.parametrize(
    ("frame", "size"),
    [("unit", None), ("qwen1000", None), ("qwen3_1000", None), ("pixels", (1280.0, 720.0))],
)
def test_from_frame_and_to_frame_are_inverse(frame: str, size: tuple[float, float] | None) -> None:
    coords = [12.5, 40.0, 600.25, 700.0] if frame != "unit" else [0.1, 0.2, 0.6, 0.7]
    box = Box.from_frame(coords, frame, size)
    assert box.to_frame(frame, size) == pytest.approx(coords)


def test_flags_report_inverted_and_out_of_range_boxes_without_fixing_them() -> None:
    inverted = Box.from_unit([0.5, 0.5, 0.2, 0.9])
    assert inverted.is_inverted and inverted.area == 0.0
    assert inverted.to_list() == [0.5, 0.5, 0.2, 0.9]
    outside = Box.from_unit([-0.1, 0.0, 1.2, 0.5])
    assert not outside.in_unit_range
    assert outside.clipped().to_list() == [0.0, 0.0, 1.0, 0.5]
    assert Box.from_unit([0.0, 0.0, 0.5, 0.5]).area == pytest.approx(0.25)


@pytest.mark.parametrize("coords", [[1, 2, 3], [1, 2, 3, 4, 5], ["a", 2, 3, 4]])
def test_bad_coordinates_raise_a_clear_error(coords: list) -> None:
    with pytest.raises(ValueError, match="box"):
        Box.from_unit(coords)


def test_non_finite_coordinates_are_rejected() -> None:
    with pytest.raises(ValueError, match="finite"):
        Box.from_unit([0, 0, math.inf, 1])


def test_box_is_frozen_and_serializes() -> None:
    box = Box.from_unit([0.1, 0.2, 0.3, 0.4])
    assert Box.model_validate(box.model_dump()) == box
    with pytest.raises(ValueError):
        box.x1 = 0.5  # type: ignore[misc]


def test_nms_keeps_input_order_and_drops_overlaps_at_the_threshold() -> None:
    boxes = [[0, 0, 10, 10], [0, 0, 10, 5], [20, 20, 30, 30], [0, 0, 10, 10]]
    assert nms(boxes, 0.5, 5) == [0, 2]  # IoU exactly 0.5 counts as overlapping
    assert nms(boxes, 0.6, 5) == [0, 1, 2]
    assert nms(boxes, 0.5, 1) == [0]


def test_iou_tie_at_one_half_in_the_thousandths_frame_counts() -> None:
    """The reviewer's pair: exact IoU 1/2, which the normalized float arithmetic put at
    0.4999999999999999 (not counted at 0.5, while the public script counts it)."""
    from cot_ground.boxes import iou
    from cot_ground.scoring import THRESHOLDS

    pred = Box.from_qwen1000([41, 265, 74, 328])
    gt = Box.from_qwen1000([41, 265, 107, 328])
    assert iou(pred, gt) == 0.5
    assert 0.5 in THRESHOLDS


def _exact_iou(a: list[int], b: list[int]) -> Fraction:
    ix = min(a[2], b[2]) - max(a[0], b[0])
    iy = min(a[3], b[3]) - max(a[1], b[1])
    if ix <= 0 or iy <= 0:
        return Fraction(0)
    inter = ix * iy
    return Fraction(inter, (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


_coordinate = st.integers(min_value=0, max_value=999)


@settings(max_examples=300, deadline=None)
@given(
    x=_coordinate,
    y=_coordinate,
    unit=st.integers(min_value=1, max_value=99),
    h=st.integers(min_value=1, max_value=999),
    tie=st.sampled_from([(3, 10), (1, 2), (7, 10)]),
)
def test_exact_integer_ties_count_at_every_threshold(x, y, unit, h, tie) -> None:
    """A box of width ``num * unit`` inside one of width ``den * unit`` (same height) has IoU
    exactly num/den: Acc@num/den counts it, as IoU >= t on the integers does."""
    from cot_ground.boxes import iou

    num, den = tie
    h = min(h, 1000 - y)
    assume(den * unit <= 1000 - x and h >= 1)
    gt = [x, y, x + den * unit, y + h]
    pred = [x, y, x + num * unit, y + h]
    assert _exact_iou(pred, gt) == Fraction(num, den)
    value = iou(Box.from_qwen1000(pred), Box.from_qwen1000(gt))
    assert value >= num / den
    assert value == pytest.approx(num / den, abs=1e-12)


_box = st.lists(_coordinate, min_size=4, max_size=4).map(
    lambda v: [min(v[0], v[2]), min(v[1], v[3]), max(v[0], v[2]) + 1, max(v[1], v[3]) + 1]
)


@settings(max_examples=500, deadline=None)
@given(a=_box, b=_box)
def test_iou_decides_every_threshold_as_the_integers_do(a, b) -> None:
    """On random integer boxes of the thousandths frame, IoU >= t agrees with the exact
    rational IoU for t = 0.3, 0.5, 0.7, and the value is the exact one to 1e-10."""
    from cot_ground.boxes import iou
    from cot_ground.scoring import THRESHOLDS

    exact = _exact_iou(a, b)
    value = iou(Box.from_qwen1000(a), Box.from_qwen1000(b))
    assert abs(value - float(exact)) < 1e-10
    for t in THRESHOLDS:
        assert (value >= t) == (exact >= Fraction(str(t)))
