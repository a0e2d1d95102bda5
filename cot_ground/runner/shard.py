"""Sharding a run across GPUs or machines, and merging the shard folders into one run.

``--shard K/N`` (K from 1 to N) keeps every N-th example of the selected examples sorted by
example id, starting at the K-th. The slice depends only on the ids, not on file order, and the
N shards are disjoint, cover every example, and differ in size by at most one.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from cot_ground.runner.fingerprint import (
    fingerprint_changes,
    merged_fingerprint,
    stored_fingerprints,
)
from cot_ground.runner.manifest import ENVIRONMENT_KEYS, environment_changes, now_iso
from cot_ground.runner.store import JsonlAppender, RunFolder, RunFolderError, fsync_dir

T = TypeVar("T")

log = logging.getLogger("cot_ground.run")

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` → ``(K, N)`` with ``1 <= K <= N``; raises ``ValueError`` naming the input."""
    match = _SHARD.match(text)
    if not match:
        raise ValueError(f"--shard must look like K/N (e.g. 2/4), got {text!r}")
    k, n = int(match.group(1)), int(match.group(2))
    if n < 1 or not 1 <= k <= n:
        raise ValueError(f"--shard {text}: K must be between 1 and N (N >= 1)")
    return k, n


def select_shard(examples: Sequence[T], k: int, n: int, id_of: Any = None) -> list[T]:
    """The K-th of N slices of ``examples`` (original order kept)."""
    key = id_of or (lambda ex: ex.id)
    ordered = sorted({key(ex) for ex in examples})
    keep = set(ordered[k - 1 :: n])
    return [ex for ex in examples if key(ex) in keep]


def _comparable(manifest: dict[str, Any]) -> dict[str, Any]:
    """What must agree between shards of one run."""
    config = dict(manifest.get("config") or {})
    for key in ("output", "batch_size", "cache"):
        config.pop(key, None)
    return {
        "config": config,
        "benchmark_sha256": (manifest.get("benchmark") or {}).get("sha256"),
        "n_of": (manifest.get("shard") or {}).get("n"),
    }


def _input_changes(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Prompt files both shards read with different contents and models whose weights digests
    differ (``pipeline: prompt file X``, ``pipeline: model weights K ...``)."""
    fa, fb = stored_fingerprints(a), stored_fingerprints(b)
    return [
        f"{name}: {change}"
        for name in sorted(set(fa) & set(fb))
        for change in fingerprint_changes(
            {k: fa[name].get(k) for k in ("prompt_files", "models_weights")},
            {k: fb[name].get(k) for k in ("prompt_files", "models_weights")},
        )
    ]


def _merged_fingerprints(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for manifest in manifests:
        for name, fp in stored_fingerprints(manifest).items():
            out[name] = merged_fingerprint(out.get(name, {}), fp)
    return out


def merge_runs(
    shard_dirs: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str]
) -> dict[str, Any]:
    """Combine shard folders of one run into ``out``; returns the merged manifest.

    The shards must come from the same config and benchmark file; a missing shard is allowed
    (the manifest lists which ones were merged) but a repeated one is not. Examples and
    predictions keep the first record of each id; the pictures the graphs made
    (``artifacts/``, named relative to the run folder in the traces) are copied, so the merged
    folder stands alone. Shards may have run with other code,
    packages, model sources or machines (:data:`~cot_ground.runner.manifest.ENVIRONMENT_KEYS`):
    every session keeps its own record of them (so ``report`` warns where they differ) and
    names its shard (``sessions[].shard``), a
    session of a later shard that ran with another one than the first shard's latest session
    gets ``environment_changed`` (``"shard K/N against shard 1/N: git commit A -> B"``), and a
    top-level ``git``, ``packages``, ``models`` or ``device`` that differs between the shards is
    null and named in ``mixed_environment`` (else it is the first shard's). Everything is
    written into a temporary folder beside ``out`` that is renamed to ``out`` at the end, so a
    merge killed part-way leaves no ``out`` that ``report`` would score. Raises
    ``RunFolderError`` when ``out`` already exists (and is not empty).
    """
    if not shard_dirs:
        raise ValueError("merge needs at least one shard folder")
    folders = [RunFolder(d) for d in shard_dirs]
    manifests = []
    for folder in folders:
        manifest = folder.read_manifest()
        if manifest is None:
            raise RunFolderError(f"{folder.path} is not a run folder (no run.json)")
        manifests.append(manifest)
    reference = _comparable(manifests[0])
    seen_shards: set[int] = set()
    for folder, manifest in zip(folders, manifests, strict=True):
        if _comparable(manifest) != reference:
            raise RunFolderError(
                f"{folder.path} was made with a different config, benchmark or shard count"
                f" than {folders[0].path}; only shards of one run can be merged"
            )
        changed = _input_changes(manifests[0], manifest)
        if changed:
            raise RunFolderError(
                f"{folder.path} and {folders[0].path} read different prompt files or weights"
                f" ({'; '.join(changed)}); only shards of one run can be merged"
            )
        k = (manifest.get("shard") or {}).get("k")
        if k is not None:
            if k in seen_shards:
                raise RunFolderError(f"{folder.path}: shard {k} is given twice")
            seen_shards.add(k)
    final = Path(out)
    if final.exists() and (not final.is_dir() or any(final.iterdir())):
        raise RunFolderError(f"merge output {final} already holds a run; choose a new --out")
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.merging-", dir=final.parent))
    try:
        merged = _write_merged(folders, manifests, reference["n_of"], seen_shards, staging)
        os.replace(staging, final)  # an empty `out` folder is replaced too
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    fsync_dir(final.parent)
    return merged


def _write_merged(
    folders: list[RunFolder],
    manifests: list[dict[str, Any]],
    n_of: int | None,
    seen_shards: set[int],
    staging: Path,
) -> dict[str, Any]:
    """Write the merged run into ``staging`` (``run.json`` last); returns its manifest."""
    target = RunFolder(staging)
    pipelines = sorted({p for m in manifests for p in m.get("pipelines", [])})
    with target.locked():
        with JsonlAppender(target.examples_path, "id") as examples:
            for folder in folders:
                for record in folder.read_examples():
                    examples.append(record)
            n_examples = len(examples.ids)
        counts: dict[str, int] = {}
        for pipeline in pipelines:
            with JsonlAppender(target.predictions_path(pipeline), "example_id") as preds:
                for folder in folders:
                    for record in folder.read_predictions(pipeline):
                        preds.append(record)
                counts[pipeline] = len(preds.ids)
        for folder in folders:  # pictures the graphs made, named relative to the run folder
            artifacts = Path(folder.path) / "artifacts"
            if artifacts.is_dir():
                shutil.copytree(artifacts, staging / "artifacts", dirs_exist_ok=True)
        merged = dict(manifests[0])
        merged.update(
            {
                "shard": None,
                "n_examples": n_examples,
                "pipelines": pipelines,
                "merged_from": [
                    {"path": str(Path(f.path).resolve()), "shard": m.get("shard")}
                    for f, m in zip(folders, manifests, strict=True)
                ],
                "missing_shards": (sorted(set(range(1, n_of + 1)) - seen_shards) if n_of else []),
                "predictions": counts,
                "fingerprints": _merged_fingerprints(manifests),
                **_merged_environment(folders, manifests),
                "started": min(str(m.get("started")) for m in manifests),
                "ended": now_iso(),
            }
        )
        target.write_manifest(merged)
    return merged


def _environment(manifest: dict[str, Any], session: dict[str, Any]) -> dict[str, Any]:
    """What ``session`` of ``manifest`` ran with (:data:`ENVIRONMENT_KEYS`); a key the session
    does not record (folders written before sessions recorded it) is taken from the top level."""
    return {key: session[key] if key in session else manifest.get(key) for key in ENVIRONMENT_KEYS}


def _shard_label(manifest: dict[str, Any], folder: RunFolder) -> str:
    shard = manifest.get("shard") or {}
    if shard.get("k") is not None and shard.get("n") is not None:
        return f"shard {shard['k']}/{shard['n']}"
    return str(Path(folder.path).resolve())


def _merged_environment(
    folders: list[RunFolder], manifests: list[dict[str, Any]]
) -> dict[str, Any]:
    """``sessions`` of every shard in order (each with its own environment; a later shard's
    session that ran with another one than the first shard's latest session gets
    ``environment_changed``), the top-level environment keys (null where the shards differ)
    and ``mixed_environment`` (those keys)."""
    first = manifests[0]
    first_sessions = [s for s in first.get("sessions") or [] if isinstance(s, dict)]
    reference = _environment(first, first_sessions[-1] if first_sessions else {})
    against = _shard_label(first, folders[0])
    # each session names the shard it ran (``shard``: ``{"k", "n"}``), so report can say which
    # shard a session that never ended belonged to
    sessions: list[dict[str, Any]] = [{"shard": first.get("shard"), **s} for s in first_sessions]
    differences: list[str] = []
    for folder, manifest in zip(folders[1:], manifests[1:], strict=True):
        label = _shard_label(manifest, folder)
        for session in manifest.get("sessions") or []:
            if not isinstance(session, dict):
                continue
            moved = environment_changes(reference, _environment(manifest, session))
            if moved:
                marked = [f"{label} against {against}: {change}" for change in moved]
                session = {
                    **session,
                    "environment_changed": [*(session.get("environment_changed") or []), *marked],
                }
                differences += [m for m in marked if m not in differences]
            sessions.append({"shard": manifest.get("shard"), **session})
    mixed = [
        key for key in ENVIRONMENT_KEYS if any(m.get(key) != first.get(key) for m in manifests[1:])
    ]
    if differences:
        log.warning(
            "the shards ran with other code, packages, models or machines (%s): each session"
            " in run.json records its own, and report warns about it",
            "; ".join(differences),
        )
    return {
        "sessions": sessions,
        **{key: (None if key in mixed else first.get(key)) for key in ENVIRONMENT_KEYS},
        "mixed_environment": mixed,
    }
