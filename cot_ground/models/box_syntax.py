"""How each model family writes a box in its answer: syntax, coordinate order and frame.

One explicit entry per family (:data:`BOX_SYNTAX`, keyed by the checkpoint's ``model_type``);
a family without an entry answers no boxes here (it can still be a CoT reasoner). The frame is
never guessed from the size of the numbers. Every parsed box is returned in the unit frame:
``(value + offset) / grid`` per coordinate, in the family's coordinate order.

* ``internvl``: ``<box>[[x1, y1, x2, y2]]</box>`` (after ``<ref>phrase</ref>``), integers in
  [0, 1000], x first, ÷ 1000 (InternVL's grounding format).
* ``florence2``: ``<loc_x1><loc_y1><loc_x2><loc_y2>``, 1000 location bins, x first, bin
  centres (``(bin + 0.5) / 1000``, as transformers' ``Florence2PostProcessor.dequantize``).
* ``paligemma``: ``<locY1><locX1><locY2><locX2>`` (four digits), **y first**, ÷ 1024 (the
  ``detect`` output; big_vision reads ``loc / 1024``).

The Qwen-VL families write boxes in the syntaxes :func:`cot_ground.parsing.parse_box` reads, in
the frame :data:`QWEN_FAMILY_FRAMES` names per family.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from cot_ground.boxes import Box, Frame
from cot_ground.records import ParseStatus

_INT = r"\d+"

QWEN_FAMILY_FRAMES: dict[str, Frame] = {
    "qwen2_vl": Frame.QWEN1000,
    "qwen2_5_vl": Frame.PIXELS,
    "qwen3_vl": Frame.QWEN3_1000,
}
"""The frame each Qwen-VL family (``model_type``) states boxes in: Qwen2-VL integers in
[0, 1000), Qwen2.5-VL absolute pixels of the resized input, Qwen3-VL integers in [0, 1000]."""


@dataclass(frozen=True)
class BoxSyntax:
    """One family's box syntax and frame.

    ``span`` finds each stated box (one match may hold several boxes, e.g. InternVL's
    ``<box>[[...], [...]]</box>``); ``numbers`` reads the four-number groups inside a match.
    ``ground_prompt`` is the family's grounding instruction, with a ``{phrase}`` slot.
    """

    family: str
    frame: str
    span: re.Pattern[str]
    numbers: re.Pattern[str]
    order: Literal["xyxy", "yxyx"]
    grid: float
    offset: float
    ground_prompt: str

    def to_unit(self, values: list[float]) -> Box:
        """Four numbers in this family's order and frame → a unit-frame :class:`Box`."""
        a, b, c, d = ((v + self.offset) / self.grid for v in values)
        return Box.from_unit([a, b, c, d] if self.order == "xyxy" else [b, a, d, c])

    def parse(self, text: str) -> tuple[list[Box], ParseStatus]:
        """Every box stated in ``text`` (unit frame, in order) and the parse status:
        ``ok`` (one), ``several_boxes``, ``malformed`` (the syntax opens but no box reads)
        or ``no_box``."""
        boxes: list[Box] = []
        opened = False
        for match in self.span.finditer(text):
            opened = True
            for group in self.numbers.findall(match.group(0)):
                boxes.append(self.to_unit([float(v) for v in group]))
        if not boxes:
            return [], ParseStatus.MALFORMED if opened else ParseStatus.NO_BOX
        return boxes, ParseStatus.OK if len(boxes) == 1 else ParseStatus.SEVERAL_BOXES


def _quad(token: str) -> re.Pattern[str]:
    return re.compile("".join(token.replace("N", f"({_INT})") for _ in range(4)))


BOX_SYNTAX: dict[str, BoxSyntax] = {
    "internvl": BoxSyntax(
        family="internvl",
        frame="internvl1000 (integers in [0, 1000], x1 y1 x2 y2, ÷ 1000)",
        span=re.compile(r"<box>(.*?)</box>", re.DOTALL),
        numbers=re.compile(rf"\[\s*({_INT})\s*,\s*({_INT})\s*,\s*({_INT})\s*,\s*({_INT})\s*\]"),
        order="xyxy",
        grid=1000,
        offset=0.0,
        ground_prompt=(
            "Please provide the bounding box coordinate of the region this sentence describes: "
            "<ref>{phrase}</ref>"
        ),
    ),
    "florence2": BoxSyntax(
        family="florence2",
        frame="florence2_bins (1000 location bins <loc_0>..<loc_999>, x1 y1 x2 y2, bin centre)",
        span=_quad(r"<loc_N>"),
        numbers=re.compile(r"<loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)>"),
        order="xyxy",
        grid=1000,
        offset=0.5,
        ground_prompt="<CAPTION_TO_PHRASE_GROUNDING>{phrase}",
    ),
    "paligemma": BoxSyntax(
        family="paligemma",
        frame="paligemma1024 (<loc0000>..<loc1023>, y1 x1 y2 x2, ÷ 1024)",
        span=_quad(r"<locN>"),
        numbers=re.compile(r"<loc(\d{4})><loc(\d{4})><loc(\d{4})><loc(\d{4})>"),
        order="yxyx",
        grid=1024,
        offset=0.0,
        ground_prompt="detect {phrase}",
    ),
}


def box_syntax(family: str) -> BoxSyntax | None:
    """The entry for ``family`` (a ``model_type``), or None when it states no boxes here."""
    return BOX_SYNTAX.get(family)
