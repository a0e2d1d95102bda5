"""Resuming a run folder: the command-line overrides, the config dump and the fingerprints that
decide whether a run folder can take this run (same benchmark, shard and unchanged pipelines).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from cot_ground.records import Example
from cot_ground.redaction import redact_data
from cot_ground.runner.config import BenchmarkConfig, ExperimentConfig, graph_config
from cot_ground.runner.fingerprint import (
    fingerprint_changes,
    pipeline_fingerprint,
    stored_fingerprints,
)
from cot_ground.runner.store import RunFolder, RunFolderError

if TYPE_CHECKING:
    from cot_ground.bench import Benchmark


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
    """The resolved config as JSON, each pipeline with its graph defaults filled in and secrets
    redacted (:func:`cot_ground.redaction.redact_data`: a password in a ``base_url``)."""
    dump = resolved.model_dump(mode="json")
    for name, pipe_cfg in resolved.pipelines.items():
        defaults = graph_config(name, pipe_cfg).model_dump(mode="json", exclude={"pipeline"})
        dump["pipelines"][name] = {**defaults, **dump["pipelines"][name]}
    return redact_data(dump)


def run_fingerprints(dump: dict[str, Any], examples: list[Example]) -> dict[str, dict[str, Any]]:
    """Fingerprint of every pipeline of ``dump`` over the tasks of ``examples``."""
    tasks = {ex.task for ex in examples}
    return {name: pipeline_fingerprint(dump, name, tasks) for name in dump["pipelines"]}


SELECTION_KEYS = ("tasks", "limit", "per_task", "sample", "seed")
"""Keys of ``run.json`` ``benchmark`` that choose a run's examples."""


def selection_of(benchmark: BenchmarkConfig | dict[str, Any]) -> dict[str, Any]:
    """The example selection of a benchmark config (or a ``run.json`` ``benchmark`` entry), as
    compared between sessions: tasks sorted, ``seed`` only with ``sample``."""
    data = benchmark if isinstance(benchmark, dict) else benchmark.model_dump()
    found = {k: data.get(k) for k in SELECTION_KEYS if k in data}
    if "tasks" in found:
        found["tasks"] = sorted(found["tasks"]) if found["tasks"] else None
    if "seed" in found and not found.get("sample"):
        found["seed"] = None
    return found


def selection_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``"KEY OLD -> NEW"`` for every selection key whose value differs (keys missing from
    ``old``, a folder written before they existed, are not compared)."""
    return [f"{k} {old[k]} -> {new.get(k)}" for k in old if old[k] != new.get(k)]


def resume_problems(
    old: dict[str, Any],
    benchmark_sha: str,
    shard: dict[str, int] | None,
    fingerprints: dict[str, dict[str, Any]],
    folder: Path,
    allow_changed: bool,
    selection: dict[str, Any] | None = None,
) -> tuple[list[str], dict[str, list[str]]]:
    """(problems, allowed changes per pipeline) of resuming the run in ``folder`` (``old`` is its
    manifest) with this benchmark, shard, fingerprints and example ``selection``
    (:func:`selection_of`; a changed selection is a problem unless ``allow_changed``)."""
    problems: list[str] = []
    if selection is not None and not allow_changed:
        recorded = selection_of(old.get("benchmark") or {})
        moved = selection_changes(recorded, selection)
        if moved:
            from cot_ground.runner.retry import selection_options

            given = " ".join(selection_options(old.get("benchmark") or {})) or "no option"
            problems.append(
                f"run folder {folder} was run on another selection of examples"
                f" ({'; '.join(moved)}); resuming would change which examples it holds."
                f" Give the run's selection ({given}), choose another --out, or pass"
                " --allow-changed (the change is then recorded in run.json)"
            )
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
    return resume_problems(
        old,
        bench.sha256,
        shard_dict,
        fingerprints,
        folder.path,
        allow_changed,
        selection_of(resolved.benchmark),
    )[0]


def merged_config(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The config of a resumed run: ``new`` with the pipelines and models of ``old`` that it
    does not redefine."""
    merged = dict(new)
    merged["pipelines"] = {**old.get("pipelines", {}), **new["pipelines"]}
    merged["models"] = {**old.get("models", {}), **new["models"]}
    return merged
