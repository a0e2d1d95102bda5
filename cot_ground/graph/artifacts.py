"""Where a graph saves the pictures it shows its models (set-of-marks images, zoom crops,
verify crops), and how records name them.

A file goes to ``<artifacts_dir>/<pipeline>/<example id>/<name>.png``. The runner passes
``<run>/artifacts`` as ``artifacts_dir``, and trace steps then name the file relative to the run
folder (``artifacts/som/3f2a9c.../image1_marks.png``, POSIX separators), so a run folder can be
moved or copied with its pictures: :func:`resolve_artifact` finds a recorded name again under
the run folder being read. A file outside the run folder (a graph used alone, a config's own
``artifacts_dir`` elsewhere) is recorded by its absolute path. The models always receive
absolute paths.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ARTIFACTS_FOLDER = "artifacts"
"""The run folder's subfolder the runner saves artifacts in (``<run>/artifacts``)."""


def artifacts_root(configured: str | None) -> Path:
    """The folder marked images and crops go to: ``configured``, else a new temporary folder."""
    if configured:
        return Path(configured)
    return Path(tempfile.mkdtemp(prefix="cot-ground-artifacts-"))


@dataclass(frozen=True)
class ArtifactFolder:
    """The artifact folder of one pipeline: ``folder`` (absolute, ``<artifacts_dir>/<pipeline>``)
    and the run folder ``run_dir`` (absolute; None outside a run) that records are relative to."""

    folder: Path
    run_dir: Path | None = None

    @classmethod
    def open(
        cls, artifacts_dir: str | None, pipeline: str, run_dir: str | Path | None = None
    ) -> ArtifactFolder:
        """The folder ``<artifacts_dir>/<pipeline>`` (a new temporary folder for
        ``artifacts_dir=None``); files inside ``run_dir`` are recorded relative to it."""
        folder = Path(os.path.abspath(artifacts_root(artifacts_dir) / pipeline))
        return cls(folder, Path(os.path.abspath(run_dir)) if run_dir is not None else None)

    def file(self, example_id: str, name: str) -> Path:
        """The absolute path of the file ``name`` of one example."""
        return self.folder / example_id / name

    def recorded(self, path: str | Path) -> str:
        """How a trace names ``path``: relative to the run folder (POSIX separators) when it is
        an artifact of this folder inside the run folder, else ``path`` unchanged."""
        absolute = os.path.abspath(path)
        if self.run_dir is None or not _inside(absolute, self.folder):
            return str(path)
        if not _inside(absolute, self.run_dir):
            return str(path)
        return Path(absolute).relative_to(self.run_dir).as_posix()


def resolve_artifact(recorded: str, run_dir: str | Path, others: Sequence[str | Path] = ()) -> Path:
    """The file a trace names ``recorded``, found in the run folder being read.

    A relative name is under ``run_dir``, else under one of ``others`` (the shard folders a
    merged run came from, whose pictures stay there). Records written before names were
    relative hold the absolute path the file was saved at: the same
    ``<pipeline>/<example id>/<name>`` under ``run_dir/artifacts`` is taken when it exists (a
    moved or copied run folder has its own pictures), else the recorded path. When no candidate
    exists the path returned is the one a reader should report missing (``run_dir/recorded``,
    or the recorded absolute path)."""
    path = Path(recorded)
    run = Path(run_dir)
    candidates = [] if path.is_absolute() else [run / path, *(Path(o) / path for o in others)]
    if len(path.parts) > 3:
        candidates.append(run / ARTIFACTS_FOLDER / Path(*path.parts[-3:]))
    candidates.append(path)  # absolute, or relative to the working folder (older records)
    found = next((c for c in candidates if c.is_file()), None)
    if found is not None:
        return found
    return path if path.is_absolute() else run / path


def _inside(path: str, folder: Path) -> bool:
    return os.path.commonpath([path, str(folder)]) == str(folder)
