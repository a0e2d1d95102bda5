"""``build_e2e_graph``: one model answers the multi-image question; same record and trace shape.

predict → finalize. The prompt comes from ``prompts/e2e/<variant>/`` like the CoT prompts. The
compiled graph carries its own ``recursion_limit`` (:data:`E2E_RECURSION_LIMIT`). A run may send
its own :class:`E2EConfig` as LangGraph's ``context`` (the graph's ``context_schema``); the
config given to :func:`build_e2e_graph` is the default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from langgraph.graph import END, START, StateGraph

from cot_ground.graph.calls import call_one, context_node, figure_settings, model_step, step
from cot_ground.graph.config import E2EConfig
from cot_ground.graph.record import FINALIZE, prediction_record
from cot_ground.graph.state import E2EState, example_of
from cot_ground.mentions import READER
from cot_ground.models.base import ChatRequest, EndToEndGrounder, EndToEndResult
from cot_ground.prompts import PromptError, example_variables, load_prompts, variant_dir
from cot_ground.records import ErrorCategory, ErrorInfo, ParseStatus

PREDICT = "predict"
E2E_RECURSION_LIMIT = 3
"""Super-steps of one example (predict, finalize) plus one."""


@dataclass(frozen=True)
class E2ENodes:
    """Node functions bound to the model and the config (read-only)."""

    model: EndToEndGrounder
    config: E2EConfig

    def predict(self, state: E2EState) -> dict[str, Any]:
        """The model sees every image and the rendered prompt; its answer is recorded."""
        ex = example_of(state)
        try:
            prompts = load_prompts(
                "e2e", self.config.prompt_variant, ex.task, self.config.prompts_dir
            )
            variables = example_variables(
                ex.question, len(ex.images), prompts.fields["question_remove"]
            )
            rendered = prompts.render("prompt", variables)
        except PromptError as exc:
            error = ErrorInfo(category=ErrorCategory.CONFIG, message=str(exc), node=PREDICT)
            return {"error": error.model_dump(mode="json"), "trace": [step(PREDICT, error=error)]}
        request = ChatRequest(images=list(ex.images), prompt=rendered.text)
        result, error, wall = call_one(
            self.model.predict, request, adapter=self.model.name, node=PREDICT
        )
        parsed: dict[str, Any] = {
            "prompt_files": rendered.source,
            "template_hash": prompts.template_hash,
        }
        if result is not None:
            parsed.update(
                status=result.status.value,
                image_index=result.image_index,
                box=result.box.model_dump() if result.box else None,
            )
        return {
            "prompt_hash": rendered.hash,
            "result": result.model_dump(mode="json") if result else None,
            "error": error.model_dump(mode="json") if error else None,
            "trace": [
                model_step(
                    PREDICT,
                    self.model,
                    result,
                    wall_s=wall,
                    error=error,
                    prompt=rendered.text,
                    prompt_hash=rendered.hash,
                    images=list(ex.images),
                    parsed=parsed,
                )
            ],
        }

    def finalize(self, state: E2EState) -> dict[str, Any]:
        """Write the prediction record (with the whole trace) into ``state["prediction"]``."""
        ex = example_of(state)
        raw = state.get("result")
        result = EndToEndResult.model_validate(raw) if raw else None
        status = result.status if result else ParseStatus.NO_BOX
        if result is not None and result.box is None and status is ParseStatus.OK:
            status = ParseStatus.NO_BOX
        error = state.get("error")
        if error is None and (result is None or result.box is None):
            category = (
                ErrorCategory.FORMAT
                if status in (ParseStatus.MALFORMED, ParseStatus.FRAME_MISMATCH)
                else ErrorCategory.NO_BOX
            )
            raw_text = result.raw_text if result else ""
            message = f"{self.model.name} answered no readable box: {raw_text[:200]!r}"
            error = ErrorInfo(category=category, message=message, node=PREDICT).model_dump(
                mode="json"
            )
        return prediction_record(
            ex,
            self.config,
            state,
            image_index=result.image_index if result else None,
            box=result.box if result else None,
            status=status,
            raw_text=result.raw_text if result else None,
            error=error,
            calibration=(result.settings.get("calibration") if result else None)
            or self.model.settings.get("calibration"),
            settings={"image_reader": READER, "e2e": figure_settings(dict(self.model.settings))},
        )


def _check_variant(nodes: E2ENodes) -> None:
    variant_dir("e2e", nodes.config.prompt_variant, nodes.config.prompts_dir)


def build_e2e_graph(
    model: EndToEndGrounder, *, config: E2EConfig | None = None, checkpointer: Any = None
) -> Any:
    """The compiled end-to-end graph; raises for a wrong adapter role or an unknown variant."""
    config = config or E2EConfig()
    if not isinstance(model, EndToEndGrounder):
        name = getattr(model, "name", type(model).__name__)
        raise TypeError(f"model {name!r} does not implement EndToEndGrounder (needs predict(list))")
    variant_dir("e2e", config.prompt_variant, config.prompts_dir)
    nodes = E2ENodes(model, config)
    graph = StateGraph(E2EState, context_schema=E2EConfig)
    graph.add_node(PREDICT, context_node(nodes, E2ENodes.predict, _check_variant))
    graph.add_node(FINALIZE, context_node(nodes, E2ENodes.finalize, _check_variant))
    graph.add_edge(START, PREDICT)
    graph.add_edge(PREDICT, FINALIZE)
    graph.add_edge(FINALIZE, END)
    compiled = graph.compile(checkpointer=checkpointer, name=config.pipeline_name)
    return compiled.with_config(recursion_limit=E2E_RECURSION_LIMIT)
