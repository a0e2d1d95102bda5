"""Settings shared by every adapter; recorded with every result they produce."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

DEVICE_PATTERN = re.compile(r"auto|meta|(?:cpu|cuda|mps|xpu|npu|hpu|xla)(?::\d+)?")
"""The ``device`` values accepted: torch device strings (``TYPE`` or ``TYPE:N``) of the
accelerator backends torch names (``cuda``, ``mps``, ``xpu``, ``npu``, ``hpu``, ``xla``, and
``cpu``), ``meta``, and ``auto``; checked here so that a typo is refused when the config is
read, not when torch first sees it."""

DEVICE_FORMS = "auto, meta, or cpu, cuda, mps, xpu, npu, hpu, xla with an optional :N index"


class ModelSettings(BaseModel):
    """How to build one adapter. Unknown keys are rejected so a typo never goes unnoticed.

    Raises ``pydantic.ValidationError`` for a ``device`` outside :data:`DEVICE_PATTERN`, a
    ``min_pixels`` or ``max_pixels`` below 1, and a ``min_pixels`` above ``max_pixels``."""

    model_config = ConfigDict(extra="forbid")

    path: str | None = Field(
        default=None,
        description="local folder holding the weights, or a Hugging Face Hub id "
        "'org/name[@revision]' resolved in the Hub cache; ${ENV_VAR} and ~ are expanded",
    )
    device: str = Field(default="auto", description=f"one of {DEVICE_FORMS}")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device_map: str | None = Field(default=None, description="e.g. 'auto' for multi-GPU models")
    min_pixels: int | None = Field(
        default=None, ge=1, description="fewest pixels of an image the model sees (resize)"
    )
    max_pixels: int | None = Field(
        default=None, ge=1, description="most pixels of an image the model sees (resize)"
    )
    max_new_tokens: int = Field(default=128, ge=1, description="most tokens one answer generates")
    do_sample: bool = False
    options: dict[str, Any] = Field(
        default_factory=dict, description="adapter-specific options (thresholds, endpoint url...)"
    )

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if "${" in value:  # an unset environment variable, reported as such
            return value
        if not DEVICE_PATTERN.fullmatch(value):
            raise ValueError(f"unknown device {value!r} (accepted: {DEVICE_FORMS})")
        return value

    @field_validator("max_pixels")
    @classmethod
    def _pixel_range(cls, value: int | None, info: ValidationInfo) -> int | None:
        low = info.data.get("min_pixels")
        if value is not None and low is not None and low > value:
            raise ValueError(f"must be at least min_pixels ({low}), got {value}")
        return value
