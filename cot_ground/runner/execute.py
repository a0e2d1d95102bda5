"""Running one pipeline's examples: a pool of threads, each example through its own graph
invocation, every finished record appended at once; Ctrl-C handling.

A failure of one example (an exception out of its graph) becomes that example's error record
and the others go on. Ctrl-C stops taking new examples, lets the ones in flight finish and be
written; a second Ctrl-C leaves at once.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from cot_ground.images import ImageLoadError
from cot_ground.records import ErrorCategory, ErrorInfo, Example, Prediction
from cot_ground.runner.pipelines import PipelineRun
from cot_ground.runner.progress import Progress
from cot_ground.runner.store import JsonlAppender

log = logging.getLogger("cot_ground.run")


@dataclass
class PipelineSummary:
    """What one pipeline did in this session."""

    total: int
    done_before: int
    written: int = 0
    failed: int = 0
    retried: int = 0
    batch_sizes: dict[str, list[int]] = field(default_factory=dict)
    oom_splits: dict[str, list[int]] = field(default_factory=dict)  # batches split after OOM
    wall_s: float = 0.0


def _failure_record(example: Example, pipeline: str, exc: BaseException) -> dict[str, Any]:
    category = getattr(exc, "error_category", None) or ErrorCategory.MODEL
    if isinstance(exc, ImageLoadError):
        category = ErrorCategory.IMAGE
    error = ErrorInfo(category=category, message=f"{type(exc).__name__}: {exc}", node=None)
    return Prediction(
        example_id=example.id, pipeline=pipeline, task=example.task, error=error
    ).model_dump(mode="json")


class Interrupt:
    """Ctrl-C handling: the first press stops new work, the second leaves at once."""

    def __init__(self) -> None:
        self.stop = threading.Event()

    def press(self, *_: object) -> None:
        if self.stop.is_set():
            raise KeyboardInterrupt
        self.stop.set()
        log.warning("stopping: finishing the examples in flight (Ctrl-C again to quit now)")

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Route SIGINT to :meth:`press` while the block runs (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGINT, self.press)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


def run_pipeline_examples(
    pipe: PipelineRun,
    todo: list[Example],
    store: JsonlAppender,
    batch_size: int,
    progress: Progress,
    interrupt: Interrupt,
    summary: PipelineSummary,
) -> None:
    """Run ``todo`` through ``pipe``, up to ``batch_size`` examples in flight, appending each."""
    work: queue.SimpleQueue[Example] = queue.SimpleQueue()
    for ex in todo:
        work.put(ex)
    results: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
    n_workers = max(1, min(batch_size, len(todo)))

    def worker() -> None:
        try:
            while not interrupt.stop.is_set():
                try:
                    example = work.get_nowait()
                except queue.Empty:
                    return
                try:
                    state = pipe.graph.invoke(pipe.input_for(example))
                    record = dict(state["prediction"])
                except Exception as exc:  # a failure of this example only
                    log.debug("example %s failed", example.id, exc_info=True)
                    record = _failure_record(example, pipe.name, exc)
                results.put(record)
        finally:
            pipe.coordinator.leave()
            results.put(None)

    pipe.coordinator.join(n_workers)
    threads = [
        threading.Thread(target=worker, name=f"{pipe.name}-{i}", daemon=True)
        for i in range(n_workers)
    ]
    for t in threads:
        t.start()
    running = n_workers
    while running:
        try:
            item = results.get(timeout=0.2)
        except queue.Empty:
            continue
        if item is None:
            running -= 1
            continue
        write_record(item, pipe.name, store, summary, progress)


def write_record(
    record: dict[str, Any],
    pipeline: str,
    store: JsonlAppender,
    summary: PipelineSummary,
    progress: Progress,
) -> None:
    """Append one finished example of ``pipeline`` (unless its id is there) and count it."""
    record["pipeline"] = pipeline
    if store.append(record):
        summary.written += 1
        failed = record.get("error") is not None
        summary.failed += int(failed)
        progress.advance(pipeline, failed=failed)
