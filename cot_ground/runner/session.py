"""Session bookkeeping of a run folder: ``run.json`` and ``examples.jsonl`` opened for a new or
resumed run, each pipeline's predictions file opened with what is left to run, and the session
recorded when it ends.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Collection, Iterator
from typing import TYPE_CHECKING, Any

from cot_ground.records import Example
from cot_ground.runner.config import ExperimentConfig
from cot_ground.runner.execute import PipelineSummary
from cot_ground.runner.fingerprint import merged_fingerprint, stored_fingerprints
from cot_ground.runner.manifest import build_manifest, now_iso
from cot_ground.runner.progress import Progress
from cot_ground.runner.resume import (
    config_dump,
    merged_config,
    resume_problems,
    run_fingerprints,
    selection_changes,
    selection_of,
)
from cot_ground.runner.store import JsonlAppender, RunFolder, RunFolderError, read_jsonl

if TYPE_CHECKING:
    from cot_ground.bench import Benchmark


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
            selection_of(manifest["benchmark"]),
        )
        if problems:
            raise RunFolderError("\n".join(problems))
        if changes and session is not None:
            session["changed"] = changes
        moved = selection_changes(
            selection_of(old.get("benchmark") or {}), selection_of(manifest["benchmark"])
        )
        if moved and session is not None:
            session["selection_changed"] = moved
        fingerprints = stored_fingerprints(old)
        for name, fp in manifest["fingerprints"].items():
            fingerprints[name] = merged_fingerprint(fingerprints.get(name, {}), fp)
        manifest["fingerprints"] = fingerprints
        manifest["config"] = merged_config(old["config"], dump)
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
