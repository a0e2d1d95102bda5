"""Batching across examples: one-request model calls from concurrent examples become batched calls.

The runner runs up to N examples at once, each in its own thread through its own graph
invocation (so each keeps its own trace, retries and fallbacks). The graph nodes call the
adapters with one-element lists; here those adapters are proxies that park each call in a
queue per adapter and hand the queue to the real adapter as one batch when either

* N requests are waiting in that queue (a full batch), or
* every live example is parked in some queue (nothing else can happen until one queue is
  flushed: the fullest one goes, oldest first on a tie),

and no batch is running: one batch at a time, so an adapter is never called from two threads at
once (a Ray replica runs two chunks of examples over one coordinator; a model, its tokenizer and
its GPU memory serve one batch at a time).

The check runs on each event that can make it true (a request parked, an example finished, a
batch done), so there is no timer and no deadlock: a parked request waits only while some other
example is still running or some batch is in flight, and either one produces a later event.

If a batched call runs out of accelerator memory, the cache is freed and the batch is split in
two halves, each retried the same way down to single requests; only a single request that still
runs out of memory fails (its example records a ``model_error`` whose message names the
out-of-memory error). Each split is logged (warning) and counted (:meth:`oom_splits`). If a
batched call raises anything else, its requests are retried one at a time so that one bad input
(say an unreadable image) fails only its own example; an adapter that already knows which
requests failed raises :class:`~cot_ground.models.base.RequestErrors`, and each failure then goes
to its own example with nothing sent again (a served model is never retried twice).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from cot_ground.models.base import RequestErrors
from cot_ground.models.oom import free_accelerator_memory, is_out_of_memory

log = logging.getLogger("cot_ground.batching")

Outcome = tuple[Any, BaseException | None]


@dataclass
class _Call:
    """One blocked caller: its requests, and their results as they arrive."""

    n: int
    results: list[Any] = field(default_factory=list)
    errors: list[BaseException | None] = field(default_factory=list)
    remaining: int = 0
    done: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.results = [None] * self.n
        self.errors = [None] * self.n
        self.remaining = self.n


@dataclass
class _Item:
    call: _Call
    slot: int
    request: Any
    parked_at: float


class _Queue:
    """Parked requests for one adapter method, plus the record of batch sizes sent."""

    def __init__(self, name: str, fn: Callable[[list[Any]], list[Any]]) -> None:
        self.name = name
        self.fn = fn
        self.items: list[_Item] = []
        self.batch_sizes: list[int] = []
        self.oom_splits: list[int] = []  # size of every batch split after running out of memory


class BatchCoordinator:
    """Tracks live examples and parked requests; decides when each queue is flushed."""

    def __init__(self, max_batch: int) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._queues: list[_Queue] = []
        self._live = 0  # participants (worker threads) that may still call an adapter
        self._waiting = 0  # callers blocked in `submit`
        self._in_flight = 0  # batches running

    # ------------------------------------------------------------------ bookkeeping
    def join(self, n: int = 1) -> None:
        """Count ``n`` more live participants (call before starting their threads)."""
        with self._lock:
            self._live += n

    def leave(self) -> None:
        """One participant will make no further calls (its thread is done)."""
        with self._lock:
            self._live -= 1
            job = self._due_batch()
        self._drain(job)

    @contextlib.contextmanager
    def participant(self) -> Iterator[None]:
        """Be live for the duration of the block (e.g. one graph run, or one worker thread)."""
        self.join()
        try:
            yield
        finally:
            self.leave()

    def queue(self, name: str, fn: Callable[[list[Any]], list[Any]]) -> _Queue:
        """A new queue whose batches go to ``fn`` (list in, list out, same order)."""
        q = _Queue(name, fn)
        with self._lock:
            self._queues.append(q)
        return q

    def batch_sizes(self) -> dict[str, list[int]]:
        """Sizes of every batch sent so far, per queue name (queues of one name are merged; a
        queue that sent nothing, such as an unused ``yes_logprob``, is left out)."""
        out: dict[str, list[int]] = {}
        with self._lock:
            for q in self._queues:
                if q.batch_sizes:
                    out.setdefault(q.name, []).extend(q.batch_sizes)
        return out

    def oom_splits(self) -> dict[str, list[int]]:
        """Sizes of the batches split after an out-of-memory error, per queue name."""
        out: dict[str, list[int]] = {}
        with self._lock:
            for q in self._queues:
                if q.oom_splits:
                    out.setdefault(q.name, []).extend(q.oom_splits)
        return out

    # ------------------------------------------------------------------ the protocol
    def submit(self, q: _Queue, requests: list[Any]) -> list[Any]:
        """Park ``requests`` in ``q`` and block until their results are in (same order)."""
        if not requests:
            return []
        call = _Call(len(requests))
        now = time.monotonic()
        with self._lock:
            q.items.extend(_Item(call, i, r, now) for i, r in enumerate(requests))
            self._waiting += 1
            job = self._due_batch()
        self._drain(job)
        call.done.wait()
        for err in call.errors:
            if err is not None:
                raise err
        return call.results

    def _take(self, q: _Queue) -> tuple[_Queue, list[_Item]]:
        items, q.items = q.items[: self.max_batch], q.items[self.max_batch :]
        self._in_flight += 1
        return q, items

    def _due_batch(self) -> tuple[_Queue, list[_Item]] | None:
        """The batch to send now, taken from its queue (call with the lock held): none while
        one is in flight; else a full queue; else, when every live participant is parked, the
        fullest queue (oldest first on a tie)."""
        if self._in_flight:
            return None
        busy = [q for q in self._queues if q.items]
        if not busy:
            return None
        full = next((q for q in busy if len(q.items) >= self.max_batch), None)
        if full is not None:
            return self._take(full)
        if self._waiting < self._live:
            return None
        return self._take(max(busy, key=lambda q: (len(q.items), -q.items[0].parked_at)))

    def _drain(self, job: tuple[_Queue, list[_Item]] | None) -> None:
        """Run ``job``, then any batch that became due meanwhile (requests parked while it ran,
        or the rest of a caller with more requests than one batch holds)."""
        while job:
            self._run(*job)
            with self._lock:
                job = self._due_batch()

    def _call(self, q: _Queue, requests: list[Any], sizes: list[int]) -> list[Outcome]:
        """``q.fn(requests)`` as one outcome per request; a failed batch is split in halves
        after an out-of-memory error, else retried one request at a time. Appends the size of
        every call made to ``sizes``."""
        sizes.append(len(requests))
        try:
            results = q.fn(requests)
            if len(results) != len(requests):
                raise RuntimeError(
                    f"{q.name} returned {len(results)} results for {len(requests)} requests"
                )
            return [(r, None) for r in results]
        except RequestErrors as exc:  # the adapter says which requests failed: nothing re-sent
            return list(zip(exc.results, exc.errors, strict=True))
        except BaseException as exc:
            if len(requests) == 1 or not isinstance(exc, Exception):
                return [(None, exc)] * len(requests)
            out_of_memory = is_out_of_memory(exc)
        # retried outside the except block: its traceback holds the failed call's tensors
        if out_of_memory:
            free_accelerator_memory()
            half = (len(requests) + 1) // 2
            log.warning(
                "%s: out of memory on a batch of %d requests; retrying as %d + %d",
                q.name, len(requests), half, len(requests) - half,
            )  # fmt: skip
            with self._lock:
                q.oom_splits.append(len(requests))
            return self._call(q, requests[:half], sizes) + self._call(q, requests[half:], sizes)
        return [outcome for r in requests for outcome in self._call(q, [r], sizes)]

    def _run(self, q: _Queue, items: list[_Item]) -> None:
        sizes: list[int] = []
        outcomes = self._call(q, [it.request for it in items], sizes)
        with self._lock:
            q.batch_sizes.extend(sizes)
            self._in_flight -= 1
            woken: list[_Call] = []
            for it, (result, err) in zip(items, outcomes, strict=True):
                it.call.results[it.slot] = result
                it.call.errors[it.slot] = err
                it.call.remaining -= 1
                if it.call.remaining == 0:
                    self._waiting -= 1
                    woken.append(it.call)
        for call in woken:
            call.done.set()


class _Proxy:
    """Common part of the adapter proxies: same ``name`` and ``settings`` as the adapter."""

    def __init__(self, inner: Any, coordinator: BatchCoordinator, method: str) -> None:
        self.inner = inner
        self.name = inner.name
        self.settings = inner.settings
        self._queue = coordinator.queue(f"{inner.name}.{method}", getattr(inner, method))
        self._coordinator = coordinator

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)

    def _submit(self, requests: list[Any]) -> list[Any]:
        return self._coordinator.submit(self._queue, list(requests))


class BatchingReasoner(_Proxy):
    """A Reasoner whose calls are batched across examples; an adapter's ``yes_logprob`` (the
    verify graph's scorer) gets a queue of its own, so it too runs one batch at a time."""

    def __init__(self, inner: Any, coordinator: BatchCoordinator) -> None:
        super().__init__(inner, coordinator, "reason")
        if callable(getattr(inner, "yes_logprob", None)):
            queue = coordinator.queue(f"{inner.name}.yes_logprob", inner.yes_logprob)
            self.yes_logprob = lambda requests: coordinator.submit(queue, list(requests))

    def reason(self, requests: list[Any]) -> list[Any]:
        """Results for ``requests``, computed in a batch shared with other examples."""
        return self._submit(requests)


class BatchingGrounder(_Proxy):
    """A Grounder whose calls are batched across examples."""

    def __init__(self, inner: Any, coordinator: BatchCoordinator) -> None:
        super().__init__(inner, coordinator, "ground")

    def ground(self, requests: list[Any]) -> list[Any]:
        """Results for ``requests``, computed in a batch shared with other examples."""
        return self._submit(requests)


class BatchingEndToEnd(_Proxy):
    """An EndToEndGrounder whose calls are batched across examples."""

    def __init__(self, inner: Any, coordinator: BatchCoordinator) -> None:
        super().__init__(inner, coordinator, "predict")

    def predict(self, requests: list[Any]) -> list[Any]:
        """Results for ``requests``, computed in a batch shared with other examples."""
        return self._submit(requests)
