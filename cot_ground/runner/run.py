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
The parts live beside this module: :mod:`~cot_ground.runner.resume` (overrides, fingerprints,
whether a run folder can be resumed), :mod:`~cot_ground.runner.session` (``run.json``, each
pipeline's predictions file) and :mod:`~cot_ground.runner.execute` (the thread pool, Ctrl-C).

Ctrl-C stops taking new examples, lets the ones in flight finish and be written, and returns;
a second Ctrl-C leaves at once (lines already written are safe either way).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cot_ground.images import IMAGE_CACHE
from cot_ground.records import Example
from cot_ground.runner.cache import CacheError, StepCache
from cot_ground.runner.config import ExperimentConfig
from cot_ground.runner.execute import Interrupt, PipelineSummary, run_pipeline_examples
from cot_ground.runner.manifest import now_iso
from cot_ground.runner.pipelines import SetupError, build_adapters, build_pipeline
from cot_ground.runner.preflight import preflight
from cot_ground.runner.progress import LogProgress, Progress
from cot_ground.runner.resume import folder_problems, resolve_config
from cot_ground.runner.session import close_session, max_images, open_manifest, pipeline_session
from cot_ground.runner.store import RunFolder, RunFolderWriteError


@dataclass
class RunSummary:
    """What a call of :func:`run_experiment` did."""

    out: Path
    n_examples: int
    pipelines: dict[str, PipelineSummary]
    interrupted: bool = False
    cache_hits: int = 0
    cache_misses: int = 0


def open_cache(resolved: ExperimentConfig, use_cache: bool) -> StepCache | None:
    """The step-1 cache of ``resolved`` (None when disabled); raises :class:`SetupError`."""
    if not (use_cache and resolved.cache.enabled):
        return None
    try:
        return StepCache(resolved.cache.dir, timeout_s=resolved.cache.timeout_s)
    except CacheError as exc:
        raise SetupError(str(exc)) from exc


def checked_setup(
    config: ExperimentConfig,
    limit: int | None,
    tasks: list[str] | None,
    shard: tuple[int, int] | None,
    batch_size: int | None,
    out: str | Path | None,
    use_cache: bool,
    allow_changed: bool,
) -> tuple[ExperimentConfig, RunFolder, Any, list[Example]]:
    """``(resolved config, run folder, benchmark, selected examples)`` of a run, after the
    pre-flight check (the run folder's included) that both backends make before any model
    loads; raises :class:`~cot_ground.runner.preflight.PreflightError` listing every problem."""
    resolved = resolve_config(config, limit=limit, tasks=tasks, batch_size=batch_size, out=out)
    folder = RunFolder(resolved.output or resolved.output_dir())
    bench, examples = preflight(
        resolved,
        shard,
        use_cache=use_cache,
        run_folder=lambda b, exs: folder_problems(folder, resolved, b, exs, shard, allow_changed),
    )
    return resolved, folder, bench, examples


def new_session(
    examples: list[Example], retry_failed: Collection[str], use_cache: bool, **extra: Any
) -> dict[str, Any]:
    """This session's entry of ``run.json`` as it starts (both backends): start time, examples
    selected, the failure categories retried, whether the step-1 cache was off (the retry hint
    repeats ``--no-cache``), then ``extra`` (the Ray backend's ``ray``)."""
    return {
        "started": now_iso(),
        "n_examples": len(examples),
        "retry_failed": sorted(retry_failed),
        "no_cache": not use_cache,
        **extra,
    }


def end_session(
    folder: RunFolder,
    manifest: dict[str, Any],
    session: dict[str, Any],
    summaries: dict[str, PipelineSummary],
    resolved: ExperimentConfig,
    interrupt: Interrupt,
    cache_info: dict[str, Any] | None,
    error: BaseException | None,
) -> None:
    """Close the session in ``run.json`` (:func:`close_session`, with ``cache_info``: the step-1
    cache's folder, hits and misses) with ``error``, the exception that stopped it, if any. When
    ``run.json`` cannot be written either, ``session`` gets ``manifest_error`` and the exception
    that stopped the run is the one raised."""
    message = f"{type(error).__name__}: {error}" if error is not None else None
    try:
        close_session(
            folder,
            manifest,
            session,
            summaries,
            resolved,
            interrupt.stop.is_set(),
            cache_info,
            message,
        )
    except OSError as exc:
        session["manifest_error"] = str(exc)
        if error is None:
            raise


def write_error(folder: RunFolder, exc: OSError, session: dict[str, Any]) -> RunFolderWriteError:
    """One line for an ``OSError`` that stopped a run (disk full, read-only folder): the run
    folder, the OS error and whether ``run.json`` recorded it."""
    where = f" ({exc.filename})" if exc.filename else ""
    reason = f"[Errno {exc.errno}] {exc.strerror}" if exc.strerror else str(exc)
    if "manifest_error" in session:
        recorded = (
            f"run.json could not be updated either ({session['manifest_error']}): it still says"
            " the session is running, and the next session will mark it killed"
        )
    elif session.get("status") == "failed":
        recorded = "the session's failure is recorded in run.json"
    else:
        recorded = "nothing was recorded in run.json"
    return RunFolderWriteError(
        f"run folder {folder.path}: the run stopped on {reason}{where}; {recorded}. Every"
        " record written before is kept: free space or fix the permissions, then run the same"
        " command to resume"
    )


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
    ``RunFolderError``) before any model loads, and :class:`RunFolderWriteError` (one line:
    folder, OS error, whether ``run.json`` recorded it) when writing the run folder fails
    during the run; the step-1 cache is closed in every case. Returns per-pipeline counts,
    batch sizes and cache statistics.
    """
    resolved, folder, bench, examples = checked_setup(
        config, limit, tasks, shard, batch_size, out, use_cache, allow_changed
    )
    adapters = build_adapters(resolved)
    cache = open_cache(resolved, use_cache)
    IMAGE_CACHE.ensure_capacity(2 * resolved.batch_size * max_images(examples))

    session = new_session(examples, retry_failed, use_cache)
    summaries: dict[str, PipelineSummary] = {}
    interrupt = Interrupt()
    progress = progress or LogProgress()
    try:
        with folder.locked(), interrupt.installed():
            manifest = open_manifest(
                folder,
                resolved,
                bench,
                examples,
                shard,
                allow_changed=allow_changed,
                session=session,
            )
            error: BaseException | None = None
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
                        folder, name, examples, summaries, progress, retry_failed, manifest, session
                    )
                    with writing as (store, todo, summary):
                        run_pipeline_examples(
                            pipe, todo, store, resolved.batch_size, progress, interrupt, summary
                        )
                        summary.batch_sizes = pipe.coordinator.batch_sizes()
                        summary.oom_splits = pipe.coordinator.oom_splits()
                    if interrupt.stop.is_set():
                        break
            except Exception as exc:  # recorded as the session's error, then raised
                error = exc
                raise
            finally:
                progress.close()
                cache_info = (
                    {"dir": str(cache.folder), "hits": cache.hits, "misses": cache.misses}
                    if cache is not None
                    else None
                )
                end_session(
                    folder, manifest, session, summaries, resolved, interrupt, cache_info, error
                )
    except OSError as exc:
        raise write_error(folder, exc, session) from None
    finally:
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
