"""The nodes of the CoT graph. They read the state, call an adapter with one request, and
return a partial update with one trace step. They keep no mutable state of their own, so one
compiled graph can run many examples on many threads (``graph.batch``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cot_ground.boxes import Box
from cot_ground.graph.calls import call_one, error_entry, figure_settings, model_step, step
from cot_ground.graph.config import CoTConfig
from cot_ground.graph.multi_image import ground_all_images
from cot_ground.graph.record import FINALIZE as FINALIZE  # re-exported: the node names live here
from cot_ground.graph.record import prediction_record
from cot_ground.graph.state import CoTState, Grounding, Selection, Step1Answer, example_of
from cot_ground.mentions import READER
from cot_ground.models.base import ChatRequest, Grounder, GroundRequest, Reasoner
from cot_ground.prompts import PromptError, PromptSet, example_variables, load_prompts
from cot_ground.records import ErrorCategory, Example, ParseStatus, text_hash
from cot_ground.tasks import QUESTION_NAMES_TARGET, get_task, reference_box, reference_image

SELECT = "select_and_describe"
PARSE = "parse_selection"
GROUND = "ground"
FALLBACK = "fallback"
# paper mode: the step-1 answer names no readable image, so step 2 gets the first image
# (the Migician paper's appendix, single-image CoT on group_grounding)
FIRST_IMAGE_FALLBACK = "paper-first-image"
# modes whose step-2 image follows the paper's per-task rules (multi-image: the paper's +mCoT)
PAPER_RULE_MODES = ("paper", "multi-image")


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


def _needs_no_choice(kind: str, chosen: int | None, description: str) -> bool:
    """An answer meant to name an image names none, but holds all else step 2 needs: a
    non-empty description for kind ``image_and_description``, nothing for kind ``image``
    (the phrase then comes from the question)."""
    return chosen is None and (
        kind == "image" or (kind == "image_and_description" and bool(description.strip()))
    )


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
        ex = example_of(state)
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
            error = error_entry(ErrorCategory.CONFIG, str(exc), SELECT)
            return {"error": error, "trace": [step(SELECT, attempt=attempt, error=error)]}
        request = ChatRequest(
            images=list(ex.images),
            prompt=rendered.text,
            task=ex.task,
            question=ex.question,
            answer_kind=prompts.fields["answer"],
        )
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
            update["step1_raw"] = result.raw_text
            update["step1"] = Step1Answer.from_result(result).dump()
        if error is not None:
            update["error"] = error.model_dump(mode="json")
        update["trace"] = [
            model_step(
                SELECT,
                self.reasoner,
                result,
                wall_s=wall,
                error=error,
                attempt=attempt,
                prompt=rendered.text,
                prompt_hash=rendered.hash,
                images=list(ex.images),
                parsed=parsed,
                cached=bool(result and result.cached),
            )
        ]
        return update

    # ------------------------------------------------------------------ parse
    def parse_selection(self, state: CoTState) -> dict[str, Any]:
        """Turn the step-1 text into a step-2 plan; ask again, or stop with a recorded error."""
        ex = example_of(state)
        attempt = state.get("attempt", 1)
        prompts = self._prompts(ex.task)
        kind = prompts.fields["answer"]
        raw = state.get("step1_raw") or ""
        answer = Step1Answer.read(state.get("step1")) or Step1Answer()
        status, chosen, description = answer.status, answer.image_index, answer.description
        why = answer.reason or "unreadable selection"
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
        if status is not ParseStatus.OK and self._oracle_without_choice(kind, chosen, description):
            # the oracle gives the image: a description without an image choice is usable
            parsed["reason"] = why
            parsed["image_named"] = False
        elif status is not ParseStatus.OK:
            parsed["reason"] = why
            if attempt <= self.config.max_retries:
                parsed["next"] = "retry"
                return {"trace": [step(PARSE, attempt=attempt - 1, parsed=parsed)]}
            if self._first_image_fallback(ex, kind, chosen, description):
                fallbacks.append(FIRST_IMAGE_FALLBACK)
                parsed["fallback"] = FIRST_IMAGE_FALLBACK
        if status is not ParseStatus.OK and not fallbacks and "image_named" not in parsed:
            return stop(
                error_entry(
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
                error_entry(
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
            return stop(error_entry(ErrorCategory.CONFIG, str(exc), PARSE))
        if not phrase:
            return stop(
                error_entry(
                    ErrorCategory.FORMAT,
                    f"example {ex.id}: empty phrase for step 2 ({prompts.source}, field 'phrase')",
                    PARSE,
                )
            )
        ref_image, ref_box = self._reference(ex, answer, step2_image)
        selection = Selection(
            image_index=chosen,
            description=description,
            phrase=phrase,
            step2_prompt=step2_prompt,
            step2_image=step2_image,
            step2_rule=rule_name,
            reference_index=ref_image,
            reference_box=ref_box,
        ).dump()
        return {
            "selection": selection,
            "fallbacks": [*state.get("fallbacks", []), *fallbacks],
            "trace": [step(PARSE, attempt=attempt - 1, parsed={**parsed, **selection})],
        }

    def _oracle_without_choice(self, kind: str, chosen: int | None, description: str) -> bool:
        """``oracle-image`` mode and an answer meant to name an image that names none readable:
        the oracle gives the image, so step 2 goes on when the answer holds what else it needs
        (its description, when the kind has one; ``_needs_no_choice``)."""
        return self.config.mode == "oracle-image" and _needs_no_choice(kind, chosen, description)

    def _first_image_fallback(
        self, ex: Example, kind: str, chosen: int | None, description: str
    ) -> bool:
        """``paper`` mode, a task whose step-2 image is step 1's choice, and an answer meant to
        name an image names none readable (with the description, when the kind has one)."""
        return (
            self.config.mode in PAPER_RULE_MODES
            and get_task(ex.task).paper_image == "reasoner"
            and _needs_no_choice(kind, chosen, description)
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
            return error_entry(
                ErrorCategory.CONFIG,
                f"mode {mode!r} needs step 1 to name the image, but prompt variant "
                f"{self.config.prompt_variant!r} for task {ex.task!r} answers {kind!r}; use mode "
                "'paper' or 'oracle-image', or a variant whose answer names an image",
                PARSE,
            )
        return chosen, "step1"

    def _reference(
        self, ex: Example, answer: Step1Answer, step2_image: int
    ) -> tuple[int | None, Box | None]:
        """Reference image and box for picture-based grounders: the reasoner's, else the table's."""
        rule = get_task(ex.task)
        image = answer.reference_index
        if image is None or image == step2_image or not 0 <= image < len(ex.images):
            image = reference_image(rule, ex.question, len(ex.images), step2_image)
        box = answer.reference_box or reference_box(rule, ex.question)
        return image, (box if image is not None else None)

    # ------------------------------------------------------------------ step 2
    def ground(self, state: CoTState) -> dict[str, Any]:
        """Step 2: the grounder localizes the phrase in the chosen image (``multi-image`` mode:
        a multi-image grounder sees every image, :mod:`cot_ground.graph.multi_image`)."""
        sel = Selection.model_validate(state["selection"])
        if self.config.mode == "multi-image":
            return ground_all_images(
                example_of(state),
                sel,
                self.grounder,  # an EndToEndGrounder in this mode, checked at build
                self.config.answer_form,
                self.config.prompts_dir,
                GROUND,
            )
        return self._ground_once(
            state, self.grounder, sel.step2_image, sel.reference_index, GROUND, {}
        )

    def fallback(self, state: CoTState) -> dict[str, Any]:
        """Try the next configured fallback policy once."""
        ex = example_of(state)
        sel = Selection.model_validate(state["selection"])
        pos = state.get("fallback_pos", 0)
        policy = self.config.fallbacks[pos]
        base: dict[str, Any] = {"fallback_pos": pos + 1}
        info = {"policy": policy, "position": pos}
        if policy == "mllm-grounder":
            assert self.fallback_grounder is not None  # checked when the graph is built
            image, grounder = sel.step2_image, self.fallback_grounder
            ref = sel.reference_index
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
        ex = example_of(state)
        sel = Selection.model_validate(state["selection"])
        request = GroundRequest(
            image=ex.images[image],
            phrase=sel.phrase,
            task=ex.task,
            prompt=sel.step2_prompt,
            reference_image=ex.images[ref] if ref is not None else None,
            reference_box=sel.reference_box if ref is not None else None,
        )
        result, error, wall = call_one(grounder.ground, request, adapter=grounder.name, node=node)
        grounding = Grounding.from_result(result, image, grounder.name, node)
        update: dict[str, Any] = {"tried_images": [*state.get("tried_images", []), image]}
        if error is not None:
            update["error"] = error.model_dump(mode="json")
        update["ground"] = grounding.dump()
        shown = [request.image] + ([request.reference_image] if request.reference_image else [])
        render = getattr(grounder, "prompt", None)  # adapters that send a text prompt
        prompt = render(request) if callable(render) else request.phrase
        update["trace"] = [
            model_step(
                node,
                grounder,
                result,
                wall_s=wall,
                error=error,
                prompt=prompt,
                prompt_hash=text_hash(prompt),
                images=shown,
                parsed={
                    **info,
                    "grounder": grounder.name,
                    "request": request.model_dump(mode="json"),
                    "status": grounding.status.value,
                    **({"grounder_notes": result.notes} if result and result.notes else {}),
                },
                candidates=grounding.candidates,
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
        ground = Grounding.read(state.get("ground"))
        selection = Selection.read(state.get("selection"))
        error = state.get("error")
        box = ground.candidates[0].box if ground and ground.candidates else None
        if box is not None:
            status = ground.status
            if status is ParseStatus.NO_BOX:  # candidates without a text status
                status = ParseStatus.OK
        elif error is not None and error["category"] == ErrorCategory.FORMAT.value:
            status = ParseStatus.MALFORMED
        elif ground is not None and ground.status is ParseStatus.FRAME_MISMATCH:
            status = ParseStatus.FRAME_MISMATCH  # the grounder's box was in another frame
        else:
            status = ParseStatus.NO_BOX
        if box is None and error is None and ground is not None and selection is not None:
            tried = ", ".join(str(i + 1) for i in state.get("tried_images", []))
            taken = ", ".join(state.get("fallbacks", [])) or "none"
            error = error_entry(
                ErrorCategory.NO_BOX,
                f"no box for {selection.phrase!r} in image(s) {tried} (fallbacks taken: {taken})",
                ground.node,
            )
        if ground is not None:
            image_index = ground.image_index
        else:
            image_index = selection.step2_image if selection else None
        return prediction_record(
            example_of(state),
            self.config,
            state,
            image_index=image_index,
            box=box,
            status=status,
            raw_text=(ground.raw_text if ground else None) or state.get("step1_raw"),
            error=error,
            fallbacks=list(state.get("fallbacks", [])),
            settings=self.recorded_settings(),
        )
