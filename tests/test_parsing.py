"""Model-output parsing: every accepted format, statuses, image choices, property tests."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cot_ground.boxes import Box, Frame
from cot_ground.parsing import (
    answer_text,
    clean_text,
    parse,
    parse_box,
    parse_selection,
    parse_step1,
)
from cot_ground.records import ParseStatus

Q = [0.1, 0.2, 0.3, 0.4]  # unit-frame box of "100, 200, 300, 400" in qwen1000


@pytest.mark.parametrize(
    "text",
    [
        "<|box_start|>(100,200),(300,400)<|box_end|>",
        "(100,200),(300,400)",
        "( 100 , 200 ) , ( 300 , 400 )",
        "the red car<|object_ref_end|><|box_start|>(100,200),(300,400)<|box_end|>",
        "[100, 200, 300, 400]",
        "[100.0, 200.0, 300.0, 400.0]",
        "<box>100 200 300 400</box>",
        "<box>[[100, 200, 300, 400]]</box>",
        '{"bbox_2d": [100, 200, 300, 400], "label": "car"}',
        '```json\n[{"bbox_2d": [100, 200, 300, 400], "label": "car"}]\n```',
        "<think>first (1,1),(2,2)? no.</think><answer>(100,200),(300,400)</answer>",
        "<think>the car is left</think>\n[100, 200, 300, 400]",
        "- Top-left corner: (x1, y1) = (100, 200)\n- Bottom-right corner: (x2, y2) = (300, 400)",
    ],
)
def test_every_accepted_format_gives_the_box(text: str) -> None:
    result = parse_box(text, Frame.QWEN1000)
    assert result.status is ParseStatus.OK, text
    assert result.box is not None
    assert result.box.to_list() == pytest.approx(Q)
    assert result.boxes == [result.box]


def test_the_caller_names_the_frame() -> None:
    text = "[0.1, 0.2, 0.3, 0.4]"
    assert parse_box(text, "unit").box == Box.from_unit(Q)
    # in the qwen1000 frame these numbers are a frame mismatch, never a guessed box
    assert parse_box(text, "qwen1000").status is ParseStatus.FRAME_MISMATCH
    tiny = parse_box("[1.5, 2, 3, 4]", "qwen1000").box
    assert tiny.to_list() == pytest.approx([0.0015, 0.002, 0.003, 0.004])
    pixels = parse_box("[64, 48, 320, 240]", Frame.PIXELS, size=(640, 480))
    assert pixels.box.to_list() == pytest.approx([0.1, 0.1, 0.5, 0.5])
    with pytest.raises(ValueError, match="size"):
        parse_box(text, Frame.PIXELS)


def test_several_boxes_return_the_first_with_a_status() -> None:
    text = '[{"bbox_2d": [1, 2, 3, 4]}, {"bbox_2d": [5, 6, 7, 8]}]'
    result = parse_box(text, "qwen1000")
    assert result.status is ParseStatus.SEVERAL_BOXES
    assert result.box == Box.from_qwen1000([1, 2, 3, 4])
    assert len(result.boxes) == 2
    mixed = parse_box("(5,6),(7,8) and also [1, 2, 3, 4]", "qwen1000")
    assert mixed.box == Box.from_qwen1000([5, 6, 7, 8])  # order in the text decides


@pytest.mark.parametrize(
    "text",
    [
        "[1, 2, 3]",
        "<box>1 2 3</box>",
        "(59,307),(259,691",
        "[0,0),(999,999)",
        "<|box_start|>somewhere<|box_end|>",
        '{"bbox_2d": "left"}',
        "[" + "9" * 400 + ", 1, 2, 3]",
    ],
)
def test_box_like_text_that_cannot_be_read_is_malformed(text: str) -> None:
    result = parse_box(text, "qwen1000")
    assert result.status is ParseStatus.MALFORMED
    assert result.box is None and result.boxes == []


@pytest.mark.parametrize(
    "text", ["", "car", "There are no differences between these two images.", "(x1,y1),(x2,y2)"]
)
def test_text_without_a_box_is_no_box_never_a_zero_box(text: str) -> None:
    result = parse_box(text, "qwen1000")
    assert result.status is ParseStatus.NO_BOX
    assert result.box is None


def test_negative_numbers_are_kept_not_stripped() -> None:
    result = parse_box("(-20,10),(300,400)", "qwen1000")
    assert result.box.x1 == pytest.approx(-0.02)
    assert not result.box.in_unit_range


def test_answer_text_strips_think_and_answer_wrappers() -> None:
    assert answer_text("<think>a</think><answer> b </answer>") == "b"
    assert answer_text("<think>a</think> b") == "b"
    assert answer_text("<think>never closed") == ""
    assert answer_text("plain") == "plain"


def test_parse_box_reports_the_named_image() -> None:
    result = parse_box("It is in the second image: (100,200),(300,400)", "qwen1000")
    assert result.image_index == 1
    assert result.answer_text.startswith("It is in")


@pytest.mark.parametrize("frame", [Frame.QWEN1000, Frame.QWEN3_1000])
@pytest.mark.parametrize(
    "text",
    [
        "[0.28, 0.5, 0.52, 0.7]",
        "(0.1,0.2),(0.5,1)",
        "<box>0 0.5 1 1</box>",
        "[0.0, 0.0, 1.0, 1.0]",
        "[0.00, 0.00, 1.00, 1.00]",
        "(0,0),(1.,1)",
    ],
)
def test_unit_floats_in_an_integer_frame_are_a_frame_mismatch(text: str, frame: Frame) -> None:
    result = parse_box(text, frame)
    assert result.status is ParseStatus.FRAME_MISMATCH
    assert result.box is None and result.boxes == []
    read = parse_box(text, frame, unit_floats="fraction")
    assert read.status is ParseStatus.OK
    assert read.box == Box.from_unit(parse_box(text, Frame.UNIT).box.to_list())


@pytest.mark.parametrize("text", ["[0.0, 0.0, 1.0, 1.0]", "[0.00, 0.00, 1.00, 1.00]"])
def test_whole_numbers_written_with_a_decimal_point_are_unit_floats(text: str) -> None:
    # decided by the text, not the value: never silently a 1/1000-size integer-frame box
    assert parse_box(text, "qwen1000").status is ParseStatus.FRAME_MISMATCH
    whole = parse_box(text, "qwen1000", unit_floats="fraction")
    assert whole.status is ParseStatus.OK and whole.box.to_list() == [0.0, 0.0, 1.0, 1.0]
    # the public Migician parser's per-number rule: 1.0 is divided by 1000
    migician = parse_box(text, "qwen1000", unit_floats="migician")
    assert migician.box.to_list() == pytest.approx([0.0, 0.0, 0.001, 0.001])
    integers = parse_box("[0, 0, 1, 1]", "qwen1000", unit_floats="fraction")
    assert integers.status is ParseStatus.OK
    assert integers.box.to_list() == pytest.approx([0.0, 0.0, 0.001, 0.001])


def test_unit_floats_rules_apply_to_integer_frames_and_fractions_only() -> None:
    # integers 0/1 are a valid (tiny) integer-frame box; floats above 1 are not unit floats
    assert parse_box("[0, 0, 1, 1]", Frame.QWEN1000).status is ParseStatus.OK
    assert parse_box("[0.5, 2.5, 10.0, 20.0]", Frame.QWEN1000).status is ParseStatus.OK
    assert parse_box("[0.28, 0.5, 0.52, 0.7]", Frame.UNIT).status is ParseStatus.OK
    # a later unit-float box is dropped; the first, well-framed box stands
    later = parse_box("(100,200),(300,400) and [0.1, 0.2, 0.3, 0.4]", Frame.QWEN1000)
    assert later.status is ParseStatus.OK and later.box.to_list() == pytest.approx(Q)
    with pytest.raises(ValueError, match="unit_floats"):
        parse_box("[1, 2, 3, 4]", Frame.QWEN1000, unit_floats="guess")


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        ("<|object_ref_start|>the red car<|object_ref_end|>", "the red car"),
        ("the dog<|box_start|>(1,2),(3,4)<|box_end|> on the left", "the dog on the left"),
        ("a cup<|im_end|>", "a cup"),
        ("<|box_start|>(1,2),(3,4)", ""),
        ("plain  text", "plain  text"),
    ],
)
def test_clean_text_removes_special_tokens(text: str, cleaned: str) -> None:
    assert clean_text(text) == cleaned


def test_parse_box_reads_the_image_with_the_question() -> None:
    question = "For the object in the first image, please locate it in the 2th image."
    text = "the object in the first image(100,200),(300,400)"
    assert parse_box(text, Frame.QWEN1000).image_index == 0
    assert parse_box(text, Frame.QWEN1000, question=question).image_index is None


@pytest.mark.parametrize(
    ("text", "index", "description"),
    [
        ('{"image": 2, "description": "the red car"}', 1, "the red car"),
        ('```json\n{"image": 1, "description": "a dog"}\n```', 0, "a dog"),
        ('<think>hmm</think>{"image": "3", "description": "cup"}', 2, "cup"),
        ('{"image": "Image-2", "description": "cup"}', 1, "cup"),
        ("It's in the second image. The red car on the left.", 1, "The red car on the left."),
        ("It is in the first image, the dog by the door", 0, "the dog by the door"),
        ("The red car on the left in image 3", 2, "The red car on the left"),
        ("2th", 1, ""),
        ("<|object_ref_start|>the red car<|object_ref_end|> in image 2", 1, "the red car"),
        ("第二张图片。红色的车", 1, "红色的车"),
    ],
)
def test_parse_selection(text: str, index: int, description: str) -> None:
    result = parse_selection(text, n_images=4)
    assert result.status is ParseStatus.OK
    assert result.image_index == index
    assert result.description == description


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ('{"image": 5, "description": "cup"}', ParseStatus.MALFORMED),
        ('{"image": 0, "description": "cup"}', ParseStatus.MALFORMED),
        ('{"image": null, "description": "cup"}', ParseStatus.MALFORMED),
        ('{"image": true, "description": "cup"}', ParseStatus.MALFORMED),
        ('{"image": 1' + "0" * 400 + ', "description": "cup"}', ParseStatus.MALFORMED),
        ('{"image": 1.5, "description": "cup"}', ParseStatus.MALFORMED),
        ("Image-7: the cup", ParseStatus.MALFORMED),
        ("The cup on the table.", ParseStatus.NO_BOX),
    ],
)
def test_parse_selection_failures_are_statuses(text: str, status: ParseStatus) -> None:
    result = parse_selection(text, n_images=4)
    assert result.status is status
    assert result.image_index is None
    assert result.error


# ----------------------------------------------------------------------------- properties
FRAMES = [
    (Frame.UNIT, None),
    (Frame.QWEN1000, None),
    (Frame.QWEN3_1000, None),
    (Frame.PIXELS, (1280.0, 720.0)),
]
TEMPLATES = [
    "<|box_start|>({0},{1}),({2},{3})<|box_end|>",
    "({0}, {1}), ({2}, {3})",
    "[{0}, {1}, {2}, {3}]",
    "<box>{0} {1} {2} {3}</box>",
    "<box>[[{0}, {1}, {2}, {3}]]</box>",
    '{{"bbox_2d": [{0}, {1}, {2}, {3}]}}',
    "<think>thinking</think><answer>[{0}, {1}, {2}, {3}]</answer>",
]
numbers = st.one_of(
    st.integers(min_value=-50, max_value=5000).map(str),
    st.floats(min_value=-10, max_value=5000, allow_nan=False).map(lambda v: f"{v:.4f}"),
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(max_size=300))
def test_parser_never_raises_on_arbitrary_text(text: str) -> None:
    for frame, size in FRAMES:
        result = parse_box(text, frame, size)
        assert isinstance(result.status, ParseStatus)
        assert (result.box is None) == (
            result.status in (ParseStatus.NO_BOX, ParseStatus.MALFORMED, ParseStatus.FRAME_MISMATCH)
        )
        for box in result.boxes:
            assert Box.from_frame(box.to_frame(frame, size), frame, size).to_list() == (
                pytest.approx(box.to_list())
            )
    selection = parse_selection(text, n_images=3)
    assert selection.image_index is None or 0 <= selection.image_index < 3


@settings(max_examples=300)
@given(
    coords=st.lists(numbers, min_size=4, max_size=4),
    template=st.sampled_from(TEMPLATES),
    frame_size=st.sampled_from(FRAMES),
    prefix=st.sampled_from(["", "The object is at ", "It is in the second image. "]),
)
def test_every_returned_box_round_trips_through_its_frame(
    coords: list[str], template: str, frame_size: tuple, prefix: str
) -> None:
    frame, size = frame_size
    result = parse_box(prefix + template.format(*coords), frame, size)
    values = [float(c) for c in coords]
    integer_frame = frame in (Frame.QWEN1000, Frame.QWEN3_1000)
    # decided by the text: a decimal point makes unit floats, also "1.0000" (was: by the value)
    fractions = all(0 <= v <= 1 for v in values) and any("." in c for c in coords)
    if integer_frame and fractions:
        assert result.status is ParseStatus.FRAME_MISMATCH  # unit floats in an integer frame
        result = parse_box(prefix + template.format(*coords), frame, unit_floats="fraction")
        assert result.box.to_list() == pytest.approx(values)
        return
    assert result.status is ParseStatus.OK
    assert result.box.to_frame(frame, size) == pytest.approx([float(c) for c in coords])


@settings(max_examples=100)
@given(
    index=st.integers(min_value=1, max_value=6),
    description=st.text(
        alphabet=st.characters(blacklist_categories=["Cs", "Cc"]), min_size=1, max_size=40
    ),
)
def test_structured_selection_round_trips(index: int, description: str) -> None:
    # a "<|name|>" span is a special token, removed from descriptions on purpose (see
    # parsing.clean_text): such text does not round-trip
    assume("<|" not in description)
    text = json.dumps({"image": index, "description": description})
    result = parse_selection(text, n_images=6)
    assert result.status is ParseStatus.OK
    assert result.image_index == index - 1
    assert result.description == description.strip()


BOTH = "image_and_description"


@pytest.mark.parametrize(
    ("text", "kind", "status", "index", "description", "error"),
    [
        ('{"image": 2, "description": "the dog"}', BOTH, "ok", 1, "the dog", None),
        ("Image 2", BOTH, "malformed", 1, "", "no description"),
        ('{"image": 0}', BOTH, "malformed", None, "", "image 0 is out of range"),
        ("It is in the third image.", "image", "ok", 2, "", None),
        ("I cannot tell.", "image", "no_box", None, "", "the answer names no image"),
        ('"The red car."', "description", "ok", None, "The red car", None),
        ("  ", "description", "malformed", None, "", "empty answer"),
    ],
)
def test_parse_step1_reads_each_answer_kind(
    text: str, kind: str, status: str, index: int | None, description: str, error: str | None
) -> None:
    result = parse_step1(text, kind)
    assert (result.status.value, result.image_index, result.description, result.error) == (
        status,
        index,
        description,
        error,
    )


def test_parse_step1_keeps_an_image_beyond_the_request() -> None:
    text = '{"image": 5, "description": "the dog"}'
    assert parse_step1(text).image_index == 4  # unchecked: the caller reports it
    checked = parse_step1(text, n_images=3)
    assert checked.status is ParseStatus.MALFORMED and checked.image_index is None
    assert checked.out_of_range_index == 4 and checked.error == "image 5 is out of range of 3"
    assert parse_selection(text, n_images=3) == checked
    with pytest.raises(ValueError, match="answer kind"):
        parse_step1(text, "box")


@pytest.mark.parametrize(
    ("text", "status", "index", "box"),
    [
        # the named image's size converts the pixels
        ("In the second image: [0, 0, 50, 20]", ParseStatus.OK, 1, [0.0, 0.0, 0.5, 0.5]),
        ("Image 1 [0, 0, 50, 20]", ParseStatus.OK, 0, [0.0, 0.0, 0.25, 0.2]),
        # no image named and the sizes differ: the box cannot be placed
        ("[0, 0, 50, 20]", ParseStatus.MALFORMED, None, None),
        ("<box>0 0 50", ParseStatus.MALFORMED, None, None),
        ("I cannot tell.", ParseStatus.NO_BOX, None, None),
        ("It is in the second image.", ParseStatus.NO_BOX, 1, None),
    ],
)
def test_parse_reads_the_image_then_the_box_once(
    text: str, status: ParseStatus, index: int | None, box: list[float] | None
) -> None:
    result = parse(text, Frame.PIXELS, [(200, 100), (100, 40)])
    assert (result.status, result.image_index) == (status, index)
    assert (result.box.to_list() if result.box else None) == (pytest.approx(box) if box else None)


def test_parse_in_a_shared_size_and_in_integer_frames() -> None:
    shared = parse("[0, 0, 50, 20]", Frame.PIXELS, [(100, 40), (100, 40)])
    assert shared.status is ParseStatus.OK
    assert shared.box.to_list() == pytest.approx([0, 0, 0.5, 0.5])
    for text in ("Image 2 (100,200),(300,400)", "[0.28, 0.5, 0.52, 0.7]", "none"):
        for floats in ("reject", "fraction"):
            assert parse(text, Frame.QWEN1000, unit_floats=floats) == parse_box(
                text, Frame.QWEN1000, unit_floats=floats
            )
    with pytest.raises(ValueError, match="unit_floats"):
        parse("[1, 2, 3, 4]", Frame.PIXELS, [(10, 10)], unit_floats="guess")


NO_BOX, MALFORMED, OK = ParseStatus.NO_BOX, ParseStatus.MALFORMED, ParseStatus.OK


@pytest.mark.parametrize(
    ("text", "box_status", "selection"),
    [
        ("top left (1,1) " * 500 + "\n" + "bottom right (1, " * 500, MALFORMED, (NO_BOX, None)),
        ("[" * 5000, NO_BOX, (NO_BOX, None)),
        ("(1," * 3000, NO_BOX, (NO_BOX, None)),
        ("<think>" * 2000, NO_BOX, (NO_BOX, None)),
        ("{" * 3000 + "}" * 3000, NO_BOX, (NO_BOX, None)),
        ("1th image " * 2000, NO_BOX, (OK, 0)),
        ("image 2 " * 3000, NO_BOX, (OK, 1)),
        ("the image 2 birds " * 2000, NO_BOX, (NO_BOX, None)),
        ("not in in in in in in in in image 2 " * 1000, NO_BOX, (NO_BOX, None)),
        ("[1, " + "1, " * 5000, NO_BOX, (NO_BOX, None)),
        ("<box>1 " * 3000, MALFORMED, (NO_BOX, None)),
    ],
)
def test_long_adversarial_text_gets_a_status(text, box_status, selection) -> None:
    # how long these take is measured by benchmarks/adversarial_parsing.py, not asserted here
    parsed = parse_box(text, Frame.QWEN1000)
    assert parsed.status is box_status and parsed.box is None
    chosen = parse_selection(text, n_images=4)
    assert (chosen.status, chosen.image_index) == selection
