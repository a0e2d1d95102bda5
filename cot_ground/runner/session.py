"""Session bookkeeping of a run folder: ``run.json`` and ``examples.jsonl`` opened for a new or
resumed run, each pipeline's predictions file opened with what is left to run, and the session.

A session's entry in ``run.json`` ``sessions`` is written when it starts (``status``
``"running"``, ``ended`` null, the code, packages and model weights it runs with), gets each
pipeline's ``records_before`` (lines in its file) when that pipeline starts, and is completed
when the session ends (``"finished"``, ``"interrupted"`` or ``"failed"``). An entry still
``"running"`` when the next session opens the folder belonged to a process that was killed:
it is marked ``"killed"``, and the records it added are the lines of each predictions file
after its ``records_before`` (up to the next session's; a ``--retry-failed`` record replaces
its old line in place instead).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Collection, Iterator
from typing import TYPE_CHECKING, Any

from cot_ground.records import Example
from cot_ground.runner.config import ExperimentConfig
from cot_ground.runner.execute import PipelineSummary
from cot_ground.runner.fingerprint import merged_fingerprint, stored_fingerprints
from cot_ground.runner.manifest import (
    ENVIRONMENT_KEYS,
    build_manifest,
    environment_changes,
    now_iso,
)
from cot_ground.runner.progress import Progress
from cot_ground.runner.resume import (
    benchmark_record,
    config_dump,
    merged_config,
    resume_problems,
    run_fingerprints,
    stored_manifest,
)
from cot_ground.runner.store import JsonlAppender, RunFolder, RunFolderError, read_jsonl

if TYPE_CHECKING:
    from cot_ground.bench import Benchmark

log = logging.getLogger("cot_ground.run")


@contextlib.contextmanager
def pipeline_session(
    folder: RunFolder,
    name: str,
    examples: list[Example],
    summaries: dict[str, PipelineSummary],
    progress: Progress,
    retry: Collection[str] = (),
    manifest: dict[str, Any] | None = None,
    session: dict[str, Any] | None = None,
) -> Iterator[tuple[JsonlAppender, list[Example], PipelineSummary]]:
    """Open ``name``'s predictions file; yield it, the examples to run (not in it yet, plus those
    whose record failed with a category in ``retry``: their new records replace the old lines)
    and the summary (added to ``summaries``); time the block and report the pipeline finished.
    With ``manifest`` and ``session`` (:func:`open_manifest`'s), the pipeline's
    ``records_before`` (lines in its file) is written into the session's entry of ``run.json``
    before its first example runs."""
    with JsonlAppender(folder.predictions_path(name), "example_id") as store:
        lines = len(store.ids)  # one line per record: new records are appended after these
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
        if manifest is not None and session is not None:
            session.setdefault("pipelines", {})[name] = {"records_before": lines}
            folder.write_manifest(manifest)
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
    """Write ``run.json`` (with ``session``'s entry, status ``"running"``) and ``examples.jsonl``
    for a (new or resumed) run; returns the manifest.

    Call with the folder locked. A resumed run must be compatible with the folder's manifest
    (:func:`~cot_ground.runner.resume.resume_problems`: same benchmark file and shard; the same
    selection, ground-truth settings and fingerprints unless ``allow_changed``, in which case
    the changes go into ``session``: ``changed``, ``selection_changed``,
    ``benchmark_changed``; a model key a stored pipeline used, redefined by this config, is a
    change of that pipeline); its config is merged in and its earlier sessions are kept (one
    left ``"running"`` by a killed process is marked ``"killed"``). A folder holding records
    but no ``run.json`` is refused. Other code (commit, uncommitted changes), packages, model
    weights or device than the last session's are logged as a warning and recorded in
    ``session["environment_changed"]``. The top-level ``git``, ``packages``, ``device`` and
    ``benchmark`` describe the latest session (``models``: the latest known source of every
    model of the merged config). Raises ``RunFolderError`` naming every incompatibility. An
    ``OSError`` writing ``examples.jsonl`` (disk full) ends the session ``"failed"`` in
    ``run.json`` when that can still be written (else ``session["manifest_error"]`` says why)
    and is raised.
    """
    dump = config_dump(resolved)
    manifest = build_manifest(
        config=dump,
        benchmark=benchmark_record(bench, resolved.benchmark),
        shard={"k": shard[0], "n": shard[1]} if shard else None,
        n_examples=len(examples),
    )
    manifest["config_file"] = resolved.source
    manifest["fingerprints"] = run_fingerprints(dump, examples)
    manifest.update(extra or {})
    session = session if session is not None else {"started": manifest["started"]}
    session.update({"status": "running", "ended": None})
    session.update({key: manifest[key] for key in ENVIRONMENT_KEYS})
    old = stored_manifest(folder)
    if old is not None:
        check = resume_problems(
            old,
            manifest["benchmark"],
            manifest["shard"],
            manifest["fingerprints"],
            folder.path,
            allow_changed,
            dump,
        )
        if check.problems:
            raise RunFolderError("\n".join(check.problems))
        for key in ("changed", "selection_changed", "benchmark_changed"):
            if getattr(check, key):
                session[key] = getattr(check, key)
        moved = environment_changes(old, manifest)
        if moved:
            session["environment_changed"] = moved
            log.warning(
                "resuming %s with other code, packages, models or device than its last session"
                " (%s);"
                " its records so far came from those (recorded in run.json, sessions)",
                folder.path,
                "; ".join(moved),
            )
        fingerprints = stored_fingerprints(old)
        for name, fp in manifest["fingerprints"].items():
            fingerprints[name] = merged_fingerprint(fingerprints.get(name, {}), fp)
        manifest["fingerprints"] = fingerprints
        manifest["config"] = merged_config(old["config"], dump)
        manifest["pipelines"] = sorted(manifest["config"]["pipelines"])
        manifest["models"] = {**(old.get("models") or {}), **manifest["models"]}
        manifest["started"] = old.get("started", manifest["started"])
        manifest["sessions"] = [_closed(s) for s in old.get("sessions", [])]
    manifest["sessions"].append(session)
    if old is None:  # run.json first: a folder never holds records without one
        folder.write_manifest(manifest)
    try:
        with JsonlAppender(folder.examples_path, "id") as ex_store:
            for ex in examples:
                ex_store.append(ex.model_dump(mode="json"))
            manifest["n_examples"] = len(ex_store.ids)
    except OSError as exc:  # disk full, read-only: the session ends failed, if run.json can say so
        error = f"{type(exc).__name__}: {exc}"
        session.update({"status": "failed", "ended": now_iso(), "error": error})
        try:
            folder.write_manifest(manifest)
        except OSError as again:
            session["manifest_error"] = str(again)
        raise
    folder.write_manifest(manifest)
    return manifest


def _closed(session: dict[str, Any]) -> dict[str, Any]:
    """An earlier session's entry; one still ``"running"`` (its process was killed before it
    could close it) marked ``"killed"``."""
    if session.get("status") == "running" and session.get("ended") is None:
        return {**session, "status": "killed"}
    return session


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
    """Complete this session's entry in ``run.json`` (end time, status ``"failed"`` with the
    error that stopped it, ``"interrupted"`` after Ctrl-C, else ``"finished"``; counts, batch
    sizes, cache statistics)."""
    status = "failed" if error else "interrupted" if interrupted else "finished"
    opened = session.get("pipelines") or {}
    session.update(
        {
            "ended": now_iso(),
            "status": status,
            "interrupted": interrupted,
            "error": error,
            "batch_size": resolved.batch_size,
            "pipelines": {
                n: {
                    **opened.get(n, {}),
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
    if not any(entry is session for entry in manifest["sessions"]):
        manifest["sessions"].append(session)
    manifest["ended"] = session["ended"]
    folder.write_manifest(manifest)
