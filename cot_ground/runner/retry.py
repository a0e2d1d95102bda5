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


def selection_options(bench: dict[str, Any]) -> list[str]:
    """``cot-ground run`` options that select the examples a ``run.json`` ``benchmark`` entry
    records: ``--tasks``, ``--limit``, ``--per-task``, ``--sample`` with its ``--seed``."""
    words: list[str] = []
    if bench.get("tasks"):
        words += ["--tasks", ",".join(bench["tasks"])]
    for key, option in (("limit", "--limit"), ("per_task", "--per-task")):
        if bench.get(key):
            words += [option, str(bench[key])]
    if bench.get("sample"):
        words += ["--sample", str(bench["sample"]), "--seed", str(bench.get("seed") or 0)]
    return words


def unit_floats_override(manifest: dict[str, Any]) -> str | None:
    """The ``--unit-floats`` value a run was given on the command line, read from its config
    dump: every box-reading model holds the experiment's ``unit_floats`` (what the option sets)
    and the config file, read again, does not already give them that value. None otherwise."""
    from cot_ground.runner.config import UNIT_FLOATS_ADAPTERS, ConfigError, load_config

    dump = manifest.get("config") or {}
    value = dump.get("unit_floats")
    models = [
        m for m in (dump.get("models") or {}).values() if m.get("adapter") in UNIT_FLOATS_ADAPTERS
    ]
    if (
        value is None
        or not models
        or any((m.get("options") or {}).get("unit_floats") != value for m in models)
    ):
        return None
    try:
        cfg = load_config(manifest.get("config_file") or "", defer_unset_env=True)
    except (ConfigError, OSError, ValueError):
        return value
    same = cfg.unit_floats == value and all(
        m.options.get("unit_floats") == value
        for m in cfg.models.values()
        if m.adapter in UNIT_FLOATS_ADAPTERS
    )
    return None if same else value


def retry_command(manifest: dict[str, Any], run_dir: Path, categories: list[str]) -> str:
    """The ``cot-ground run`` command that re-runs ``categories`` in ``run_dir``, built from its
    ``run.json``: the same config file, selection (``--tasks``, ``--limit``, ``--per-task``,
    ``--sample``/``--seed``, ``--shard``), ``--unit-floats`` override and folder as the run, and
    ``--no-cache`` when its latest session ran with it (a retry would otherwise read and fill
    the step-1 cache that session left alone)."""
    config = manifest.get("config_file") or "CONFIG"
    words = ["cot-ground", "run", str(config), "--out", str(run_dir)]
    words += selection_options(manifest.get("benchmark") or {})
    shard = manifest.get("shard")
    if shard:
        words += ["--shard", f"{shard['k']}/{shard['n']}"]
    unit_floats = unit_floats_override(manifest)
    if unit_floats:
        words += ["--unit-floats", unit_floats]
    sessions = manifest.get("sessions") or [{}]
    if sessions[-1].get("no_cache"):
        words.append("--no-cache")
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
