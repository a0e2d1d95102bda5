"""Failed records of a run folder, and the exact command that runs them again.

``cot-ground run CONFIG --retry-failed [CATEGORY...]`` re-runs the examples whose record failed
with one of the categories (default: :data:`TRANSIENT_CATEGORIES`, failures a fixed setup or a
second try can cure) and replaces their lines. ``report`` and
``run`` print :func:`failure_lines` so the user sees how many failed and what to type.
"""

from __future__ import annotations

import shlex
from collections import Counter
from pathlib import Path
from typing import Any

from cot_ground.records import ErrorCategory
from cot_ground.runner.store import RunFolder

TRANSIENT_CATEGORIES: tuple[str, ...] = (
    ErrorCategory.MODEL.value,
    ErrorCategory.IMAGE.value,
    ErrorCategory.CACHE.value,
)
"""What ``--retry-failed`` re-runs when no category is named."""


def failure_counts(folder: RunFolder) -> dict[str, Counter[str]]:
    """Pipeline → error category → number of failed records (pipelines without failures left
    out)."""
    counts: dict[str, Counter[str]] = {}
    for pipeline in folder.pipelines():
        found = Counter(
            str((r.get("error") or {}).get("category"))
            for r in folder.read_predictions(pipeline)
            if r.get("error")
        )
        if found:
            counts[pipeline] = found
    return counts


def retry_command(manifest: dict[str, Any], run_dir: Path, categories: list[str]) -> str:
    """The ``cot-ground run`` command that re-runs ``categories`` in ``run_dir``: the same config
    file, selection (``--tasks``, ``--limit``, ``--shard``) and folder as the run."""
    config = manifest.get("config_file") or "CONFIG"
    words = ["cot-ground", "run", str(config), "--out", str(run_dir)]
    bench = manifest.get("benchmark") or {}
    if bench.get("tasks"):
        words += ["--tasks", ",".join(bench["tasks"])]
    if bench.get("limit"):
        words += ["--limit", str(bench["limit"])]
    shard = manifest.get("shard")
    if shard:
        words += ["--shard", f"{shard['k']}/{shard['n']}"]
    words.append("--retry-failed")
    if not set(categories) <= set(TRANSIENT_CATEGORIES):  # the default covers the transient ones
        words += categories
    return " ".join(shlex.quote(w) for w in words)


def failure_lines(run_dir: str | Path) -> list[str]:
    """Plain-text lines: failed records per pipeline and category, then the retry command for
    the transient ones (empty when nothing failed)."""
    folder = RunFolder(run_dir)
    counts = failure_counts(folder)
    if not counts:
        return []
    lines = []
    for pipeline, found in counts.items():
        detail = ", ".join(f"{n} {category}" for category, n in sorted(found.items()))
        lines.append(f"{pipeline}: {sum(found.values())} failed ({detail})")
    seen = {c for found in counts.values() for c in found}
    transient = sorted(seen & set(TRANSIENT_CATEGORIES))
    if transient:
        manifest = folder.read_manifest() or {}
        command = retry_command(manifest, folder.path.resolve(), transient)
        lines.append(f"re-run the {', '.join(transient)} records (lines replaced): {command}")
    others = sorted(seen - set(TRANSIENT_CATEGORIES))
    if others:
        lines.append(
            f"{', '.join(others)}: answers of the model, kept as results; name a category after"
            " --retry-failed to run those again"
        )
    return lines
