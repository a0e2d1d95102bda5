"""The nodes of the CoT graph. They read the state, call an adapter with one request, and
return a partial update with one trace step. They keep no mutable state of their own, so one
compiled graph can run many examples on many threads (``graph.batch``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cot_ground.boxes import Box
from cot_ground.graph.calls import call_one, figure_settings, stage_timing, step
from cot_ground.graph.config import CoTConfig
from cot_ground.graph.multi_image import ground_all_images
from cot_ground.graph.state import CoTState
from cot_ground.mentions import READER, read_image_choice
from cot_ground.models.base import ChatRequest, Grounder, GroundRequest, Reasoner
from cot_ground.parsing import answer_text, clean_text, parse_selection
from cot_ground.prompts import PromptError, PromptSet, example_variables, load_prompts
from cot_ground.records import (
    Candidate,
    ErrorCategory,
    ErrorInfo,
    Example,
    ParseStatus,
    Prediction,
    text_hash,
)
from cot_ground.tasks import QUESTION_NAMES_TARGET, get_task, reference_box, reference_image

SELECT = "select_and_describe"
PARSE = "parse_selection"
GROUND = "ground"
FALLBACK = "fallback"
FINALIZE = "finalize"
# paper mode: the step-1 answer names no readable image, so step 2 gets the first image
# (the Migician paper's appendix, single-image CoT on group_grounding)
FIRST_IMAGE_FALLBACK = "paper-first-image"
# modes whose step-2 image follows the paper's per-task rules (multi-image: the paper's +mCoT)
PAPER_RULE_MODES = ("paper", "multi-image")


def _error(category: ErrorCategory, message: str, node: str) -> dict[str, Any]:
    return ErrorInfo(category=category, message=message, node=node).model_dump(mode="json")


def _example(state: CoTState) -> Example:
    return Example.model_validate(state["example"])


def step1_variables(ex: Example, prompts: PromptSet, mode: str) -> dict[str, Any]:
    """Template variables of a step-1 prompt: the example's, plus ``reference_number`` (1-based
    reference image stated by the question, per the task table) and, outside ``agent`` mode,
    ``target_number`` (1-based ground-truth image; never offered to agent prompts)."""
    variables = example_variables(ex.question, len(ex.images), prompts.fields["question_remove"])
    ref = reference_image(get_task(ex.task), ex.question, len(ex.images))
    if ref is not None:
        variables["reference_number"] = ref + 1
    if mode != "agent":
        variables["target_number"] = ex.target_image + 1
    return variables


def step2_texts(prompts: PromptSet, variables: dict[str, Any]) -> tuple[str, str | None]:
    """(phrase, step-2 prompt or None): the ``phrase`` field, trimmed, and the optional ``step2``
    field rendered with it as ``{phrase}``. ``variables`` are step 1's plus ``description`` and
    ``image_number`` (1-based step-2 image)."""
    phrase = prompts.render("phrase", variables).text.strip()
    if "step2" not in prompts.fields:
        return phrase, None
    return phrase, prompts.render("step2", {**variables, "phrase": phrase}).text


@dataclass(frozen=True)
class CoTNodes:
    """Node functions bound to the adapters and the config (all read-only)."""

    reasoner: Reasoner
    grounder: Grounder
    config: CoTConfig
    fallback_grounder: Grounder | None = None

    # ------------------------------------------------------------------ prompts
    def _prompts(self, task: str) -> PromptSet:
        return load_prompts("cot", self.config.prompt_variant, task, self.config.prompts_dir)

    def _variables(self, ex: Example, prompts: PromptSet) -> dict[str, Any]:
        return step1_variables(ex, prompts, self.config.mode)

    # ------------------------------------------------------------------ step 1
    def select_and_describe(self, state: CoTState) -> dict[str, Any]:
        """Step 1: the reasoner sees every image and the step-1 (or re-format) prompt."""
        ex = _example(state)
        attempt = state.get("attempt", 0)
        try:
            prompts = self._prompts(ex.task)
            variables = self._variables(ex, prompts)
            if attempt == 0:
                rendered = prompts.render("step1", variables)
            else:
                previous = state.get("step1_raw") or ""
                rendered = prompts.render("reformat", {**variables, "previous_answer": previous})
        except PromptError as exc:
            error = _error(ErrorCategory.CONFIG, str(exc), SELECT)
            return {"error": error, "trace": [step(SELECT, attempt=attempt, error=error)]}
        request = ChatRequest(images=list(ex.images), prompt=rendered.text)
        result, error, wall = call_one(
            self.reasoner.reason, request, adapter=self.reasoner.name, node=SELECT
        )
        update: dict[str, Any] = {"attempt": attempt + 1}
        if attempt == 0:
            update["prompt_hash"] = rendered.hash
        parsed: dict[str, Any] = {
            "template": rendered.template,
            "prompt_files": rendered.source,
            "template_hash": prompts.template_hash,
        }
        if result is not None:
            ref_box = result.reference_box.model_dump() if result.reference_box else None
            parsed["adapter_parse"] = {
                "image_index": result.image_index,
                "description": result.description,
                "status": result.status.value,
            }
            update["step1_raw"] = result.raw_text
            update["reasoner_reference"] = {"image": result.reference_image, "box": ref_box}
        if error is not None:
            update["error"] = error.model_dump(mode="json")
        update["trace"] = [
            step(
                SELECT,
                attempt=attempt,
                prompt=rendered.text,
                prompt_hash=rendered.hash,
                images=list(ex.images),
                raw_output=result.raw_text if result else None,
                parsed=parsed,
                settings=dict(self.reasoner.settings),
                wall_s=wall,
                cached=bool(result and result.cached),
                error=error,
            )
        ]
        return update

    # ------------------------------------------------------------------ parse
    def parse_selection(self, state: CoTState) -> dict[str, Any]:
        """Turn the step-1 text into a step-2 plan; ask again, or stop with a recorded error."""
        ex = _example(state)
        attempt = state.get("attempt", 1)
        prompts = self._prompts(ex.task)
        kind = prompts.fields["answer"]
        raw = state.get("step1_raw") or ""
        status, chosen, description, why = _read_answer(raw, kind, ex.question)
        parsed: dict[str, Any] = {
            "answer_kind": kind,
            "status": status.value,
            "image_index": chosen,
            "description": description,
        }

        def stop(error: dict[str, Any]) -> dict[str, Any]:
            trace = step(PARSE, attempt=attempt - 1, parsed=parsed, error=error)
            return {"error": error, "trace": [trace]}

        fallbacks: list[str] = []
        if status is not ParseStatus.OK:
            parsed["reason"] = why
            if attempt <= self.config.max_retries:
                parsed["next"] = "retry"
                return {"trace": [step(PARSE, attempt=attempt - 1, parsed=parsed)]}
            if self._first_image_fallback(ex, kind, chosen, description):
                fallbacks.append(FIRST_IMAGE_FALLBACK)
                parsed["fallback"] = FIRST_IMAGE_FALLBACK
        if status is not ParseStatus.OK and not fallbacks:
            return stop(
                _error(
                    ErrorCategory.FORMAT,
                    f"example {ex.id}: step-1 answer unreadable after {attempt} attempt(s) "
                    f"({why}): {raw[:200]!r}",
                    PARSE,
                )
            )

        n = len(ex.images)
        plan = self._step2_image(ex, chosen, kind)
        if isinstance(plan, dict):  # an error
            return stop(plan)
        step2_image, rule_name = plan
        if not 0 <= step2_image < n:
            source = "step 1 named" if rule_name == "step1" else f"rule {rule_name} gives"
            return stop(
                _error(
                    ErrorCategory.INDEX,
                    f"example {ex.id}: {source} image {step2_image + 1}, but it has {n} image(s)",
                    PARSE,
                )
            )
        variables = {
            **self._variables(ex, prompts),
            "description": description,
            "image_number": step2_image + 1,
        }
        try:
            phrase, step2_prompt = step2_texts(prompts, variables)
        except PromptError as exc:
            return stop(_error(ErrorCategory.CONFIG, str(exc), PARSE))
        if not phrase:
            return stop(
                _error(
                    ErrorCategory.FORMAT,
                    f"example {ex.id}: empty phrase for step 2 ({prompts.source}, field 'phrase')",
                    PARSE,
                )
            )
        ref_image, ref_box = self._reference(ex, state, step2_image)
        selection = {
            "image_index": chosen,
            "description": description,
            "phrase": phrase,
            "step2_prompt": step2_prompt,
            "step2_image": step2_image,
            "step2_rule": rule_name,
            "reference_image": ref_image,
            "reference_box": ref_box,
        }
        return {
            "selection": selection,
            "fallbacks": [*state.get("fallbacks", []), *fallbacks],
            "trace": [step(PARSE, attempt=attempt - 1, parsed={**parsed, **selection})],
        }

    def _first_image_fallback(
        self, ex: Example, kind: str, chosen: int | None, description: str
    ) -> bool:
        """``paper`` mode, a task whose step-2 image is step 1's choice, and an answer meant to
        name an image names none readable (with the description, when the kind has one)."""
        return (
            self.config.mode in PAPER_RULE_MODES
            and get_task(ex.task).paper_image == "reasoner"
            and chosen is None
            and (kind == "image" or (kind == "image_and_description" and bool(description)))
        )

    def _step2_image(
        self, ex: Example, chosen: int | None, kind: str
    ) -> tuple[int, str] | dict[str, Any]:
        """(image for step 2, name of the rule that gave it), or an error dict.

        ``paper`` mode uses the image the question designates whenever its words name one
        (``Example.target_rule`` in ``QUESTION_NAMES_TARGET``); the public script's fixed index
        is only the fallback for questions that name none.
        """
        mode = self.config.mode
        if mode == "oracle-image":
            return ex.target_image, "oracle"
        rule = "reasoner" if mode == "agent" else get_task(ex.task).paper_image
        if rule == "target":
            return ex.target_image, "paper:target"
        if isinstance(rule, int):
            if ex.target_rule in QUESTION_NAMES_TARGET:
                return ex.target_image, "paper:question"
            return rule, f"paper:image{rule + 1}"
        if chosen is None and mode in PAPER_RULE_MODES and kind != "description":
            return 0, f"paper:{FIRST_IMAGE_FALLBACK}"
        if chosen is None:
            return _error(
                ErrorCategory.CONFIG,
                f"mode {mode!r} needs step 1 to name the image, but prompt variant "
                f"{self.config.prompt_variant!r} for task {ex.task!r} answers {kind!r}; use mode "
                "'paper' or 'oracle-image', or a variant whose answer names an image",
                PARSE,
            )
        return chosen, "step1"

    def _reference(
        self, ex: Example, state: CoTState, step2_image: int
    ) -> tuple[int | None, dict[str, Any] | None]:
        """Reference image and box for picture-based grounders: the reasoner's, else the table's."""
        offered = state.get("reasoner_reference") or {}
        rule = get_task(ex.task)
        image = offered.get("image")
        if image is None or image == step2_image or not 0 <= image < len(ex.images):
            image = reference_image(rule, ex.question, len(ex.images), step2_image)
        box = offered.get("box")
        if box is None:
            table_box = reference_box(rule, ex.question)
            box = table_box.model_dump() if table_box else None
        return image, (box if image is not None else None)

    # ------------------------------------------------------------------ step 2
    def ground(self, state: CoTState) -> dict[str, Any]:
        """Step 2: the grounder localizes the phrase in the chosen image (``multi-image`` mode:
        a multi-image grounder sees every image, :mod:`cot_ground.graph.multi_image`)."""
        sel = state["selection"]
        if self.config.mode == "multi-image":
            return ground_all_images(
                _example(state),
                sel,
                self.grounder,  # an EndToEndGrounder in this mode, checked at build
                self.config.answer_form,
                self.config.prompts_dir,
                GROUND,
            )
        return self._ground_once(
            state, self.grounder, sel["step2_image"], sel["reference_image"], GROUND, {}
        )

    def fallback(self, state: CoTState) -> dict[str, Any]:
        """Try the next configured fallback policy once."""
        ex = _example(state)
        sel = state["selection"]
        pos = state.get("fallback_pos", 0)
        policy = self.config.fallbacks[pos]
        base: dict[str, Any] = {"fallback_pos": pos + 1}
        info = {"policy": policy, "position": pos}
        if policy == "mllm-grounder":
            assert self.fallback_grounder is not None  # checked when the graph is built
            image, grounder = sel["step2_image"], self.fallback_grounder
            ref = sel["reference_image"]
        else:  # next-image: the lowest-numbered image not tried yet
            tried = state.get("tried_images", [])
            untried = [i for i in range(len(ex.images)) if i not in tried]
            if not untried:
                info["skipped"] = "every image has been tried"
                return {**base, "trace": [step(FALLBACK, parsed=info)]}
            image, grounder = untried[0], self.grounder
            ref = reference_image(get_task(ex.task), ex.question, len(ex.images), image)
        update = self._ground_once(state, grounder, image, ref, FALLBACK, info)
        update.update(base)
        update["fallbacks"] = [*state.get("fallbacks", []), policy]
        return update

    def _ground_once(
        self,
        state: CoTState,
        grounder: Grounder,
        image: int,
        ref: int | None,
        node: str,
        info: dict[str, Any],
    ) -> dict[str, Any]:
        ex = _example(state)
        sel = state["selection"]
        ref_box = sel["reference_box"] if ref is not None else None
        request = GroundRequest(
            image=ex.images[image],
            phrase=sel["phrase"],
            task=ex.task,
            prompt=sel["step2_prompt"],
            reference_image=ex.images[ref] if ref is not None else None,
            reference_box=Box.model_validate(ref_box) if ref_box else None,
        )
        result, error, wall = call_one(grounder.ground, request, adapter=grounder.name, node=node)
        candidates = list(result.candidates) if result else []
        update: dict[str, Any] = {"tried_images": [*state.get("tried_images", []), image]}
        if error is not None:
            update["error"] = error.model_dump(mode="json")
        update["ground"] = {
            "image_index": image,
            "grounder": grounder.name,
            "candidates": [c.model_dump(mode="json") for c in candidates],
            "raw_text": result.raw_text if result else None,
            "status": (result.status if result else ParseStatus.NO_BOX).value,
            "node": node,
        }
        shown = [request.image] + ([request.reference_image] if request.reference_image else [])
        render = getattr(grounder, "prompt", None)  # adapters that send a text prompt
        prompt = render(request) if callable(render) else request.phrase
        update["trace"] = [
            step(
                node,
                prompt=prompt,
                prompt_hash=text_hash(prompt),
                images=shown,
                raw_output=result.raw_text if result else None,
                parsed={
                    **info,
                    "grounder": grounder.name,
                    "request": request.model_dump(mode="json"),
                    "status": update["ground"]["status"],
                    **({"grounder_notes": result.notes} if result and result.notes else {}),
                },
                candidates=candidates,
                settings=dict(grounder.settings),
                wall_s=wall,
                error=error,
            )
        ]
        return update

    # ------------------------------------------------------------------ record
    def recorded_settings(self) -> dict[str, Any]:
        """What can change this pipeline's figures besides the weights (``Prediction.settings``):
        mode, image reader, and per step the generation length and parser options."""
        out: dict[str, Any] = {
            "mode": self.config.mode,
            "image_reader": READER,
            "step1": figure_settings(dict(self.reasoner.settings)),
            "step2": figure_settings(dict(self.grounder.settings)),
        }
        if self.config.mode == "multi-image":
            out["answer_form"] = self.config.answer_form
        if self.fallback_grounder is not None:
            out["fallback_grounder"] = figure_settings(dict(self.fallback_grounder.settings))
        return out

    def finalize(self, state: CoTState) -> dict[str, Any]:
        """Write the prediction record (with the whole trace) into ``state["prediction"]``."""
        ex = _example(state)
        ground = state.get("ground")
        selection = state.get("selection")
        error = state.get("error")
        candidates = [Candidate.model_validate(c) for c in (ground or {}).get("candidates", [])]
        box = candidates[0].box if candidates else None
        if box is not None:
            status = ParseStatus(ground["status"])
            if status is ParseStatus.NO_BOX:  # candidates without a text status
                status = ParseStatus.OK
        elif error is not None and error["category"] == ErrorCategory.FORMAT.value:
            status = ParseStatus.MALFORMED
        elif ground is not None and ground["status"] == ParseStatus.FRAME_MISMATCH.value:
            status = ParseStatus.FRAME_MISMATCH  # the grounder's box was in another frame
        else:
            status = ParseStatus.NO_BOX
        if box is None and error is None and ground is not None:
            tried = ", ".join(str(i + 1) for i in state.get("tried_images", []))
            taken = ", ".join(state.get("fallbacks", [])) or "none"
            error = _error(
                ErrorCategory.NO_BOX,
                f"no box for {selection['phrase']!r} in image(s) {tried} "
                f"(fallbacks taken: {taken})",
                ground["node"],
            )
        if ground is not None:
            image_index = ground["image_index"]
        else:
            image_index = selection["step2_image"] if selection else None
        summary = {"status": status.value, "image_index": image_index}
        trace = [*state.get("trace", []), step(FINALIZE, parsed=summary)]
        prediction = Prediction(
            example_id=ex.id,
            pipeline=self.config.pipeline_name,
            task=ex.task,
            image_index=image_index,
            box=box,
            status=status,
            raw_text=(ground or {}).get("raw_text") or state.get("step1_raw"),
            prompt_variant=self.config.prompt_variant,
            prompt_hash=state.get("prompt_hash"),
            fallbacks=list(state.get("fallbacks", [])),
            settings=self.recorded_settings(),
            timing=stage_timing(trace),
            error=error,
            trace=trace,
        )
        return {"prediction": prediction.model_dump(mode="json"), "trace": trace[-1:]}


_PHRASE_EDGES = re.compile(r"^[\s\"'`]+|[\s\"'`.]+$")


def _read_answer(
    raw: str, kind: str, question: str | None = None
) -> tuple[ParseStatus, int | None, str, str]:
    """(status, 0-based image or None, description, why it failed) for one answer kind.

    The description is cleaned of special tokens (:func:`cot_ground.parsing.clean_text`); the
    raw text stays in the trace. ``question`` lets the image reader skip echoed references.
    """
    if kind == "image_and_description":
        sel = parse_selection(raw, question=question)
        if sel.status is not ParseStatus.OK:
            return sel.status, None, sel.description, sel.error or "unreadable selection"
        if not sel.description:
            return ParseStatus.MALFORMED, sel.image_index, "", "no description"
        return ParseStatus.OK, sel.image_index, sel.description, ""
    body = answer_text(raw)
    if kind == "image":
        index = read_image_choice(clean_text(body), question).index
        if index is None:
            return ParseStatus.NO_BOX, None, "", "the answer names no image"
        return ParseStatus.OK, index, "", ""
    description = _PHRASE_EDGES.sub("", clean_text(body))
    if not description:
        return ParseStatus.MALFORMED, None, "", "empty answer"
    return ParseStatus.OK, None, description, ""
