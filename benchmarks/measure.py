"""Measuring helpers: where a figure was taken (device, packages, date), peak memory, medians."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from cot_ground.images import IMAGE_CACHE
from cot_ground.runner.manifest import package_versions

_PAGE = os.sysconf("SC_PAGE_SIZE")


def environment() -> dict[str, Any]:
    """Device, CPU set, package versions, date and load: what makes a figure comparable."""
    info: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "platform": platform.platform(),
        "processor": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_used": sorted(os.sched_getaffinity(0)),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "python": sys.version.split()[0],
        "packages": package_versions(),
        "gpu": None,
    }
    if "torch" in sys.modules:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def pin_to_one_core() -> int:
    """Restrict this process (and its threads) to its first allowed CPU; returns that CPU."""
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def median(values: Sequence[float]) -> float:
    """Median (0.0 for no values)."""
    return float(statistics.median(values)) if values else 0.0


def _rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as fh:
        return int(fh.read().split()[1]) * _PAGE


@dataclass
class Peak:
    """Peak resident host memory (sampled every 5 ms) and peak GPU memory of a block, in MiB."""

    host_mib: float = 0.0
    gpu_mib: float | None = None
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    def _sample(self) -> None:
        peak = _rss_bytes()
        while not self._stop.wait(0.005):
            peak = max(peak, _rss_bytes())
        self.host_mib = max(peak, _rss_bytes()) / 2**20


@contextmanager
def peak_memory() -> Iterator[Peak]:
    """Measure the peak memory of the block (GPU only when torch sees a CUDA device)."""
    peak = Peak()
    cuda = None
    if "torch" in sys.modules:
        import torch

        if torch.cuda.is_available():
            cuda = torch.cuda
            cuda.synchronize()
            cuda.reset_peak_memory_stats()
    sampler = threading.Thread(target=peak._sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        peak._stop.set()
        sampler.join()
        if cuda is not None:
            cuda.synchronize()
            peak.gpu_mib = cuda.max_memory_allocated() / 2**20


def max_rss_mib() -> float:
    """Peak resident memory of the whole process so far, MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class ImageTally:
    """Image-cache activity summed over passes that each start with an empty cache: decodes
    (misses) and reuses (hits)."""

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0

    @contextmanager
    def one_pass(self) -> Iterator[None]:
        """Empty the process-wide image cache, run the block, add its counts."""
        IMAGE_CACHE.clear()
        try:
            yield
        finally:
            self.hits += IMAGE_CACHE.hits
            self.misses += IMAGE_CACHE.misses


class Stopwatch:
    """Wall and CPU seconds of a block (``with Stopwatch() as sw: ...; sw.wall``)."""

    def __enter__(self) -> Stopwatch:
        self._w, self._c = time.perf_counter(), time.process_time()
        self.wall = self.cpu = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._w
        self.cpu = time.process_time() - self._c
