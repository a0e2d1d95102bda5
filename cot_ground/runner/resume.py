"""Resuming a run folder: the command-line overrides, the config dump and the fingerprints that
decide whether a run folder can take this run (same benchmark file and ground-truth settings,
same shard and selection, unchanged pipelines).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cot_ground.records import Example
from cot_ground.redaction import redact_data
from cot_ground.runner.config import BenchmarkConfig, ExperimentConfig, graph_config
from cot_ground.runner.fingerprint import (
    MODEL_SLOTS,
    changed_keys,
    fingerprint_changes,
    pipeline_fingerprint,
    stored_fingerprints,
    weights_digests,
)
from cot_ground.runner.store import RunFolder, RunFolderError, writable_problems

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
    digests = weights_digests(dump)
    return {name: pipeline_fingerprint(dump, name, tasks, digests) for name in dump["pipelines"]}


SELECTION_KEYS = ("tasks", "limit", "per_task", "sample", "seed")
"""Keys of ``run.json`` ``benchmark`` that choose a run's examples."""

GROUND_TRUTH_KEYS = ("answer_frame", "root", "allow_outside_root")
"""Keys of ``run.json`` ``benchmark`` besides the file's sha256 that change the ground truth a
run is scored on: the frame the file's boxes are read in, the folder its image paths resolve
against, and whether paths leaving that folder are accepted."""


def benchmark_record(bench: Benchmark, config: BenchmarkConfig) -> dict[str, Any]:
    """``run.json`` ``benchmark``: the loaded file's record (path, sha256, answer frame, image
    root...), the example selection and ``allow_outside_root``."""
    return {
        **bench.manifest(),
        **config.model_dump(include=set(SELECTION_KEYS) | {"allow_outside_root"}),
    }


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


def ground_truth_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``"KEY OLD -> NEW"`` for every :data:`GROUND_TRUTH_KEYS` key of two ``run.json``
    ``benchmark`` entries whose value differs (a key ``old`` lacks is not compared)."""
    return [
        f"{k} {old[k]} -> {new.get(k)}"
        for k in GROUND_TRUTH_KEYS
        if k in old and old[k] != new.get(k)
    ]


@dataclass
class ResumeCheck:
    """What resuming a run folder with this run would change: ``problems`` (refusals, one line
    each) and the changes allowed with ``--allow-changed``, recorded in the session."""

    problems: list[str] = field(default_factory=list)
    changed: dict[str, list[str]] = field(default_factory=dict)  # per pipeline
    selection_changed: list[str] = field(default_factory=list)
    benchmark_changed: list[str] = field(default_factory=list)


def resume_problems(
    old: dict[str, Any],
    benchmark: dict[str, Any],
    shard: dict[str, int] | None,
    fingerprints: dict[str, dict[str, Any]],
    folder: Path,
    allow_changed: bool,
    config: dict[str, Any] | None = None,
) -> ResumeCheck:
    """Whether the run in ``folder`` (``old`` is its manifest) can take a run on ``benchmark``
    (:func:`benchmark_record`), ``shard`` and ``fingerprints`` (of ``config``, the new config
    dump). Another benchmark file or shard is always refused; another example selection,
    another ground-truth setting (:data:`GROUND_TRUTH_KEYS`), a changed pipeline fingerprint,
    or a model key that a stored pipeline used and ``config`` defines otherwise
    (:func:`redefined_models`) is refused unless ``allow_changed``."""
    check = ResumeCheck()
    recorded = old.get("benchmark") or {}
    check.selection_changed = selection_changes(selection_of(recorded), selection_of(benchmark))
    if check.selection_changed and not allow_changed:
        from cot_ground.runner.retry import selection_options

        given = " ".join(selection_options(recorded)) or "no option"
        check.problems.append(
            f"run folder {folder} was run on another selection of examples"
            f" ({'; '.join(check.selection_changed)}); resuming would change which examples it"
            f" holds. Give the run's selection ({given}), choose another --out, or pass"
            " --allow-changed (the change is then recorded in run.json)"
        )
    old_sha, sha = recorded.get("sha256"), str(benchmark.get("sha256"))
    if old_sha != sha:
        check.problems.append(
            f"run folder {folder} holds results on another benchmark file (sha256"
            f" {str(old_sha)[:12]}... vs {sha[:12]}...); choose another --out"
        )
    check.benchmark_changed = ground_truth_changes(recorded, benchmark)
    if check.benchmark_changed and not allow_changed:
        check.problems.append(
            f"run folder {folder} was run with other benchmark settings"
            f" ({'; '.join(f'benchmark.{c}' for c in check.benchmark_changed)}); its stored"
            " examples keep what was read with the old ones (ground-truth boxes, image paths"
            " under the old root), and images under a new root are not compared with the old."
            " Restore them, choose another --out, or pass --allow-changed (the change is then"
            " recorded in run.json)"
        )
    if old.get("shard") != shard:
        check.problems.append(
            f"run folder {folder} was run as shard {old.get('shard')}, not {shard};"
            " choose another --out"
        )
    stored = stored_fingerprints(old)
    for name in sorted(set(stored) & set(fingerprints)):
        found = fingerprint_changes(stored[name], fingerprints[name])
        if found:
            check.changed[name] = found
    for name, found in redefined_models(stored, fingerprints, config).items():
        check.changed.setdefault(name, []).extend(found)
    if check.changed and not allow_changed:
        for name, found in check.changed.items():
            check.problems.append(
                f"run folder {folder}: pipeline {name!r} has changed since its records were"
                f" written ({'; '.join(found)}); resuming would mix both in one run. Restore"
                " them, rename the pipeline, choose another --out, or pass --allow-changed"
                " (the change is then recorded in run.json)"
            )
    return check


def redefined_models(
    stored: dict[str, dict[str, Any]],
    fingerprints: dict[str, dict[str, Any]],
    config: dict[str, Any] | None,
) -> dict[str, list[str]]:
    """Per stored pipeline that ``config`` does not run: ``"model K redefined by this config
    (used by P, Q): config FIELD..."`` for each model key its records came from that ``config``
    defines with other settings. The merged config keeps one definition per key, so resuming
    would describe the stored pipeline with the new model. (A pipeline ``config`` runs is
    compared by its fingerprint.)"""
    if not config:
        return {}
    models = config.get("models") or {}
    users: dict[str, list[str]] = {}
    for pname, pipe in (config.get("pipelines") or {}).items():
        for slot in MODEL_SLOTS:
            if pipe.get(slot):
                users.setdefault(pipe[slot], []).append(pname)
    found: dict[str, list[str]] = {}
    for name in sorted(set(stored) - set(fingerprints)):
        used = (stored[name].get("config") or {}).get("models") or {}
        for key in sorted(set(used) & set(models)):
            keys = changed_keys(used[key], models[key])
            if keys:
                by = ", ".join(users.get(key, [])) or "no pipeline"
                found.setdefault(name, []).append(
                    f"model {key!r} redefined by this config (used by {by}):"
                    f" {', '.join(f'config {k}' for k in keys)}"
                )
    return found


def stored_manifest(folder: RunFolder) -> dict[str, Any] | None:
    """The run folder's ``run.json`` (None for a new folder). Raises ``RunFolderError`` for one
    that is not valid JSON, and for a folder holding records but no ``run.json`` (nothing says
    which config, benchmark and pipelines wrote them)."""
    old = folder.read_manifest()
    if old is None:
        records = folder.record_files()
        if records:
            raise RunFolderError(
                f"run folder {folder.path} holds records ({', '.join(records)}) but no"
                f" {folder.manifest_path.name}: nothing says which config, benchmark and"
                " pipelines wrote them, so a run cannot resume there. Choose another --out, or"
                " move those files aside"
            )
    return old


def folder_problems(
    folder: RunFolder,
    resolved: ExperimentConfig,
    bench: Benchmark,
    examples: list[Example],
    shard: tuple[int, int] | None,
    allow_changed: bool,
) -> list[str]:
    """Why the run folder cannot take this run (pre-flight part; read without the lock): it
    cannot be written (:func:`~cot_ground.runner.store.writable_problems`), or it holds a run
    this one cannot resume."""
    problems = writable_problems(folder.path)
    try:
        old = stored_manifest(folder)
    except RunFolderError as exc:
        return [*problems, str(exc)]
    if old is None:
        return problems
    shard_dict = {"k": shard[0], "n": shard[1]} if shard else None
    dump = config_dump(resolved)
    fingerprints = run_fingerprints(dump, examples)
    return (
        problems
        + resume_problems(
            old,
            benchmark_record(bench, resolved.benchmark),
            shard_dict,
            fingerprints,
            folder.path,
            allow_changed,
            dump,
        ).problems
    )


def merged_config(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The config of a resumed run: ``new`` with the pipelines and models of ``old`` that it
    does not redefine."""
    merged = dict(new)
    merged["pipelines"] = {**old.get("pipelines", {}), **new["pipelines"]}
    merged["models"] = {**old.get("models", {}), **new["models"]}
    return merged
