"""Settings shared by every adapter; recorded with every result they produce."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ModelSettings(BaseModel):
    """How to build one adapter. Unknown keys are rejected so a typo never goes unnoticed."""

    model_config = ConfigDict(extra="forbid")

    path: str | None = Field(
        default=None,
        description="local folder holding the weights, or a Hugging Face Hub id "
        "'org/name[@revision]' resolved in the Hub cache; ${ENV_VAR} and ~ are expanded",
    )
    device: str = Field(default="auto", description="'auto' (cuda if available), 'cpu', 'cuda:0'")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device_map: str | None = Field(default=None, description="e.g. 'auto' for multi-GPU models")
    min_pixels: int | None = None
    max_pixels: int | None = None
    max_new_tokens: int = Field(default=128, ge=1, description="most tokens one answer generates")
    do_sample: bool = False
    options: dict[str, Any] = Field(
        default_factory=dict, description="adapter-specific options (thresholds, endpoint url...)"
    )
