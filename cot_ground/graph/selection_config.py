"""Settings of the proposal-based graphs (``som``, ``perception-prompt``, ``verify``) and of zoom-in
refinement (recorded with every run; unknown keys are rejected)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

UnmarkedChoice = Literal["fail", "top-proposal"]


class ProposalSettings(BaseModel):
    """What every proposal-based graph shares: how proposals are made and how answers are read."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt_variant: str = Field(
        default="default",
        description="folder under prompts/<kind>/ (som, perception-prompt, verify)",
    )
    proposal_phrase: str = Field(
        default="object.", description="phrase sent to the grounder to propose boxes on an image"
    )
    top_k: int = Field(default=5, ge=1, le=50, description="proposals kept per image (after NMS)")
    nms_iou: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="a proposal overlapping a better one by this IoU is dropped",
    )
    max_retries: int = Field(
        default=1, ge=0, le=5, description="re-format prompts sent after an unreadable choice"
    )
    unmarked_choice: UnmarkedChoice = Field(
        default="fail",
        description="an answer naming an image but no proposal: 'fail' (unreadable, then a "
        "format failure) or 'top-proposal' (that image's highest-scoring proposal; for "
        "reasoners that cannot name a mark, such as rule-reasoner)",
    )
    artifacts_dir: str | None = Field(
        default=None,
        description="folder for marked images and crops (the runner sets <run>/artifacts); "
        "default: a new temporary folder per compiled graph",
    )
    pipeline: str | None = Field(default=None, description="pipeline name in records")
    prompts_dir: str | None = Field(
        default=None, description="prompt folder; default cot_ground.paths.prompts_dir()"
    )


class SoMConfig(ProposalSettings):
    """Set-of-Mark selection: numbered marks drawn on every image, the reasoner names one."""

    @property
    def pipeline_name(self) -> str:
        """The name written into every prediction."""
        return self.pipeline or f"som-{self.prompt_variant}"


class PerceptionConfig(ProposalSettings):
    """Proposals written into the prompt as text; the reasoner names an id or answers a box."""

    frame: Literal["unit", "qwen1000", "qwen3_1000"] = Field(
        default="qwen1000",
        description="frame the proposals are written in and the reasoner's box is read in "
        "(the reasoner's own frame: qwen1000 for Qwen2-VL, qwen3_1000 for Qwen3-VL)",
    )

    @property
    def pipeline_name(self) -> str:
        """The name written into every prediction."""
        return self.pipeline or f"perception-{self.prompt_variant}"


class VerifyConfig(ProposalSettings):
    """Step 1 picks the image and describes the target; each top proposal there is verified."""

    step1_variant: str = Field(
        default="structured",
        description="folder under prompts/cot/ for step 1 (its answer must name an image)",
    )
    verify_top: int = Field(default=3, ge=1, le=20, description="proposals asked about")
    crop_expand: float = Field(
        default=1.2, ge=1.0, le=4.0, description="each verified box is cropped with this context"
    )
    min_crop: int = Field(default=32, ge=1, description="smallest crop side, pixels")

    @property
    def pipeline_name(self) -> str:
        """The name written into every prediction."""
        return self.pipeline or f"verify-{self.prompt_variant}"


class ZoomConfig(BaseModel):
    """Zoom-in refinement after a grounding graph (see :mod:`cot_ground.graph.zoom`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rounds: int = Field(default=2, ge=1, le=10, description="at most this many crops")
    expand: float = Field(
        default=2.0, ge=1.0, le=10.0, description="crop side = box side x expand (per axis)"
    )
    min_size: int = Field(default=64, ge=1, description="smallest crop side, pixels")
    tol: float = Field(
        default=0.01,
        ge=0.0,
        description="stop when no box coordinate moved more than this (unit frame)",
    )
