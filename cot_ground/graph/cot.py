"""``build_cot_graph``: the two-step chain-of-thought baseline as a LangGraph ``StateGraph``.

select_and_describe → parse_selection ─(unreadable, retries left)→ select_and_describe
                                      ─(ok)→ ground ─(no box, policies left)→ fallback ↺
everything ends in finalize, which writes ``state["prediction"]``.

The compiled graph carries a ``recursion_limit`` computed from its config (retries, fallbacks),
so no valid config hits LangGraph's default limit (25 super-steps on older versions).

Run settings: the config given to :func:`build_cot_graph` is the default; a run may send its
own :class:`CoTConfig` as LangGraph's ``context`` (``graph.invoke(state, context=...)``, the
graph's ``context_schema``; LangGraph Studio sends it from its UI). It is checked against the
adapters the graph was built with, like the build config. A context asking for more retries or
fallbacks than the build config needs a larger ``recursion_limit`` in the invoke config.
"""

from __future__ import annotations

from typing import Any, Literal

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from cot_ground.graph.calls import context_node
from cot_ground.graph.config import CoTConfig
from cot_ground.graph.multi_image import check_grounder
from cot_ground.graph.nodes import FALLBACK, FINALIZE, GROUND, PARSE, SELECT, CoTNodes
from cot_ground.graph.state import CoTState
from cot_ground.models.base import EndToEndGrounder, Grounder, Reasoner
from cot_ground.models.registry import require_role
from cot_ground.prompts import variant_dir


def after_step1(state: CoTState) -> Literal["parse_selection", "finalize"]:
    """A failed step-1 call ends the example; otherwise its answer is parsed."""
    return FINALIZE if state.get("error") else PARSE


def after_parse(state: CoTState) -> Literal["select_and_describe", "ground", "finalize"]:
    """Ground a readable answer, ask again after an unreadable one, stop on an error."""
    if state.get("error"):
        return FINALIZE
    return GROUND if state.get("selection") else SELECT


def make_after_ground(n_policies: int) -> Any:
    """Router after ``ground`` and ``fallback``: stop on a box or an error, else next policy
    (``n_policies``: the build config's; a run's context config brings its own)."""

    def after_ground(
        state: CoTState, runtime: Runtime[CoTConfig] | None = None
    ) -> Literal["fallback", "finalize"]:
        ground = state.get("ground") or {}
        if state.get("error") or ground.get("candidates"):
            return FINALIZE
        context = runtime.context if runtime is not None else None
        n = len(context.fallbacks) if context is not None else n_policies
        return FALLBACK if state.get("fallback_pos", 0) < n else FINALIZE

    return after_ground


def cot_recursion_limit(config: CoTConfig) -> int:
    """Most super-steps one example can take, plus one: ``select_and_describe`` and
    ``parse_selection`` per step-1 attempt (``1 + max_retries``), ``ground``, one ``fallback``
    per policy, ``finalize``."""
    return 2 * (1 + config.max_retries) + 1 + len(config.fallbacks) + 1 + 1


def check_nodes(nodes: CoTNodes) -> None:
    """Check the adapters of ``nodes`` against their config: ``TypeError`` for an adapter of the
    wrong role, ``ValueError`` for a fallback policy without its grounder (or answer form
    ``all`` with a grounder of no fixed frame), :class:`~cot_ground.prompts.PromptError` for an
    unknown variant."""
    config = nodes.config
    require_role(nodes.reasoner, "reasoner")
    if config.mode == "multi-image":
        check_grounder(nodes.grounder, config.answer_form)
    else:
        require_role(nodes.grounder, "grounder")
    if nodes.fallback_grounder is not None:
        require_role(nodes.fallback_grounder, "grounder", "fallback_grounder")
    if "mllm-grounder" in config.fallbacks and nodes.fallback_grounder is None:
        raise ValueError(
            "fallback policy 'mllm-grounder' needs build_cot_graph(fallback_grounder=)"
        )
    variant_dir("cot", config.prompt_variant, config.prompts_dir)


def build_cot_graph(
    reasoner: Reasoner,
    grounder: Grounder | EndToEndGrounder,
    *,
    config: CoTConfig | None = None,
    fallback_grounder: Grounder | None = None,
    checkpointer: Any = None,
) -> Any:
    """The compiled CoT graph. ``fallback_grounder`` serves the ``mllm-grounder`` policy. In
    mode ``multi-image`` the ``grounder`` is a multi-image end-to-end adapter (``predict``).

    Raises ``TypeError`` for an adapter of the wrong role, ``ValueError`` for a fallback policy
    without its grounder (or answer form ``all`` with a grounder of no fixed frame), and
    :class:`~cot_ground.prompts.PromptError` for an unknown variant.
    """
    config = config or CoTConfig()
    nodes = CoTNodes(reasoner, grounder, config, fallback_grounder)
    check_nodes(nodes)
    after_ground = make_after_ground(len(config.fallbacks))
    graph = StateGraph(CoTState, context_schema=CoTConfig)
    graph.add_node(SELECT, context_node(nodes, CoTNodes.select_and_describe, check_nodes))
    graph.add_node(PARSE, context_node(nodes, CoTNodes.parse_selection, check_nodes))
    graph.add_node(GROUND, context_node(nodes, CoTNodes.ground, check_nodes))
    graph.add_node(FALLBACK, context_node(nodes, CoTNodes.fallback, check_nodes))
    graph.add_node(FINALIZE, context_node(nodes, CoTNodes.finalize, check_nodes))
    graph.add_edge(START, SELECT)
    graph.add_conditional_edges(SELECT, after_step1)
    graph.add_conditional_edges(PARSE, after_parse)
    graph.add_conditional_edges(GROUND, after_ground)
    graph.add_conditional_edges(FALLBACK, after_ground)
    graph.add_edge(FINALIZE, END)
    compiled = graph.compile(checkpointer=checkpointer, name=config.pipeline_name)
    return compiled.with_config(recursion_limit=cot_recursion_limit(config))
