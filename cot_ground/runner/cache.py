"""Step-1 cache: reasoner answers reused across runs that change only step 2.

Key recipe (version 3). The key is the sha256 of the canonical JSON (sorted keys, no spaces) of::

    {"v": 3,
     "adapter": <adapter.name>,
     "settings": <adapter.settings>,   # weights path and weights_digest, dtype, pixels, generation
     "prompt": sha256(<exact prompt text, UTF-8>),
     "images": [sha256(<file bytes>) for each image, in prompt order],
     "answer_kind": <request.answer_kind>,
     "question": <request.question>,
     "task": <request.task>}

The key names everything the reasoner is given: the adapter, its settings (for an HF adapter
they hold ``weights_digest``, the content of its model folder, so other weights written to the
same folder miss: :func:`cot_ground.models.hf_loading.adapter_settings`), the prompt, the images
and the rest of the request (answer kind, question, task: a reasoner may use them).
Image paths do not enter the key (moving the benchmark keeps the cache valid); their *content*
does, so an edited image misses. Only deterministic calls are cached: an adapter whose
``settings`` say ``do_sample: true`` is passed straight through.

Values are the model's raw text, ``{"raw_text": ...}``, never its parse: every hit is read
again with the current reader, :meth:`ReasonerResult.from_text` (``parse_step1`` with the
request's answer kind, images and question; image mentions by ``cot_ground.mentions``), and
comes back with ``cached=True``. So a reader or parser upgrade applies to cached answers at
once, and the ``image_reader`` a record names is the one that read its answer. This was
chosen over keying on reader versions, which would miss after every upgrade and rely on each
change bumping a version. An answer is stored only when reading its text with the current
reader gives back exactly the adapter's result; a result that is not a reading of its text (the
rule reasoner's, built from the question; it costs no model call) is passed through, never
cached.

Version 2 stored the parsed result under keys without ``weights_digest``; version 1 also had no
answer kind, question or task. Entries of older versions simply miss once. Changing the
recipe means bumping ``v``.

Storage: one SQLite file ``step1.sqlite`` in the cache folder (WAL mode, so several shards on one
machine can share it).

Failures: a file that is not a database, or fails SQLite's ``quick_check`` when opened (a
truncated or overwritten file), is moved aside to ``step1.sqlite.corrupt-<time>`` with a warning
and a new cache is started. A read or write that fails during a run (a locked or broken file, a
stored value without its text) raises :class:`CacheError` naming the file and the ways out; the
example is recorded with the category ``cache_error`` (never ``model_error``), which
``--retry-failed`` re-runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from cot_ground.models.base import ChatRequest, Reasoner, ReasonerResult
from cot_ground.records import ErrorCategory, file_sha256
from cot_ground.redaction import redact_data, redact_text

log = logging.getLogger(__name__)

KEY_VERSION = 3
DB_NAME = "step1.sqlite"


class CacheError(RuntimeError):
    """The step-1 cache file cannot be used; the message names it and the ways out."""

    error_category = ErrorCategory.CACHE  # how the graph records it on an example

    def __init__(self, path: Path, cause: BaseException) -> None:
        super().__init__(
            f"step-1 cache {path}: {type(cause).__name__}: {cause}; re-run with --no-cache, or"
            f" move the file aside (mv {path} {path}.bad) to start a new cache"
        )


class FileHasher:
    """sha256 of file contents, memoized by (path, mtime, size)."""

    def __init__(self) -> None:
        self._memo: dict[tuple[str, float, int], str] = {}
        self._lock = threading.Lock()

    def __call__(self, path: str) -> str:
        """Hex sha256 of the file at ``path`` (raises ``OSError`` when unreadable)."""
        st = os.stat(path)
        memo_key = (str(path), st.st_mtime, st.st_size)
        with self._lock:
            if memo_key in self._memo:
                return self._memo[memo_key]
        value = file_sha256(path)
        with self._lock:
            self._memo[memo_key] = value
        return value


def cache_key(adapter: Any, request: ChatRequest, hasher: FileHasher) -> str:
    """The key of ``request`` sent to ``adapter`` (recipe in the module docstring)."""
    payload = {
        "v": KEY_VERSION,
        "adapter": adapter.name,
        "settings": adapter.settings,
        "prompt": hashlib.sha256(request.prompt.encode("utf-8")).hexdigest(),
        "images": [hasher(p) for p in request.images],
        "answer_kind": request.answer_kind,
        "question": request.question,
        "task": request.task,
    }
    canon = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()


def _is_corrupt(exc: sqlite3.Error) -> bool:
    """True for a file that is not a database or whose pages are damaged (not for a lock)."""
    name = getattr(exc, "sqlite_errorname", None)
    if name is not None and name != "SQLITE_ERROR":
        return name in ("SQLITE_CORRUPT", "SQLITE_NOTADB")
    return type(exc) is sqlite3.DatabaseError  # also the quick_check failure raised in _open


def _redacted(value: dict[str, Any]) -> dict[str, Any]:
    """A value to store with its secrets redacted: the model text (``raw_text``) loses only the
    registered secret values, as a record's text does (:func:`cot_ground.redaction.redact_text`),
    so a hit reads the same text a fresh answer's record keeps; anything else (settings) gets
    :func:`cot_ground.redaction.redact_data` (a password in a ``base_url``)."""
    return {k: redact_text(v) if k == "raw_text" else redact_data(v) for k, v in value.items()}


class StepCache:
    """A SQLite key → JSON store shared by threads (and by processes, through WAL)."""

    def __init__(self, folder: str | os.PathLike[str], timeout_s: float = 30.0) -> None:
        """Open (or create) ``folder/step1.sqlite``; a corrupt file is moved aside with a
        warning. ``timeout_s``: how long a call waits for another process's lock. Raises
        :class:`CacheError` when the file can be neither used nor moved aside."""
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / DB_NAME
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        try:
            self._db = self._open()
        except sqlite3.Error as exc:
            if not _is_corrupt(exc):  # locked by another process, read-only folder...
                raise CacheError(self.path, exc) from exc
            self._move_aside(exc)
            try:
                self._db = self._open()
            except sqlite3.Error as again:
                raise CacheError(self.path, again) from again
        self.hits = 0
        self.misses = 0
        self.hasher = FileHasher()  # shared by every pipeline reading this cache

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=self.timeout_s, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {check}")
            db.execute(
                "CREATE TABLE IF NOT EXISTS step1 (key TEXT PRIMARY KEY, value TEXT NOT NULL,"
                " created REAL NOT NULL)"
            )
            db.commit()
        except sqlite3.Error:
            db.close()
            raise
        return db

    def _move_aside(self, cause: BaseException) -> None:
        """Rename the corrupt database (and its WAL files) to ``*.corrupt-<time>``."""
        stamp = time.strftime("%Y%m%dT%H%M%S")
        aside = self.path.with_name(f"{DB_NAME}.corrupt-{stamp}")
        try:
            for suffix in ("", "-wal", "-shm"):
                part = Path(f"{self.path}{suffix}")
                if part.exists():
                    os.replace(part, f"{aside}{suffix}")
        except OSError as exc:
            raise CacheError(self.path, cause) from exc
        log.warning(
            "step-1 cache %s is corrupt (%s): moved it aside to %s and started a new cache",
            self.path,
            cause,
            aside,
        )

    def get_many(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """Stored values of those ``keys`` that are present."""
        if not keys:
            return {}
        found: dict[str, dict[str, Any]] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                try:
                    rows = self._db.execute(
                        f"SELECT key, value FROM step1 WHERE key IN ({marks})", chunk
                    ).fetchall()
                    found.update({k: json.loads(v) for k, v in rows})
                except (sqlite3.Error, ValueError) as exc:
                    raise CacheError(self.path, exc) from exc
        return found

    def put_many(self, items: dict[str, dict[str, Any]]) -> None:
        """Store ``items`` (an existing key keeps its first value), secrets redacted
        (:func:`_redacted`)."""
        if not items:
            return
        now = time.time()
        rows = [(k, json.dumps(_redacted(v), ensure_ascii=False), now) for k, v in items.items()]
        with self._lock:
            try:
                self._db.executemany("INSERT OR IGNORE INTO step1 VALUES (?, ?, ?)", rows)
                self._db.commit()
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._db.rollback()
                raise CacheError(self.path, exc) from exc

    def count(self, hits: int, misses: int) -> None:
        """Add to the hit and miss counters."""
        with self._lock:
            self.hits += hits
            self.misses += misses

    def entries(self) -> int:
        """Number of stored answers."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM step1").fetchone()[0])

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()


def is_deterministic(adapter: Any) -> bool:
    """True unless the adapter's settings ask for sampling."""
    settings = getattr(adapter, "settings", {}) or {}
    return not bool(settings.get("do_sample", False))


class CachedReasoner:
    """A :class:`Reasoner` that answers from a :class:`StepCache` and asks ``inner`` the rest."""

    def __init__(self, inner: Reasoner, cache: StepCache, hasher: FileHasher | None = None):
        self.inner = inner
        self.cache = cache
        self.hasher = hasher or cache.hasher
        self.name = inner.name
        self.settings = inner.settings
        if callable(getattr(inner, "yes_logprob", None)):  # verify's scorer, never cached
            self.yes_logprob = inner.yes_logprob
            self.yes_tokens = getattr(inner, "yes_tokens", None)

    def reason(self, requests: list[ChatRequest]) -> list[ReasonerResult]:
        """Cached answers (their stored text read by the current reader) where present; one
        call of ``inner`` for the misses, whose texts are then stored (those that are a
        reading of their text, see the module docstring)."""
        if not is_deterministic(self.inner):
            return self.inner.reason(requests)
        try:
            keys = [cache_key(self.inner, r, self.hasher) for r in requests]
        except OSError:
            # an unreadable image: let the adapter raise its own error naming the file
            return self.inner.reason(requests)
        stored = self.cache.get_many(keys)
        results: list[ReasonerResult | None] = [None] * len(requests)
        missing: list[int] = []
        for i, key in enumerate(keys):
            if key in stored:
                results[i] = self._reread(stored[key], requests[i])
            else:
                missing.append(i)
        self.cache.count(hits=len(requests) - len(missing), misses=len(missing))
        if missing:
            fresh = self.inner.reason([requests[i] for i in missing])
            if len(fresh) != len(missing):
                raise RuntimeError(
                    f"reasoner {self.name!r} returned {len(fresh)} results for"
                    f" {len(missing)} requests"
                )
            to_store = {}
            for i, result in zip(missing, fresh, strict=True):
                results[i] = result
                if _is_reading_of_text(result, requests[i]):
                    to_store[keys[i]] = {"raw_text": result.raw_text}
            self.cache.put_many(to_store)
        return [r for r in results if r is not None]

    def _reread(self, value: dict[str, Any], request: ChatRequest) -> ReasonerResult:
        """The stored answer text read now, as the adapter reads a fresh answer."""
        text = value.get("raw_text")
        if not isinstance(text, str):
            raise CacheError(self.cache.path, ValueError("a stored answer has no raw_text"))
        fresh = ReasonerResult.from_text(text, request, self.inner.settings)
        return fresh.model_copy(update={"cached": True})


def _is_reading_of_text(result: ReasonerResult, request: ChatRequest) -> bool:
    """True when reading ``result.raw_text`` for ``request`` with the current reader gives back
    ``result`` (what a hit will rebuild), False for a result built otherwise."""
    again = ReasonerResult.from_text(result.raw_text, request, result.settings)
    return again.model_dump(exclude={"cached"}) == result.model_dump(exclude={"cached"})
