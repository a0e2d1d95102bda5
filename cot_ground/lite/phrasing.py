"""Question wording of MIG-Lite: the phrasings of the published MIG-Bench files.

Region, common-object, multi-view, tracking and refer questions are worded as in
``MIG_data.json``; difference questions name the image as the revised release
(``revised_MIG_bench.json``) does; group-grounding questions use the eleven MIG-Bench templates
and keep the answer in ``additional_info`` ("It is in the Nth image. <box>"). Numbers are written
"1th", "2th" as in MIG-Bench, so the loader's target-image rule reads them.
"""

from __future__ import annotations

from cot_ground.boxes import Box

ORDINAL_WORDS = ("first", "second", "third", "fourth", "fifth", "sixth")

GROUP_TEMPLATES: tuple[str, ...] = (
    "Give the bounding box coordinates of the area mentioned in this sentence: {ref}.",
    "Give the bounding box of the region that this sentence refers to: {ref}.",
    "Identify the bounding box of the region described by the following expression: {ref}.",
    "Please determine the bounding box coordinates for the area described here: {ref}.",
    "Please find the bounding box coordinates for the area described by: {ref}.",
    "Please identify the bounding box coordinates for the area described by this sentence: {ref}.",
    "Please locate the bounding box of the region described in this sentence: {ref}.",
    "Please provide the bounding box coordinate of the region this sentence describes: {ref}.",
    "Please specify the bounding box coordinates for the region indicated by this sentence: {ref}.",
    "Provide the bounding box coordinates for the region referred to by this sentence: {ref}.",
    "Provide the bounding box of the region this expression refers to: {ref}.",
)


def box_tokens(box: Box) -> str:
    """``<|box_start|>(x1,y1),(x2,y2)<|box_end|>`` in integers of the ``[0, 1000)`` frame."""
    x1, y1, x2, y2 = (min(999, max(0, round(v * 1000))) for v in box.to_list())
    return f"<|box_start|>({x1},{y1}),({x2},{y2})<|box_end|>"


def region_question(k: int) -> str:
    """Locate the ``k``-th region picture (1-based) in the source image (image 1)."""
    return (
        "You are given a source image followed by its several regions. "
        f"Please locate the {k}th region picture in the source image. "
    )


def diff_question(target: int) -> str:
    """Locate the difference of two images in image ``target`` (0-based)."""
    return (
        "Compare these two images carefully and give me the coordinates of their difference "
        f"in the {target + 1}th image. "
    )


def refer_question() -> str:
    """Locate the object of image 1 in image 2."""
    return "Find and locate where does the object in image-1 locate in the image-2."


def common_question(target: int) -> str:
    """Locate the object the images share in image ``target`` (0-based)."""
    return (
        "These images share one object in common. "
        f"Recognize and locate this object in the {target + 1}th image. "
    )


def multi_view_question(first_box: Box, target: int) -> str:
    """Locate the object boxed in image 1 in image ``target`` (0-based)."""
    return (
        "These images share one object in common(the object marked with red bounding box in the "
        f"first image({box_tokens(first_box)})). "
        f"Recognize and locate this object in the {target + 1}th image. "
    )


def tracking_question(first_box: Box, target: int) -> str:
    """Locate the object boxed in frame 1 in frame ``target`` (0-based)."""
    return (
        "These are a sequence of images containing moving objects. For the object in the first "
        f"image marked with red bounding box({box_tokens(first_box)}), "
        f"please locate it in the {target + 1}th image. "
    )


def group_question(template: int, name: str) -> str:
    """Group-grounding question ``template`` (index into :data:`GROUP_TEMPLATES`) for ``name``."""
    ref = f"<|object_ref_start|>{name}<|object_ref_end|>"
    return GROUP_TEMPLATES[template].format(ref=ref)


def group_answer_info(target: int, box: Box) -> str:
    """The hidden answer sentence of a group-grounding item."""
    return f"It is in the {ORDINAL_WORDS[target]} image. {box_tokens(box)}. "
