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
    graph_config,
)

# role slot in a pipeline -> (registry role, method the adapter must have)
_SLOTS = {
    "reasoner": ("reasoner", "reason"),
    "grounder": ("grounder", "ground"),
    "fallback_grounder": ("grounder", "ground"),
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


def build_adapters(config: ExperimentConfig) -> dict[str, Any]:
    """Every model some pipeline uses, built before any work, with roles checked."""
    adapters: dict[str, Any] = {}
    for pname, pipe in config.pipelines.items():
        for slot, key in pipe.model_refs().items():
            role, method = _SLOTS[slot]
            model = config.models[key]
            if ":" not in model.adapter:
                try:
                    actual = registry.role_of(model.adapter)
                except KeyError as exc:
                    raise SetupError(f"models.{key}.adapter: {exc.args[0]}") from None
                if actual != role:
                    raise SetupError(
                        f"pipelines.{pname}.{slot}: model {key!r} is adapter"
                        f" {model.adapter!r}, a {actual}, but this slot needs a {role}"
                    )
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
    pipe: CoTPipelineConfig | E2EPipelineConfig,
    adapters: dict[str, Any],
    *,
    batch_size: int,
    cache: StepCache | None,
) -> PipelineRun:
    """The graph of pipeline ``name`` over batching proxies (and the step-1 cache)."""
    from cot_ground import graph as graph_mod

    coordinator = BatchCoordinator(batch_size)
    cfg = graph_config(name, pipe)
    if isinstance(pipe, CoTPipelineConfig):
        reasoner: Any = BatchingReasoner(adapters[pipe.reasoner], coordinator)
        if cache is not None:
            reasoner = CachedReasoner(reasoner, cache)
        grounder = BatchingGrounder(adapters[pipe.grounder], coordinator)
        extra: dict[str, Any] = {}
        if pipe.fallback_grounder:
            extra["fallback_grounder"] = BatchingGrounder(
                adapters[pipe.fallback_grounder], coordinator
            )
        graph = graph_mod.build_cot_graph(reasoner, grounder, config=cfg, **extra)
        return PipelineRun(name, graph, coordinator, graph_mod.initial_state)
    model = BatchingEndToEnd(adapters[pipe.model], coordinator)
    graph = graph_mod.build_e2e_graph(model, config=cfg)
    return PipelineRun(name, graph, coordinator, graph_mod.initial_state)
