"""Settings of the CoT graph and the end-to-end graph (recorded with every run)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

CoTMode = Literal["agent", "oracle-image", "paper", "multi-image"]
"""Which image the CoT graph's step 2 grounds in (``CoTConfig.mode``); not to be confused with
the scoring mode (official/strict, :mod:`cot_ground.scoring`)."""
AnswerForm = Literal["polling", "all"]
FallbackPolicy = Literal["mllm-grounder", "next-image"]


class CoTConfig(BaseModel):
    """How the two-step graph runs. Unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: CoTMode = Field(
        default="agent",
        description="agent: step 1 picks the image; oracle-image: step 2 gets the ground-truth "
        "image; paper: the Migician paper's per-task image rules (cot_ground/tasks.py); "
        "multi-image: the paper's +mCoT (Table 5), step 2 by a multi-image MLLM grounder (an "
        "end-to-end adapter) that sees every image, told which one by the paper's rules",
    )
    answer_form: AnswerForm = Field(
        default="polling",
        description="multi-image mode only (the answer forms of the Migician paper's Table 10): "
        "polling: one query about the one image step 2 targets; all: one query for the target "
        "in every image, the targeted image's box read from the answer (common_object, "
        "multi_view, object_tracking; other tasks stay polling)",
    )
    prompt_variant: str = Field(
        default="structured", description="folder under prompts/cot/ holding the step-1 prompts"
    )
    max_retries: int = Field(
        default=1, ge=0, le=5, description="re-format prompts sent after an unreadable step 1"
    )
    fallbacks: list[FallbackPolicy] = Field(
        default_factory=list,
        description="policies tried in order when the grounder returns no box: "
        "'mllm-grounder' (the second grounder on the same image and phrase), "
        "'next-image' (the next image step 1 did not choose); list one twice to try it twice",
    )
    pipeline: str | None = Field(
        default=None, description="pipeline name in records; default 'cot-<mode>-<variant>'"
    )
    prompts_dir: str | None = Field(
        default=None, description="prompt folder; default cot_ground.paths.prompts_dir()"
    )

    @property
    def pipeline_name(self) -> str:
        """The name written into every prediction."""
        return self.pipeline or f"cot-{self.mode}-{self.prompt_variant}"

    @model_validator(mode="after")
    def _multi_image_options(self) -> CoTConfig:
        if self.answer_form != "polling" and self.mode != "multi-image":
            raise ValueError(
                f"answer_form {self.answer_form!r} needs mode 'multi-image' (got {self.mode!r})"
            )
        if self.mode == "multi-image" and self.fallbacks:
            raise ValueError(
                "mode 'multi-image' takes no fallbacks: its grounder already sees every image"
            )
        return self


class E2EConfig(BaseModel):
    """How the end-to-end graph runs. Unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt_variant: str = Field(
        default="migician", description="folder under prompts/e2e/ holding the prompt"
    )
    pipeline: str | None = Field(
        default=None, description="pipeline name in records; default 'e2e-<variant>'"
    )
    prompts_dir: str | None = Field(
        default=None, description="prompt folder; default cot_ground.paths.prompts_dir()"
    )

    @property
    def pipeline_name(self) -> str:
        """The name written into every prediction."""
        return self.pipeline or f"e2e-{self.prompt_variant}"
