"""Settings of the CoT graph and the end-to-end graph (recorded with every run)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Mode = Literal["agent", "oracle-image", "paper"]
FallbackPolicy = Literal["mllm-grounder", "next-image"]


class CoTConfig(BaseModel):
    """How the two-step graph runs. Unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Mode = Field(
        default="agent",
        description="agent: step 1 picks the image; oracle-image: step 2 gets the ground-truth "
        "image; paper: the Migician paper's per-task image rules (cot_ground/graph/tasks.py)",
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
