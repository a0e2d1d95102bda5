"""Which image a model's answer names: one reader for every place cot-ground needs it.

Image indices are 0-based ("image 1" → 0). The reader finds every *mention* of an image and
gives each a role; the answer's image is the one its affirmed mentions name. When they name
different images, the **last affirmed mention wins if a correction introduces it** ("… in
image 2, actually image 3", "sorry", "I mean", "wait", "其实", "应该是"); without a correction
the answer names several images (a comparison: "in the second image the legs are white, while
in the first image …") and no choice is read, unless the mentions stated as the answer ("the
answer is image 2", "I choose image 2") all name one image. Roles:

* ``negated``  -- a rejected image: "not in image 1", "rather than the first image", "image 1
  does not contain it", "image 1 lacks it", "cannot be found in image 1", "absent / missing
  from image 1", "不在第一张图片". The negation must govern the mention: between the negating
  word and the mention only words of being, finding or place ("isn't in the second image",
  "no image 2"), or an absent thing and its place ("there is no dog in image 1"); a negative
  word elsewhere ("the dog with no collar is in image 2", "no doubt it is in image 2") negates
  nothing. A negation ends at its clause: punctuation, a dash, "and", "but", "while",
  "whereas", "而", "但", "却" ("missing from image 1 and present in image 2").
* ``echo``     -- the question's own reference image repeated as part of a description: when
  the question names image *k* only as a reference (e.g. "the object in the first image …
  locate it in the 2th image"), a mention of *k* in the answer counts only when stated as the
  location ("it is in the first image", "located in image 1"); "the object in the first image
  can be found at …" echoes the question and names nothing.
* ``affirmed`` -- every other mention.

Spellings read: English ordinals ("second image", "the 3rd picture", "2th image", "the first
input photo"), numbers ("image 2", "Image-2", "Image2", "picture #3", "img 2", "image two"), Chinese
("第三张图片", "第3幅图", "第二个图像", "图3", "图片二", "图像 2"), full-width digits ("图３"), and
an answer that is nothing but an ordinal or a number ("2th", "second", "2", "第二张").
Not mentions: plurals and counts ("the first two images", "images 1 and 2"), a number after
"the / this image" that counts a noun ("in the image 3 birds are visible", "in this image 2
people are standing", "the image 1 girl"), region ordinals ("the 3th region picture" names a
region, not an input image), "the other image".

The reader never raises (any ``str`` in, a :class:`ImageReading` out) and never invents: an
answer without an affirmed mention, or with several images and no correction, reads as
``index=None``.
"""

from __future__ import annotations

import bisect
import itertools
import re
from dataclasses import dataclass
from typing import Literal

Role = Literal["affirmed", "negated", "echo"]
READER = "mentions-3"
"""Name of these reading rules, recorded in every prediction (``Prediction.settings``).
``mentions-2`` negated a mention after any negative word of its clause ("the dog with no
collar is in image 2"), let a negation run on past "and" / a dash / "而", and read "the image 3
birds" as image 3."""

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
_CN_DIGITS = {
    "一": 1,
    "二": 2,
    "两": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}
_FULL_WIDTH = str.maketrans("０１２３４５６７８９", "0123456789")

_NOUN = r"(?:image|picture|photo|img|pic|frame|view)"
_ORD = r"(?P<word>" + "|".join(_ORDINAL_WORDS) + r")|(?P<num>\d{1,2})\s*(?:st|nd|rd|th)"
# one word may sit between ordinal and noun ("the 2nd input image"), but not a count, a
# conjunction or "region" ("the first two images", "the 3th region picture")
_FILLER = r"(?!(?:two|three|four|five|six|seven|eight|nine|ten|and|or|of|region|regions)\b)[a-z]+"
_ORDINAL_MENTION = re.compile(
    rf"\b(?:{_ORD})\b(?:[\s-]+{_FILLER})?[\s-]+{_NOUN}\b(?!s)", re.IGNORECASE
)
# "the first one" after an image has been named ("not the second image but the first one")
_ORDINAL_ONE = re.compile(rf"\b(?:{_ORD})\s+one\b", re.IGNORECASE)
_NUMBER_WORDS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
}
_NUMBERED_MENTION = re.compile(
    rf"\b{_NOUN}\s*[-_#:]?\s*(?:no\.\s*)?"
    rf"(?:(?P<n>\d{{1,2}})\b(?!\s*(?:x|×|px|%|\.\d|-\d))|(?P<w>{'|'.join(_NUMBER_WORDS)})\b)",
    re.IGNORECASE,
)
# "in the image 3 birds are visible": after "the / this image" a number that starts a noun
# phrase counts things (a plural noun, or a word and then a plural noun), it names no image
_DETERMINER_BEFORE = re.compile(r"\b(?:the|this|that|each|every|an?|one)\s+$", re.IGNORECASE)
_IRREGULAR_PLURALS = (
    r"people|persons|men|women|children|kids|feet|teeth|geese|mice|sheep|fish|deer|cattle|police"
)
# words ending in -s that are not plural nouns (verbs after a mention, function words)
_NOT_PLURALS = frozenset(
    {
        "is", "was", "has", "does", "as", "us", "its", "this", "thus", "plus", "yes", "always",
        "perhaps", "whereas", "across", "less", "unless", "shows", "contains", "depicts",
        "displays", "features", "includes", "presents", "illustrates", "highlights", "captures",
        "appears", "seems", "looks", "gives", "provides", "matches", "differs", "lacks", "reveals",
        "represents", "portrays", "focuses", "remains", "becomes", "states", "says",
    }
)
# words that may follow a mention and start no counted noun phrase
_NOT_NOUN_START = frozenset(
    {
        "is", "was", "are", "were", "be", "has", "have", "had", "can", "could", "will", "would",
        "may", "might", "should", "must", "also", "only", "and", "or", "but", "nor", "so", "then",
        "in", "on", "at", "of", "with", "without", "from", "to", "for", "by", "as", "into", "than",
        "the", "a", "an", "that", "which", "where", "who", "whose", "there", "here", "it", "its",
        "this", "these", "those", "while", "whereas", "however", "not", "no", "actually",
        "clearly", "both", "all",
    }
)
_NEXT_WORDS = re.compile(r"\s+([a-z]+)(?:\s+([a-z]+))?", re.IGNORECASE)


def _plural(word: str) -> bool:
    word = word.lower()
    if re.fullmatch(_IRREGULAR_PLURALS, word):
        return True
    return len(word) > 3 and word.endswith("s") and not word.endswith("ss") and (
        word not in _NOT_PLURALS
    )


def _is_count(text: str, m: re.Match[str]) -> bool:
    """A numbered mention after "the / this image" whose number is followed by a counted noun
    ("the image 3 birds", "this image 2 red cars", "the image 1 girl"): a count."""
    if not _DETERMINER_BEFORE.search(text, max(0, m.start() - 16), m.start()):
        return False
    words = _NEXT_WORDS.match(text, m.end())
    if words is None:
        return False
    first, second = words[1].lower(), (words[2] or "").lower()
    if first in _NOT_NOUN_START:
        return False
    if _plural(first):
        return True
    one = (m["n"] or "") == "1" or (m["w"] or "").lower() == "one"
    if one:  # "the image 1 girl is …": a singular noun after one
        return first not in _NOT_PLURALS
    return bool(second) and second not in _NOT_NOUN_START and _plural(second)


_CN_NUM = r"(?P<cn>[一二两三四五六七八九十]{1,2}|\d{1,2})"
_CN_NOUN = r"(?:图片|图像|照片|图)"
_CN_ORDINAL = re.compile(rf"第\s*{_CN_NUM}\s*(?:(?:张|幅|副)\s*{_CN_NOUN}?|个?\s*{_CN_NOUN})")
_CN_NUMBERED = re.compile(rf"{_CN_NOUN}\s*{_CN_NUM}(?![\d一二三四五六七八九十])")
_BARE = re.compile(
    rf"^\W*(?:the\s+)?(?:(?:{_ORD})|(?P<bare>\d{{1,2}})|第{_CN_NUM}(?:张|幅|个)?)\W*$",
    re.IGNORECASE,
)

# clause limits: punctuation, dashes and contrast / correction / joining words
_CLAUSE_BREAK = re.compile(
    r"[.;:!?\n,。；：！？，、()（）—–]|\b(?:and|but|however|whereas|while|although|though|"
    r"actually|instead(?!\s+of)|rather(?!\s+than)|sorry|wait|correction|i mean)\b"
    r"|而是|但是|但|却|其实|实际上|应该是|更正|不对|而(?!非)",
    re.IGNORECASE,
)
_CORRECTION = re.compile(
    r"\b(?:actually|sorry|correction|i mean|wait|rather|instead|no,)|其实|实际上|应该是|更正|不对",
    re.IGNORECASE,
)
# a mention that is the subject of its clause ("Image 1 does not contain it")
_SUBJECT_BEFORE = re.compile(r"^\s*(?:(?:and|but|so)\s+)?(?:the\s+)?$", re.IGNORECASE)
# a negation that governs the mention: the negating word, then only words of being, finding
# or place before it ("not in image 1", "isn't in the second image", "no image 2", "cannot be
# found in image 1", "missing from image 1"); a negative word elsewhere in the clause ("the dog
# with no collar is in image 2", "no doubt it is in image 2") negates something else
_NEGATION_CUE = (
    r"(?:\b(?:not|never|no|neither|nor|nothing|none|without|except|excluding|rather\s+than|"
    r"instead\s+of|other\s+than|unlike|cannot|absent|missing)|n't)"
)
_GOVERNED_GAP = (
    r"(?:be|is|are|was|were|been|being|it|there|anywhere|even|really|actually|also|either|any|"
    r"found|located|situated|seen|visible|present|shown|depicted|displayed|contained|included|"
    r"appear|appears|exist|exists|lie|lies|in|on|within|inside|from|at|to|the|this|that|an?)"
)
# "there is no dog in image 1", "I see no red car in the second image": an absent thing, then
# its place (the words between start no clause of their own: "there is no doubt it is in …")
_ABSENCE = (
    r"(?:\bthere(?:\s+(?:is|are|was|were)|'s)(?:\s+no|\s+not|n't)|\b(?:see|find)\s+no)\b"
    r"(?:\s+(?!(?:doubt|question|wonder|matter|is|are|was|were|be|it|its|they|he|she|this|"
    r"that|which|who|i|we|you)\b)[\w'-]+){0,4}\s+(?:in|on|within|inside)(?:\s+the)?"
)
_NEGATION_BEFORE = re.compile(
    rf"(?:{_NEGATION_CUE}(?:\s+{_GOVERNED_GAP}\b)*|{_ABSENCE})\s*$"
    r"|(?:不在|不是|并非|而非|没有(?:在|出现在)?|并不(?:在|是)?)\s*$",
    re.IGNORECASE,
)
_NEGATION_AFTER = re.compile(
    r"^\s*(?:(?:is|was|does|do|did|has|have|contains?)\s+(?:not|no|n't)\b|"
    r"(?:is|was|are)n't\b|(?:does|do|did|has)n't\b|(?:is|was)\s+(?:wrong|incorrect)\b|"
    r"contains\s+nothing\b|lacks?\b|中?(?:没有|不))",
    re.IGNORECASE,
)
# a mention stated as the answer's location ("it is in", "located in", "在")
_CLAIM_BEFORE = re.compile(
    r"(?:\b(?:it'?s|it\s+is|is|are|was|were|located|found|lies|lie|appears?|exists?|shown|"
    r"seen|visible|present|answer|choose|chose|pick|select|selected|chosen)\s+"
    r"(?:(?:in|on|within|at|from|is)\s+)?(?:the\s+)?|在\s*|答案是?\s*)$",
    re.IGNORECASE,
)
# a mention stated as the final answer ("the answer is image 2", "I choose image 2")
_ANSWER_BEFORE = re.compile(
    r"\b(?:(?:final\s+)?answer\s*(?:is|:)?|i\s+(?:choose|pick|select))\s+(?:the\s+)?$",
    re.IGNORECASE,
)
_BOX_SPAN = re.compile(r"<\|box_start\|>.*?<\|box_end\|>", re.DOTALL)
_SENTENCES = re.compile(r"[^.?!]+")
_REQUEST_VERB = re.compile(
    r"\b(?:locate|find|ground|identify|recognize|detect|coordinates)\b", re.IGNORECASE
)
_IN_BEFORE = re.compile(r"\bin\s+(?:the\s+)?$", re.IGNORECASE)


@dataclass(frozen=True)
class Mention:
    """One place a text names an image: 0-based ``index``, character span and ``role``."""

    index: int
    start: int
    end: int
    role: Role = "affirmed"


@dataclass(frozen=True)
class QuestionImages:
    """The images a question names: the one it asks to locate in, and references."""

    target: int | None
    """0-based image after "in" following the last request word (locate/find/...), or None."""
    references: frozenset[int]
    """Every other image the question names (where the marked object is, etc.)."""


@dataclass(frozen=True)
class ImageReading:
    """What :func:`read_image_choice` found: the chosen image (0-based) and why."""

    index: int | None
    rule: str
    """``bare`` (the text is only an ordinal), ``affirmed`` (every affirmed mention names one
    image), ``correction`` (the last affirmed mention, introduced by a correction),
    ``stated_answer`` (affirmed mentions of different images, those stated as the answer name
    one), ``several_images`` (affirmed mentions of different images, no correction), ``no_mention``,
    ``only_negated``, ``only_echo`` or ``none_affirmed`` (negated and echoed mentions)."""
    mentions: tuple[Mention, ...] = ()


def _number(value: str) -> int:
    if value.isdigit():
        return int(value)
    if value.startswith("十"):  # 十, 十一 … 十九
        return 10 + (_CN_DIGITS.get(value[1:], 0) if len(value) > 1 else 0)
    if value.endswith("十"):  # 二十 …
        return _CN_DIGITS.get(value[0], 0) * 10
    return _CN_DIGITS.get(value, 0)


def find_mentions(text: str) -> list[Mention]:
    """Every image mention in ``text`` in order, all with role ``affirmed`` (no context)."""
    text = text.translate(_FULL_WIDTH)
    found: list[Mention] = []
    for m in _ORDINAL_MENTION.finditer(text):
        n = _ORDINAL_WORDS[m["word"].lower()] if m["word"] else int(m["num"])
        found.append(Mention(n - 1, m.start(), m.end()))
    for pattern in (_NUMBERED_MENTION, _CN_ORDINAL, _CN_NUMBERED):
        for m in pattern.finditer(text):
            if pattern is _NUMBERED_MENTION and _is_count(text, m):
                continue
            groups = m.groupdict()
            if groups.get("w"):
                n = _NUMBER_WORDS[groups["w"].lower()]
            else:
                n = _number(groups.get("n") or groups["cn"])
            found.append(Mention(n - 1, m.start(), m.end()))
    if found:
        for m in _ORDINAL_ONE.finditer(text):
            n = _ORDINAL_WORDS[m["word"].lower()] if m["word"] else int(m["num"])
            found.append(Mention(n - 1, m.start(), m.end()))
    found.sort(key=lambda m: (m.start, -m.end))
    out: list[Mention] = []
    for m in found:  # drop overlaps (the longer, earlier one wins) and "image 0"
        if m.index >= 0 and (not out or m.start >= out[-1].end):
            out.append(m)
    return out


def question_images(question: str) -> QuestionImages:
    """The image a question asks to locate in and the images it names only as references.

    The target is the image named right after "in" following the *last* request word
    (locate / find / ground / identify / recognize / detect / coordinates) of a sentence;
    boxes stated in the question (``<|box_start|>…<|box_end|>``) are ignored.
    """
    text = _BOX_SPAN.sub(" ", question.translate(_FULL_WIDTH))
    target: int | None = None
    named: set[int] = set()
    for sentence in _SENTENCES.finditer(text):
        part = sentence.group()
        mentions = find_mentions(part)
        named.update(m.index for m in mentions)
        located = [m for m in mentions if _IN_BEFORE.search(part[: m.start])]
        for verb in _REQUEST_VERB.finditer(part):
            after = [m for m in located if m.start >= verb.end()]
            if after:
                target = after[0].index
    return QuestionImages(target, frozenset(named - {target}))


def _role(text: str, m: Mention, breaks: list[tuple[int, int]], references: frozenset[int]) -> Role:
    """``breaks``: (start, end) of every clause break in ``text``, in order."""
    i = bisect.bisect_right(breaks, (m.start, m.start))
    clause_start = breaks[i - 1][1] if i and breaks[i - 1][1] <= m.start else 0
    j = bisect.bisect_left(breaks, (m.end, m.end))
    clause_end = breaks[j][0] if j < len(breaks) else len(text)
    before = text[max(clause_start, m.start - 80) : m.start]
    after = text[m.end : min(clause_end, m.end + 40)]
    if _NEGATION_BEFORE.search(before):
        return "negated"
    if _SUBJECT_BEFORE.match(before) and _NEGATION_AFTER.match(after):
        return "negated"
    if m.index in references and not _CLAIM_BEFORE.search(before):
        return "echo"
    return "affirmed"


def read_image_choice(text: str, question: str | None = None) -> ImageReading:
    """The image (0-based) ``text`` names as its answer; see the module docstring.

    ``question``: the question the text answers (any prompt text holding it), used to tell
    echoed reference images from a choice; without it no mention is taken as an echo.
    Never raises for any string.
    """
    if not isinstance(text, str):
        return ImageReading(None, "no_mention")
    text = text.translate(_FULL_WIDTH)
    bare = _BARE.match(text)
    if bare:
        if bare["word"]:
            n = _ORDINAL_WORDS[bare["word"].lower()]
        else:
            n = _number(bare["num"] or bare["bare"] or bare["cn"])
        if n >= 1:
            return ImageReading(n - 1, "bare", (Mention(n - 1, 0, len(text)),))
    references = question_images(question).references if question else frozenset()
    found = find_mentions(text)
    breaks = [(b.start(), b.end()) for b in _CLAUSE_BREAK.finditer(text)] if found else []
    mentions = tuple(
        Mention(m.index, m.start, m.end, _role(text, m, breaks, references)) for m in found
    )
    affirmed = [m for m in mentions if m.role == "affirmed"]
    if affirmed:
        index, rule = affirmed[0].index, "affirmed"
        for previous, m in itertools.pairwise(affirmed):
            if _CORRECTION.search(text, previous.end, m.start):  # "…, actually image 3"
                index, rule = m.index, "correction"
            elif m.index != index:  # a second image without a correction
                index, rule = m.index, "several_images"
        if rule == "several_images":  # "Image 1: a cat. Image 2: a dog. The answer is image 2."
            stated = {m.index for m in affirmed if _ANSWER_BEFORE.search(text, 0, m.start)}
            if len(stated) == 1:
                return ImageReading(stated.pop(), "stated_answer", mentions)
        return ImageReading(None if rule == "several_images" else index, rule, mentions)
    if not mentions:
        return ImageReading(None, "no_mention", mentions)
    roles = {m.role for m in mentions}
    rule = {frozenset({"echo"}): "only_echo", frozenset({"negated"}): "only_negated"}
    return ImageReading(None, rule.get(frozenset(roles), "none_affirmed"), mentions)


def image_choice(text: str, question: str | None = None) -> int | None:
    """Shorthand for ``read_image_choice(text, question).index``."""
    return read_image_choice(text, question).index
