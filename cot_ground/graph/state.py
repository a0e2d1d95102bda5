"""Graph state: plain JSON data only (paths, strings, numbers, ``model_dump`` dicts).

Any LangGraph checkpointer can therefore save it. Nodes return partial updates; ``trace`` is
appended to (one :class:`~cot_ground.records.TraceStep` dict per node execution), every other
key is overwritten. A ``trace`` of ``None`` empties it: the input of a new invocation
(:func:`cot_ground.graph.initial_state`) sends it, so a checkpointer thread that already ran an
example starts from a fresh state.
"""

from __future__ import annotations

import functools
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict
from typing_extensions import Self, TypedDict

from cot_ground.boxes import Box
from cot_ground.models.base import GroundResult, ReasonerResult
from cot_ground.records import Candidate, Example, ParseStatus


def extend_trace(
    old: list[dict[str, Any]], new: list[dict[str, Any]] | None
) -> list[dict[str, Any]]:
    """Reducer of ``trace``: ``old + new``; ``new=None`` clears it (a new invocation)."""
    return [] if new is None else old + new


def example_of(state: Any) -> Example:
    """The state's ``example`` as an :class:`Example`, validated once per distinct example
    (the nodes of one run share the validated object; do not change it)."""
    return _example(json.dumps(state["example"], sort_keys=True))


@functools.lru_cache(maxsize=4096)
def _example(text: str) -> Example:
    return Example.model_validate_json(text)


class StateValue(BaseModel):
    """A typed value the state keeps as plain JSON: ``dump()`` to store, ``read()`` to load."""

    model_config = ConfigDict(extra="forbid")

    def dump(self) -> dict[str, Any]:
        """Plain JSON data for the state (checkpointer-safe)."""
        return self.model_dump(mode="json")

    @classmethod
    def read(cls, value: dict[str, Any] | None) -> Self | None:
        """The value stored by :meth:`dump`, or None when there is none."""
        return None if value is None else cls.model_validate(value)


class Step1Answer(StateValue):
    """The latest step-1 answer as the reasoner adapter read it (once, ``parse_step1``)."""

    image_index: int | None = None
    """0-based image the answer names; it may lie beyond the example's images (the graph
    reports that as an index error, or ignores it where a rule fixes the image)."""
    description: str = ""
    """Referring description of the target (special tokens removed); "" when none."""
    status: ParseStatus = ParseStatus.MALFORMED
    """``ok`` when the answer gives what its prompt's answer kind asks for."""
    reason: str | None = None
    """Why the answer is unreadable (shown in the trace and the error), when not ``ok``."""
    reference_index: int | None = None
    """0-based image whose content step 2 should match, offered by the reasoner (classical)."""
    reference_box: Box | None = None
    """Box on the reference image, offered by the reasoner."""

    @classmethod
    def from_result(cls, result: ReasonerResult) -> Step1Answer:
        """The answer of ``result``; an image beyond the request's images is kept as the
        choice (the graph checks it against the example itself)."""
        beyond = result.out_of_range_index
        return cls(
            image_index=beyond if beyond is not None else result.image_index,
            description=result.description or "",
            status=ParseStatus.OK if beyond is not None else result.status,
            reason=None if beyond is not None else result.reason,
            reference_index=result.reference_index,
            reference_box=result.reference_box,
        )


class Selection(StateValue):
    """What step 2 will do, decided by ``parse_selection``."""

    image_index: int | None
    """Step 1's choice (0-based), None when the answer named no image."""
    description: str
    """Step 1's description."""
    phrase: str
    """The referring expression step 2 grounds (the prompt set's ``phrase`` field)."""
    step2_prompt: str | None
    """The variant's rendered ``step2`` text, or None (the grounder's own template)."""
    step2_image: int
    """0-based image step 2 grounds in."""
    step2_rule: str
    """The rule that gave ``step2_image`` (``step1``, ``oracle``, ``paper:…``)."""
    reference_index: int | None
    """0-based reference image for picture-based grounders, or None."""
    reference_box: Box | None
    """Box on the reference image, or None."""


class Grounding(StateValue):
    """The latest step-2 grounding (``ground`` or a ``fallback``)."""

    image_index: int | None
    """0-based image the boxes are on."""
    grounder: str
    """Adapter name of the grounder."""
    candidates: list[Candidate]
    """Ranked boxes, best first (unit frame)."""
    raw_text: str | None
    """The grounder's raw answer, when it answers in text."""
    status: ParseStatus
    """The grounder's parse status (``no_box`` when the call failed)."""
    node: str
    """The node that grounded (``ground`` or ``fallback``)."""

    @classmethod
    def from_result(
        cls, result: GroundResult | None, image: int, grounder: str, node: str
    ) -> Grounding:
        """The grounding of one grounder call on ``image`` (``result`` None: the call failed)."""
        return cls(
            image_index=image,
            grounder=grounder,
            candidates=list(result.candidates) if result else [],
            raw_text=result.raw_text if result else None,
            status=result.status if result else ParseStatus.NO_BOX,
            node=node,
        )


class ResolvedChoice(StateValue):
    """What a Set-of-Mark or perception-prompt answer resolved to (``parse_choice``)."""

    kind: Literal["none", "box", "proposal"]
    """``proposal`` (a listed proposal), ``box`` (a box the reasoner stated) or ``none``."""
    image: int | None
    """0-based image of the box, None for ``none``."""
    box: Box | None
    """The chosen box (unit frame), None for ``none``."""
    proposal: dict[str, Any] | None
    """The chosen proposal dict (:mod:`cot_ground.graph.proposals`), for ``proposal``."""
    rule: str
    """How the answer was read: ``mark``, ``id``, ``top-proposal``, ``reasoner-box``,
    ``none``."""

    @classmethod
    def of_proposal(cls, proposal: dict[str, Any], rule: str) -> ResolvedChoice:
        """The choice of ``proposal`` (read by ``rule``)."""
        return cls(
            kind="proposal",
            image=proposal["image"],
            box=proposal["box"],
            proposal=proposal,
            rule=rule,
        )


class CoTState(TypedDict, total=False):
    """State of the two-step CoT graph for one example."""

    example: dict[str, Any]
    """The example, ``Example.model_dump(mode="json")`` (images are paths)."""
    attempt: int
    """Step-1 calls made so far (the first prompt, then re-format prompts)."""
    step1_raw: str | None
    """Raw text of the latest step-1 answer."""
    step1: dict[str, Any] | None
    """The latest step-1 answer as the adapter read it: a :class:`Step1Answer` dump."""
    prompt_hash: str | None
    """Hash of the first step-1 prompt sent (the one written into the prediction)."""
    selection: dict[str, Any] | None
    """What step 2 will do: a :class:`Selection` dump."""
    ground: dict[str, Any] | None
    """Latest grounding: a :class:`Grounding` dump."""
    tried_images: list[int]
    """Images step 2 has grounded in, in order."""
    fallback_pos: int
    """Position of the next fallback policy to try in the config's list."""
    fallbacks: list[str]
    """Fallback policies taken so far."""
    error: dict[str, Any] | None
    """``ErrorInfo`` dict that ends the example early, or None."""
    trace: Annotated[list[dict[str, Any]], extend_trace]
    """One ``TraceStep`` dict per node execution, in order."""
    prediction: dict[str, Any] | None
    """The final ``Prediction.model_dump(mode="json")`` written by ``finalize``."""


class E2EState(TypedDict, total=False):
    """State of the end-to-end graph for one example."""

    example: dict[str, Any]
    """The example, ``Example.model_dump(mode="json")``."""
    prompt_hash: str | None
    """Hash of the prompt sent."""
    result: dict[str, Any] | None
    """The model's ``EndToEndResult`` dict."""
    error: dict[str, Any] | None
    """``ErrorInfo`` dict when the model call failed, or None."""
    trace: Annotated[list[dict[str, Any]], extend_trace]
    """One ``TraceStep`` dict per node execution, in order."""
    prediction: dict[str, Any] | None
    """The final ``Prediction.model_dump(mode="json")`` written by ``finalize``."""
