"""Out-of-memory errors of an accelerator: recognising them and freeing cached memory.

A batch that runs out of GPU memory is split and retried by its caller (the runner's batch
coordinator, :mod:`cot_ground.runner.batching`); these helpers keep that code free of torch
imports when torch was never loaded.
"""

from __future__ import annotations

import gc
import sys

OUT_OF_MEMORY_MESSAGES = (
    "CUDA out of memory",
    "HIP out of memory",
    "XPU out of memory",
    "MPS backend out of memory",
    "CUDA error: out of memory",
    "HIP error: out of memory",
    "CUDA ran out of memory outside PyTorch's allocator",
    "CUBLAS_STATUS_ALLOC_FAILED",
    "CUDNN_STATUS_ALLOC_FAILED",
)
"""What a ``RuntimeError`` message holds when an accelerator ran out of memory (matched as
written, case included), from torch's own code: the caching allocators of CUDA ("CUDA out of
memory. Tried to allocate ..."; the same allocator built for ROCm says "HIP"; they and XPU's,
``c10/xpu/XPUCachingAllocator.cpp``, raise ``torch.OutOfMemoryError``, so the text matters only
where something re-raises it as a plain ``RuntimeError``), the MPS allocator
(``aten/src/ATen/mps/MPSAllocator.mm``, a plain ``RuntimeError``), a CUDA/HIP call outside the
allocator failing with ``cudaErrorMemoryAllocation`` ("CUDA error: out of memory", torch's
``C10_CUDA_CHECK``), cuDNN kernels compiled at run time (the message in torch 2.14's
``libtorch_cuda``), and the status names of cuBLAS and cuDNN failing to allocate their own
memory (handle, workspace): torch raises those instead of ``OutOfMemoryError`` when the caching
allocator holds the memory the library needs, which is memory pressure like any other, so
freeing the cache and a smaller batch leave it room.

``CUBLAS_STATUS_NOT_INITIALIZED`` is left out although ``cublasCreate`` returns it when it
cannot allocate its resources: it also means an unusable driver or runtime (a driver/library
mismatch, a device lost, a context broken by an earlier kernel error), and counting it would
record every such failure as an out-of-memory error. Left out, a batch failing with it is still
retried one request at a time (the caller's fallback for any error), so a request that fits
alone still succeeds; only the cache is not freed and the halving is not logged."""


def is_out_of_memory(exc: BaseException) -> bool:
    """True when ``exc`` says an accelerator ran out of memory: a ``torch.OutOfMemoryError``
    (``torch.cuda.OutOfMemoryError``; by type, whatever its message), or a ``RuntimeError`` whose
    message holds one of :data:`OUT_OF_MEMORY_MESSAGES`. Never for this project's own errors
    (:class:`~cot_ground.images.ImageLoadError`, whose message holds a path that may contain any
    words; an endpoint's error quoting a server's out-of-memory reply, which a smaller client
    batch does not help), nor for ``MemoryError`` (host memory)."""
    if type(exc).__module__.partition(".")[0] == "cot_ground":
        return False
    torch = sys.modules.get("torch")
    if torch is not None:
        oom_types = tuple(
            t
            for t in (
                getattr(torch, "OutOfMemoryError", None),
                getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None),
            )
            if isinstance(t, type)
        )
        if oom_types and isinstance(exc, oom_types):
            return True
    if not isinstance(exc, RuntimeError):
        return False
    message = str(exc)
    return any(phrase in message for phrase in OUT_OF_MEMORY_MESSAGES)


def free_accelerator_memory() -> None:
    """Collect garbage (tensors held by the failed call's frames) and return the CUDA caching
    allocator's free blocks, so a smaller retry can use them; nothing without CUDA."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
