"""How an adapter cuts the requests of one call into forward passes.

Requests are sorted by a bucket key (for the Qwen-VL adapters: image count, then visual tokens,
then prompt length), so each forward pass holds requests of similar length and little of it is
padding; then cut into consecutive passes of at most ``max_size`` requests and, when a budget is
given, at most ``max_cost`` summed cost (visual tokens: images × their resized token count,
known before any forward pass). A request that alone costs more than the budget runs alone.
Results go back in the caller's order, so the plan never changes which answer a request gets;
with greedy decoding in float32 it does not change the answer either (left padding).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

Req = TypeVar("Req")
Res = TypeVar("Res")


def in_batches(
    requests: Sequence[Req], size: int, run: Callable[[list[Req]], list[Res]]
) -> list[Res]:
    """``run`` on consecutive slices of at most ``size`` requests (at least 1), results in
    order: the forward passes of adapters that do not bucket their requests."""
    size = max(1, size)
    out: list[Res] = []
    for start in range(0, len(requests), size):
        out += run(list(requests[start : start + size]))
    return out


def plan_batches(
    keys: Sequence[Hashable],
    costs: Sequence[int],
    max_size: int,
    max_cost: int | None = None,
) -> list[list[int]]:
    """Request indices per forward pass: sorted by ``keys`` (stable), at most ``max_size``
    each and at most ``max_cost`` summed ``costs`` (None: no budget). Every index appears
    once. Raises ``ValueError`` when ``keys`` and ``costs`` differ in length or a limit is
    below 1."""
    if len(keys) != len(costs):
        raise ValueError(f"{len(keys)} keys for {len(costs)} costs")
    if max_size < 1 or (max_cost is not None and max_cost < 1):
        raise ValueError(f"max_size and max_cost must be >= 1, got {max_size}, {max_cost}")
    order = sorted(range(len(keys)), key=lambda i: keys[i])  # type: ignore[arg-type,return-value]
    batches: list[list[int]] = []
    current: list[int] = []
    spent = 0
    for i in order:
        over_budget = max_cost is not None and current and spent + costs[i] > max_cost
        if len(current) == max_size or over_budget:
            batches.append(current)
            current, spent = [], 0
        current.append(i)
        spent += costs[i]
    if current:
        batches.append(current)
    return batches
