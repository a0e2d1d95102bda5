"""Step-1 cache: reasoner answers reused across runs that change only step 2.

Key recipe (version 1). The key is the sha256 of the canonical JSON (sorted keys, no spaces) of::

    {"v": 1,
     "adapter": <adapter.name>,
     "settings": <adapter.settings>,          # weights path, dtype, pixels, generation settings
     "prompt": sha256(<exact prompt text, UTF-8>),
     "images": [sha256(<file bytes>) for each image, in prompt order]}

Image paths do not enter the key (moving the benchmark keeps the cache valid); their *content*
does, so an edited image misses. Only deterministic calls are cached: an adapter whose
``settings`` say ``do_sample: true`` is passed straight through. Values are
``ReasonerResult.model_dump(mode="json")``; a hit comes back with ``cached=True``.

Storage: one SQLite file ``step1.sqlite`` in the cache folder (WAL mode, so several shards on one
machine can share it). Changing the recipe means bumping ``v``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from cot_ground.models.base import ChatRequest, Reasoner, ReasonerResult
from cot_ground.records import file_sha256

KEY_VERSION = 1
DB_NAME = "step1.sqlite"


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
    }
    canon = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()


class StepCache:
    """A SQLite key → JSON store shared by threads (and by processes, through WAL)."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / DB_NAME
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS step1 (key TEXT PRIMARY KEY, value TEXT NOT NULL,"
            " created REAL NOT NULL)"
        )
        self._db.commit()
        self.hits = 0
        self.misses = 0
        self.hasher = FileHasher()  # shared by every pipeline reading this cache

    def get_many(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """Stored values of those ``keys`` that are present."""
        if not keys:
            return {}
        found: dict[str, dict[str, Any]] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT key, value FROM step1 WHERE key IN ({marks})", chunk
                ).fetchall()
                found.update({k: json.loads(v) for k, v in rows})
        return found

    def put_many(self, items: dict[str, dict[str, Any]]) -> None:
        """Store ``items`` (an existing key keeps its first value)."""
        if not items:
            return
        now = time.time()
        rows = [(k, json.dumps(v, ensure_ascii=False), now) for k, v in items.items()]
        with self._lock:
            self._db.executemany("INSERT OR IGNORE INTO step1 VALUES (?, ?, ?)", rows)
            self._db.commit()

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

    def reason(self, requests: list[ChatRequest]) -> list[ReasonerResult]:
        """Cached answers where present; one call of ``inner`` for the misses, then stored."""
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
                results[i] = ReasonerResult.model_validate({**stored[key], "cached": True})
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
                to_store[keys[i]] = result.model_dump(mode="json", exclude={"cached"})
            self.cache.put_many(to_store)
        return [r for r in results if r is not None]
