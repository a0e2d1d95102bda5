"""From config to runnable pieces: adapters built once (setup errors up front), graphs per pipeline.

Adapters come from :func:`cot_ground.models.registry.resolve`: a registry name, or an import
string ``package.module:factory`` (for adapters that live outside cot-ground) called with the
:class:`~cot_ground.models.settings.ModelSettings`. Graphs come from
:func:`cot_ground.graph.assemble.build_graph`, over batching proxies (and the step-1 cache).
"""

from __future__ import annotations

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
    adapter_problems,
    graph_config,
    zoom_config,
)

# the batching proxy of each role
_PROXIES = {"reasoner": BatchingReasoner, "grounder": BatchingGrounder, "e2e": BatchingEndToEnd}


class SetupError(RuntimeError):
    """The run cannot start (model folder missing, wrong adapter role...); nothing was run."""


def build_adapter(key: str, model: ModelConfig) -> Any:
    """The adapter of ``models.<key>``; raises :class:`SetupError` naming the key."""
    name = model.adapter
    try:
        return registry.resolve(name, model.settings())
    except SetupError:
        raise
    except registry.AdapterError as exc:
        raise SetupError(f"models.{key}: {exc}") from exc
    except (ImportError, AttributeError) as exc:
        raise SetupError(f"models.{key}: cannot load adapter {name!r}: {exc}") from exc
    except KeyError as exc:
        raise SetupError(f"models.{key}: {exc.args[0] if exc.args else exc}") from exc
    except Exception as exc:
        raise SetupError(f"models.{key} ({name}): {type(exc).__name__}: {exc}") from exc


def role_problems(config: ExperimentConfig) -> list[str]:
    """Every registry adapter that is unknown or in a slot of the wrong role (one line each;
    :func:`~cot_ground.runner.config.adapter_problems`)."""
    return adapter_problems(config.pipelines, {k: m.adapter for k, m in config.models.items()})


def build_adapters(config: ExperimentConfig) -> dict[str, Any]:
    """Every model some pipeline uses, built before any work, with roles checked."""
    problems = role_problems(config)
    if problems:
        raise SetupError("; ".join(problems))
    adapters: dict[str, Any] = {}
    for pname, pipe in config.pipelines.items():
        for slot, key in pipe.model_refs().items():
            if key not in adapters:
                adapters[key] = build_adapter(key, config.models[key])
            method = registry.missing_method(adapters[key], registry.SLOTS[slot])
            if method:
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
    """The graph of pipeline ``name`` over batching proxies (and the step-1 cache), one proxy
    per slot. ``adapters``: by model key (:func:`build_adapters`). ``artifacts_dir``: where
    proposal graphs and zoom save marked images and crops (the run folder's ``artifacts/``; a
    temporary folder when None)."""
    from cot_ground.graph.assemble import build_graph
    from cot_ground.graph.run import initial_state

    coordinator = BatchCoordinator(batch_size)
    cfg = graph_config(name, pipe)
    zoom = zoom_config(name, pipe)
    refs = pipe.model_refs()
    if zoom is not None:
        refs.setdefault("zoom_grounder", pipe.grounder)
    proxies: dict[str, Any] = {}
    for slot, key in refs.items():
        proxies[slot] = _PROXIES[registry.SLOTS[slot]](adapters[key], coordinator)
        if slot == "reasoner" and cache is not None:
            proxies[slot] = CachedReasoner(proxies[slot], cache)
    graph = build_graph(pipe.kind, proxies, cfg, zoom=zoom, artifacts_dir=artifacts_dir)
    return PipelineRun(name, graph, coordinator, initial_state)
