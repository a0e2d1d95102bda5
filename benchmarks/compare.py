"""One workload two ways, side by side: the sequential batch-1 loop and the runner with batching.

Both run the same examples through the same compiled graph and the same adapter objects; the
figures of one call are comparable with each other only (same process, same machine state).
Every runner pass writes a fresh run folder (``examples.jsonl``, ``run.json`` and one fsynced
JSONL line per example), exactly as ``cot-ground run`` does.
"""

from __future__ import annotations

import itertools
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.measure import ImageTally, Peak, Stopwatch, median, peak_memory
from benchmarks.sequential import build_graph, run_sequential
from cot_ground.records import Example, Prediction
from cot_ground.runner.config import ExperimentConfig, parse_config
from cot_ground.runner.pipelines import build_adapters
from cot_ground.runner.resume import resolve_config
from cot_ground.runner.run import run_experiment
from cot_ground.runner.store import JsonlAppender, RunFolder
from cot_ground.scoring import ScoreRow, score_table


class Clock:
    """A silent runner progress reporter that records the CPU seconds of each pipeline loop
    (from ``start`` to ``finish``, all threads of the process)."""

    def __init__(self) -> None:
        self.cpu_s: dict[str, float] = {}

    def start(self, pipeline: str, total: int, done: int) -> None:
        """Note the CPU clock."""
        self.cpu_s[pipeline] = time.process_time()

    def advance(self, pipeline: str, failed: bool = False) -> None:
        """Nothing (no output inside the timed loop)."""

    def finish(self, pipeline: str) -> None:
        """CPU seconds since ``start``."""
        self.cpu_s[pipeline] = time.process_time() - self.cpu_s[pipeline]

    def close(self) -> None:
        """Nothing."""


@dataclass
class Setup:
    """A resolved config, its examples and its adapters (built once, shared by both loops)."""

    config: ExperimentConfig
    examples: list[Example]
    adapters: dict[str, Any]
    work_dir: Path


def prepare(config: dict[str, Any], work_dir: str | Path) -> Setup:
    """Validate ``config``, load its benchmark and build every adapter it names."""
    resolved = resolve_config(parse_config(config, "<benchmark config>"))
    examples = resolved.benchmark.load().examples
    return Setup(resolved, list(examples), build_adapters(resolved), Path(work_dir))


def clear_adapter_caches(adapters: dict[str, Any]) -> None:
    """Empty the adapters' own caches (GroundingDINO's pre-processed images), so every timed
    pass starts cold, like the image cache (:class:`~benchmarks.measure.ImageTally`)."""
    for adapter in adapters.values():
        clear = getattr(adapter, "clear_cache", None)
        if callable(clear):
            clear()


def outcome(record: dict[str, Any]) -> tuple[Any, ...]:
    """What must agree between two runs of one example: image, box (1e-4), status, error kind
    and the raw text of every model call in the trace."""
    box = record.get("box")
    rounded = tuple(round(box[k], 4) for k in ("x1", "y1", "x2", "y2")) if box else None
    error = (record.get("error") or {}).get("category")
    raw = tuple(step.get("raw_output") for step in record.get("trace") or [])
    return (record.get("image_index"), rounded, record.get("status"), error, raw)


def identical(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> tuple[int, int]:
    """(examples whose outcome agrees, examples compared), joined on example id."""
    by_id = {r["example_id"]: outcome(r) for r in b}
    same = sum(1 for r in a if by_id.get(r["example_id"]) == outcome(r))
    return same, len(a)


_BROKEN = ("image_error", "model_error", "cache_error", "config_error")


def _broken(record: dict[str, Any]) -> bool:
    """The example could not run (image, model, cache or config error) — a failure of the
    setup, unlike an unreadable or empty answer, which is a result of the model."""
    return (record.get("error") or {}).get("category") in _BROKEN


def _stages_ms(records: list[dict[str, Any]]) -> dict[str, float]:
    nodes = sorted({k for r in records for k in (r.get("timing") or {})})
    return {
        n: round(1000 * median([(r.get("timing") or {}).get(n, 0.0) for r in records]), 3)
        for n in nodes
    }


def _images(counts: ImageTally, examples: list[Example], passes: int) -> dict[str, Any]:
    distinct = len({p for ex in examples for p in ex.images})
    return {
        "decodes": counts.misses,
        "reuses": counts.hits,
        "distinct_files": distinct * passes,
        "decodes_per_distinct_file": round(counts.misses / max(1, distinct * passes), 3),
    }


def _row(
    setup: Setup,
    pipeline: str,
    mode: str,
    batch: int,
    walls: list[float],
    cpus: list[float],
    records: list[dict[str, Any]],
    peak: Peak,
    counts: ImageTally,
) -> dict[str, Any]:
    """The figures both loops report for ``len(walls)`` timed passes over the examples."""
    n = len(setup.examples)
    wall = median(walls)
    return {
        "pipeline": pipeline,
        "mode": mode,
        "batch_size": batch,
        "examples": n,
        "repeats": len(walls),
        "wall_s": [round(w, 4) for w in walls],
        "wall_s_median": round(wall, 4),
        "ex_per_s": round(n / wall, 3) if wall else None,
        "ms_per_example": round(1000 * wall / n, 3) if n else None,
        "cpu_s_median": round(median(cpus), 4),
        "cpu_ms_per_example": round(1000 * median(cpus) / n, 3) if n else None,
        "stages_ms": _stages_ms(records),
        "failed": sum(1 for r in records if _broken(r)),
        "peak_host_mib": round(peak.host_mib, 1),
        "peak_gpu_mib": round(peak.gpu_mib, 1) if peak.gpu_mib is not None else None,
        "images": _images(counts, setup.examples, len(walls)),
    }


def measure_sequential(
    setup: Setup, pipeline: str, repeats: int, warmup: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The sequential loop ``repeats`` times after ``warmup`` short passes; (row, records)."""
    pipe = setup.config.pipelines[pipeline]
    graph = build_graph(pipeline, pipe, setup.adapters)
    out = Path(tempfile.mkdtemp(prefix="seq-", dir=setup.work_dir))
    for _ in range(warmup):
        run_sequential(graph, pipeline, setup.examples[:2], out)
    walls, cpus, records = [], [], []
    counts = ImageTally()
    with peak_memory() as peak:
        for _ in range(repeats):
            clear_adapter_caches(setup.adapters)
            with counts.one_pass():
                run = run_sequential(graph, pipeline, setup.examples, out)
            walls.append(run.wall_s)
            cpus.append(run.cpu_s)
            records = run.records
    row = _row(setup, pipeline, "sequential", 1, walls, cpus, records, peak, counts)
    return row, records


def measure_runner(
    setup: Setup, pipeline: str, batch_size: int, repeats: int, warmup: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``run_experiment`` on ``pipeline`` alone, fresh run folder per pass; (row, records).

    Runs the first ``len(setup.examples)`` examples of the config's benchmark. The timed part
    is the pipeline loop (``PipelineSummary.wall_s``); ``setup_s`` is the rest of the call
    (benchmark load, manifest, ``examples.jsonl``)."""
    config = setup.config.model_copy(
        update={"pipelines": {pipeline: setup.config.pipelines[pipeline]}}
    )
    n = len(setup.examples)
    limit = n

    def once(limit: int | None) -> tuple[Any, Path, float, float]:
        out = Path(tempfile.mkdtemp(prefix=f"run-b{batch_size}-", dir=setup.work_dir))
        clock = Clock()
        t0 = time.perf_counter()
        summary = run_experiment(
            config,
            batch_size=batch_size,
            out=out,
            limit=limit,
            use_cache=False,
            progress=clock,
        )
        return summary, out, time.perf_counter() - t0, clock.cpu_s[pipeline]

    for _ in range(warmup):
        once(min(n, 2 * batch_size))
    walls, cpus, setups, batches = [], [], [], {}
    out = setup.work_dir
    counts = ImageTally()
    with peak_memory() as peak:
        for _ in range(repeats):
            clear_adapter_caches(setup.adapters)
            with counts.one_pass():
                summary, out, total, cpu = once(limit)
            ps = summary.pipelines[pipeline]
            walls.append(ps.wall_s)
            cpus.append(cpu)
            setups.append(total - ps.wall_s)
            batches = {
                q: {"calls": len(s), "mean": round(sum(s) / len(s), 2), "max": max(s)}
                for q, s in ps.batch_sizes.items()
                if s
            }
    records = RunFolder(out).read_predictions(pipeline)
    row = _row(setup, pipeline, "runner", batch_size, walls, cpus, records, peak, counts)
    row.update({"setup_s_median": round(median(setups), 4), "batches": batches})
    return row, records


def write_and_score_ms(setup: Setup, records: list[dict[str, Any]]) -> dict[str, float]:
    """Per-example cost of the two steps after the graph: the fsynced JSONL append of the
    record and its scoring (record → Prediction → ScoreRow → ``score_table``)."""
    folder = Path(tempfile.mkdtemp(prefix="write-", dir=setup.work_dir))
    n = max(1, len(records))
    with Stopwatch() as write, JsonlAppender(folder / "p.jsonl", "example_id") as store:
        for r in records:
            store.append(r)
    examples = {ex.id: ex for ex in setup.examples}
    with Stopwatch() as score:
        rows = [
            ScoreRow.from_prediction(p, examples[p.example_id])
            for p in (Prediction.model_validate(r) for r in records)
        ]
        score_table(rows)
    return {"write": round(1000 * write.wall / n, 3), "score": round(1000 * score.wall / n, 3)}


def compare(
    setup: Setup,
    pipeline: str,
    batch_sizes: list[int],
    repeats: int,
    warmup: int,
) -> list[dict[str, Any]]:
    """Rows for the sequential loop and the runner at each batch size, with the speed ratio and
    the count of examples whose outcome matches the sequential loop's."""
    seq_row, seq_records = measure_sequential(setup, pipeline, repeats, warmup)
    seq_row["write_score_ms"] = write_and_score_ms(setup, seq_records)
    rows = [seq_row]
    for b in batch_sizes:
        row, records = measure_runner(setup, pipeline, b, repeats, warmup)
        same, total = identical(seq_records, records)
        row["identical_to_sequential"] = f"{same}/{total}"
        if seq_row["ex_per_s"] and row["ex_per_s"]:
            row["speedup_vs_sequential"] = round(row["ex_per_s"] / seq_row["ex_per_s"], 3)
        rows.append(row)
    return rows


def dump(data: Any, path: str | Path | None) -> None:
    """Write ``data`` as indented JSON to ``path`` (nothing when None)."""
    if path is not None:
        Path(path).write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")


def plateau(rows: list[dict[str, Any]], gain: float = 0.10) -> int | None:
    """The batch size after which the runner's ex/s grows by less than ``gain`` (None when it
    keeps growing up to the largest size measured)."""
    runner = sorted((r for r in rows if r["mode"] == "runner"), key=lambda r: r["batch_size"])
    for a, b in itertools.pairwise(runner):
        if b["ex_per_s"] < (1 + gain) * a["ex_per_s"]:
            return int(a["batch_size"])
    return None
