"""Out-of-memory errors of an accelerator: recognising them and freeing cached memory.

A batch that runs out of GPU memory is split and retried by its caller (the runner's batch
coordinator, :mod:`cot_ground.runner.batching`); these helpers keep that code free of torch
imports when torch was never loaded.
"""

from __future__ import annotations

import gc
import sys


def is_out_of_memory(exc: BaseException) -> bool:
    """True for ``torch.OutOfMemoryError`` (CUDA, and the ``RuntimeError`` other torch backends
    raise with "out of memory" in the message)."""
    torch = sys.modules.get("torch")
    oom_type = getattr(torch, "OutOfMemoryError", None) if torch is not None else None
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def free_accelerator_memory() -> None:
    """Collect garbage (tensors held by the failed call's frames) and return the CUDA caching
    allocator's free blocks, so a smaller retry can use them; nothing without CUDA."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
