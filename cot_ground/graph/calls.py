"""Calling an adapter from a node: one request per example, timed, failures recorded not raised."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from langgraph.runtime import Runtime

from cot_ground.images import ImageLoadError
from cot_ground.records import ErrorCategory, ErrorInfo, TraceStep

Req = TypeVar("Req")
Res = TypeVar("Res")

clock: Callable[[], float] = time.perf_counter
"""Seconds source of every model call's ``wall_s`` (tests replace it with a scripted clock)."""


def call_one(
    method: Callable[[list[Req]], Sequence[Res]], request: Req, *, adapter: str, node: str
) -> tuple[Res | None, ErrorInfo | None, float]:
    """Call a batched adapter ``method`` with a one-element list.

    Returns (result, error, wall seconds). An :class:`ImageLoadError` becomes an ``IMAGE``
    error, an exception with an ``error_category`` attribute (e.g. the step-1 cache's
    ``CacheError``) that category, any other exception a ``MODEL`` error naming the adapter;
    the caller records it.
    """
    start = clock()
    try:
        results = list(method([request]))
    except ImageLoadError as exc:
        return None, _error(ErrorCategory.IMAGE, f"{adapter}: {exc}", node), _since(start)
    except Exception as exc:  # an adapter failure ends this example only
        message = f"{adapter}: {type(exc).__name__}: {exc}"
        category = getattr(exc, "error_category", None) or ErrorCategory.MODEL
        return None, _error(category, message, node), _since(start)
    if len(results) != 1:
        message = f"{adapter}: returned {len(results)} results for 1 request"
        return None, _error(ErrorCategory.MODEL, message, node), _since(start)
    return results[0], None, _since(start)


def _since(start: float) -> float:
    return clock() - start


def _error(category: ErrorCategory, message: str, node: str) -> ErrorInfo:
    return ErrorInfo(category=category, message=message, node=node)


def step(node: str, **fields: Any) -> dict[str, Any]:
    """A :class:`TraceStep` as plain JSON data for the graph state."""
    return TraceStep(node=node, **fields).model_dump(mode="json")


def model_step(
    node: str,
    adapter: Any,
    result: Any,
    *,
    wall_s: float,
    error: ErrorInfo | None,
    **fields: Any,
) -> dict[str, Any]:
    """The trace step of one adapter call (:func:`call_one`): the result's ``raw_text`` (None
    when the call failed), the adapter's ``settings``, the wall time and the error, plus
    ``fields`` (prompt, images, parsed, candidates, ...)."""
    raw = result.raw_text if result is not None else None
    settings = dict(adapter.settings)
    return step(node, raw_output=raw, settings=settings, wall_s=wall_s, error=error, **fields)


def context_node(
    nodes: Any, method: Callable[[Any, Any], dict[str, Any]], check: Callable[[Any], None]
) -> Callable[..., dict[str, Any]]:
    """The graph node running ``method(nodes, state)``, where ``nodes`` is a frozen dataclass
    holding the build ``config``. A run that sends its own config as LangGraph's ``context``
    gets ``nodes`` with that config, checked first by ``check`` (which raises for a config the
    adapters cannot serve)."""

    def node(state: Any, runtime: Runtime[Any]) -> dict[str, Any]:
        context = runtime.context if runtime is not None else None
        if context is None or context == nodes.config:
            return method(nodes, state)
        for_run = replace(nodes, config=context)
        check(for_run)
        return method(for_run, state)

    return node


def error_entry(category: ErrorCategory, message: str, node: str) -> dict[str, Any]:
    """An :class:`ErrorInfo` as plain JSON data for the graph state (``error``)."""
    return _error(category, message, node).model_dump(mode="json")


# adapter settings that change a figure beyond the weights: generation length, box parsing
FIGURE_SETTINGS: tuple[str, ...] = ("max_new_tokens", "do_sample", "unit_floats", "calibration")


def figure_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The entries of an adapter's ``settings`` named in :data:`FIGURE_SETTINGS` (those set)."""
    return {k: settings[k] for k in FIGURE_SETTINGS if settings.get(k) is not None}


def stage_timing(trace: list[dict[str, Any]]) -> dict[str, float]:
    """Seconds per node (summed over repeated executions) and their ``total``."""
    timing: dict[str, float] = {}
    for entry in trace:
        timing[entry["node"]] = timing.get(entry["node"], 0.0) + float(entry.get("wall_s", 0.0))
    timing["total"] = sum(timing.values())
    return timing
