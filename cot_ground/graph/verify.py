"""``build_verify_graph``: proposal verification as a LangGraph ``StateGraph``.

select_and_describe → parse_selection ─(unreadable, retries left)→ select_and_describe
                                      ─(ok)→ propose ─(proposals)→ verify → finalize
everything else ends in finalize.

Step 1 is the CoT graph's (prompts/cot/<step1_variant>, agent mode): the reasoner picks the image
and describes the target. The grounder proposes boxes for the description on that image; each
of the top ``verify_top`` proposals is cropped (``crop_expand`` context, saved as
``<artifacts_dir>/<pipeline>/<example id>/verify_image<N>_id<K>.png``, named relative to the run
folder in a run's records: :mod:`cot_ground.graph.artifacts`) and the reasoner is asked
"Is this the {description}?" about the crop alone. The answer is the highest-scoring "yes":

* when the reasoner exposes ``yes_logprob(requests) -> list[float]`` (natural-log probability
  of answering "yes"; the Qwen-VL and transformers-chat reasoners do, see
  :mod:`cot_ground.models.yes_score`), proposals with P(yes) > 0.5 qualify and the highest
  log-probability wins;
* otherwise a proposal qualifies when its answer text starts with "yes", and the grounder's
  ranking breaks ties (the first such proposal wins).

No qualifying proposal is a recorded ``no_box``. The verify step's trace names the rule
(``parsed["rule"]`` and ``settings["verify_rule"]``: ``yes_logprob`` or ``answer_text``) and,
when the scorer says, which token ids it summed (``settings["yes_tokens"]``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from langgraph.graph import END, START, StateGraph

from cot_ground.boxes import Box
from cot_ground.graph.artifacts import ArtifactFolder
from cot_ground.graph.calls import error_entry, step
from cot_ground.graph.choices import parse_yes_no
from cot_ground.graph.config import CoTConfig
from cot_ground.graph.cot import after_step1
from cot_ground.graph.nodes import PARSE, SELECT, CoTNodes
from cot_ground.graph.proposals import crop_image, image_size, propose
from cot_ground.graph.record import FINALIZE, outcome_status, prediction_record
from cot_ground.graph.selection_config import VerifyConfig
from cot_ground.graph.state import CoTState, Selection, example_of
from cot_ground.graph.zoom import crop_window
from cot_ground.images import ImageLoadError
from cot_ground.models.base import ChatRequest, Grounder, Reasoner
from cot_ground.models.registry import require_role
from cot_ground.prompts import PromptError, load_prompts, variant_dir
from cot_ground.records import ErrorCategory

PROPOSE = "propose"
VERIFY = "verify"
YES_THRESHOLD = math.log(0.5)


@runtime_checkable
class YesScorer(Protocol):
    """A reasoner that can score a yes/no question: log P("yes") per request."""

    def yes_logprob(self, requests: list[ChatRequest]) -> list[float]:
        """Natural-log probability that the answer to each request starts with "yes"."""
        ...


class VerifyState(CoTState, total=False):
    """The CoT state plus the proposals on the chosen image and their verdicts."""

    proposals: list[dict[str, Any]]
    verdicts: list[dict[str, Any]]
    """``{"proposal", "answer", "yes", "yes_logprob", "crop"}`` per proposal asked about."""
    chosen: dict[str, Any] | None


@dataclass(frozen=True)
class VerifyNodes:
    """The nodes after step 1, bound to the adapters and the config."""

    reasoner: Reasoner
    grounder: Grounder
    config: VerifyConfig
    artifacts: ArtifactFolder

    def propose(self, state: VerifyState) -> dict[str, Any]:
        """Proposals for step 1's phrase on step 1's image."""
        ex = example_of(state)
        sel = Selection.model_validate(state["selection"])
        update = propose(
            self.grounder,
            ex,
            [sel.step2_image],
            sel.phrase,
            top_k=self.config.top_k,
            nms_iou=self.config.nms_iou,
        )
        update.update(verdicts=[], chosen=None)
        return update

    def verify(self, state: VerifyState) -> dict[str, Any]:
        """Ask the yes/no question about each top proposal's crop; choose the best "yes"."""
        ex = example_of(state)
        sel = Selection.model_validate(state["selection"])
        asked = state["proposals"][: self.config.verify_top]
        image = sel.step2_image
        try:
            prompts = load_prompts(
                "verify", self.config.prompt_variant, ex.task, self.config.prompts_dir
            )
            rendered = prompts.render("question", {"description": sel.description or sel.phrase})
            width, height = image_size(ex.images[image])
            crops = []
            for p in asked:
                window = crop_window(
                    Box.model_validate(p["box"]),
                    width,
                    height,
                    self.config.crop_expand,
                    self.config.min_crop,
                )
                if window is None:  # a proposal outside the image is never shown
                    crops.append(None)
                    continue
                out = self.artifacts.file(ex.id, f"verify_image{image + 1}_id{p['id']}.png")
                crops.append(str(crop_image(ex.images[image], window, out)))
        except (PromptError, ImageLoadError) as exc:
            category = ErrorCategory.CONFIG if isinstance(exc, PromptError) else ErrorCategory.IMAGE
            error = error_entry(category, str(exc), VERIFY)
            return {"error": error, "trace": [step(VERIFY, error=error)]}
        requests = [ChatRequest(images=[c], prompt=rendered.text) for c in crops if c is not None]
        start = time.perf_counter()
        try:
            results = list(self.reasoner.reason(requests)) if requests else []
            scorer = self.reasoner if isinstance(self.reasoner, YesScorer) else None
            logprobs = list(scorer.yes_logprob(requests)) if scorer and requests else None
        except Exception as exc:  # an adapter failure ends this example only
            error = error_entry(
                ErrorCategory.MODEL, f"{self.reasoner.name}: {type(exc).__name__}: {exc}", VERIFY
            )
            return {
                "error": error,
                "trace": [step(VERIFY, error=error, wall_s=time.perf_counter() - start)],
            }
        wall = time.perf_counter() - start
        verdicts, k = [], 0
        for p, crop in zip(asked, crops, strict=True):
            if crop is None:
                verdicts.append(
                    {"proposal": p, "answer": None, "yes": None, "yes_logprob": None, "crop": None}
                )
                continue
            answer = results[k].raw_text
            lp = logprobs[k] if logprobs is not None else None
            verdicts.append(
                {
                    "proposal": p,
                    "answer": answer,
                    "yes": parse_yes_no(answer),
                    "yes_logprob": lp,
                    "crop": self.artifacts.recorded(crop),
                }
            )
            k += 1
        chosen = _best_yes(verdicts, by_logprob=logprobs is not None)
        settings = dict(self.reasoner.settings)
        settings["verify_rule"] = "yes_logprob" if logprobs is not None else "answer_text"
        if logprobs is not None and getattr(scorer, "yes_tokens", None) is not None:
            settings["yes_tokens"] = scorer.yes_tokens  # which token ids were summed
        return {
            "verdicts": verdicts,
            "chosen": chosen,
            "trace": [
                step(
                    VERIFY,
                    prompt=rendered.text,
                    prompt_hash=rendered.hash,
                    images=[self.artifacts.recorded(c) for c in crops if c is not None],
                    raw_output="\n".join(str(v["answer"]) for v in verdicts),
                    parsed={
                        "verdicts": verdicts,
                        "chosen_id": chosen["id"] if chosen else None,
                        "rule": "yes_logprob" if logprobs is not None else "answer_text",
                    },
                    settings=settings,
                    wall_s=wall,
                )
            ],
        }

    def finalize(self, state: VerifyState) -> dict[str, Any]:
        """Write the prediction record (with the whole trace)."""
        ex = example_of(state)
        error = state.get("error")
        chosen = state.get("chosen")
        sel = Selection.read(state.get("selection"))
        box = Box.model_validate(chosen["box"]) if chosen else None
        image = sel.step2_image if sel else None
        status = outcome_status(box, error)
        if error is None and box is None:
            if not state.get("proposals"):
                message = f"no proposals for {sel.phrase!r} on image {image + 1}"
                error = error_entry(ErrorCategory.NO_BOX, message, PROPOSE)
            else:
                error = error_entry(ErrorCategory.NO_BOX, "no proposal was verified", VERIFY)
        return prediction_record(
            ex,
            self.config,
            state,
            image_index=image,
            box=box,
            status=status,
            raw_text=state.get("step1_raw"),
            error=error,
        )


def _best_yes(verdicts: list[dict[str, Any]], *, by_logprob: bool) -> dict[str, Any] | None:
    if by_logprob:
        qualified = [
            v for v in verdicts if v["yes_logprob"] is not None and v["yes_logprob"] > YES_THRESHOLD
        ]
        best = max(qualified, key=lambda v: v["yes_logprob"], default=None)
    else:
        best = next((v for v in verdicts if v["yes"]), None)
    return best["proposal"] if best else None


def build_verify_graph(
    reasoner: Reasoner,
    grounder: Grounder,
    *,
    config: VerifyConfig | None = None,
    checkpointer: Any = None,
    run_dir: str | Path | None = None,
) -> Any:
    """The compiled verification graph (see the module docstring). Crops go to
    ``config.artifacts_dir``; ``run_dir``: the run folder that traces name them relative to
    (None: absolute paths). Raises ``TypeError`` for an adapter of the wrong role and
    :class:`~cot_ground.prompts.PromptError` for an unknown prompt variant."""
    config = config or VerifyConfig()
    require_role(reasoner, "reasoner")
    require_role(grounder, "grounder")
    variant_dir("verify", config.prompt_variant, config.prompts_dir)
    variant_dir("cot", config.step1_variant, config.prompts_dir)
    step1 = CoTNodes(
        reasoner,
        grounder,
        CoTConfig(
            mode="agent",
            prompt_variant=config.step1_variant,
            max_retries=config.max_retries,
            pipeline=config.pipeline_name,
            prompts_dir=config.prompts_dir,
        ),
    )
    nodes = VerifyNodes(
        reasoner,
        grounder,
        config,
        ArtifactFolder.open(config.artifacts_dir, config.pipeline_name, run_dir),
    )

    def after_parse(state: VerifyState) -> Literal["select_and_describe", "propose", "finalize"]:
        if state.get("error"):
            return FINALIZE
        return PROPOSE if state.get("selection") else SELECT

    def after_propose(state: VerifyState) -> Literal["verify", "finalize"]:
        return VERIFY if state.get("proposals") and not state.get("error") else FINALIZE

    graph = StateGraph(VerifyState)
    graph.add_node(SELECT, step1.select_and_describe)
    graph.add_node(PARSE, step1.parse_selection)
    graph.add_node(PROPOSE, nodes.propose)
    graph.add_node(VERIFY, nodes.verify)
    graph.add_node(FINALIZE, nodes.finalize)
    graph.add_edge(START, SELECT)
    graph.add_conditional_edges(SELECT, after_step1)
    graph.add_conditional_edges(PARSE, after_parse)
    graph.add_conditional_edges(PROPOSE, after_propose)
    graph.add_edge(VERIFY, FINALIZE)
    graph.add_edge(FINALIZE, END)
    compiled = graph.compile(checkpointer=checkpointer, name=config.pipeline_name)
    return compiled.with_config(recursion_limit=2 * (1 + config.max_retries) + 4)
