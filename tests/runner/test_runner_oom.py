"""Out-of-memory errors inside a batch: the batch is split and retried down to single requests,
and only a request that runs out of memory alone fails (CPU; the adapters raise torch's
out-of-memory error above a batch size, as CUDA would)."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

import pytest
import runner_fakes as rf
import torch

from cot_ground.models import registry
from cot_ground.models.oom import is_out_of_memory
from cot_ground.models.settings import ModelSettings
from cot_ground.runner.batching import BatchCoordinator
from cot_ground.runner.config import parse_config
from cot_ground.runner.run import run_experiment
from cot_ground.runner.store import RunFolder


def _oom(n: int) -> torch.OutOfMemoryError:
    return torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {n} GiB")


def test_out_of_memory_is_recognised() -> None:
    assert is_out_of_memory(_oom(2))
    assert is_out_of_memory(RuntimeError("MPS backend out of memory"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    # cuBLAS / cuDNN could not allocate their workspace: memory pressure, split like an OOM
    cublas = "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"
    assert is_out_of_memory(RuntimeError(cublas))
    assert is_out_of_memory(RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"))
    assert not is_out_of_memory(RuntimeError("CUDA error: CUBLAS_STATUS_EXECUTION_FAILED"))
    assert not is_out_of_memory(ValueError(cublas))
    assert not is_out_of_memory(MemoryError())


def test_torchs_out_of_memory_types_count_whatever_their_message() -> None:
    assert is_out_of_memory(torch.OutOfMemoryError("allocation refused"))
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("allocation refused"))


@pytest.mark.parametrize(
    "message",
    [
        "CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 79.15 GiB total capacity)",
        "HIP out of memory. Tried to allocate 2.00 GiB",
        "XPU out of memory. Tried to allocate 192.00 MiB. GPU 3 has a total capacity of 31.89 GiB",
        "MPS backend out of memory (MPS allocated: 17.21 GiB, max allowed: 20.13 GiB)",
        "CUDA error: out of memory\nCUDA kernel errors might be asynchronously reported",
        "HIP error: out of memory",
        "CUDA ran out of memory outside PyTorch's allocator. If this workload uses many shapes",
        "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
        "cuDNN error: CUDNN_STATUS_ALLOC_FAILED",
    ],
)
def test_the_allocators_own_phrasings_count_in_a_runtime_error(message: str) -> None:
    assert is_out_of_memory(RuntimeError(message))


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("out of memory"),  # no allocator says only this
        RuntimeError("failed: /data/out of memory/a.jpg"),
        RuntimeError("cuda Out Of Memory"),  # the phrasings are matched as written
        # cublasCreate's status for a missing resource, an unusable driver or a broken context
        RuntimeError("CUDA error: CUBLAS_STATUS_NOT_INITIALIZED when calling `cublasCreate()`"),
        ValueError("CUDA out of memory"),
        MemoryError("CUDA out of memory"),
    ],
)
def test_other_errors_naming_memory_do_not_count(exc: BaseException) -> None:
    assert not is_out_of_memory(exc)


def test_the_projects_own_errors_never_count() -> None:
    from cot_ground.images import ImageLoadError
    from cot_ground.models.base import ModelLoadError
    from cot_ground.models.openai_chat import EndpointError

    # RuntimeError subclasses whose messages quote a path or a server's reply
    assert not is_out_of_memory(ImageLoadError("cannot read /data/CUDA out of memory/a.jpg"))
    assert not is_out_of_memory(ModelLoadError("/models/CUDA out of memory/ lacks config.json"))
    server = "HTTP 500 from http://127.0.0.1:8000/v1: CUDA out of memory. Tried to allocate 2 GiB"
    assert not is_out_of_memory(EndpointError(server))


@pytest.mark.slow
def test_batches_split_in_halves_until_they_fit(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[list[int]] = []

    def fn(reqs: list[int]) -> list[int]:
        calls.append(list(reqs))
        if len(reqs) > 2 or (13 in reqs and len(reqs) > 1) or 99 in reqs:
            raise _oom(len(reqs))
        return [r * 10 for r in reqs]

    c = BatchCoordinator(8)
    q = c.queue("model.predict", fn)
    results: dict[int, Any] = {}
    requests = [1, 2, 3, 13, 5, 6, 99, 8]

    def worker(r: int) -> None:
        try:
            results[r] = c.submit(q, [r])[0]
        except Exception as exc:
            results[r] = exc
        finally:
            c.leave()

    c.join(len(requests))
    with caplog.at_level(logging.WARNING, logger="cot_ground.batching"):
        threads = [threading.Thread(target=worker, args=(r,)) for r in requests]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert not any(t.is_alive() for t in threads), "deadlock"
    assert {r: v for r, v in results.items() if r != 99} == {r: r * 10 for r in requests if r != 99}
    assert is_out_of_memory(results[99]) and "out of memory" in str(results[99])
    assert [len(c_) for c_ in calls[:2]] == [8, 4]  # one batch first, then halves, depth first
    assert sorted(r for c_ in calls if len(c_) == 4 for r in c_) == sorted(requests)
    assert max(c.oom_splits()["model.predict"]) == 8 and min(c.oom_splits()["model.predict"]) == 2
    assert sum(c.batch_sizes()["model.predict"]) == sum(len(c_) for c_ in calls)
    assert "out of memory on a batch of 8 requests; retrying as 4 + 4" in caplog.text


class OomEndToEnd(rf.FakeEndToEnd):
    """The fake end-to-end model, out of memory above ``options.fits`` requests a call, and on
    any batch holding the images of item ``options.huge``."""

    def predict(self, requests: list[Any]) -> list[Any]:
        huge = f"item{int(self.options['huge']):03d}_"
        if len(requests) > int(self.options["fits"]) or any(
            huge in p for r in requests for p in r.images
        ):
            rf.CALLS.append((self.name, -len(requests)))  # a failed call
            raise _oom(len(requests))
        return super().predict(requests)


def build_oom_e2e(settings: ModelSettings) -> OomEndToEnd:
    return OomEndToEnd(settings, "oom-e2e")


@pytest.fixture(autouse=True)
def oom_adapter(fakes):
    registry.register("oom-e2e", "e2e", "test_runner_oom:build_oom_e2e")
    yield
    registry.ADAPTERS.pop("oom-e2e", None)


@pytest.mark.slow
def test_a_run_survives_out_of_memory(tmp_path: Path) -> None:
    bench = rf.make_benchmark(tmp_path / "bench", n=10)
    config = rf.experiment(
        bench,
        tmp_path / "run",
        tmp_path / "cache",
        models={"e2e": {"adapter": "oom-e2e", "options": {"image": 2, "fits": 3, "huge": 4}}},
        pipelines={"e2e": {"kind": "e2e", "model": "e2e"}},
        batch_size=8,
    )
    summary = run_experiment(parse_config(config))
    records = RunFolder(summary.out).read_predictions("e2e")
    assert len(records) == 10
    failed = [r for r in records if r.get("error")]
    examples = {e["id"]: e for e in RunFolder(summary.out).read_examples()}
    assert len(failed) == 1 and "item004_" in str(examples[failed[0]["example_id"]]["images"])
    error = failed[0]["error"]
    assert error["category"] == "model_error" and "out of memory" in error["message"]
    assert all(r["box"] is not None for r in records if not r.get("error"))
    sizes = rf.calls_of("oom-e2e")
    assert max(sizes) <= 3 and min(sizes) < 0  # some calls failed, none that succeeded was > 3
    splits = summary.pipelines["e2e"].oom_splits["oom-e2e.predict"]
    assert max(splits) == 8 and min(splits) == 2
    session = json.loads((summary.out / "run.json").read_text())["sessions"][-1]
    assert session["pipelines"]["e2e"]["oom_splits"] == {"oom-e2e.predict": splits}
