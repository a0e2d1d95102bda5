"""``build_som_graph``: Set-of-Mark selection as a LangGraph ``StateGraph``.

propose ─(no proposals / error)→ finalize
        ─→ draw_marks → choose → parse_choice ─(unreadable or out of range, retries left)→ choose
                                              ─(else)→ finalize

The grounder proposes boxes on every image (``proposal_phrase``, top-K per image after NMS);
numbered marks are drawn on copies of the images, saved as
``<artifacts_dir>/<pipeline>/<example id>/image<N>_marks.png`` (the ``choose`` trace step lists
exactly these files, relative to the run folder in a run: :mod:`cot_ground.graph.artifacts`);
the reasoner sees the marked copies and answers "image N, mark K"; the
prediction's box is that proposal's box, never one the reasoner wrote.
:mod:`cot_ground.graph.perception` shares this machinery with the proposals listed as text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from cot_ground.boxes import Box, Frame
from cot_ground.graph.artifacts import ArtifactFolder
from cot_ground.graph.calls import call_one, error_entry, step
from cot_ground.graph.choices import Choice, parse_id_choice, parse_mark_choice
from cot_ground.graph.proposals import draw_marks, on_image, propose
from cot_ground.graph.record import FINALIZE, outcome_status, prediction_record
from cot_ground.graph.selection_config import PerceptionConfig, SoMConfig
from cot_ground.graph.state import ResolvedChoice, example_of, extend_trace
from cot_ground.images import ImageLoadError
from cot_ground.models.base import ChatRequest, Grounder, Reasoner
from cot_ground.models.registry import require_role
from cot_ground.prompts import PromptError, example_variables, load_prompts, variant_dir
from cot_ground.records import (
    ErrorCategory,
    Example,
)

PROPOSE = "propose"
MARKS = "draw_marks"
CHOOSE = "choose"
PARSE = "parse_choice"


class SelectState(TypedDict, total=False):
    """State of the ``som`` and ``perception-prompt`` graphs for one example."""

    example: dict[str, Any]
    proposals: list[dict[str, Any]]
    """Proposal dicts (see :mod:`cot_ground.graph.proposals`)."""
    shown_images: list[str]
    """Image files the reasoner sees (marked copies for ``som``, the originals otherwise)."""
    attempt: int
    choice_raw: str | None
    why: str | None
    """Why the latest answer could not be used (shown in the re-format prompt)."""
    prompt_hash: str | None
    choice: dict[str, Any] | None
    """``{"kind", "image", "box", "proposal", "rule"}`` once an answer is read."""
    selection: dict[str, Any] | None
    """``{"phrase": ...}`` for a zoom round after this graph."""
    error: dict[str, Any] | None
    trace: Annotated[list[dict[str, Any]], extend_trace]
    prediction: dict[str, Any] | None


@dataclass(frozen=True)
class SelectorNodes:
    """Node functions of ``som`` (``style="marks"``) and ``perception-prompt``
    (``style="text"``), bound to the adapters and the config (all read-only)."""

    reasoner: Reasoner
    grounder: Grounder
    config: SoMConfig | PerceptionConfig
    style: Literal["marks", "text"]
    artifacts: ArtifactFolder

    @property
    def prompt_kind(self) -> str:
        """The prompt folder kind: ``som`` or ``perception-prompt``."""
        return "som" if self.style == "marks" else "perception-prompt"

    # ------------------------------------------------------------------ proposals
    def propose(self, state: SelectState) -> dict[str, Any]:
        """Proposals on every image (one batched grounder call)."""
        ex = example_of(state)
        update = propose(
            self.grounder,
            ex,
            range(len(ex.images)),
            self.config.proposal_phrase,
            top_k=self.config.top_k,
            nms_iou=self.config.nms_iou,
        )
        update.update(
            attempt=0,
            choice=None,
            choice_raw=None,
            why=None,
            shown_images=list(ex.images),
            selection={"phrase": self.config.proposal_phrase},
        )
        return update

    def draw_marks(self, state: SelectState) -> dict[str, Any]:
        """Numbered marks on a copy of every image, saved beside the run."""
        ex = example_of(state)
        shown: list[str] = []
        try:
            for i, path in enumerate(ex.images):
                out = self.artifacts.file(ex.id, f"image{i + 1}_marks.png")
                shown.append(str(draw_marks(path, on_image(state["proposals"], i), out)))
        except ImageLoadError as exc:
            error = error_entry(ErrorCategory.IMAGE, str(exc), MARKS)
            return {"error": error, "trace": [step(MARKS, error=error)]}
        counts = {str(i + 1): len(on_image(state["proposals"], i)) for i in range(len(ex.images))}
        recorded = [self.artifacts.recorded(p) for p in shown]
        return {
            "shown_images": shown,
            "trace": [step(MARKS, images=recorded, parsed={"marks_per_image": counts})],
        }

    # ------------------------------------------------------------------ the reasoner
    def _variables(self, ex: Example, proposals: list[dict[str, Any]]) -> dict[str, Any]:
        variables = example_variables(ex.question, len(ex.images))
        parts = []
        for i in range(len(ex.images)):
            n = len(on_image(proposals, i))
            parts.append(
                f"image {i + 1}: " + (f"marks 1-{n}" if n > 1 else f"mark {n}" if n else "no marks")
            )
        variables["mark_list"] = "; ".join(parts)
        if isinstance(self.config, PerceptionConfig):
            frame = Frame(self.config.frame)
            variables["frame_note"] = _FRAME_NOTES[frame]
            variables["proposal_list"] = "\n".join(_listed(p, frame) for p in proposals)
        return variables

    def choose(self, state: SelectState) -> dict[str, Any]:
        """The reasoner sees the (marked) images and the prompt; re-format prompts on retries."""
        ex = example_of(state)
        attempt = state.get("attempt", 0)
        try:
            prompts = load_prompts(
                self.prompt_kind, self.config.prompt_variant, ex.task, self.config.prompts_dir
            )
            variables = self._variables(ex, state["proposals"])
            if attempt == 0:
                rendered = prompts.render("prompt", variables)
            else:
                extra = {
                    "previous_answer": state.get("choice_raw") or "",
                    "why": state.get("why") or "",
                }
                rendered = prompts.render("reformat", {**variables, **extra})
        except PromptError as exc:
            error = error_entry(ErrorCategory.CONFIG, str(exc), CHOOSE)
            return {"error": error, "trace": [step(CHOOSE, attempt=attempt, error=error)]}
        images = list(state.get("shown_images") or ex.images)
        request = ChatRequest(images=images, prompt=rendered.text)
        result, error, wall = call_one(
            self.reasoner.reason, request, adapter=self.reasoner.name, node=CHOOSE
        )
        update: dict[str, Any] = {"attempt": attempt + 1}
        if attempt == 0:
            update["prompt_hash"] = rendered.hash
        if result is not None:
            update["choice_raw"] = result.raw_text
        if error is not None:
            update["error"] = error.model_dump(mode="json")
        update["trace"] = [
            step(
                CHOOSE,
                attempt=attempt,
                prompt=rendered.text,
                prompt_hash=rendered.hash,
                images=[self.artifacts.recorded(p) for p in images],
                raw_output=result.raw_text if result else None,
                parsed={"template": rendered.template, "prompt_files": rendered.source},
                settings=dict(self.reasoner.settings),
                wall_s=wall,
                cached=bool(result and result.cached),
                error=error,
            )
        ]
        return update

    # ------------------------------------------------------------------ reading the answer
    def parse_choice(self, state: SelectState) -> dict[str, Any]:
        """Map the answer to a proposal (or "none", or a box for perception-prompt); ask again
        when it is unreadable or out of range, and record a failure when retries are spent."""
        ex = example_of(state)
        attempt = state.get("attempt", 1)
        raw = state.get("choice_raw") or ""
        proposals = state["proposals"]
        if self.style == "marks":
            choice = parse_mark_choice(raw)
        else:
            choice = parse_id_choice(raw, self.config.frame)  # type: ignore[union-attr]
        parsed: dict[str, Any] = {
            "kind": choice.kind,
            "image": choice.image,
            "mark": choice.mark,
            "proposal_id": choice.proposal_id,
        }
        resolved, category, why = self._resolve(choice, proposals, len(ex.images))
        if resolved is not None:
            chosen = resolved.dump()
            parsed.update(chosen)
            return {"choice": chosen, "trace": [step(PARSE, attempt=attempt - 1, parsed=parsed)]}
        parsed["reason"] = why
        if attempt <= self.config.max_retries:
            parsed["next"] = "retry"
            return {"why": why, "trace": [step(PARSE, attempt=attempt - 1, parsed=parsed)]}
        error = error_entry(
            category,
            f"example {ex.id}: choice unusable after {attempt} attempt(s) ({why}): {raw[:200]!r}",
            PARSE,
        )
        return {
            "error": error,
            "trace": [step(PARSE, attempt=attempt - 1, parsed=parsed, error=error)],
        }

    def _resolve(
        self, choice: Choice, proposals: list[dict[str, Any]], n_images: int
    ) -> tuple[ResolvedChoice | None, ErrorCategory, str]:
        """(resolved choice or None, error category if it stays unusable, why)."""
        if choice.kind == "none":
            none = ResolvedChoice(kind="none", image=None, box=None, proposal=None, rule="none")
            return none, ErrorCategory.FORMAT, ""
        if choice.image is not None and not 0 <= choice.image < n_images:
            return (
                None,
                ErrorCategory.INDEX,
                f"image {choice.image + 1} does not exist (1 to {n_images})",
            )
        if choice.kind == "box":
            stated = ResolvedChoice(
                kind="box", image=choice.image, box=choice.box, proposal=None, rule="reasoner-box"
            )
            return stated, ErrorCategory.FORMAT, ""
        if choice.proposal_id is not None:
            found = [p for p in proposals if p["id"] == choice.proposal_id]
            if not found:
                return (
                    None,
                    ErrorCategory.INDEX,
                    f"id {choice.proposal_id} is not listed (1 to {len(proposals)})",
                )
            return ResolvedChoice.of_proposal(found[0], "id"), ErrorCategory.FORMAT, ""
        if choice.kind == "choice" and choice.mark is not None:
            image = choice.image
            if image is None:
                holders = sorted({p["image"] for p in proposals if p["mark"] == choice.mark})
                if len(holders) != 1:
                    return (
                        None,
                        ErrorCategory.FORMAT,
                        f"mark {choice.mark} without an image is ambiguous",
                    )
                image = holders[0]
            marks = on_image(proposals, image)
            if not 1 <= choice.mark <= len(marks):
                return (
                    None,
                    ErrorCategory.INDEX,
                    f"mark {choice.mark} is not on image {image + 1} (it has {len(marks)} mark(s))",
                )
            marked = ResolvedChoice.of_proposal(marks[choice.mark - 1], "mark")
            return marked, ErrorCategory.FORMAT, ""
        if choice.image is not None and self.config.unmarked_choice == "top-proposal":
            marks = on_image(proposals, choice.image)
            if marks:
                best = max(
                    marks,
                    key=lambda p: (
                        p["score"] if p["score"] is not None else float("-inf"),
                        -p["mark"],
                    ),
                )
                return ResolvedChoice.of_proposal(best, "top-proposal"), ErrorCategory.FORMAT, ""
            return None, ErrorCategory.FORMAT, f"image {choice.image + 1} has no proposals"
        return None, ErrorCategory.FORMAT, choice.why or "unreadable choice"

    # ------------------------------------------------------------------ record
    def finalize(self, state: SelectState) -> dict[str, Any]:
        """Write the prediction record (with the whole trace)."""
        ex = example_of(state)
        error = state.get("error")
        choice = ResolvedChoice.read(state.get("choice"))
        box = choice.box if choice else None
        image = choice.image if choice else None
        boxes = None
        status = outcome_status(box, error)
        if error is None and box is None:
            if not state.get("proposals"):
                message = f"no proposals for {self.config.proposal_phrase!r} on any image"
                error = error_entry(ErrorCategory.NO_BOX, message, PROPOSE)
            else:
                error = error_entry(
                    ErrorCategory.NO_BOX, "the reasoner answered that no proposal fits", PARSE
                )
                boxes = []
        return prediction_record(
            ex,
            self.config,
            state,
            image_index=image,
            box=box,
            status=status,
            raw_text=state.get("choice_raw"),
            error=error,
            summary={"choice": choice.dump() if choice else None},
            boxes=boxes,
        )


_FRAME_NOTES = {
    Frame.UNIT: "as fractions of the image width and height, 0 to 1",
    Frame.QWEN1000: "in thousandths of the image width and height, 0 to 999",
    Frame.QWEN3_1000: "in thousandths of the image width and height, 0 to 1000",
}


def _listed(p: dict[str, Any], frame: Frame) -> str:
    coords = Box.model_validate(p["box"]).to_frame(frame)
    text = (
        ", ".join(f"{v:.3f}" for v in coords)
        if frame is Frame.UNIT
        else ", ".join(str(round(v)) for v in coords)
    )
    label = f", {p['label']}" if p.get("label") else ""
    return f"id {p['id']}: image {p['image'] + 1}{label}, [{text}]"


# ---------------------------------------------------------------------------- routers
def after_propose(state: SelectState) -> Literal["draw_marks", "finalize"]:
    """``som``: no proposals (or a failed call) end the example; else the marks are drawn."""
    if state.get("error") or not state.get("proposals"):
        return FINALIZE
    return MARKS


def after_propose_text(state: SelectState) -> Literal["choose", "finalize"]:
    """``perception-prompt``: no proposals (or a failed call) end the example."""
    return CHOOSE if after_propose(state) == MARKS else FINALIZE


def after_choose(state: SelectState) -> Literal["parse_choice", "finalize"]:
    """A failed reasoner call ends the example."""
    return FINALIZE if state.get("error") else PARSE


def after_parse(state: SelectState) -> Literal["choose", "finalize"]:
    """Ask again after an unusable answer while retries are left."""
    if state.get("error") or state.get("choice"):
        return FINALIZE
    return CHOOSE


def build_selector_graph(
    reasoner: Reasoner,
    grounder: Grounder,
    config: SoMConfig | PerceptionConfig,
    *,
    style: Literal["marks", "text"],
    checkpointer: Any = None,
    run_dir: str | Path | None = None,
) -> Any:
    """The compiled ``som`` (``style="marks"``) or ``perception-prompt`` (``"text"``) graph.
    Marked images go to ``config.artifacts_dir``; traces name those inside ``run_dir``
    relative to it (:class:`~cot_ground.graph.artifacts.ArtifactFolder`)."""
    require_role(reasoner, "reasoner")
    require_role(grounder, "grounder")
    variant_dir(
        "som" if style == "marks" else "perception-prompt",
        config.prompt_variant,
        config.prompts_dir,
    )
    artifacts = ArtifactFolder.open(config.artifacts_dir, config.pipeline_name, run_dir)
    nodes = SelectorNodes(reasoner, grounder, config, style, artifacts)
    graph = StateGraph(SelectState)
    graph.add_node(PROPOSE, nodes.propose)
    graph.add_node(CHOOSE, nodes.choose)
    graph.add_node(PARSE, nodes.parse_choice)
    graph.add_node(FINALIZE, nodes.finalize)
    graph.add_edge(START, PROPOSE)
    if style == "marks":
        graph.add_node(MARKS, nodes.draw_marks)
        graph.add_conditional_edges(PROPOSE, after_propose)
        graph.add_conditional_edges(MARKS, after_choose_marks)
    else:
        graph.add_conditional_edges(PROPOSE, after_propose_text)
    graph.add_conditional_edges(CHOOSE, after_choose)
    graph.add_conditional_edges(PARSE, after_parse)
    graph.add_edge(FINALIZE, END)
    compiled = graph.compile(checkpointer=checkpointer, name=config.pipeline_name)
    # propose, draw_marks, (choose + parse_choice) per attempt, finalize, plus one
    return compiled.with_config(recursion_limit=2 * (1 + config.max_retries) + 4)


def after_choose_marks(state: SelectState) -> Literal["choose", "finalize"]:
    """An unreadable image file ends the example before the reasoner is called."""
    return FINALIZE if state.get("error") else CHOOSE


def build_som_graph(
    reasoner: Reasoner,
    grounder: Grounder,
    *,
    config: SoMConfig | None = None,
    checkpointer: Any = None,
    run_dir: str | Path | None = None,
) -> Any:
    """The compiled Set-of-Mark graph (see the module docstring). ``run_dir``: the run folder
    that traces name marked images relative to (None: absolute paths). Raises ``TypeError``
    for an adapter of the wrong role and :class:`~cot_ground.prompts.PromptError` for an
    unknown prompt variant."""
    return build_selector_graph(
        reasoner,
        grounder,
        config or SoMConfig(),
        style="marks",
        checkpointer=checkpointer,
        run_dir=run_dir,
    )
