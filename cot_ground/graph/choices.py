"""Reading a reasoner's choice among proposals: "image N, mark K" (Set-of-Mark), a proposal id or
a box (perception-prompt), "none", or yes/no (verification). Nothing is ever invented: an answer
that names no proposal is ``unreadable`` and the graph asks again or records a format failure.

Accepted phrasings (case-insensitive, inside ``<answer>`` blocks or code fences too):

* marks: ``image 2, mark 3`` / ``mark 3 in the second image`` / ``Image-2 #3`` /
  ``{"image": 2, "mark": 3}`` / ``(2, 3)``;
* ids: ``id 4`` / ``proposal #4`` / ``[4]`` / ``4`` / ``{"id": 4}``;
* none: ``none`` / ``no mark`` / ``no target`` / ``not present`` / ``{"image": null}``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal

from cot_ground.boxes import Box, Frame
from cot_ground.mentions import image_choice
from cot_ground.parsing import answer_text, parse_box
from cot_ground.records import ParseStatus

Kind = Literal["choice", "box", "none", "unreadable"]

_JSON_OBJECT = re.compile(r"\{[^{}]*\}", re.DOTALL)
_MARK = re.compile(
    r"(?:\bmark(?:er)?|\blabel|\btag|#)\s*(?:number|no\.?)?\s*[#:=]?\s*(\d{1,3})\b", re.I
)
_PAIR = re.compile(r"^\W*\(\s*(\d{1,2})\s*,\s*(\d{1,3})\s*\)\W*$")
_ID = re.compile(
    r"(?:\bid|\bproposal|\bcandidate|\bbox)\s*(?:number|no\.?)?\s*[#:=]?\s*(\d{1,3})\b", re.I
)
_BARE_ID = re.compile(r"^\W*(?:#|\[)?\s*(\d{1,3})\s*\]?\W*$")
_NONE = re.compile(
    r"^\W*(?:none|nothing|no\s+(?:mark|marks|target|match|object|proposal|box)\b|"
    r"not\s+(?:present|found|there)\b)",
    re.I,
)


@dataclass(frozen=True)
class Choice:
    """What an answer chose. ``image`` is 0-based, ``mark`` / ``proposal_id`` 1-based."""

    kind: Kind
    image: int | None = None
    mark: int | None = None
    proposal_id: int | None = None
    box: Box | None = None
    why: str = ""


def _json_fields(body: str) -> dict | None:
    for match in _JSON_OBJECT.finditer(body):
        try:
            data = json.loads(match.group(0))
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict):
            return {str(k).lower(): v for k, v in data.items()}
    return None


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("#").isdigit():
        return int(value.strip().lstrip("#"))
    return None


def parse_mark_choice(text: str) -> Choice:
    """Read a Set-of-Mark answer. Image and mark as written (range checks are the graph's)."""
    body = answer_text(text)
    data = _json_fields(body)
    if data is not None and ("image" in data or "mark" in data):
        if data.get("image") is None and data.get("mark") is None:
            return Choice("none")
        image, mark = _int(data.get("image")), _int(data.get("mark"))
        return _mark_choice(image - 1 if image else None, mark)
    if _NONE.search(body):
        return Choice("none")
    pair = _PAIR.match(body)
    if pair:
        return _mark_choice(int(pair.group(1)) - 1, int(pair.group(2)))
    mark_match = _MARK.search(body)
    mark = int(mark_match.group(1)) if mark_match else None
    rest = (
        body if mark_match is None else body[: mark_match.start()] + " " + body[mark_match.end() :]
    )
    return _mark_choice(image_choice(rest), mark)


def _mark_choice(image: int | None, mark: int | None) -> Choice:
    if mark is None:
        why = "the answer names no mark" + ("" if image is not None else " and no image")
        return Choice("unreadable", image=image, why=why)
    return Choice("choice", image=image, mark=mark)


def parse_id_choice(text: str, frame: Frame | str) -> Choice:
    """Read a perception-prompt answer: a proposal id, else a box (in ``frame``) with the image
    it is on, else "none"."""
    body = answer_text(text)
    data = _json_fields(body)
    if data is not None and "id" in data:
        if data["id"] is None:
            return Choice("none")
        pid = _int(data["id"])
        if pid is not None:
            return Choice("choice", proposal_id=pid)
    if data is not None and "image" in data:  # a JSON answer naming an image but no id
        image = _int(data["image"])
        why = "the answer names an image but no proposal id"
        return Choice("unreadable", image=image - 1 if image else None, why=why)
    if _NONE.search(body):
        return Choice("none")
    match = _ID.search(body) or _BARE_ID.match(body)
    if match:
        return Choice("choice", proposal_id=int(match.group(1)))
    parsed = parse_box(body, frame)
    if parsed.box is not None:
        image = parsed.image_index if parsed.image_index is not None else image_choice(body)
        if image is None:
            return Choice("unreadable", why="a box without the image it is on")
        return Choice("box", image=image, box=parsed.box)
    image = image_choice(body)
    why = "the answer names no proposal id and no box"
    if parsed.status is ParseStatus.MALFORMED:
        why = "unreadable box"
    return Choice("unreadable", image=image, why=why)


def parse_yes_no(text: str) -> bool | None:
    """True for an answer starting with "yes", False for "no", None otherwise."""
    body = answer_text(text).strip().lower()
    word = re.match(r"^\W*(yes|no)\b", body)
    if word is None:
        return None
    return word.group(1) == "yes"
