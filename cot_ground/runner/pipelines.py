"""From config to runnable pieces: adapters built once (setup errors up front), graphs per pipeline.

Adapters come from :func:`cot_ground.models.registry.build`, or, when the config's ``adapter``
is an import string ``package.module:factory``, from calling that factory with the
:class:`~cot_ground.models.settings.ModelSettings` (for adapters that live outside cot-ground).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from cot_ground.models import registry
from cot_ground.runner.batching import (
    BatchCoordinator,
    BatchingEndToEnd,
    BatchingGrounder,
    BatchingReasoner,
)
from cot_ground.runner.cache import CachedReasoner, StepCache
from cot_ground.runner.config import (
    CoTPipelineConfig,
    E2EPipelineConfig,
    ExperimentConfig,
    ModelConfig,
    ProposalPipelineConfig,
    graph_config,
    zoom_config,
)

# role slot in a pipeline -> (registry role, method the adapter must have)
_SLOTS = {
    "reasoner": ("reasoner", "reason"),
    "grounder": ("grounder", "ground"),
    "multi_image_grounder": ("e2e", "predict"),
    "fallback_grounder": ("grounder", "ground"),
    "zoom_grounder": ("grounder", "ground"),
    "model": ("e2e", "predict"),
}


class SetupError(RuntimeError):
    """The run cannot start (model folder missing, wrong adapter role...); nothing was run."""


def build_adapter(key: str, model: ModelConfig) -> Any:
    """The adapter of ``models.<key>``; raises :class:`SetupError` naming the key."""
    name = model.adapter
    try:
        if ":" in name:
            module_name, factory_name = name.split(":", 1)
            factory = getattr(importlib.import_module(module_name), factory_name)
            return factory(model.settings())
        return registry.build(name, model.settings())
    except SetupError:
        raise
    except (ImportError, AttributeError) as exc:
        raise SetupError(f"models.{key}: cannot load adapter {name!r}: {exc}") from exc
    except KeyError as exc:
        raise SetupError(f"models.{key}: {exc.args[0] if exc.args else exc}") from exc
    except Exception as exc:
        raise SetupError(f"models.{key} ({name}): {type(exc).__name__}: {exc}") from exc


def role_problems(config: ExperimentConfig) -> list[str]:
    """Every registry adapter that is unknown or in a slot of the wrong role (one line each)."""
    problems: list[str] = []
    for pname, pipe in config.pipelines.items():
        for slot, key in pipe.model_refs().items():
            role = _SLOTS[slot][0]
            model = config.models[key]
            if ":" in model.adapter:
                continue  # an import string: its methods are checked once it is built
            try:
                actual = registry.role_of(model.adapter)
            except KeyError as exc:
                problem = f"models.{key}.adapter: {exc.args[0]}"
                if problem not in problems:
                    problems.append(problem)
                continue
            if actual != role:
                problems.append(
                    f"pipelines.{pname}.{slot}: model {key!r} is adapter"
                    f" {model.adapter!r}, a {actual}, but this slot needs a {role}"
                )
    return problems


def build_adapters(config: ExperimentConfig) -> dict[str, Any]:
    """Every model some pipeline uses, built before any work, with roles checked."""
    problems = role_problems(config)
    if problems:
        raise SetupError("; ".join(problems))
    adapters: dict[str, Any] = {}
    for pname, pipe in config.pipelines.items():
        for slot, key in pipe.model_refs().items():
            method = _SLOTS[slot][1]
            model = config.models[key]
            if key not in adapters:
                adapters[key] = build_adapter(key, model)
            if not callable(getattr(adapters[key], method, None)):
                raise SetupError(
                    f"pipelines.{pname}.{slot}: model {key!r} has no {method}() method"
                )
    return adapters


@dataclass
class PipelineRun:
    """A compiled graph and how to make its input, with the batch coordinator it uses."""

    name: str
    graph: Any
    coordinator: BatchCoordinator
    initial_state: Any

    def input_for(self, example: Any) -> Any:
        """The graph input for ``example``."""
        return self.initial_state(example)


def build_pipeline(
    name: str,
    pipe: CoTPipelineConfig | E2EPipelineConfig | ProposalPipelineConfig,
    adapters: dict[str, Any],
    *,
    batch_size: int,
    cache: StepCache | None,
    artifacts_dir: str | None = None,
) -> PipelineRun:
    """The graph of pipeline ``name`` over batching proxies (and the step-1 cache).
    ``artifacts_dir``: where proposal graphs and zoom save marked images and crops (the run
    folder's ``artifacts/``; a temporary folder when None)."""
    from cot_ground import graph as graph_mod

    coordinator = BatchCoordinator(batch_size)
    cfg = graph_config(name, pipe)
    zoom = zoom_config(name, pipe)
    if isinstance(pipe, ProposalPipelineConfig):
        if cfg.artifacts_dir is None and artifacts_dir is not None:
            cfg = cfg.model_copy(update={"artifacts_dir": artifacts_dir})
        reasoner = BatchingReasoner(adapters[pipe.reasoner], coordinator)
        if cache is not None:
            reasoner = CachedReasoner(reasoner, cache)
        grounder = BatchingGrounder(adapters[pipe.grounder], coordinator)
        builders = {
            "som": graph_mod.build_som_graph,
            "perception-prompt": graph_mod.build_perception_graph,
            "verify": graph_mod.build_verify_graph,
        }
        graph = builders[pipe.kind](reasoner, grounder, config=cfg)
        return PipelineRun(
            name,
            _zoomed(graph, pipe, zoom, adapters, coordinator, name, artifacts_dir),
            coordinator,
            graph_mod.initial_state,
        )
    if isinstance(pipe, CoTPipelineConfig):
        reasoner: Any = BatchingReasoner(adapters[pipe.reasoner], coordinator)
        if cache is not None:
            reasoner = CachedReasoner(reasoner, cache)
        step2 = BatchingEndToEnd if pipe.multi_image else BatchingGrounder
        grounder = step2(adapters[pipe.grounder], coordinator)
        extra: dict[str, Any] = {}
        if pipe.fallback_grounder:
            extra["fallback_grounder"] = BatchingGrounder(
                adapters[pipe.fallback_grounder], coordinator
            )
        graph = graph_mod.build_cot_graph(reasoner, grounder, config=cfg, **extra)
        graph = _zoomed(graph, pipe, zoom, adapters, coordinator, name, artifacts_dir)
        return PipelineRun(name, graph, coordinator, graph_mod.initial_state)
    model = BatchingEndToEnd(adapters[pipe.model], coordinator)
    graph = graph_mod.build_e2e_graph(model, config=cfg)
    return PipelineRun(name, graph, coordinator, graph_mod.initial_state)


def _zoomed(
    graph: Any,
    pipe: Any,
    zoom: Any,
    adapters: dict[str, Any],
    coordinator: BatchCoordinator,
    name: str,
    artifacts_dir: str | None,
) -> Any:
    """``graph`` wrapped in zoom-in refinement when the pipeline has ``zoom``."""
    if zoom is None:
        return graph
    from cot_ground.graph import build_zoom_graph

    key = pipe.zoom_grounder or pipe.grounder
    grounder = BatchingGrounder(adapters[key], coordinator)
    return build_zoom_graph(
        graph, grounder, config=zoom, pipeline=name, artifacts_dir=artifacts_dir
    )
