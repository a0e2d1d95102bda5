"""Running an experiment: every pipeline over the same examples, into one resumable run folder.

Order of work: resolve the config with the command-line overrides, load the benchmark, take the
shard, build every adapter (any setup failure stops here, before any example runs), check that
an existing run folder was made by the same pipelines, then run each pipeline over the examples
it has not finished yet. Up to ``batch_size`` examples run at once, each in its own thread with
its own graph invocation; their model calls are batched (:mod:`cot_ground.runner.batching`).
Each finished example is appended to ``predictions/PIPELINE.jsonl`` at once (flushed per line).

Ctrl-C stops taking new examples, lets the ones in flight finish and be written, and returns;
a second Ctrl-C leaves at once (lines already written are safe either way).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cot_ground.images import IMAGE_CACHE, ImageLoadError
from cot_ground.records import ErrorCategory, ErrorInfo, Example, Prediction
from cot_ground.runner.cache import StepCache
from cot_ground.runner.config import ExperimentConfig, graph_config
from cot_ground.runner.manifest import build_manifest, now_iso
from cot_ground.runner.pipelines import (
    PipelineRun,
    SetupError,
    build_adapters,
    build_pipeline,
)
from cot_ground.runner.progress import LogProgress, Progress
from cot_ground.runner.shard import select_shard
from cot_ground.runner.store import JsonlAppender, RunFolder, RunFolderError

if TYPE_CHECKING:
    from cot_ground.bench import Benchmark

log = logging.getLogger("cot_ground.run")


@dataclass
class PipelineSummary:
    """What one pipeline did in this session."""

    total: int
    done_before: int
    written: int = 0
    failed: int = 0
    batch_sizes: dict[str, list[int]] = field(default_factory=dict)
    wall_s: float = 0.0


@dataclass
class RunSummary:
    """What a call of :func:`run_experiment` did."""

    out: Path
    n_examples: int
    pipelines: dict[str, PipelineSummary]
    interrupted: bool = False
    cache_hits: int = 0
    cache_misses: int = 0


def resolve_config(
    config: ExperimentConfig,
    *,
    limit: int | None = None,
    tasks: list[str] | None = None,
    batch_size: int | None = None,
    out: str | Path | None = None,
) -> ExperimentConfig:
    """``config`` with the command-line overrides applied and paths made absolute."""
    bench = config.benchmark.model_copy(
        update={
            "file": str(Path(config.benchmark.file).resolve()),
            "root": str(Path(config.benchmark.root).resolve()) if config.benchmark.root else None,
            **({"limit": limit} if limit is not None else {}),
            **({"tasks": list(tasks)} if tasks else {}),
        }
    )
    output = Path(out) if out is not None else config.output_dir()
    cache = config.cache.model_copy(update={"dir": str(Path(config.cache.dir).resolve())})
    return config.model_copy(
        update={
            "benchmark": bench,
            "batch_size": batch_size or config.batch_size,
            "output": str(output.resolve()),
            "cache": cache,
        }
    )


def _pipeline_definition(config: dict[str, Any], name: str) -> dict[str, Any]:
    """A pipeline and the models it uses: what must not change between sessions of a run."""
    pipe = config["pipelines"][name]
    refs = [pipe.get(k) for k in ("reasoner", "grounder", "fallback_grounder", "model")]
    return {"pipeline": pipe, "models": {k: config["models"][k] for k in refs if k}}


def _check_compatible(old: dict[str, Any], new: dict[str, Any], folder: Path) -> None:
    old_sha = (old.get("benchmark") or {}).get("sha256")
    if old_sha != new["benchmark"]["sha256"]:
        raise RunFolderError(
            f"run folder {folder} holds results on another benchmark file (sha256"
            f" {str(old_sha)[:12]}... vs {new['benchmark']['sha256'][:12]}...);"
            " choose another --out"
        )
    if old.get("shard") != new.get("shard"):
        raise RunFolderError(
            f"run folder {folder} was run as shard {old.get('shard')}, not {new.get('shard')};"
            " choose another --out"
        )
    for name in set(old["config"]["pipelines"]) & set(new["config"]["pipelines"]):
        if _pipeline_definition(old["config"], name) != _pipeline_definition(new["config"], name):
            raise RunFolderError(
                f"run folder {folder}: pipeline {name!r} (or a model it uses) is defined"
                " differently from the run already there; rename the pipeline or choose another"
                " --out"
            )


def _merged_config(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    merged = dict(new)
    merged["pipelines"] = {**old.get("pipelines", {}), **new["pipelines"]}
    merged["models"] = {**old.get("models", {}), **new["models"]}
    return merged


def _failure_record(example: Example, pipeline: str, exc: BaseException) -> dict[str, Any]:
    category = ErrorCategory.IMAGE if isinstance(exc, ImageLoadError) else ErrorCategory.MODEL
    error = ErrorInfo(category=category, message=f"{type(exc).__name__}: {exc}", node=None)
    return Prediction(
        example_id=example.id, pipeline=pipeline, task=example.task, error=error
    ).model_dump(mode="json")


class Interrupt:
    """Ctrl-C handling: the first press stops new work, the second leaves at once."""

    def __init__(self) -> None:
        self.stop = threading.Event()

    def press(self, *_: object) -> None:
        if self.stop.is_set():
            raise KeyboardInterrupt
        self.stop.set()
        log.warning("stopping: finishing the examples in flight (Ctrl-C again to quit now)")

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Route SIGINT to :meth:`press` while the block runs (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGINT, self.press)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


def run_pipeline_examples(
    pipe: PipelineRun,
    todo: list[Example],
    store: JsonlAppender,
    batch_size: int,
    progress: Progress,
    interrupt: Interrupt,
    summary: PipelineSummary,
) -> None:
    """Run ``todo`` through ``pipe``, up to ``batch_size`` examples in flight, appending each."""
    work: queue.SimpleQueue[Example] = queue.SimpleQueue()
    for ex in todo:
        work.put(ex)
    results: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
    n_workers = max(1, min(batch_size, len(todo)))

    def worker() -> None:
        try:
            while not interrupt.stop.is_set():
                try:
                    example = work.get_nowait()
                except queue.Empty:
                    return
                try:
                    state = pipe.graph.invoke(pipe.input_for(example))
                    record = dict(state["prediction"])
                except Exception as exc:  # a failure of this example only
                    log.debug("example %s failed", example.id, exc_info=True)
                    record = _failure_record(example, pipe.name, exc)
                results.put(record)
        finally:
            pipe.coordinator.leave()
            results.put(None)

    pipe.coordinator.join(n_workers)
    threads = [
        threading.Thread(target=worker, name=f"{pipe.name}-{i}", daemon=True)
        for i in range(n_workers)
    ]
    for t in threads:
        t.start()
    running = n_workers
    while running:
        try:
            item = results.get(timeout=0.2)
        except queue.Empty:
            continue
        if item is None:
            running -= 1
            continue
        write_record(item, pipe.name, store, summary, progress)


def write_record(
    record: dict[str, Any],
    pipeline: str,
    store: JsonlAppender,
    summary: PipelineSummary,
    progress: Progress,
) -> None:
    """Append one finished example of ``pipeline`` (unless its id is there) and count it."""
    record["pipeline"] = pipeline
    if store.append(record):
        summary.written += 1
        failed = record.get("error") is not None
        summary.failed += int(failed)
        progress.advance(pipeline, failed=failed)


@contextlib.contextmanager
def pipeline_session(
    folder: RunFolder,
    name: str,
    examples: list[Example],
    summaries: dict[str, PipelineSummary],
    progress: Progress,
) -> Iterator[tuple[JsonlAppender, list[Example], PipelineSummary]]:
    """Open ``name``'s predictions file; yield it, the examples not in it yet and the summary
    (added to ``summaries``); time the block and report the pipeline finished."""
    with JsonlAppender(folder.predictions_path(name), "example_id") as store:
        todo = [ex for ex in examples if ex.id not in store]
        summary = PipelineSummary(total=len(examples), done_before=len(examples) - len(todo))
        summaries[name] = summary
        progress.start(name, summary.total, summary.done_before)
        t0 = time.perf_counter()
        yield store, todo, summary
        summary.wall_s = time.perf_counter() - t0
        progress.finish(name)


def load_examples(
    resolved: ExperimentConfig, shard: tuple[int, int] | None
) -> tuple[Benchmark, list[Example]]:
    """The benchmark of ``resolved`` and its examples (this shard's slice when sharded)."""
    from cot_ground.bench import BenchmarkError, load_benchmark

    bench_cfg = resolved.benchmark
    try:
        bench = load_benchmark(
            bench_cfg.file,
            root=bench_cfg.root,
            tasks=bench_cfg.tasks,
            limit=bench_cfg.limit,
            answer_frame=bench_cfg.answer_frame,
            allow_outside_root=bench_cfg.allow_outside_root,
        )
    except (BenchmarkError, OSError) as exc:
        raise SetupError(f"benchmark: {exc}") from exc
    examples = list(bench.examples)
    if shard is not None:
        examples = select_shard(examples, *shard)
    return bench, examples


def max_images(examples: list[Example]) -> int:
    """Most images any one example has (at least 1)."""
    return max((len(ex.images) for ex in examples), default=1)


def open_manifest(
    folder: RunFolder,
    resolved: ExperimentConfig,
    bench: Benchmark,
    examples: list[Example],
    shard: tuple[int, int] | None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``run.json`` and ``examples.jsonl`` for a (new or resumed) run; returns the manifest.

    Call with the folder locked. A resumed run must be compatible with the folder's manifest;
    its config is merged in and its earlier sessions are kept.
    """
    config_dump = resolved.model_dump(mode="json")
    for name, pipe_cfg in resolved.pipelines.items():  # record the graph defaults too
        defaults = graph_config(name, pipe_cfg).model_dump(mode="json", exclude={"pipeline"})
        config_dump["pipelines"][name] = {**defaults, **config_dump["pipelines"][name]}
    bench_cfg = resolved.benchmark
    manifest = build_manifest(
        config=config_dump,
        benchmark={**bench.manifest(), "tasks": bench_cfg.tasks, "limit": bench_cfg.limit},
        shard={"k": shard[0], "n": shard[1]} if shard else None,
        n_examples=len(examples),
    )
    manifest.update(extra or {})
    old = folder.read_manifest()
    if old is not None:
        _check_compatible(old, manifest, folder.path)
        manifest["config"] = _merged_config(old["config"], config_dump)
        manifest["pipelines"] = sorted(manifest["config"]["pipelines"])
        manifest["started"] = old.get("started", manifest["started"])
        manifest["sessions"] = list(old.get("sessions", []))
    with JsonlAppender(folder.examples_path, "id") as ex_store:
        for ex in examples:
            ex_store.append(ex.model_dump(mode="json"))
        manifest["n_examples"] = len(ex_store.ids)
    folder.write_manifest(manifest)
    return manifest


def close_session(
    folder: RunFolder,
    manifest: dict[str, Any],
    session: dict[str, Any],
    summaries: dict[str, PipelineSummary],
    resolved: ExperimentConfig,
    interrupted: bool,
    cache_info: dict[str, Any] | None,
) -> None:
    """Record this session (counts, batch sizes, cache statistics) in ``run.json``."""
    session.update(
        {
            "ended": now_iso(),
            "interrupted": interrupted,
            "batch_size": resolved.batch_size,
            "pipelines": {
                n: {
                    "written": s.written,
                    "failed": s.failed,
                    "done_before": s.done_before,
                    "wall_s": round(s.wall_s, 3),
                    "batch_calls": {k: len(v) for k, v in s.batch_sizes.items()},
                    "max_batch": {k: max(v) for k, v in s.batch_sizes.items() if v},
                }
                for n, s in summaries.items()
            },
            "cache": cache_info,
        }
    )
    manifest["sessions"].append(session)
    manifest["ended"] = session["ended"]
    folder.write_manifest(manifest)


def run_experiment(
    config: ExperimentConfig,
    *,
    limit: int | None = None,
    tasks: list[str] | None = None,
    shard: tuple[int, int] | None = None,
    batch_size: int | None = None,
    out: str | Path | None = None,
    use_cache: bool = True,
    progress: Progress | None = None,
) -> RunSummary:
    """Run every pipeline of ``config`` into its run folder (resuming what is there).

    Raises :class:`SetupError` (or ``RunFolderError``) before any example runs when the setup is
    wrong. Returns per-pipeline counts, batch sizes and cache statistics.
    """
    resolved = resolve_config(config, limit=limit, tasks=tasks, batch_size=batch_size, out=out)
    bench, examples = load_examples(resolved, shard)
    adapters = build_adapters(resolved)
    cache = StepCache(resolved.cache.dir) if use_cache and resolved.cache.enabled else None
    IMAGE_CACHE.ensure_capacity(2 * resolved.batch_size * max_images(examples))

    folder = RunFolder(resolved.output or resolved.output_dir())
    session: dict[str, Any] = {"started": now_iso(), "n_examples": len(examples)}
    summaries: dict[str, PipelineSummary] = {}
    interrupt = Interrupt()
    progress = progress or LogProgress()
    with folder.locked(), interrupt.installed():
        manifest = open_manifest(folder, resolved, bench, examples, shard)
        try:
            for name, pipe_cfg in resolved.pipelines.items():
                pipe = build_pipeline(
                    name,
                    pipe_cfg,
                    adapters,
                    batch_size=resolved.batch_size,
                    cache=cache,
                    artifacts_dir=str(folder.path / "artifacts"),
                )
                writing = pipeline_session(folder, name, examples, summaries, progress)
                with writing as (store, todo, summary):
                    run_pipeline_examples(
                        pipe, todo, store, resolved.batch_size, progress, interrupt, summary
                    )
                    summary.batch_sizes = pipe.coordinator.batch_sizes()
                if interrupt.stop.is_set():
                    break
        finally:
            progress.close()
            cache_info = (
                {"dir": str(cache.folder), "hits": cache.hits, "misses": cache.misses}
                if cache is not None
                else None
            )
            close_session(
                folder, manifest, session, summaries, resolved, interrupt.stop.is_set(), cache_info
            )
            if cache is not None:
                cache.close()
    return RunSummary(
        out=folder.path,
        n_examples=len(examples),
        pipelines=summaries,
        interrupted=interrupt.stop.is_set(),
        cache_hits=cache.hits if cache is not None else 0,
        cache_misses=cache.misses if cache is not None else 0,
    )
