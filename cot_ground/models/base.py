"""The three model interfaces every pipeline calls, with their request and result types.

Every adapter has ``name`` (its registry name) and ``settings`` (a JSON-serializable dict of
everything that changes its output: weights path, dtype, min/max pixels, generation settings);
both are recorded in traces and form the step-cache key. All methods are batched: a list of
requests in, a list of results (same length, same order) out, so a runner can batch across
examples. Requests carry image *paths*; adapters decode them through
:func:`cot_ground.images.open_rgb`. Image indices are 0-based.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from pydantic import AliasChoices, BaseModel, Field

from cot_ground.boxes import Box, Frame
from cot_ground.parsing import AnswerKind, BoxParse, parse_box, parse_step1
from cot_ground.records import Candidate, ParseStatus


class ChatRequest(BaseModel):
    """Several images and one prompt (CoT step 1, or an end-to-end question)."""

    images: list[str]
    prompt: str
    task: str | None = Field(default=None, description="benchmark task, for task-aware reasoners")
    question: str | None = Field(
        default=None,
        description="the benchmark question the prompt asks (None: only the prompt is known); "
        "step-1 answers are read with it so echoed image references are not taken as the choice",
    )
    answer_kind: AnswerKind = Field(
        default="image_and_description",
        description="what a step-1 answer states (the prompt set's 'answer' field): "
        "image_and_description, image, or description (cot_ground.parsing.parse_step1)",
    )


class ReasonerResult(BaseModel):
    """CoT step 1: which image holds the target and a referring description of it."""

    raw_text: str
    image_index: int | None = None
    description: str | None = None
    status: ParseStatus = ParseStatus.MALFORMED
    settings: dict[str, Any] = Field(default_factory=dict)
    reference_index: int | None = Field(
        default=None,
        validation_alias=AliasChoices("reference_index", "reference_image"),
        description="0-based image whose content step 2 should match (classical grounders); "
        "read from 'reference_image' too (step-cache entries written before the rename)",
    )
    reference_box: Box | None = Field(
        default=None, description="box on the reference image, when the question gives one"
    )
    cached: bool = Field(default=False, description="answer came from the step cache")
    reason: str | None = Field(default=None, description="why the answer is unreadable")
    out_of_range_index: int | None = Field(
        default=None,
        description="image the answer names beyond the request's images (image_index is None "
        "and status malformed then); the CoT graph reports it as an index error",
    )

    @classmethod
    def from_text(cls, text: str, request: ChatRequest, settings: dict[str, Any]) -> ReasonerResult:
        """The result for an answer ``text`` to ``request``, read once with
        :func:`~cot_ground.parsing.parse_step1` for the request's ``answer_kind``, images and
        ``question`` (the status says when it is unreadable, ``reason`` why)."""
        sel = parse_step1(text, request.answer_kind, len(request.images), request.question)
        return cls(
            raw_text=text,
            image_index=sel.image_index,
            description=sel.description or None,
            status=sel.status,
            settings=dict(settings),
            reason=sel.error,
            out_of_range_index=sel.out_of_range_index,
        )


class GroundRequest(BaseModel):
    """CoT step 2: one image and a phrase; optional visual reference for picture-based grounders."""

    image: str
    phrase: str
    task: str | None = Field(default=None, description="benchmark task, for task-aware grounders")
    prompt: str | None = Field(
        default=None,
        description="exact text for grounders that read a prompt (the Qwen-VL grounder), from "
        "the CoT prompt files' 'step2' field; None: the grounder's own template around phrase",
    )
    reference_image: str | None = None
    reference_box: Box | None = None


class GroundResult(BaseModel):
    """Ranked candidate boxes (best first) in the unit frame."""

    candidates: list[Candidate] = Field(default_factory=list)
    raw_text: str | None = None
    status: ParseStatus = ParseStatus.NO_BOX
    settings: dict[str, Any] = Field(default_factory=dict)
    notes: dict[str, Any] = Field(
        default_factory=dict,
        description="what the grounder did to this request that the trace records, e.g. "
        "text_truncated {tokens, kept}",
    )


class EndToEndResult(BaseModel):
    """An end-to-end answer: image index (when stated) and box."""

    raw_text: str
    image_index: int | None = None
    box: Box | None = None
    status: ParseStatus = ParseStatus.MALFORMED
    settings: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_text(cls, text: str, frame: Frame, settings: dict[str, Any]) -> EndToEndResult:
        """The result for an answer ``text`` stating its box in ``frame`` (not ``pixels``),
        read with :func:`~cot_ground.parsing.parse_box` (the status says when it is unreadable)."""
        parsed = parse_box(text, frame)
        return cls.from_parse(text, parsed, parsed.box, settings)

    @classmethod
    def from_parse(
        cls, text: str, parsed: BoxParse, box: Box | None, settings: dict[str, Any]
    ) -> EndToEndResult:
        """The result for ``text`` read as ``parsed`` (image index and status), with ``box``:
        the parsed box as the adapter places it (clipped, calibrated), or None."""
        return cls(
            raw_text=text,
            image_index=parsed.image_index,
            box=box,
            status=parsed.status,
            settings=dict(settings),
        )


@runtime_checkable
class Reasoner(Protocol):
    """Multi-image model used for CoT step 1."""

    name: str
    settings: dict[str, Any]

    def reason(self, requests: list[ChatRequest]) -> list[ReasonerResult]:
        """Answer each request; never raises for an unparseable answer (status says so)."""
        ...


@runtime_checkable
class Grounder(Protocol):
    """Single-image grounder used for CoT step 2."""

    name: str
    settings: dict[str, Any]

    def ground(self, requests: list[GroundRequest]) -> list[GroundResult]:
        """Candidates for each request, ranked best first."""
        ...


@runtime_checkable
class EndToEndGrounder(Protocol):
    """Model that answers a multi-image grounding question in one call."""

    name: str
    settings: dict[str, Any]

    def predict(self, requests: list[ChatRequest]) -> list[EndToEndResult]:
        """Image index and box for each request."""
        ...


class ModelLoadError(RuntimeError):
    """A model folder is missing or incomplete; the message names the path and what is missing."""


class RequestErrors(RuntimeError):
    """Some requests of one batched call failed; the others have results.

    ``results[i]`` is the result of request ``i`` (None when it failed) and ``errors[i]`` its
    exception (None when it succeeded). Adapters that already know which request failed (the
    OpenAI-compatible client, after its own retries) raise it so that the caller records each
    failure on its own example and sends nothing again.
    """

    def __init__(self, results: list[Any], errors: list[BaseException | None]) -> None:
        self.results = list(results)
        self.errors = list(errors)
        failed = [e for e in self.errors if e is not None]
        first = f"; first: {type(failed[0]).__name__}: {failed[0]}" if failed else ""
        super().__init__(f"{len(failed)} of {len(self.errors)} requests failed{first}")


def results_or_raise(results: list[Any], errors: list[BaseException | None]) -> list[Any]:
    """``results`` when no request failed; else the error itself for a single request, or
    :class:`RequestErrors` for a batch."""
    if all(e is None for e in errors):
        return results
    if len(errors) == 1:
        raise errors[0]  # type: ignore[misc]
    raise RequestErrors(results, errors)
