"""The baseline loop: what the public MIG-Bench evaluation does, with this project's graphs.

The public evaluation takes one task at a time, runs its examples one after another with batch
size 1 (step 1, parse, step 2 for CoT; one call end to end), keeps the results in memory and
writes one JSON file per task when the task is done. This loop does the same, calling the
adapters directly (no batching proxies, no threads) through the same compiled graph the runner
uses, so both produce the same records and the difference in time is the runner's doing.

Two things of the public loop are left out on purpose: the model is loaded once, not once per
task (reloading would only widen the gap), and its prompt and parser defects are not reproduced
(both loops must answer identically for the comparison to mean anything).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cot_ground.graph import assemble, initial_state
from cot_ground.records import Example
from cot_ground.runner.config import CoTPipelineConfig, E2EPipelineConfig, graph_config


@dataclass
class SequentialRun:
    """What one pass of the loop did: records in example order and timings."""

    records: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: float = 0.0
    per_example_s: list[float] = field(default_factory=list)


def build_graph(
    name: str, pipe: CoTPipelineConfig | E2EPipelineConfig, adapters: dict[str, Any]
) -> Any:
    """The compiled graph of pipeline ``name`` over the adapters themselves (no batching);
    ``adapters``: by model key."""
    slots = {slot: adapters[key] for slot, key in pipe.model_refs().items()}
    return assemble.build_graph(pipe.kind, slots, graph_config(name, pipe))


def run_sequential(
    graph: Any, pipeline: str, examples: list[Example], out_dir: str | Path
) -> SequentialRun:
    """Run ``examples`` task by task, one at a time; write ``out_dir/<pipeline>_<task>.json``
    at the end of each task (a JSON list of prediction records)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    by_task: dict[str, list[Example]] = {}
    for ex in examples:
        by_task.setdefault(ex.task, []).append(ex)
    run = SequentialRun()
    done: dict[str, dict[str, Any]] = {}
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for task, items in by_task.items():
        results = []
        for ex in items:
            t0 = time.perf_counter()
            state = graph.invoke(initial_state(ex))
            record = dict(state["prediction"])
            record["pipeline"] = pipeline
            results.append(record)
            run.per_example_s.append(time.perf_counter() - t0)
        (out / f"{pipeline}_{task}.json").write_text(
            json.dumps(results, ensure_ascii=False), encoding="utf-8"
        )
        done.update((r["example_id"], r) for r in results)
    run.wall_s = time.perf_counter() - wall0
    run.cpu_s = time.process_time() - cpu0
    run.records = [done[ex.id] for ex in examples]
    return run
