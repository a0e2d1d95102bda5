"""Out-of-memory errors of an accelerator: recognising them and freeing cached memory.

A batch that runs out of GPU memory is split and retried by its caller (the runner's batch
coordinator, :mod:`cot_ground.runner.batching`); these helpers keep that code free of torch
imports when torch was never loaded.
"""

from __future__ import annotations

import gc
import sys

ALLOCATION_FAILURES = ("CUBLAS_STATUS_ALLOC_FAILED", "CUDNN_STATUS_ALLOC_FAILED")
"""Status names in a ``RuntimeError`` that say a CUDA library could not allocate its own
memory (the cuBLAS handle and workspace, cuDNN's workspace). torch raises them instead of
``OutOfMemoryError`` when the caching allocator holds the memory the library needs, which is
memory pressure like any other: freeing the cache and a smaller batch leave it room."""


def is_out_of_memory(exc: BaseException) -> bool:
    """True for ``torch.OutOfMemoryError`` (CUDA), the ``RuntimeError`` other torch backends
    raise with "out of memory" in the message, and a ``RuntimeError`` naming a CUDA library's
    failed allocation (:data:`ALLOCATION_FAILURES`)."""
    torch = sys.modules.get("torch")
    oom_type = getattr(torch, "OutOfMemoryError", None) if torch is not None else None
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    if not isinstance(exc, RuntimeError):
        return False
    message = str(exc)
    return "out of memory" in message.lower() or any(s in message for s in ALLOCATION_FAILURES)


def free_accelerator_memory() -> None:
    """Collect garbage (tensors held by the failed call's frames) and return the CUDA caching
    allocator's free blocks, so a smaller retry can use them; nothing without CUDA."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
