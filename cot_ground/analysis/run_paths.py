"""Pictures a run folder names, found again after the run folder or the benchmark moved.

Two kinds of path are recorded in a run folder:

* the example's images (``examples.jsonl``): absolute paths under the benchmark root of the
  session that first wrote the example. :func:`example_images` keeps each one that exists; a
  missing one is looked up again from the annotation's own path (``raw["images"]``, relative to
  the benchmark root) under the run's current root (``run.json`` ``benchmark.root``, the latest
  session's, e.g. after ``mv lite lite_moved`` and a resume with the new root).
* the pictures a graph made and showed a model (marked images, zoom and verify crops): named
  relative to the run folder, and found under the folder being read
  (:func:`cot_ground.graph.artifacts.resolve_artifact`, which also finds the absolute paths of
  older records again in a moved or copied run folder).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cot_ground.bench.migbench import resolve_image
from cot_ground.graph.artifacts import resolve_artifact
from cot_ground.records import Example


def example_images(example: Example, benchmark: Mapping[str, Any]) -> list[str]:
    """The paths of ``example``'s images to read now, in order.

    ``benchmark`` is ``run.json``'s ``benchmark`` (``root``, ``allow_outside_root``). Each
    stored path that exists is kept; a missing one becomes the annotation's path under
    ``benchmark["root"]`` when that file exists. Otherwise the stored path stays, so a reader
    reports the path the run used as missing."""
    stored = list(example.images)
    written = example.raw.get("images") if isinstance(example.raw, dict) else None
    root = benchmark.get("root")
    if not root or not isinstance(written, list) or len(written) != len(stored):
        return stored
    found = []
    for path, relative in zip(stored, written, strict=True):
        if os.path.isfile(path) or not isinstance(relative, str):
            found.append(path)
            continue
        try:
            moved = resolve_image(root, relative, bool(benchmark.get("allow_outside_root")))
        except ValueError:  # leaves the current root: not an image of this benchmark
            found.append(path)
            continue
        found.append(moved if os.path.isfile(moved) else path)
    return found


def artifact_files(
    recorded: list[str], run_dir: str | Path, manifest: Mapping[str, Any]
) -> list[str]:
    """The files of recorded artifact names (trace ``images`` of the ``draw_marks``, ``zoom``
    and ``verify`` steps) in the run folder ``run_dir`` being read (``manifest``: its
    ``run.json``); a run merged before ``merge`` copied the pictures finds them in its shard
    folders (``merged_from``)."""
    shards = [m["path"] for m in manifest.get("merged_from") or [] if isinstance(m, dict)]
    return [str(resolve_artifact(p, run_dir, shards)) for p in recorded]
