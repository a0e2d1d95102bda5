"""The records every part of cot-ground exchanges: examples, candidates, trace steps, predictions.

Image indices are **0-based** everywhere in code and files; prompts shown to models say
"image 1" for index 0.
"""

from __future__ import annotations

import hashlib
import json
import os
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cot_ground.boxes import Box
from cot_ground.redaction import redact, redact_data, redact_text, redact_text_data


class ParseStatus(str, Enum):
    """Outcome of turning model text into a box (or an image choice)."""

    OK = "ok"
    NO_BOX = "no_box"
    SEVERAL_BOXES = "several_boxes"
    MALFORMED = "malformed"
    # a box stated in another frame than the one named, e.g. unit fractions in a [0, 1000) answer
    FRAME_MISMATCH = "frame_mismatch"


class ErrorCategory(str, Enum):
    """Why an example could not be run to the end."""

    IMAGE = "image_error"  # missing, unreadable or corrupt image file
    MODEL = "model_error"  # the model call raised
    CACHE = "cache_error"  # the step-1 cache could not be read or written
    FORMAT = "format_failure"  # model text could not be parsed after all retries
    INDEX = "index_out_of_range"  # a model named an image the example does not have
    NO_BOX = "no_box"  # the grounder (and every fallback) found nothing
    CONFIG = "config_error"


def example_id(task: str, images: list[str], question: str) -> str:
    """Stable id: a hash of task, image paths (as written in the file) and question."""
    payload = json.dumps([task, list(images), question], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


class Example(BaseModel):
    """One benchmark item with its ground truth."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="stable hash of task, image paths and question")
    task: str
    images: list[str] = Field(description="absolute (resolved) image paths, in prompt order")
    question: str = Field(description="the question as a model may see it (no additional_info)")
    gt_box: Box = Field(description="ground-truth box in the unit frame, as annotated")
    target_image: int = Field(description="0-based index of the image the box belongs to")
    target_rule: str = Field(default="", description="which documented rule gave target_image")
    raw: dict[str, Any] = Field(
        default_factory=dict, description="the annotation record exactly as read (holds answers)"
    )


class Candidate(BaseModel):
    """A ranked box proposed by a grounder."""

    box: Box
    score: float | None = None
    label: str | None = Field(default=None, description="the phrase grounded, secrets redacted")

    @field_validator("label")
    @classmethod
    def _redacted(cls, label: str | None) -> str | None:
        return redact_text(label)


class ErrorInfo(BaseModel):
    """A failure recorded on one example; the run goes on."""

    category: ErrorCategory
    message: str = Field(description="what went wrong, secrets redacted (cot_ground.redaction)")
    node: str | None = None

    @field_validator("message")
    @classmethod
    def _redacted(cls, message: str) -> str:
        return redact(message)


class TraceStep(BaseModel):
    """What one graph node did for one example: enough to explain a failure without re-running.

    Every text a model saw or wrote (``prompt``, ``raw_output``, the strings of ``parsed``, a
    candidate's ``label``) and ``settings`` are redacted when the step is made
    (:mod:`cot_ground.redaction`), so a secret a model or server echoes never reaches a record.
    """

    node: str
    attempt: int = 0
    prompt: str | None = Field(default=None, description="the prompt sent, secrets redacted")
    prompt_hash: str | None = None
    images: list[str] = Field(default_factory=list, description="image paths the model saw")
    raw_output: str | None = Field(default=None, description="the model's text, secrets redacted")
    parsed: dict[str, Any] = Field(
        default_factory=dict, description="what was read from the text, secrets redacted"
    )
    candidates: list[Candidate] = Field(default_factory=list)
    settings: dict[str, Any] = Field(
        default_factory=dict,
        description="model and generation settings, secrets redacted (URL passwords, keys)",
    )
    wall_s: float = 0.0
    cached: bool = False
    error: ErrorInfo | None = None

    @field_validator("prompt", "raw_output")
    @classmethod
    def _redacted_text(cls, text: str | None) -> str | None:
        return redact_text(text)

    @field_validator("parsed")
    @classmethod
    def _redacted_parse(cls, data: dict[str, Any]) -> dict[str, Any]:
        return redact_text_data(data)

    @field_validator("settings")
    @classmethod
    def _redacted(cls, data: dict[str, Any]) -> dict[str, Any]:
        return redact_data(data)


class ImageBox(BaseModel):
    """One box of a multi-box answer (MC-Bench): the image it is on, the box, its score and the
    target group it belongs to (MC-Bench numbers a sample's target groups from 1)."""

    image_index: int = Field(description="0-based image the box is on")
    box: Box = Field(description="box in the unit frame")
    score: float = Field(default=1.0, description="confidence used to rank boxes for AP")
    group: int = Field(default=1, ge=1, description="target group, 1-based")


class Prediction(BaseModel):
    """The record every pipeline writes for every example (one JSONL line with its trace).

    Single-box benchmarks (MIG-Bench) use ``image_index`` + ``box`` and leave ``boxes`` None.
    Multi-box benchmarks (MC-Bench) use ``boxes``: several boxes over several images, or an
    empty list for an answer of "no target".

    ``raw_text``, ``settings``, the error message and the trace are redacted when the record is
    made (:mod:`cot_ground.redaction`): what a run folder, ``show`` and the report hold is the
    redacted text.
    """

    example_id: str
    pipeline: str
    task: str
    image_index: int | None = Field(default=None, description="0-based image the answer names")
    box: Box | None = Field(default=None, description="predicted box in the unit frame")
    status: ParseStatus = ParseStatus.MALFORMED
    raw_text: str | None = Field(
        default=None, description="raw text of the answering model, secrets redacted"
    )
    prompt_variant: str | None = None
    prompt_hash: str | None = None
    calibration: str | None = Field(default=None, description="named box calibration applied")
    fallbacks: list[str] = Field(default_factory=list, description="fallback policies taken")
    settings: dict[str, Any] = Field(
        default_factory=dict,
        description="what can change this prediction's figure besides the model: graph mode, "
        "generation length per step (max_new_tokens), parser options (unit_floats, "
        "image_reader)",
    )
    timing: dict[str, float] = Field(default_factory=dict, description="seconds per stage")
    error: ErrorInfo | None = None
    trace: list[TraceStep] = Field(default_factory=list)
    boxes: list[ImageBox] | None = Field(
        default=None,
        description="multi-box answer (MC-Bench); [] means 'no target'; None: single-box form",
    )

    @field_validator("raw_text")
    @classmethod
    def _redacted_text(cls, text: str | None) -> str | None:
        return redact_text(text)

    @field_validator("settings")
    @classmethod
    def _redacted(cls, settings: dict[str, Any]) -> dict[str, Any]:
        return redact_data(settings)


BUILD_INFO_FILE = "lite_info.json"
"""A generated benchmark's facts, beside its annotation file: ``answer_frame`` and
``data_sha256`` (the sha256 of the annotation file it was written with), among others."""


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes (benchmark files, image files for cache keys)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def text_hash(text: str) -> str:
    """Short sha256 of a prompt or any text, for records and cache keys."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
