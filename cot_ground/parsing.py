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
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from cot_ground.boxes import Box, Frame
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

_ORDINAL_WORDS = {
    "first": 1,
    "second": 2,
    "third": 3,
    "fourth": 4,
    "fifth": 5,
    "sixth": 6,
    "seventh": 7,
    "eighth": 8,
    "ninth": 9,
    "tenth": 10,
}
_NOUN = r"(?:image|picture|photo|img|frame|view)s?"
_ORD = r"(?P<word>" + "|".join(_ORDINAL_WORDS) + r")|(?P<num>\d{1,2})\s*(?:st|nd|rd|th)"
# "second image", "2th image", "the 3rd input picture"
_ORDINAL_MENTION = re.compile(
    rf"\b(?:{_ORD})\b(?:\s+[a-z]+)?\s+{_NOUN}\b",
    re.IGNORECASE,
)
# "Image-2", "image 2", "image #2", "Image2", "picture 3"
_NUMBERED_MENTION = re.compile(rf"\b{_NOUN}\s*[-_#:]?\s*(?P<n>\d{{1,2}})\b", re.IGNORECASE)
# A text that is nothing but an ordinal or a number: "2th", "the second", "2", "Image 2."
_BARE_ORDINAL = re.compile(
    rf"^\W*(?:the\s+)?(?:(?:{_ORD})|(?P<bare>\d{{1,2}}))\W*$",
    re.IGNORECASE,
)
# A mention introduced as the location: "in the second image", "is in image 2".
_LOCATIVE_BEFORE = re.compile(r"\b(?:in|on|at|from|within)\s+(?:the\s+)?$", re.IGNORECASE)


@dataclass(frozen=True)
class ImageMention:
    """One place where a text names an image: 0-based ``index`` and its character span."""

    index: int
    start: int
    end: int
    locative: bool = False


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
    """Result of :func:`parse_selection`: which image (0-based) and what to look for."""

    status: ParseStatus
    image_index: int | None = None
    description: str = ""
    error: str | None = None


def answer_text(text: str) -> str:
    """The text with ``<think>`` reasoning removed and an ``<answer>`` wrapper unwrapped."""
    answers = _ANSWER_BLOCK.findall(text)
    if answers:
        return answers[-1].strip()
    return _THINK_BLOCK.sub("", text).strip()


def parse_box(text: str, frame: Frame | str, size: tuple[float, float] | None = None) -> BoxParse:
    """Read the boxes in ``text``, stated in ``frame`` (``size`` = (width, height) for pixels)."""
    frame = Frame(frame)
    if frame is Frame.PIXELS and size is None:
        raise ValueError("parse_box: the pixels frame needs size=(width, height)")
    body = answer_text(text)
    index = parse_image_index(body)
    found: list[tuple[int, int, list[str]]] = []
    for pattern in _BOX_PATTERNS:
        for m in pattern.finditer(body):
            found.append((m.start(), m.end(), list(m.groups())))
    found.sort(key=lambda item: item[0])
    boxes: list[Box] = []
    last_end = -1
    unreadable = False
    for start, end, groups in found:
        if start < last_end:  # overlaps a box already taken (e.g. a list inside a list)
            continue
        last_end = end
        try:
            boxes.append(Box.from_frame([float(g) for g in groups], frame, size))
        except ValueError:  # a number too large to be finite
            unreadable = True
    if boxes:
        status = ParseStatus.OK if len(boxes) == 1 else ParseStatus.SEVERAL_BOXES
        return BoxParse(status, boxes[0], boxes, index, body)
    status = ParseStatus.MALFORMED if unreadable or _BOX_LIKE.search(body) else ParseStatus.NO_BOX
    return BoxParse(status, None, [], index, body)


def find_image_mentions(text: str) -> list[ImageMention]:
    """Every place ``text`` names an image ("second image", "Image-2", "2th image"), in order."""
    mentions: list[ImageMention] = []
    for m in _ORDINAL_MENTION.finditer(text):
        n = _ORDINAL_WORDS[m["word"].lower()] if m["word"] else int(m["num"])
        mentions.append(_mention(text, n, m.start(), m.end()))
    for m in _NUMBERED_MENTION.finditer(text):
        mentions.append(_mention(text, int(m["n"]), m.start(), m.end()))
    mentions = [m for m in mentions if m.index >= 0]
    mentions.sort(key=lambda m: m.start)
    return mentions


def _mention(text: str, n: int, start: int, end: int) -> ImageMention:
    locative = bool(_LOCATIVE_BEFORE.search(text[max(0, start - 12) : start]))
    return ImageMention(index=n - 1, start=start, end=end, locative=locative)


def parse_image_index(text: str) -> int | None:
    """The 0-based image a text names, or None.

    Accepts "second image", "Image-3", "image 2", "the 3rd picture", "2th image" and a text that
    is only an ordinal or number ("2th", "second", "2"). When several images are named, the
    first one introduced as a location ("in the second image") wins, else the first named.
    """
    bare = _BARE_ORDINAL.match(text)
    if bare:
        if bare["word"]:
            n = _ORDINAL_WORDS[bare["word"].lower()]
        else:
            n = int(bare["num"] or bare["bare"])
        return n - 1 if n >= 1 else None
    mentions = find_image_mentions(text)
    if not mentions:
        return None
    locative = [m for m in mentions if m.locative]
    return (locative or mentions)[0].index


def parse_selection(text: str, n_images: int | None = None) -> SelectionParse:
    """Read a step-1 answer: the chosen image (0-based) and the target description.

    Accepts the structured JSON ``{"image": N, "description": "..."}`` (N is 1-based; with or
    without code fences, possibly after a ``<think>`` block) and free text such as
    "It's in the second image. The red car on the left."
    """
    body = _CODE_FENCE.sub("", answer_text(text)).strip()
    parsed = _selection_json(body)
    if parsed is not None:
        number, description = parsed
        if number is None:
            return SelectionParse(ParseStatus.MALFORMED, None, description, "no image number")
        return _checked(number - 1, description, n_images)
    index = parse_image_index(body)
    if index is None:
        return SelectionParse(ParseStatus.NO_BOX, None, body, "the answer names no image")
    if _BARE_ORDINAL.match(body):
        return _checked(index, "", n_images)
    return _checked(index, _strip_mentions(body, find_image_mentions(body)), n_images)


def _checked(index: int, description: str, n_images: int | None) -> SelectionParse:
    if index < 0 or (n_images is not None and index >= n_images):
        limit = f" of {n_images}" if n_images is not None else ""
        msg = f"image {index + 1} is out of range{limit}"
        return SelectionParse(ParseStatus.MALFORMED, None, description, msg)
    return SelectionParse(ParseStatus.OK, index, description)


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
        index = parse_image_index(image)
        return (index + 1 if index is not None else None), description
    return None, description


_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|\n+")


def _strip_mentions(body: str, mentions: list[ImageMention]) -> str:
    """The description: the sentences that do not only say where the target is."""
    sentences = [s.strip() for s in _SENTENCE_END.split(body) if s.strip()]
    kept = [s for s in sentences if not find_image_mentions(s)]
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
    return re.sub(r"\s+", " ", text).strip(" .,;:")
