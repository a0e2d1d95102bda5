"""Box: named frame constructors, exact inverses, flags and clear errors."""

from __future__ import annotations

import math

import pytest

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
