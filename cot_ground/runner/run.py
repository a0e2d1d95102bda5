"""Running an experiment: every pipeline over the same examples, into one resumable run folder.

Order of work: resolve the config with the command-line overrides, run the pre-flight check
(:mod:`cot_ground.runner.preflight`: environment variables, adapters, model folders, benchmark
file, selection, image files, prompt files, cache, and that an existing run folder has the same
benchmark, shard and pipeline fingerprints; every problem is reported at once), build every
adapter, then run each pipeline over the examples it has not finished yet (with
``retry_failed``, also over those whose record failed in one of the given categories; their
new records replace the old lines). Up to ``batch_size`` examples run at once, each in its own
thread with its own graph invocation; their model calls are batched
(:mod:`cot_ground.runner.batching`).
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
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cot_ground.images import IMAGE_CACHE, ImageLoadError
from cot_ground.records import ErrorCategory, ErrorInfo, Example, Prediction
from cot_ground.runner.cache import CacheError, StepCache
from cot_ground.runner.config import ExperimentConfig, graph_config
from cot_ground.runner.fingerprint import (
    fingerprint_changes,
    merged_fingerprint,
    pipeline_fingerprint,
    stored_fingerprints,
)
from cot_ground.runner.manifest import build_manifest, now_iso
from cot_ground.runner.pipelines import (
    PipelineRun,
    SetupError,
    build_adapters,
    build_pipeline,
)
from cot_ground.runner.preflight import preflight
from cot_ground.runner.progress import LogProgress, Progress
from cot_ground.runner.store import JsonlAppender, RunFolder, RunFolderError, read_jsonl

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
    retried: int = 0
    batch_sizes: dict[str, list[int]] = field(default_factory=dict)
    oom_splits: dict[str, list[int]] = field(default_factory=dict)  # batches split after OOM
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


def config_dump(resolved: ExperimentConfig) -> dict[str, Any]:
    """The resolved config as JSON, each pipeline with its graph defaults filled in."""
    dump = resolved.model_dump(mode="json")
    for name, pipe_cfg in resolved.pipelines.items():
        defaults = graph_config(name, pipe_cfg).model_dump(mode="json", exclude={"pipeline"})
        dump["pipelines"][name] = {**defaults, **dump["pipelines"][name]}
    return dump


def run_fingerprints(dump: dict[str, Any], examples: list[Example]) -> dict[str, dict[str, Any]]:
    """Fingerprint of every pipeline of ``dump`` over the tasks of ``examples``."""
    tasks = {ex.task for ex in examples}
    return {name: pipeline_fingerprint(dump, name, tasks) for name in dump["pipelines"]}


def resume_problems(
    old: dict[str, Any],
    benchmark_sha: str,
    shard: dict[str, int] | None,
    fingerprints: dict[str, dict[str, Any]],
    folder: Path,
    allow_changed: bool,
) -> tuple[list[str], dict[str, list[str]]]:
    """(problems, allowed changes per pipeline) of resuming the run in ``folder`` (``old`` is its
    manifest) with this benchmark, shard and fingerprints."""
    problems: list[str] = []
    old_sha = (old.get("benchmark") or {}).get("sha256")
    if old_sha != benchmark_sha:
        problems.append(
            f"run folder {folder} holds results on another benchmark file (sha256"
            f" {str(old_sha)[:12]}... vs {benchmark_sha[:12]}...); choose another --out"
        )
    if old.get("shard") != shard:
        problems.append(
            f"run folder {folder} was run as shard {old.get('shard')}, not {shard};"
            " choose another --out"
        )
    stored = stored_fingerprints(old)
    changes: dict[str, list[str]] = {}
    for name in sorted(set(stored) & set(fingerprints)):
        found = fingerprint_changes(stored[name], fingerprints[name])
        if found:
            changes[name] = found
    if changes and not allow_changed:
        for name, found in changes.items():
            problems.append(
                f"run folder {folder}: pipeline {name!r} has changed since its records were"
                f" written ({'; '.join(found)}); resuming would mix both in one run. Restore"
                " them, rename the pipeline, choose another --out, or pass --allow-changed"
                " (the change is then recorded in run.json)"
            )
    return problems, changes


def folder_problems(
    folder: RunFolder,
    resolved: ExperimentConfig,
    bench: Benchmark,
    examples: list[Example],
    shard: tuple[int, int] | None,
    allow_changed: bool,
) -> list[str]:
    """Why the run folder cannot take this run (pre-flight part; read without the lock)."""
    try:
        old = folder.read_manifest()
    except RunFolderError as exc:
        return [str(exc)]
    if old is None:
        return []
    shard_dict = {"k": shard[0], "n": shard[1]} if shard else None
    fingerprints = run_fingerprints(config_dump(resolved), examples)
    return resume_problems(old, bench.sha256, shard_dict, fingerprints, folder.path, allow_changed)[
        0
    ]


def _merged_config(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    merged = dict(new)
    merged["pipelines"] = {**old.get("pipelines", {}), **new["pipelines"]}
    merged["models"] = {**old.get("models", {}), **new["models"]}
    return merged


def _failure_record(example: Example, pipeline: str, exc: BaseException) -> dict[str, Any]:
    category = getattr(exc, "error_category", None) or ErrorCategory.MODEL
    if isinstance(exc, ImageLoadError):
        category = ErrorCategory.IMAGE
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
    retry: Collection[str] = (),
) -> Iterator[tuple[JsonlAppender, list[Example], PipelineSummary]]:
    """Open ``name``'s predictions file; yield it, the examples to run (not in it yet, plus those
    whose record failed with a category in ``retry``: their new records replace the old lines)
    and the summary (added to ``summaries``); time the block and report the pipeline finished."""
    with JsonlAppender(folder.predictions_path(name), "example_id") as store:
        failed: set[str] = set()
        if retry:
            wanted = {ex.id for ex in examples}
            failed = {
                r["example_id"]
                for r in read_jsonl(store.path, "example_id")
                if (r.get("error") or {}).get("category") in retry and r["example_id"] in wanted
            }
            store.replace(failed)
        todo = [ex for ex in examples if ex.id not in store]
        summary = PipelineSummary(total=len(examples), done_before=len(examples) - len(todo))
        summary.retried = len(failed)
        summaries[name] = summary
        progress.start(name, summary.total, summary.done_before)
        t0 = time.perf_counter()
        yield store, todo, summary
        summary.wall_s = time.perf_counter() - t0
        progress.finish(name)


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
    *,
    allow_changed: bool = False,
    session: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``run.json`` and ``examples.jsonl`` for a (new or resumed) run; returns the manifest.

    Call with the folder locked. A resumed run must be compatible with the folder's manifest
    (same benchmark and shard; unchanged fingerprints unless ``allow_changed``, in which case
    the changes go into ``session["changed"]``); its config is merged in and its earlier
    sessions are kept. Raises ``RunFolderError`` naming every incompatibility.
    """
    dump = config_dump(resolved)
    bench_cfg = resolved.benchmark
    manifest = build_manifest(
        config=dump,
        benchmark={
            **bench.manifest(),
            **bench_cfg.model_dump(include={"tasks", "limit", "per_task", "sample", "seed"}),
        },
        shard={"k": shard[0], "n": shard[1]} if shard else None,
        n_examples=len(examples),
    )
    manifest["config_file"] = resolved.source
    manifest["fingerprints"] = run_fingerprints(dump, examples)
    manifest.update(extra or {})
    old = folder.read_manifest()
    if old is not None:
        problems, changes = resume_problems(
            old,
            manifest["benchmark"]["sha256"],
            manifest["shard"],
            manifest["fingerprints"],
            folder.path,
            allow_changed,
        )
        if problems:
            raise RunFolderError("\n".join(problems))
        if changes and session is not None:
            session["changed"] = changes
        fingerprints = stored_fingerprints(old)
        for name, fp in manifest["fingerprints"].items():
            fingerprints[name] = merged_fingerprint(fingerprints.get(name, {}), fp)
        manifest["fingerprints"] = fingerprints
        manifest["config"] = _merged_config(old["config"], dump)
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
    error: str | None = None,
) -> None:
    """Record this session (counts, batch sizes, cache statistics, the error that stopped it)
    in ``run.json``."""
    session.update(
        {
            "ended": now_iso(),
            "interrupted": interrupted,
            "error": error,
            "batch_size": resolved.batch_size,
            "pipelines": {
                n: {
                    "written": s.written,
                    "failed": s.failed,
                    "retried": s.retried,
                    "done_before": s.done_before,
                    "wall_s": round(s.wall_s, 3),
                    "batch_calls": {k: len(v) for k, v in s.batch_sizes.items()},
                    "max_batch": {k: max(v) for k, v in s.batch_sizes.items() if v},
                    "oom_splits": s.oom_splits,
                }
                for n, s in summaries.items()
            },
            "cache": cache_info,
        }
    )
    manifest["sessions"].append(session)
    manifest["ended"] = session["ended"]
    folder.write_manifest(manifest)


def open_cache(resolved: ExperimentConfig, use_cache: bool) -> StepCache | None:
    """The step-1 cache of ``resolved`` (None when disabled); raises :class:`SetupError`."""
    if not (use_cache and resolved.cache.enabled):
        return None
    try:
        return StepCache(resolved.cache.dir, timeout_s=resolved.cache.timeout_s)
    except CacheError as exc:
        raise SetupError(str(exc)) from exc


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
    retry_failed: Collection[str] = (),
    allow_changed: bool = False,
) -> RunSummary:
    """Run every pipeline of ``config`` into its run folder (resuming what is there).

    ``retry_failed``: error categories whose records are run again and replaced (e.g.
    :data:`cot_ground.runner.retry.TRANSIENT_CATEGORIES`). ``allow_changed``: resume even though
    a pipeline's fingerprint changed (the change is recorded). Raises
    :class:`~cot_ground.runner.preflight.PreflightError` listing every setup problem (or
    ``RunFolderError``) before any model loads. Returns per-pipeline counts, batch sizes and
    cache statistics.
    """
    resolved = resolve_config(config, limit=limit, tasks=tasks, batch_size=batch_size, out=out)
    folder = RunFolder(resolved.output or resolved.output_dir())
    bench, examples = preflight(
        resolved,
        shard,
        use_cache=use_cache,
        run_folder=lambda b, exs: folder_problems(folder, resolved, b, exs, shard, allow_changed),
    )
    adapters = build_adapters(resolved)
    cache = open_cache(resolved, use_cache)
    IMAGE_CACHE.ensure_capacity(2 * resolved.batch_size * max_images(examples))

    session: dict[str, Any] = {
        "started": now_iso(),
        "n_examples": len(examples),
        "retry_failed": sorted(retry_failed),
    }
    summaries: dict[str, PipelineSummary] = {}
    interrupt = Interrupt()
    progress = progress or LogProgress()
    with folder.locked(), interrupt.installed():
        manifest = open_manifest(
            folder, resolved, bench, examples, shard, allow_changed=allow_changed, session=session
        )
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
                writing = pipeline_session(
                    folder, name, examples, summaries, progress, retry_failed
                )
                with writing as (store, todo, summary):
                    run_pipeline_examples(
                        pipe, todo, store, resolved.batch_size, progress, interrupt, summary
                    )
                    summary.batch_sizes = pipe.coordinator.batch_sizes()
                    summary.oom_splits = pipe.coordinator.oom_splits()
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
