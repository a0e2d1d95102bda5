"""What makes a run folder's figures not the clean result of one finished run, in words.

A report reads whatever records a run folder holds; these checks say when those records are
not the whole, uniform run that ``run.json`` describes:

- the run never ended (``ended`` empty: killed, or still running), or its last session was
  interrupted or stopped on an error; in a merged run (``merged_from``), shards the merge
  lacks (``missing_shards``), and every session that never ended (a shard killed, or still
  running, when it was merged), or that was the last of its shard and was interrupted or
  stopped on an error;
- the annotation file at ``benchmark.path`` is gone or is no longer the file the run was
  scored on (its sha256 differs from ``benchmark.sha256``: rebuilt or edited), so the pictures
  drawn for the run's examples may be other pictures;
- a session resumed with changes allowed (``sessions[].changed``, ``--allow-changed``), so
  records written before and after the change are mixed; a session changed the example
  selection (``sessions[].selection_changed``) or the benchmark's ground-truth settings
  (``sessions[].benchmark_changed``); a session ran other code, packages or model weights than
  the one before (``sessions[].environment_changed``);
- a pipeline listed in ``run.json`` has no records; a pipeline has fewer examples than the run
  selected (``examples.jsonl``, the union of every session's selection);
- a pipeline lacks tasks of the run, so its ``AVERAGE`` is over a subset of the tasks.

Every key of ``run.json`` is optional: a missing key means unknown and gives no warning (run
folders written by older versions, hand-made folders).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pandas as pd

from cot_ground.analysis.load import read_manifest
from cot_ground.analysis.scores import coverage_warnings, pipelines_of
from cot_ground.records import file_sha256
from cot_ground.runner.manifest import ENVIRONMENT_KEYS, environment_changes
from cot_ground.runner.store import RunFolder
from cot_ground.tasks import ordered_tasks


@dataclass(frozen=True)
class RunSelection:
    """The examples a run selected (``examples.jsonl``: every session's selection together)."""

    ids: frozenset[str]
    tasks: tuple[str, ...]
    """The run's tasks in benchmark order."""

    @classmethod
    def of(cls, run_dir: str | os.PathLike[str]) -> RunSelection:
        """Read ``RUN_DIR/examples.jsonl`` (empty when the folder has none)."""
        folder = RunFolder(run_dir)
        records = folder.read_examples() if folder.examples_path.is_file() else []
        ids = frozenset(str(r["id"]) for r in records if r.get("id") is not None)
        tasks = tuple(ordered_tasks(str(r["task"]) for r in records if r.get("task")))
        return cls(ids=ids, tasks=tasks)


def run_warnings(
    run_dir: str | os.PathLike[str],
    df: pd.DataFrame,
    manifest: dict[str, Any] | None = None,
    selection: RunSelection | None = None,
) -> list[str]:
    """Every reason the figures of ``df`` (the :func:`~cot_ground.analysis.load.load_run` frame
    of ``run_dir``) are not those of one finished, unchanged run; empty for a clean run.

    Order: the run's state, the benchmark file, then each session's allowed changes, then
    pipelines and tasks missing records. ``manifest`` (``run.json``) and ``selection`` are read
    from ``run_dir`` when not given.
    """
    manifest = read_manifest(run_dir) if manifest is None else manifest
    selection = RunSelection.of(run_dir) if selection is None else selection
    return [
        *state_warnings(manifest),
        *benchmark_file_warnings(manifest),
        *session_warnings(manifest),
        *record_warnings(df, manifest, selection),
    ]


def state_warnings(manifest: dict[str, Any]) -> list[str]:
    """The run never ended (its last session killed, or still running), or its last session was
    interrupted or stopped on an error; for a merged run, :func:`merge_warnings`. An earlier
    session of a plain run with no end time was taken over by a later resume (the runner marks
    it ``killed``): no warning."""
    if manifest.get("merged_from"):
        return merge_warnings(manifest)
    sessions = _sessions(manifest)
    last = sessions[-1] if sessions else None
    n = len(sessions)
    if last is not None and "ended" in last and last["ended"] is None:
        status = f", status {last['status']}" if last.get("status") else ""
        return [
            f"the run never ended: session {n} ({_started(last)}{status}) has no end time; it"
            " was killed, or is still running, so its pipelines may be unfinished"
        ]
    if "ended" in manifest and manifest["ended"] is None:
        which = f"the session after session {n}" if sessions else "its only session"
        return [
            f"the run never ended: run.json has no end time ({which} was killed before it"
            " recorded itself, or is still running), so its pipelines may be unfinished"
        ]
    if last is None:
        return []
    out = []
    if last.get("interrupted"):
        out.append(
            f"the last session (session {n}, {_started(last)}) was interrupted (Ctrl-C) before"
            " every pipeline finished"
        )
    if last.get("error"):
        out.append(f"the last session (session {n}) stopped on an error: {last['error']}")
    return out


def merge_warnings(manifest: dict[str, Any]) -> list[str]:
    """For a run merged from shard folders (``cot-ground merge``): the shards it lacks
    (``missing_shards``), then :func:`unfinished_shard_warnings`. Sessions name their shard
    when they record one (``sessions[].shard``)."""
    out = []
    missing = manifest.get("missing_shards")
    if isinstance(missing, list) and missing:
        sources = manifest.get("merged_from")
        merged = [_shard_text(m) for m in sources] if isinstance(sources, list) else []
        out.append(
            f"the merge lacks shard{'s' if len(missing) > 1 else ''}"
            f" {', '.join(str(k) for k in missing)} (run.json missing_shards; merged:"
            f" {', '.join(t for t in merged if t) or 'not recorded'}): their examples are in no"
            " table, so every figure is over part of the run's selection"
        )
    return out + unfinished_shard_warnings(manifest)


def unfinished_shard_warnings(manifest: dict[str, Any]) -> list[str]:
    """For a merged run: every session that never ended (its shard was killed, or still
    running, when it was merged; one a later resume took over, status ``killed``, is not one)
    and the last session of each shard that was interrupted or stopped on an error."""
    out = []
    sessions = _sessions(manifest)
    last_of_shard = {_shard_text(s): number for number, s in enumerate(sessions, start=1)}
    for number, session in enumerate(sessions, start=1):
        shard = _shard_text(session)
        label = f"session {number} ({f'{shard}, ' if shard else ''}{_started(session)}"
        if "ended" in session and session["ended"] is None and session.get("status") != "killed":
            status = f", status {session['status']}" if session.get("status") else ""
            out.append(
                f"{label}{status}) has no end time: {shard or 'its shard'} was killed, or was"
                " still running, when it was merged, so its pipelines may be unfinished"
            )
        elif last_of_shard[shard] == number:
            last = f"{label}), the last session of {shard or 'its shard'},"
            if session.get("interrupted"):
                out.append(f"{last} was interrupted (Ctrl-C) before every pipeline finished")
            if session.get("error"):
                out.append(f"{last} stopped on an error: {session['error']}")
    return out


def benchmark_file_warnings(manifest: dict[str, Any]) -> list[str]:
    """The annotation file at ``run.json`` ``benchmark.path`` is gone, or its sha256 is not the
    recorded ``benchmark.sha256`` (the benchmark was rebuilt or edited after the run): the
    images at the recorded paths may then be other pictures than those the run was scored on.
    The scores themselves use the ground truth stored in ``examples.jsonl``. A relative path is
    read from the current folder."""
    bench = manifest.get("benchmark")
    if not isinstance(bench, dict) or not bench.get("path") or not bench.get("sha256"):
        return []
    path, recorded = str(bench["path"]), str(bench["sha256"])
    risk = (
        "the pictures report and show draw for the run's examples, and any ground truth read"
        " from that file again, may not be what the run was scored on (its scores use the boxes"
        " stored in examples.jsonl)"
    )
    try:
        found = file_sha256(path)
    except OSError as exc:
        reason = "is missing" if isinstance(exc, FileNotFoundError) else f"cannot be read ({exc})"
        return [f"the run's benchmark file {path} {reason}, so it cannot be checked: {risk}"]
    if found != recorded:
        return [
            f"the run's benchmark file {path} has changed since the run (sha256 {found[:12]}…"
            f" now vs {recorded[:12]}… in run.json: rebuilt or edited): {risk}"
        ]
    return []


def session_warnings(manifest: dict[str, Any]) -> list[str]:
    """Per session: the changes allowed when it resumed the run, its change of the example
    selection or of the benchmark's settings, and the code, packages or weights it ran that
    differ from the session before."""
    out = []
    for number, session in enumerate(_sessions(manifest), start=1):
        label = f"session {number} ({_started(session)})"
        changed = session.get("changed")
        if changed:
            out.append(
                f"{label} resumed the run with changes allowed (--allow-changed): "
                f"{describe(changed)}; records written before and after it are mixed in the"
                " tables, and run.json's config is the last session's"
            )
        moved = session.get("selection_changed")
        if moved:
            out.append(
                f"{label} changed the example selection ({describe(moved)}); the run holds"
                " every session's selection together, and the run box's selection is the last"
                " session's"
            )
        bench = session.get("benchmark_changed") or []
        roots = [c for c in bench if isinstance(c, str) and c.startswith("root ")]
        scoring = [c for c in bench if c not in roots]
        if scoring:
            out.append(
                f"{label} changed the benchmark's settings ({describe(scoring)}): records scored"
                " under both are mixed"
            )
        if roots:
            out.append(
                f"{label} read the images from another benchmark root ({describe(roots)}); the"
                " annotation file, and so the ground truth, is the same (its sha256 is checked),"
                " but the images under the two roots are not compared"
            )
    return out + environment_warnings(manifest)


def environment_warnings(manifest: dict[str, Any]) -> list[str]:
    """Sessions that wrote records with other code, packages, model weights or machine than the
    last session before them that wrote records (:func:`cot_ground.runner.manifest.
    environment_changes` over the environments each session entry records). A session that
    wrote nothing (a resume with nothing left to do) mixes nothing, and a change it brought is
    reported against the next session that writes. Session entries without an environment
    (older run folders) fall back to their recorded ``environment_changed``."""
    out = []
    sessions = _sessions(manifest)
    previous: dict[str, Any] | None = None
    for number, session in enumerate(sessions, start=1):
        if not _wrote_records(session, sessions[number:]):
            continue
        label = f"session {number} ({_started(session)})"
        if any(key in session for key in ENVIRONMENT_KEYS):
            moved = environment_changes(previous, session) if previous is not None else []
            previous = session
        else:
            moved = session.get("environment_changed") or []
        if moved:
            out.append(
                f"{label} ran other code, packages, model weights or machine than the session"
                f" before it that wrote records ({describe(moved)}): records made by both are"
                " mixed"
            )
    return out


def _wrote_records(session: dict[str, Any], later: list[dict[str, Any]]) -> bool:
    """Whether ``session`` wrote records: a pipeline's ``written`` count, else (a killed
    session, which never counted) the lines the next session found beyond this one's
    ``records_before``; unknown counts as written."""
    pipelines = session.get("pipelines")
    if not isinstance(pipelines, dict) or not pipelines:
        return True
    counts = [p.get("written") for p in pipelines.values() if isinstance(p, dict)]
    if counts and all(isinstance(c, int) for c in counts):
        return sum(counts) > 0
    after = later[0].get("pipelines") if later else None
    if not isinstance(after, dict):
        return True
    for name, entry in pipelines.items():
        before = entry.get("records_before") if isinstance(entry, dict) else None
        next_before = (after.get(name) or {}).get("records_before")
        if not (isinstance(before, int) and isinstance(next_before, int)):
            return True
        if next_before > before:
            return True
    return False


def record_warnings(
    df: pd.DataFrame,
    manifest: dict[str, Any],
    selection: RunSelection,
    listed: list[str] | None = None,
) -> list[str]:
    """Pipelines listed in ``run.json`` (or ``listed``) without records, pipelines with fewer
    examples than the run selected (:func:`~cot_ground.analysis.scores.coverage_warnings`), and
    pipelines missing tasks of the run (their AVERAGE is then over a subset of the tasks)."""
    out = []
    present = set(pipelines_of(df)) if not df.empty else set()
    if listed is None:
        listed = manifest.get("pipelines")
    if not isinstance(listed, list):
        listed = list((manifest.get("config") or {}).get("pipelines") or {})
    empty = [str(p) for p in listed if str(p) not in present]
    if empty:
        out.append(
            f"pipeline{'s' if len(empty) > 1 else ''} {', '.join(empty)} listed in run.json"
            f" {'have' if len(empty) > 1 else 'has'} no records (not run yet, or the run"
            " stopped before reaching it): missing from every table"
        )
    recorded = manifest.get("n_examples")
    if isinstance(recorded, int) and recorded > len(selection.ids):
        out.append(
            f"run.json counts {recorded} examples but examples.jsonl holds {len(selection.ids)}"
        )
    out += coverage_warnings(df, set(selection.ids) or None)
    for pipeline, (have, total) in task_coverage(df, selection).items():
        if have < total:
            missing = [t for t in selection.tasks if t not in _tasks(df, pipeline)]
            out.append(
                f"{pipeline} has no records for {len(missing)} of the run's {total} tasks"
                f" ({', '.join(missing)}): its AVERAGE is over {have} of {total} tasks, and its"
                " SPONTANEOUS / REFERENTIAL means over the tasks it has"
            )
    return out


def task_coverage(df: pd.DataFrame, selection: RunSelection) -> dict[str, tuple[int, int]]:
    """``{pipeline: (tasks with records, tasks of the run)}`` for every pipeline of ``df``; the
    run's tasks are those of ``examples.jsonl`` together with those of ``df``."""
    total = len(set(selection.tasks) | set(df["task"])) if not df.empty else len(selection.tasks)
    return {p: (len(_tasks(df, p)), total) for p in pipelines_of(df)} if not df.empty else {}


def describe(value: Any) -> str:
    """A run.json value for people: ``{pipeline: [change, ...]}`` as ``pipeline: a, b``,
    lists joined with commas."""
    if isinstance(value, dict):
        return "; ".join(f"{k}: {describe(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(describe(v) for v in value)
    return str(value)


def _sessions(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    sessions = manifest.get("sessions")
    return [s for s in sessions if isinstance(s, dict)] if isinstance(sessions, list) else []


def _shard_text(entry: Any) -> str:
    """``"shard K/N"`` of a session or ``merged_from`` entry, or ``""`` when it records none."""
    shard = entry.get("shard") if isinstance(entry, dict) else None
    if isinstance(shard, dict) and shard.get("k") is not None and shard.get("n") is not None:
        return f"shard {shard['k']}/{shard['n']}"
    return ""


def _started(session: dict[str, Any]) -> str:
    started = session.get("started")
    return f"started {started}" if started else "start time not recorded"


def _tasks(df: pd.DataFrame, pipeline: str) -> set[str]:
    return set(df.loc[df["pipeline"] == pipeline, "task"])
