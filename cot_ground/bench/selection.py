"""Which examples of a benchmark to run: the first N of every task, or a seeded sample
stratified by task.

``per_task=N`` keeps the first N examples of each task in file order. ``sample=N, seed=S``
draws N examples without replacement, split over the tasks in proportion to their sizes
(largest-remainder rounding, ties to the task that comes first in benchmark order), each
task drawing from ``numpy.random.default_rng([S, crc32(task)])``; the same N and S give the
same examples on any machine. Both keep the file order of what they select.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence

import numpy as np

from cot_ground.records import Example
from cot_ground.tasks import order_key

log = logging.getLogger(__name__)


def first_per_task(examples: Sequence[Example], per_task: int) -> list[Example]:
    """The first ``per_task`` examples of every task, in file order."""
    if per_task < 1:
        raise ValueError(f"per_task must be at least 1, got {per_task}")
    taken: dict[str, int] = {}
    out = []
    for example in examples:
        if taken.get(example.task, 0) < per_task:
            taken[example.task] = taken.get(example.task, 0) + 1
            out.append(example)
    return out


def stratified_counts(sizes: dict[str, int], total: int) -> dict[str, int]:
    """How many of ``total`` to draw from each task of ``sizes`` (proportional allocation)."""
    available = sum(sizes.values())
    if total >= available:
        return dict(sizes)
    exact = {task: total * size / available for task, size in sizes.items()}
    counts = {task: int(value) for task, value in exact.items()}
    by_remainder = sorted(sizes, key=lambda t: (-(exact[t] - counts[t]), *order_key(t)))
    for task in by_remainder[: total - sum(counts.values())]:
        counts[task] += 1
    return counts


def stratified_sample(examples: Sequence[Example], sample: int, seed: int) -> list[Example]:
    """``sample`` examples drawn per task in proportion to task size, reproducibly from
    ``seed``, in file order (all of them when ``sample`` is at least their number, with a
    warning: nothing is sampled then)."""
    if sample < 1:
        raise ValueError(f"sample must be at least 1, got {sample}")
    if sample > len(examples):
        log.warning(
            "sample=%d asks for more than the %d example(s) selected: all %d are taken,"
            " none is sampled",
            sample,
            len(examples),
            len(examples),
        )
    positions: dict[str, list[int]] = {}
    for i, example in enumerate(examples):
        positions.setdefault(example.task, []).append(i)
    counts = stratified_counts({t: len(p) for t, p in positions.items()}, sample)
    keep: list[int] = []
    for task, where in positions.items():
        rng = np.random.default_rng([seed, zlib.crc32(task.encode("utf-8"))])
        keep.extend(where[i] for i in rng.choice(len(where), size=counts[task], replace=False))
    return [examples[i] for i in sorted(keep)]


def select_examples(
    examples: Sequence[Example],
    *,
    per_task: int | None = None,
    sample: int | None = None,
    seed: int = 0,
) -> list[Example]:
    """``examples`` narrowed by ``per_task`` and then ``sample`` (each optional; see module)."""
    out = list(examples)
    if per_task is not None:
        out = first_per_task(out, per_task)
    if sample is not None:
        out = stratified_sample(out, sample, seed)
    return out
