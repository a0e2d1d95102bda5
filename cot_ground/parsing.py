"""Turn raw model text into boxes and image choices.

The caller always names the coordinate frame; nothing here guesses it from the size of the
numbers. A failure is a :class:`~cot_ground.records.ParseStatus`, never a made-up box.

Box formats read (first box wins; the status says when there were several):

* Qwen tokens ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>`` and the same without tokens;
* lists ``[x1, y1, x2, y2]`` (integers or floats), nested: ``<box>[[x1, y1, x2, y2]]</box>``;
* ``<box>x1 y1 x2 y2</box>``;
* two corner points on consecutive lines: "Top-left: (x1, y1)" / "Bottom-right: (x2, y2)";
* JSON such as ``{"bbox_2d": [...]}`` or a list of such objects (Qwen2.5-VL);
* any of these inside ``<answer>...</answer>`` after a ``<think>`` block.

In the integer frames a box of four numbers in [0, 1], one of them written with a decimal point
(``[0.28, 0.5, 0.52, 0.7]``, ``[0.0, 0.0, 1.0, 1.0]``; not ``[0, 0, 1, 1]``), is not guessed into
a frame: status ``frame_mismatch`` unless the caller asks ``unit_floats="fraction"``. Which image
an answer names is read by :mod:`cot_ground.mentions` (negation, correction, echoed
references, English and Chinese ordinals).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from cot_ground.boxes import Box, Frame
from cot_ground.mentions import Mention, find_mentions, image_choice, read_image_choice
from cot_ground.prompts import ANSWER_KINDS
from cot_ground.records import ParseStatus

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_SEP = r"\s*,\s*"

# A complete box, in any of the accepted spellings.
_BOX_PATTERNS: tuple[re.Pattern[str], ...] = (
    # (x1,y1),(x2,y2) -- with or without <|box_start|> tokens around it
    re.compile(rf"\(\s*({_NUM}){_SEP}({_NUM})\s*\)\s*,?\s*\(\s*({_NUM}){_SEP}({_NUM})\s*\)"),
    # [x1, y1, x2, y2]  (also the inner list of [[...]] and JSON "bbox_2d": [...])
    re.compile(rf"\[\s*({_NUM}){_SEP}({_NUM}){_SEP}({_NUM}){_SEP}({_NUM})\s*\]"),
    # "Top-left: (x1, y1) ... Bottom-right: (x2, y2)" on two consecutive lines
    re.compile(
        rf"top[-\s]*left\b[^\n]{{0,60}}?\(\s*({_NUM}){_SEP}({_NUM})\s*\)[^\n]{{0,60}}\n"
        rf"[^\n]{{0,60}}?bottom[-\s]*right\b[^\n]{{0,60}}?\(\s*({_NUM}){_SEP}({_NUM})\s*\)",
        re.IGNORECASE,
    ),
    # <box>x1 y1 x2 y2</box>  (spaces and/or commas between numbers)
    re.compile(
        rf"<box>\s*({_NUM})(?:\s*,\s*|\s+)({_NUM})(?:\s*,\s*|\s+)({_NUM})(?:\s*,\s*|\s+)"
        rf"({_NUM})\s*</box>",
        re.IGNORECASE,
    ),
)

# Text that announces a box but that none of the complete patterns could read.
_BOX_LIKE = re.compile(
    rf"<\|box_start\|>|<box>|bbox|\[\s*{_NUM}(?:{_SEP}{_NUM})+\s*\]|\(\s*{_NUM}{_SEP}{_NUM}\s*\)",
    re.IGNORECASE,
)

_ANSWER_BLOCK = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.IGNORECASE | re.DOTALL)
_THINK_BLOCK = re.compile(r"<think>.*?(?:</think>|$)", re.IGNORECASE | re.DOTALL)
_CODE_FENCE = re.compile(r"```[a-zA-Z]*")

# A box whose four numbers all lie in [0, 1], one written with a decimal point: in an integer
# frame it is a box stated in another frame (the Migician parser reads such values as fractions).
_INTEGER_FRAMES = frozenset({Frame.QWEN1000, Frame.QWEN3_1000})
UnitFloats = Literal["reject", "fraction", "migician"]
UNIT_FLOATS: tuple[str, ...] = ("reject", "fraction", "migician")

# Special tokens of the Qwen-VL family (and any ``<|name|>`` token); a box span goes whole.
_BOX_SPAN = re.compile(r"<\|box_start\|>.*?(?:<\|box_end\|>|$)", re.DOTALL)
_SPECIAL_TOKEN = re.compile(r"<\|[a-z_]+\|>", re.IGNORECASE)


@dataclass
class BoxParse:
    """Result of :func:`parse_box`."""

    status: ParseStatus
    box: Box | None = None
    boxes: list[Box] = field(default_factory=list)
    image_index: int | None = None
    answer_text: str = ""


@dataclass
class SelectionParse:
    """Result of :func:`parse_selection` and :func:`parse_step1`: which image (0-based) and
    what to look for. ``error`` says why, when ``status`` is not ok. ``out_of_range_index``: the
    image an otherwise readable answer names beyond the images of its request (``image_index``
    is None and the status ``malformed`` then), so a caller can report it as an index error."""

    status: ParseStatus
    image_index: int | None = None
    description: str = ""
    error: str | None = None
    out_of_range_index: int | None = None


def answer_text(text: str) -> str:
    """The text with ``<think>`` reasoning removed and an ``<answer>`` wrapper unwrapped."""
    answers = _ANSWER_BLOCK.findall(text)
    if answers:
        return answers[-1].strip()
    return _THINK_BLOCK.sub("", text).strip()


def parse_box(
    text: str,
    frame: Frame | str,
    size: tuple[float, float] | None = None,
    *,
    unit_floats: UnitFloats | str = "reject",
    question: str | None = None,
) -> BoxParse:
    """Read the boxes in ``text``, stated in ``frame`` (``size`` = (width, height) for pixels).

    ``unit_floats`` (integer frames ``qwen1000`` / ``qwen3_1000`` only): what to do with a box
    whose four numbers all lie in [0, 1], one of them written with a decimal point, e.g.
    ``[0.28, 0.5, 0.52, 0.7]`` or ``[0.0, 0.0, 1.0, 1.0]`` (decided by the text: ``[0, 0, 1, 1]``
    stays an integer-frame box).
    ``"reject"`` (default): it is not read; when it is the first box the status is
    ``frame_mismatch``. ``"fraction"``: the four numbers are read as unit-frame fractions.
    ``"migician"``: the per-number rule of the public Migician CoT script's parser, a number
    below 1 is a fraction and a number of at least 1 is divided by 1000 (so ``1.0`` becomes
    0.001 and ``[0.0, 0.17, 1.0, 0.83]`` an inverted box); the released logs' own figures are
    those of ``"reject"`` (docs/benchmark.md, "Unit floats").
    ``question``: the question ``text`` answers, for telling an
    echoed reference image from the image the answer names
    (:func:`cot_ground.mentions.read_image_choice`). Raises ``ValueError`` for an unknown
    ``unit_floats`` or the pixels frame without ``size``.
    """
    frame = Frame(frame)
    if frame is Frame.PIXELS and size is None:
        raise ValueError("parse_box: the pixels frame needs size=(width, height)")
    _check_unit_floats(unit_floats)
    body = answer_text(text)
    return _read_boxes(body, image_choice(body, question), frame, size, unit_floats)


def parse(
    text: str,
    frame: Frame | str,
    input_sizes_wh: Sequence[tuple[float, float]] = (),
    *,
    unit_floats: UnitFloats | str = "reject",
    question: str | None = None,
) -> BoxParse:
    """Read an end-to-end answer: the image it names and its first box, stated in ``frame``.

    ``input_sizes_wh``: the (width, height) in pixels each image of the request was seen at
    (for the pixels frame; the resized model input, never the original size). The image is read
    first (:func:`cot_ground.mentions.image_choice`, with ``question`` for echoed references),
    then the box once, in ``frame``: in the pixels frame with the size of the image the answer
    names, else the size all images share (:func:`answer_size`); when neither is known a box
    cannot be placed and the status is ``malformed`` (no box is made up). ``unit_floats`` as in
    :func:`parse_box`. Raises ``ValueError`` for an unknown ``unit_floats``.
    """
    frame = Frame(frame)
    _check_unit_floats(unit_floats)
    body = answer_text(text)
    index = image_choice(body, question)
    size = answer_size(index, input_sizes_wh) if frame is Frame.PIXELS else None
    if frame is Frame.PIXELS and size is None:
        # every complete box is also box-like text, so this is "a box, or the start of one"
        status = ParseStatus.MALFORMED if _BOX_LIKE.search(body) else ParseStatus.NO_BOX
        return BoxParse(status, None, [], index, body)
    return _read_boxes(body, index, frame, size, unit_floats)


def answer_size(
    image_index: int | None, input_sizes_wh: Sequence[tuple[float, float]]
) -> tuple[float, float] | None:
    """The (width, height) a pixel-frame answer refers to: that of the image it names, else the
    common size when all images share one; None when it cannot be known."""
    if image_index is not None and 0 <= image_index < len(input_sizes_wh):
        return input_sizes_wh[image_index]
    if len(set(input_sizes_wh)) == 1:
        return input_sizes_wh[0]
    return None


def _check_unit_floats(unit_floats: str) -> None:
    if unit_floats not in UNIT_FLOATS:
        raise ValueError(
            f"unit_floats must be one of {', '.join(UNIT_FLOATS)}, got {unit_floats!r}"
        )


def _box_matches(body: str) -> list[list[str]]:
    """The number groups of every complete box in ``body``, in reading order; a match inside
    one already taken (a list inside a list) is skipped."""
    found: list[tuple[int, int, list[str]]] = []
    for pattern in _BOX_PATTERNS:
        for m in pattern.finditer(body):
            found.append((m.start(), m.end(), list(m.groups())))
    found.sort(key=lambda item: item[0])
    matches: list[list[str]] = []
    last_end = -1
    for start, end, groups in found:
        if start < last_end:
            continue
        last_end = end
        matches.append(groups)
    return matches


def _read_boxes(
    body: str,
    index: int | None,
    frame: Frame,
    size: tuple[float, float] | None,
    unit_floats: str,
) -> BoxParse:
    """The boxes of ``body`` in ``frame`` (``index``: the image it names, already read)."""
    boxes: list[Box] = []
    unreadable = first_mismatch = False
    for groups in _box_matches(body):
        try:
            values = [float(g) for g in groups]
            if frame in _INTEGER_FRAMES and _unit_floats(groups, values):
                if unit_floats == "reject":
                    first_mismatch = first_mismatch or not boxes
                    continue
                if unit_floats == "migician":
                    values = [v / 1000 if v >= 1 else v for v in values]
                boxes.append(Box.from_unit(values))
            else:
                boxes.append(Box.from_frame(values, frame, size))
        except ValueError:  # a number too large to be finite
            unreadable = True
    if first_mismatch:
        return BoxParse(ParseStatus.FRAME_MISMATCH, None, [], index, body)
    if boxes:
        status = ParseStatus.OK if len(boxes) == 1 else ParseStatus.SEVERAL_BOXES
        return BoxParse(status, boxes[0], boxes, index, body)
    status = ParseStatus.MALFORMED if unreadable or _BOX_LIKE.search(body) else ParseStatus.NO_BOX
    return BoxParse(status, None, [], index, body)


def _unit_floats(groups: list[str], values: list[float]) -> bool:
    """All four numbers in [0, 1] and at least one written with a decimal point: decided by the
    text, so ``[0.0, 0.0, 1.0, 1.0]`` is a unit-frame box, ``[0, 0, 1, 1]`` an integer one."""
    return all(0.0 <= v <= 1.0 for v in values) and any("." in g for g in groups)


def clean_text(text: str) -> str:
    """Model text without special tokens: box spans (``<|box_start|>…<|box_end|>``) removed
    whole, every other ``<|token|>`` removed keeping the text between (an
    ``<|object_ref_start|>the red car<|object_ref_end|>`` becomes "the red car")."""
    text = re.sub(rf"[ \t]*{_BOX_SPAN.pattern}[ \t]*", " ", text, flags=re.DOTALL)
    return _SPECIAL_TOKEN.sub("", text).strip()


def parse_selection(
    text: str, n_images: int | None = None, question: str | None = None
) -> SelectionParse:
    """Read a step-1 answer: the chosen image (0-based) and the target description.

    Accepts the structured JSON ``{"image": N, "description": "..."}`` (N is 1-based; with or
    without code fences, possibly after a ``<think>`` block) and free text such as
    "It's in the second image. The red car on the left." (image read by
    :func:`cot_ground.mentions.read_image_choice`, with ``question`` for echoed references).
    Special tokens are removed from the description (:func:`clean_text`).
    """
    body = clean_text(_CODE_FENCE.sub("", answer_text(text)))
    parsed = _selection_json(body)
    if parsed is not None:
        number, description = parsed
        if number is None:
            return SelectionParse(ParseStatus.MALFORMED, None, description, "no image number")
        return _checked(number - 1, description, n_images)
    reading = read_image_choice(body, question)
    if reading.index is None:
        return SelectionParse(ParseStatus.NO_BOX, None, body, "the answer names no image")
    if reading.rule == "bare":
        return _checked(reading.index, "", n_images)
    return _checked(reading.index, _strip_mentions(body, list(reading.mentions)), n_images)


def _checked(index: int, description: str, n_images: int | None) -> SelectionParse:
    if index < 0 or (n_images is not None and index >= n_images):
        limit = f" of {n_images}" if n_images is not None else ""
        msg = f"image {index + 1} is out of range{limit}"
        beyond = index if index >= 0 else None
        return SelectionParse(ParseStatus.MALFORMED, None, description, msg, beyond)
    return SelectionParse(ParseStatus.OK, index, description)


AnswerKind = Literal["image_and_description", "image", "description"]
_PHRASE_EDGES = re.compile(r"^[\s\"'`]+|[\s\"'`.]+$")


def parse_step1(
    text: str,
    kind: AnswerKind | str = "image_and_description",
    n_images: int | None = None,
    question: str | None = None,
) -> SelectionParse:
    """Read a CoT step-1 answer of the ``kind`` its prompt asks for (a prompt set's ``answer``
    field): ``image_and_description`` (:func:`parse_selection`; a readable image without a
    description is ``malformed``, the image kept), ``image`` (only the image, read by
    :func:`cot_ground.mentions.read_image_choice`; none is ``no_box``) or ``description``
    (the cleaned answer text, trimmed of quotes; empty is ``malformed``).

    ``n_images``: the images of the request; an ok answer naming one beyond them becomes
    ``malformed`` with ``out_of_range_index`` set (None: not checked, as the CoT graph reads
    answers, it reports such a choice itself). ``question``: the question answered, so echoed
    references are not read as the choice. Raises ``ValueError`` for an unknown ``kind``.
    """
    read = _read_step1(text, kind, question)
    index = read.image_index
    if read.status is ParseStatus.OK and index is not None and n_images is not None:
        return _checked(index, read.description, n_images)
    return read


def _read_step1(text: str, kind: str, question: str | None) -> SelectionParse:
    if kind == "image_and_description":
        sel = parse_selection(text, question=question)
        if sel.status is not ParseStatus.OK:
            return SelectionParse(
                sel.status, None, sel.description, sel.error or "unreadable selection"
            )
        if not sel.description:
            return SelectionParse(ParseStatus.MALFORMED, sel.image_index, "", "no description")
        return sel
    if kind not in ANSWER_KINDS:
        raise ValueError(f"answer kind must be one of {', '.join(ANSWER_KINDS)}, got {kind!r}")
    body = answer_text(text)
    if kind == "image":
        index = read_image_choice(clean_text(body), question).index
        if index is None:
            return SelectionParse(ParseStatus.NO_BOX, None, "", "the answer names no image")
        return SelectionParse(ParseStatus.OK, index, "")
    description = _PHRASE_EDGES.sub("", clean_text(body))
    if not description:
        return SelectionParse(ParseStatus.MALFORMED, None, "", "empty answer")
    return SelectionParse(ParseStatus.OK, None, description)


def _selection_json(body: str) -> tuple[int | None, str] | None:
    """(1-based image number or None, description) from a JSON object, or None if not JSON."""
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        obj = json.loads(body[start : end + 1])
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or not ({"image", "description"} & obj.keys()):
        return None
    description = obj.get("description")
    description = description.strip() if isinstance(description, str) else ""
    image = obj.get("image")
    if isinstance(image, bool):
        return None, description
    if isinstance(image, int):
        return image, description
    if isinstance(image, float) and image.is_integer():
        return int(image), description
    if isinstance(image, str):
        index = image_choice(image)
        return (index + 1 if index is not None else None), description
    return None, description


_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|(?<=[。！？；])\s*|\n+")


def _strip_mentions(body: str, mentions: list[Mention]) -> str:
    """The description: the sentences that do not only say where the target is."""
    sentences = [s.strip() for s in _SENTENCE_END.split(body) if s.strip()]
    kept = [s for s in sentences if not find_mentions(s)]
    if kept:
        return " ".join(kept)
    # one sentence holds both: drop the image phrase itself
    out, pos = [], 0
    for m in mentions:
        out.append(body[pos : m.start])
        pos = m.end
    out.append(body[pos:])
    text = "".join(out)
    text = re.sub(
        r"\b(?:it'?s|it is|the target is)?\s*\b(?:in|on)\s+(?:the\s+)?(?=[\s.,;:]|$)",
        " ",
        text,
        flags=re.IGNORECASE,
    )
    return re.sub(r"\s+", " ", text).strip(" .,;:。，；：")
