"""The run folder on disk: append-only JSONL files that survive ``kill -9``.

Layout (the contract in ``docs/architecture.md``)::

    RUN_DIR/run.json                    manifest
    RUN_DIR/examples.jsonl              one Example per line
    RUN_DIR/predictions/PIPELINE.jsonl  one Prediction (with its trace) per finished example

Each line is written with one ``write`` call and flushed at once, so a killed process
(``kill -9``) leaves at worst one truncated last line: flushed data sits in the OS page cache.
``fsync`` (which only adds protection against power loss or a kernel crash, and can cost
milliseconds per line on a busy disk) runs at most every ``FSYNC_INTERVAL_S`` and at close.
Opening a file for appending cuts such a torn tail off (it holds no complete record) and reads
the ids already present, so a resumed run never writes a duplicate. Readers skip a truncated
last line and keep the first record of each id.

Replacing records (``--retry-failed``): :meth:`JsonlAppender.replace` marks ids whose record
may be written again. Their new records go to a side file ``PIPELINE.jsonl.retry`` (flushed per
line like the main file); closing the appender rewrites the main file with each such line
replaced in place (a temporary file, fsync, rename) and deletes the side file. A process killed
before that leaves the side file, and the next open of the main file applies it first, so a
retried record is neither lost nor duplicated, and readers never see two records of one id.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cot_ground.redaction import redact_data

log = logging.getLogger(__name__)

FSYNC_INTERVAL_S = 1.0
"""Most seconds between two fsyncs of a JSONL file (every line is flushed at once)."""

MANIFEST = "run.json"
EXAMPLES = "examples.jsonl"
PREDICTIONS = "predictions"
REPLACEMENTS_SUFFIX = ".retry"
_LOCK_FILE = ".lock"


class RunFolderError(RuntimeError):
    """A run folder is unusable (locked by another run, made by another config...)."""


class RunFolderWriteError(RunFolderError):
    """Writing the run folder failed during a run (disk full, read-only, quota): the message
    names the folder, the OS error and whether ``run.json`` recorded the failure."""

    exit_code = 1


def writable_problems(folder: Path) -> list[str]:
    """``"run folder F: cannot write ..."`` when ``folder`` (or, while it does not exist, the
    nearest folder above it that does) or a file a run writes in it is not writable by this
    process (``os.access``: modes and read-only mounts; a full disk shows only when written)."""
    folder = Path(folder).absolute()
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        return []  # the command line refuses an --out below a file
    targets = [existing]
    if existing == folder:
        targets += [folder / MANIFEST, folder / EXAMPLES, folder / PREDICTIONS]
        predictions = folder / PREDICTIONS
        if predictions.is_dir():
            targets += sorted(predictions.glob("*.jsonl"))
    blocked = [p for p in targets if p.exists() and not os.access(p, os.W_OK)]
    if not blocked:
        return []
    names = ", ".join(str(p) for p in blocked)
    return [
        f"run folder {folder}: cannot write {names} (permission denied or a read-only file"
        " system); fix the permissions or choose another --out"
    ]


def read_jsonl(path: str | os.PathLike[str], key: str | None = None) -> list[dict[str, Any]]:
    """Records of ``path``; a truncated last line is skipped, and with ``key`` the first of
    each id wins. A broken line elsewhere is skipped with a warning naming file and line."""
    p = Path(path)
    if not p.is_file():
        return []
    data = p.read_bytes()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines:
        lines.pop()  # no newline at the end: a torn write, never a complete record
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError:
            log.warning("%s:%d: skipping a line that is not valid JSON", p, number)
            continue
        if key is not None:
            rid = record.get(key)
            if rid in seen:
                continue
            seen.add(rid)
        out.append(record)
    return out


def _cut_torn_tail(path: Path) -> None:
    """Cut an unfinished last line (no newline) off ``path``: a torn write holds no record."""
    if not path.is_file():
        return
    size = path.stat().st_size
    if size == 0:
        return
    with open(path, "rb+") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return
        # walk back to the last newline; everything after it is a torn record
        pos, chunk = size, 65536
        keep = 0
        while pos > 0:
            start = max(0, pos - chunk)
            fh.seek(start)
            block = fh.read(pos - start)
            idx = block.rfind(b"\n")
            if idx >= 0:
                keep = start + idx + 1
                break
            pos = start
        fh.truncate(keep)
        fh.flush()
        os.fsync(fh.fileno())
    log.warning("%s: dropped a truncated last line (%d bytes)", path, size - keep)


def _record_of(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None


def _encode(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def fsync_dir(folder: Path) -> None:
    """fsync a folder, so a rename inside it survives a power loss."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class JsonlAppender:
    """Append-only JSONL file with one record per id; thread-safe; flush per line, grouped fsync.

    :meth:`replace` lets chosen ids be written once more (module docstring)."""

    def __init__(self, path: str | os.PathLike[str], key: str) -> None:
        self.path = Path(path)
        self.key = key
        self.side_path = self.path.with_name(self.path.name + REPLACEMENTS_SUFFIX)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _cut_torn_tail(self.path)
        if self.side_path.is_file():  # a retry session was killed before it closed
            self._apply_replacements()
        self.ids: set[str] = {str(r.get(key)) for r in read_jsonl(self.path, key)}
        self._lock = threading.Lock()
        self._fh = open(self.path, "ab")  # noqa: SIM115 - closed in close()
        self._side: Any = None
        self._replacing: set[str] = set()
        self._last_sync = time.monotonic()

    def __contains__(self, record_id: str) -> bool:
        return record_id in self.ids

    def replace(self, ids: set[str]) -> None:
        """Let the records of ``ids`` (already in the file) be written once more; each new record
        replaces the old line when the appender closes."""
        with self._lock:
            self._replacing = {str(i) for i in ids} & self.ids
            self.ids -= self._replacing
            if self._replacing and self._side is None:
                self._side = open(self.side_path, "ab")  # noqa: SIM115 - closed in close()

    def append(self, record: dict[str, Any]) -> bool:
        """Write ``record`` unless its id is already in the file; True when written."""
        rid = str(record[self.key])
        line = _encode(record)
        with self._lock:
            if rid in self.ids:
                return False
            fh = self._side if rid in self._replacing else self._fh
            fh.write(line)
            fh.flush()
            now = time.monotonic()
            if now - self._last_sync >= FSYNC_INTERVAL_S:
                os.fsync(fh.fileno())
                self._last_sync = now
            self.ids.add(rid)
        return True

    def _apply_replacements(self) -> None:
        """Rewrite the main file with the side file's records in place of the old lines."""
        _cut_torn_tail(self.side_path)
        new = {str(r.get(self.key)): r for r in read_jsonl(self.side_path, self.key)}
        if new:
            tmp = self.path.with_name(self.path.name + ".tmp")
            with open(self.path, "rb") as src, open(tmp, "wb") as dst:
                for line in src:
                    record = _record_of(line)
                    rid = str(record.get(self.key)) if record is not None else None
                    dst.write(_encode(new.pop(rid)) if rid in new else line)
                for record in new.values():  # ids the main file lacked
                    dst.write(_encode(record))
                dst.flush()
                os.fsync(dst.fileno())
            os.replace(tmp, self.path)
            fsync_dir(self.path.parent)
        self.side_path.unlink()

    def close(self) -> None:
        """fsync and close the file, then apply the replacement records, if any. Both files are
        closed even when writing fails (the first ``OSError`` is raised, and the replacements
        stay in the side file for the next open)."""
        with self._lock:
            error: OSError | None = None
            for fh in (self._fh, self._side):
                if fh is None or fh.closed:
                    continue
                try:
                    fh.flush()
                    os.fsync(fh.fileno())
                except OSError as exc:
                    error = error or exc
                finally:
                    with contextlib.suppress(OSError):  # the flush above raised it already
                        fh.close()
            if error is not None:
                raise error
            if self._side is not None and self.side_path.is_file():
                self._apply_replacements()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc is None:
            self.close()
            return
        with contextlib.suppress(OSError):  # the error in flight says what went wrong
            self.close()


class RunFolder:
    """Paths of one run folder, and an exclusive lock so two runs never write it at once."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @property
    def manifest_path(self) -> Path:
        """``run.json``."""
        return self.path / MANIFEST

    @property
    def examples_path(self) -> Path:
        """``examples.jsonl``."""
        return self.path / EXAMPLES

    def predictions_path(self, pipeline: str) -> Path:
        """``predictions/<pipeline>.jsonl``."""
        return self.path / PREDICTIONS / f"{pipeline}.jsonl"

    def pipelines(self) -> list[str]:
        """Pipelines with a predictions file, sorted."""
        folder = self.path / PREDICTIONS
        return sorted(p.stem for p in folder.glob("*.jsonl")) if folder.is_dir() else []

    def record_files(self) -> list[str]:
        """Files of the folder that hold records (``examples.jsonl`` and predictions files that
        are not empty), relative to the folder."""
        files = [self.examples_path, *(self.predictions_path(p) for p in self.pipelines())]
        return [str(p.relative_to(self.path)) for p in files if p.is_file() and p.stat().st_size]

    def read_manifest(self) -> dict[str, Any] | None:
        """The manifest, or None when the folder has none yet."""
        if not self.manifest_path.is_file():
            return None
        try:
            return json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise RunFolderError(f"{self.manifest_path} is not valid JSON: {exc}") from None

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """Replace ``run.json`` atomically (write a temporary file, fsync, rename); secrets in
        it are redacted (:func:`cot_ground.redaction.redact_data`). When writing fails
        (``OSError``: disk full, read-only) the old ``run.json`` stays and no temporary file is
        left."""
        self.path.mkdir(parents=True, exist_ok=True)
        text = json.dumps(redact_data(manifest), indent=2, ensure_ascii=False, default=str)
        tmp = self.manifest_path.with_suffix(".json.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(text + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.manifest_path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise

    def read_examples(self) -> list[dict[str, Any]]:
        """Example records (first of each id)."""
        return read_jsonl(self.examples_path, key="id")

    def read_predictions(self, pipeline: str) -> list[dict[str, Any]]:
        """Prediction records of ``pipeline`` (first of each example id), with the records of a
        retry not yet swapped in (its side file) in place of the ones they replace."""
        path = self.predictions_path(pipeline)
        records = read_jsonl(path, key="example_id")
        side = path.with_name(path.name + REPLACEMENTS_SUFFIX)
        if side.is_file():
            newer = {r["example_id"]: r for r in read_jsonl(side, key="example_id")}
            records = [newer.pop(r["example_id"], r) for r in records] + list(newer.values())
        return records

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold an exclusive lock on the folder; fails at once if another process holds it."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / _LOCK_FILE, "a+") as fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read().strip() or "another process"
                raise RunFolderError(
                    f"run folder {self.path} is in use by {holder}; wait for it or choose --out"
                ) from None
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()}")
            fh.flush()
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
