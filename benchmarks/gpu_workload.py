"""GPU workload: full-size random-weight Qwen2-VL-7B and GroundingDINO, sequential vs batched.

``python -m benchmarks.gpu_workload [--dtype bfloat16|float32] [--json FILE] [--smoke]``

Builds (once, cached under ``--models-dir``) checkpoints with the exact shapes of
Qwen2-VL-7B-Instruct and GroundingDINO tiny or base (:mod:`benchmarks.gpu_checkpoints`) and a
MIG-Lite build with a copy of its pictures at ``--image-side`` px (:mod:`benchmarks.workloads`;
the build itself is never edited), then measures, in this order, each as soon as it is done:
one printed line, and the JSON file rewritten with everything so far (a killed run keeps what
it measured):

1. checkpoint build times (a cached checkpoint reports only the check) and load times;
2. per pipeline (CoT in paper mode, end-to-end): the sequential batch-1 loop (the public
   evaluation's loop) on ``--seq-examples`` examples spread over the tasks, then the runner at
   each ``--batch-sizes`` on ``--examples`` examples: ex/s, × sequential, peak GPU memory,
   seconds inside each model (the grounder's share of the CoT time), and how many outputs equal
   the sequential loop's. In float32 with TF32 off that is an exact check ("identical"); in
   bfloat16 it is an *agreement rate* only (batched bf16 numerics flip near-tied random logits);
3. peak GPU memory against visual tokens per forward pass (``--memory-tokens`` tokens per
   image × ``--memory-images`` images × ``--memory-batches`` requests; an out-of-memory point is
   recorded and ends its row), for the ``max_pixels`` / batch-size guidance of docs/scaling.md;
4. with ``--static-cache``: the end-to-end runner with a static KV cache (compiled decoding on
   CUDA) against the plain path at ``--static-batch``, outputs compared with the plain path's.
   When ``--batch-sizes`` lacks that size the plain path is measured first as its own row
   (mode ``plain-kv``, compared with the sequential loop; never counted as a runner row);
5. unless the main dtype is float32 or ``--no-fp32-check``: the model reloaded in float32 with
   TF32 off, sequential vs runner at ``--check-batch`` on ``--check-examples`` examples
   (identical outputs expected).

Every load, warm-up and measurement starts only when its estimate fits in ``--budget-s``
seconds counted from the start; what does not fit is listed under ``skipped`` (an unknown
estimate, as for the first load or a memory point, fits while any time is left). Estimates come
from what was measured: ex/s of the loops so far (1 ex/s before any), and for a reload the
first load's time (doubled for a float32 reload after a bf16 load) plus its warm-up and the
measurements it is for. Warm-up times are recorded under ``warmups``; the torch.compile time of
the static-cache warm-up is not known before it is paid.

The default is sized for one H200 in one 8-minute call, from the first measurements there
(benchmarks/RESULTS.md §0): building the 16.6 GB checkpoint ≈ 120 s (first run only), loading
it ≈ 15-20 s; warm-up of both pipelines on 2 examples each ≈ 4 s; sequential 1.1-1.4 ex/s, so
8 examples × 2 pipelines ≈ 14 s; the runner reached 3.3-3.8 ex/s at batch 16, so 64 examples
at batch 16, 32 and 64 × 2 pipelines ≤ 120 s even if batching gained nothing past 16; 6 memory
points ≤ 30 s; the float32 check (reload ≈ 30-40 s, then per pipeline 1 warm-up example and
8 examples × 2 loops at ≈ 1.3 ex/s) ≈ 65 s. Worst case ≈ 375 s, so ``--budget-s 330`` (the
default) keeps the run under 6 minutes by skipping what would not fit (the float32 check is
the first to go: its reload starts only with room for itself and the first pipeline's check,
≈ 45 s).
``--smoke`` runs the same code on CPU with shrunken shapes, a tiny default size and float32
unless ``--dtype`` says otherwise (it checks the script, it does not time anything). A phase
that fails is recorded under ``errors`` and the run goes on with the next one. Bad arguments
(a count, size or token number below 1, a pipeline or batch size named twice, a ``--work-dir``
that cannot be created) stop the script with a usage error before anything is built.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.compare import (
    Setup,
    clear_adapter_caches,
    identical,
    measure_runner,
    measure_sequential,
    plateau,
    prepare,
)
from benchmarks.gpu_checkpoints import build_gdino, build_qwen
from benchmarks.live_report import Budget, LiveReport
from benchmarks.measure import environment, max_rss_mib
from benchmarks.run import PIPELINES, parse_batch_sizes, parse_pipelines
from benchmarks.workloads import MODEL_TASKS, lite_benchmark, model_config
from cot_ground.testing.tiny_parts import done

ADAPTER_METHODS = ("reason", "ground", "predict")
TARGETS = {"speedup": 6.0, "grounder_share": 0.15, "cot_over_e2e": 1.2}


class CallTimes:
    """Seconds spent inside each adapter's model method (summed over threads), per measurement.

    Wraps ``reason`` / ``ground`` / ``predict`` of the adapter objects themselves, so both the
    sequential loop and the runner's batching proxies go through the wrappers."""

    def __init__(self, adapters: dict[str, Any]) -> None:
        self.seconds: dict[str, float] = {}
        self.wrapped: list[tuple[Any, str]] = []
        for key, adapter in adapters.items():
            for method in ADAPTER_METHODS:
                fn = getattr(adapter, method, None)
                if callable(fn):
                    setattr(adapter, method, self._timed(f"{key}.{method}", fn))
                    self.wrapped.append((adapter, method))

    def close(self) -> None:
        """Remove the wrappers and drop every reference to the adapters (and their models)."""
        for adapter, method in self.wrapped:
            delattr(adapter, method)
        self.wrapped.clear()

    def _timed(self, name: str, fn: Any) -> Any:
        def call(requests: list[Any]) -> list[Any]:
            t0 = time.perf_counter()
            try:
                return fn(requests)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0

        return call

    @contextmanager
    def measuring(self) -> Any:
        """Reset, run the block, keep the sums (rounded) in the yielded dict."""
        self.seconds = {}
        out: dict[str, float] = {}
        yield out
        out.update({k: round(v, 3) for k, v in self.seconds.items()})


def _spread(items: list[Any], k: int) -> list[Any]:
    """``k`` items taken evenly across ``items`` (so every task is represented)."""
    step = max(1, len(items) // max(1, k))
    return items[::step][:k]


def _outputs_label(dtype: str, same: int, total: int) -> dict[str, Any]:
    exact = dtype == "float32"
    return {
        "same": same,
        "of": total,
        "kind": "identical (float32, TF32 off: exact check)"
        if exact
        else f"agreement rate ({dtype}: batched numerics flip near-tied random logits; "
        "not a correctness check)",
    }


def _cuda() -> Any:
    import torch

    return torch.cuda if torch.cuda.is_available() else None


def _tf32_state() -> dict[str, bool]:
    """Whether TF32 is allowed for matmuls and cuDNN convolutions (torch's own defaults unless
    set)."""
    import torch

    return {
        "matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        "cudnn": bool(torch.backends.cudnn.allow_tf32),
    }


def _set_tf32(enabled: bool) -> dict[str, bool]:
    import torch

    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    return {"matmul": enabled, "cudnn": enabled}


class Workload:
    """One run of the GPU workload: its arguments, report, budget and current adapters."""

    def __init__(self, args: argparse.Namespace, report: LiveReport) -> None:
        self.args = args
        self.report = report
        self.budget = Budget(report, args.budget_s)
        self.device = "cpu" if args.smoke else "cuda"
        self.rates: dict[str, float] = {}  # best ex/s seen per pipeline (for estimates)
        self.first_load: tuple[str, float] | None = None  # (dtype, seconds) of the first load

    # ------------------------------------------------------------------ setup
    def checkpoints(self) -> tuple[Path, Path, Path]:
        """Build (or find) both checkpoints and the MIG-Lite data; report the times."""
        a = self.args
        root = a.models_dir / ("smoke" if a.smoke else "full")
        qwen_dir = root / "qwen2-vl-7b-shape"
        gdino_dir = root / f"gdino-{a.grounder}-shape"
        self._build(qwen_dir, lambda: build_qwen(qwen_dir, self.device, a.smoke, a.new_tokens))
        self._build(gdino_dir, lambda: build_gdino(gdino_dir, a.grounder, self.device, a.smoke))
        cuda = _cuda()
        if cuda is not None:
            cuda.empty_cache()
        t0 = time.perf_counter()
        data = lite_benchmark(root / "lite", a.examples, MODEL_TASKS, image_side=a.image_side)
        self.report.say(
            f"MIG-Lite data ready ({data.parent.name}: pictures at {a.image_side} px on their "
            f"long side): {time.perf_counter() - t0:.1f} s"
        )
        return qwen_dir, gdino_dir, data

    def _build(self, folder: Path, build: Callable[[], Any]) -> None:
        """Run ``build`` for ``folder`` and report its seconds: only the check when ``folder``
        holds a finished build (``cached``), otherwise the build itself (transformers is
        imported before the clock starts)."""
        cached = done(folder)
        if not cached:
            import transformers  # noqa: F401  (its import time is not the build's)
        t0 = time.perf_counter()
        build()
        seconds = round(time.perf_counter() - t0, 3)
        self.report.add(
            "checkpoints",
            {"what": "build", "checkpoint": folder.name, "cached": cached, "seconds": seconds},
            f"checkpoint {folder.name}: cached, a finished build was found (checked in "
            f"{seconds:.2f} s)"
            if cached
            else f"checkpoint {folder.name}: built in {seconds:.1f} s",
        )

    def load(self, paths: tuple[Path, Path, Path], dtype: str, n: int, batch: int, **qwen: Any):
        """Build the adapters (loading the weights) for ``n`` examples; report the load time."""
        qwen_dir, gdino_dir, data = paths
        a = self.args
        config = model_config(
            "bench-gpu",
            data,
            n,
            qwen_dir,
            gdino_dir,
            device=self.device,
            qwen_dtype=dtype,
            new_tokens=a.new_tokens,
            batch_size=batch,
            qwen_options={**a.qwen_options, **qwen},
            gdino_options=a.gdino_options,
        )
        t0 = time.perf_counter()
        setup = prepare(config, tempfile.mkdtemp(prefix="cot-ground-gpu-", dir=a.work_dir))
        seconds = round(time.perf_counter() - t0, 2)
        self.first_load = self.first_load or (dtype, seconds)
        self.report.add(
            "checkpoints",
            {"what": "load", "dtype": dtype, "options": qwen, "seconds": seconds},
            f"load both models ({dtype}{', ' + str(qwen) if qwen else ''}): {seconds:.1f} s",
        )
        return setup, CallTimes(setup.adapters)

    # ------------------------------------------------------------------ estimates
    def seconds_for(self, pipeline: str, n: int, batched: bool) -> float:
        """Estimated seconds for ``n`` examples of ``pipeline``: at the best runner rate
        measured so far (``batched``) or the sequential rate, 1 ex/s when none was measured."""
        rate = (self.rates.get(pipeline) if batched else None) or self.rates.get(f"{pipeline}-seq")
        return n / (rate or 1.0)

    def load_estimate(self, dtype: str) -> float:
        """Estimated seconds to (re)load both models in ``dtype``: the first load's time,
        doubled for float32 after a narrower first load (twice the bytes to convert and move);
        0 before any load."""
        if self.first_load is None:
            return 0.0
        first_dtype, seconds = self.first_load
        return seconds * (2 if dtype == "float32" and first_dtype != "float32" else 1)

    def reload_fits(self, what: str, dtype: str, then_s: float) -> bool:
        """Whether a reload in ``dtype`` plus ``then_s`` seconds of work after it fit in the
        budget (otherwise ``what`` is recorded as skipped, and nothing is freed or loaded)."""
        return self.budget.allows(what, self.load_estimate(dtype) + then_s)

    def warm_up(self, what: str, run: Callable[[], Any]) -> None:
        """Run ``run`` (first-call costs: kernels, allocator, compilation) outside every
        timing; its seconds go under ``warmups``."""
        t0 = time.perf_counter()
        run()
        seconds = round(time.perf_counter() - t0, 2)
        self.report.add(
            "warmups", {"what": what, "seconds": seconds}, f"warm-up {what}: {seconds:.1f} s"
        )

    # ------------------------------------------------------------------ measurements
    def sequential(
        self, setup: Setup, times: CallTimes, pipeline: str, dtype: str, k: int
    ) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        """The batch-1 loop on ``k`` examples spread over ``setup``'s; (row, records), or None
        when the budget has no room for it."""
        sub = Setup(setup.config, _spread(setup.examples, k), setup.adapters, setup.work_dir)
        estimate = self.seconds_for(pipeline, len(sub.examples), batched=False)
        if not self.budget.allows(f"{pipeline} sequential ({dtype})", estimate):
            return None
        with times.measuring() as inside:
            row, records = measure_sequential(sub, pipeline, repeats=1, warmup=0)
        self.rates[f"{pipeline}-seq"] = row["ex_per_s"]
        row.update(dtype=dtype, model_s=inside, grounder_share=grounder_share(row, inside))
        self.report.add(
            "rows", row,
            f"{pipeline:<4} sequential  ({dtype}) {row['ex_per_s']:7.2f} ex/s "
            f"on {row['examples']} examples{_shares(row)}{_memory(row)}",
        )  # fmt: skip
        return row, records

    def runner(
        self,
        setup: Setup,
        times: CallTimes,
        pipeline: str,
        batch: int,
        dtype: str,
        reference: tuple[dict[str, Any], list[dict[str, Any]]] | None,
        label: str = "runner",
    ) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        """The runner at ``batch``, recorded with mode ``label``; compared with ``reference``
        (row, records) when given: outputs, and the ex/s ratio when both rates are known."""
        estimate = self.seconds_for(pipeline, len(setup.examples), batched=True)
        if not self.budget.allows(f"{pipeline} {label} b={batch} ({dtype})", estimate):
            return None
        clear_adapter_caches(setup.adapters)
        with times.measuring() as inside:
            row, records = measure_runner(setup, pipeline, batch, repeats=1, warmup=0)
        self.rates[pipeline] = max(self.rates.get(pipeline, 0.0), row["ex_per_s"] or 0.0)
        row.update(dtype=dtype, model_s=inside, mode=label)
        row["grounder_share"] = grounder_share(row, inside)
        text = ""
        if reference is not None:
            ref_row, ref_records = reference
            same, total = identical(ref_records, records)
            row["outputs_vs_reference"] = {
                "reference": f"{ref_row['mode']} b={ref_row['batch_size']}",
                **_outputs_label(dtype, same, total),
            }
            if ref_row["ex_per_s"] and row["ex_per_s"]:
                row["speedup_vs_reference"] = round(row["ex_per_s"] / ref_row["ex_per_s"], 3)
            kind = "identical" if dtype == "float32" else "agree"
            ratio = row.get("speedup_vs_reference")
            text = (
                f" x{_ratio(ratio)} vs {ref_row['mode']} b={ref_row['batch_size']},"
                f" {kind} {same}/{total}"
            )
        self.report.add(
            "rows", row,
            f"{pipeline:<4} {label:<11} ({dtype}) b={batch:<3} {row['ex_per_s']:7.2f} ex/s"
            f"{text}{_shares(row)}{_memory(row)}",
        )  # fmt: skip
        return row, records

    # ------------------------------------------------------------------ phases
    def measure_all(self, paths: tuple[Path, Path, Path]) -> None:
        """Every phase after the checkpoints, each started only when the budget allows it (a
        failing phase is recorded and the next one runs)."""
        a = self.args
        if not self.budget.allows(f"load both models ({a.dtype}) and every measurement", None):
            return
        top = max(a.batch_sizes + ([a.static_batch] if a.static_cache else []))
        setup, times = self.load(paths, a.dtype, a.examples, top)
        rows: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
        seqs: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
        with guarded(self.report, "main"):
            warm = Setup(setup.config, setup.examples[:2], setup.adapters, setup.work_dir)
            first_calls = sum(self.seconds_for(p, len(warm.examples), False) for p in a.pipelines)
            if self.budget.allows("warm-up of every pipeline", first_calls):
                self.warm_up(
                    f"{'/'.join(a.pipelines)} sequential on {len(warm.examples)} examples",
                    lambda: [measure_sequential(warm, p, repeats=1, warmup=0) for p in a.pipelines],
                )
            for p in a.pipelines:
                seq = self.sequential(setup, times, p, a.dtype, a.seq_examples)
                if seq is not None:
                    seqs[p] = seq
                for b in a.batch_sizes:
                    measured = self.runner(setup, times, p, b, a.dtype, seq)
                    if measured is not None:
                        rows[f"{p}-{b}"] = measured
        if not a.no_memory_sweep:
            with guarded(self.report, "memory sweep"):
                self.memory_sweep(paths, setup, a.dtype)
        if a.static_cache and "e2e" in a.pipelines:
            with guarded(self.report, "static KV cache"):
                plain = rows.get(f"e2e-{a.static_batch}")
                setup, times = self.static_cache(paths, setup, times, top, plain, seqs.get("e2e"))
        if a.dtype != "float32" and not a.no_fp32_check:
            with guarded(self.report, "float32 check"):
                setup, times = self.float32_check(paths, setup, times)
        _free(setup, times)

    def static_cache(
        self,
        paths: tuple[Path, Path, Path],
        setup: Setup,
        times: CallTimes,
        top: int,
        plain: tuple[dict[str, Any], list[dict[str, Any]]] | None,
        sequential: tuple[dict[str, Any], list[dict[str, Any]]] | None,
    ) -> tuple[Setup, CallTimes]:
        """The end-to-end runner with a static KV cache against the plain path at
        ``--static-batch``; the adapters in use afterwards.

        ``plain`` is the main phase's runner row at that batch size; without one the plain
        path is measured here as its own row (mode ``plain-kv``, compared with ``sequential``
        where there is one). The reload, the compile warm-up and the measurement start only
        when their estimate fits the budget; the compile time itself is unknown until paid
        (it is recorded under ``warmups``)."""
        a = self.args
        b = a.static_batch
        if plain is None:
            plain = self.runner(setup, times, "e2e", b, a.dtype, sequential, label="plain-kv")
        if plain is None:  # the budget had no room for it: nothing to compare with
            return setup, times
        n = len(setup.examples)
        then = self.seconds_for("e2e", min(b, n), True) + self.seconds_for("e2e", n, True)
        what = f"e2e static-kv b={b} ({a.dtype}): reload, compile warm-up, measurement"
        if not self.reload_fits(what, a.dtype, then):
            return setup, times
        _free(setup, times)
        setup, times = self.load(paths, a.dtype, a.examples, top, static_cache=True)
        # compiles for this batch size outside the timing (new input lengths may recompile)
        warm = Setup(setup.config, setup.examples[:b], setup.adapters, setup.work_dir)
        self.warm_up(
            f"e2e static-kv b={b} (compiles on CUDA)",
            lambda: measure_runner(warm, "e2e", b, repeats=1, warmup=0),
        )
        self.runner(setup, times, "e2e", b, a.dtype, plain, label="static-kv")
        return setup, times

    def float32_check(
        self, paths: tuple[Path, Path, Path], setup: Setup, times: CallTimes
    ) -> tuple[Setup, CallTimes]:
        """The models reloaded in float32 with TF32 off, sequential vs runner at
        ``--check-batch`` on ``--check-examples`` per pipeline; the adapters in use afterwards.
        The reload starts only when it fits the budget with the first pipeline's warm-up and
        both loops; each further pipeline only when its own three fit."""
        a = self.args
        k, b = a.check_examples, a.check_batch

        def plan(p: str) -> float:  # warm-up (1 example), sequential and runner on k
            return self.seconds_for(p, 1 + k, False) + self.seconds_for(p, k, True)

        first = a.pipelines[0]
        what = f"float32 check: reload, then {first} warm-up, sequential, runner b={b}"
        if not self.reload_fits(what, "float32", plan(first)):
            return setup, times
        _free(setup, times)
        self.report.set("tf32_in_check", _set_tf32(False))
        setup, times = self.load(paths, "float32", k, b)
        warm = Setup(setup.config, setup.examples[:1], setup.adapters, setup.work_dir)
        for p in a.pipelines:
            if not self.budget.allows(f"{p} float32 check (warm-up, sequential, b={b})", plan(p)):
                break
            self.warm_up(
                f"{p} float32 sequential on 1 example",
                lambda p=p: measure_sequential(warm, p, repeats=1, warmup=0),
            )
            seq = self.sequential(setup, times, p, "float32", k)
            self.runner(setup, times, p, b, "float32", seq)
        return setup, times

    def memory_sweep(self, paths: tuple[Path, Path, Path], setup: Setup, dtype: str) -> None:
        """Peak GPU memory of one end-to-end forward pass (prefill + ``--new-tokens``) against
        its visual tokens; ``min_pixels = max_pixels`` fixes the tokens per image."""
        from cot_ground.models.base import ChatRequest
        from cot_ground.models.oom import free_accelerator_memory, is_out_of_memory
        from cot_ground.models.registry import build
        from cot_ground.models.settings import ModelSettings

        a = self.args
        cuda = _cuda()
        images = list(dict.fromkeys(p for ex in setup.examples for p in ex.images))
        pictures = (images * a.memory_images)[: a.memory_images]
        for tokens in a.memory_tokens:
            for batch in a.memory_batches:
                what = f"memory {tokens} tokens/image x {a.memory_images} images x {batch}"
                if not self.budget.allows(what, None):
                    return
                pixels = tokens * 28 * 28
                adapter = build(
                    "qwen-vl-e2e",
                    ModelSettings(
                        path=str(paths[0]), device=self.device, dtype=dtype,
                        min_pixels=pixels, max_pixels=pixels, max_new_tokens=a.new_tokens,
                        options={"batch_size": batch},
                    ),
                )  # fmt: skip
                requests = [ChatRequest(images=pictures, prompt="Where?") for _ in range(batch)]
                visual = sum(adapter.runner.visual_tokens(r.images) for r in requests)
                record: dict[str, Any] = {
                    "tokens_per_image": tokens, "images_per_request": len(pictures),
                    "batch": batch, "visual_tokens": visual, "dtype": dtype,
                }  # fmt: skip
                if cuda is not None:
                    cuda.synchronize()
                    cuda.reset_peak_memory_stats()
                    base = cuda.memory_allocated()
                t0 = time.perf_counter()
                try:
                    adapter.predict(requests)
                    record["oom"] = False
                except Exception as exc:
                    if not is_out_of_memory(exc):
                        raise
                    record["oom"] = True
                record["seconds"] = round(time.perf_counter() - t0, 3)
                if cuda is not None:
                    cuda.synchronize()
                    record["peak_gib"] = round(cuda.max_memory_allocated() / 2**30, 2)
                    record["over_resident_gib"] = round(
                        (cuda.max_memory_allocated() - base) / 2**30, 2
                    )
                del adapter
                free_accelerator_memory()
                peak = record.get("peak_gib")
                peak_text = f"peak {peak} GiB" if peak is not None else "peak n/a (no CUDA)"
                self.report.add(
                    "memory", record,
                    f"memory {visual:>7} visual tokens ({tokens}/image x {len(pictures)} x "
                    f"{batch}): " + ("OUT OF MEMORY" if record["oom"] else
                                     f"{peak_text}, {record['seconds']:.1f} s"),
                )  # fmt: skip
                if record["oom"]:
                    break


def grounder_share(row: dict[str, Any], inside: dict[str, float]) -> float | None:
    """Seconds inside the grounder over the pass's wall seconds (None without a grounder)."""
    wall = row.get("wall_s_median") or 0
    ground = sum(v for k, v in inside.items() if k.endswith(".ground"))
    return round(ground / wall, 3) if wall and ground else None


def _ratio(value: float | None) -> str:
    """A speed ratio for a printed line; ``?`` when it is unknown (never a made-up 0)."""
    return "?" if value is None else f"{value:.2f}"


def _shares(row: dict[str, Any]) -> str:
    share = row.get("grounder_share")
    return f", grounder {100 * share:.0f}% of wall" if share is not None else ""


def _memory(row: dict[str, Any]) -> str:
    mib = row.get("peak_gpu_mib")
    failed = f", {row['failed']} examples FAILED to run" if row.get("failed") else ""
    return (f", peak {mib / 1024:.1f} GiB" if mib else "") + failed


def _free(setup: Setup, times: CallTimes) -> None:
    """Drop every reference to ``setup``'s adapters, so their models leave GPU memory."""
    from cot_ground.models.oom import free_accelerator_memory
    from cot_ground.models.registry import clear_cache

    times.close()
    setup.adapters.clear()
    clear_cache()
    free_accelerator_memory()


def summarize(rows: list[dict[str, Any]], pipelines: list[str], dtype: str) -> dict[str, Any]:
    """Best runner batch per pipeline in ``dtype`` (rows of mode ``runner`` only: not the
    static-KV rows or their plain reference) and the issue's targets: met, not met, or None
    when nothing was compared."""
    out: dict[str, Any] = {"dtype": dtype, "targets": TARGETS}
    best: dict[str, dict[str, Any]] = {}
    for p in pipelines:
        mine = [r for r in rows if r["pipeline"] == p and r.get("dtype") == dtype]
        runner = [r for r in mine if r["mode"] == "runner" and r.get("ex_per_s")]
        if runner:
            best[p] = max(runner, key=lambda r: r["ex_per_s"])
            speedup = best[p].get("speedup_vs_reference")
            out[p] = {
                "best_batch": best[p]["batch_size"],
                "ex_per_s": best[p]["ex_per_s"],
                "speedup": speedup,  # None: no sequential rate to compare with
                "speedup_met": None if speedup is None else speedup >= TARGETS["speedup"],
                "plateau_after_batch": plateau(mine),
            }
    if "cot" in best:
        share = best["cot"].get("grounder_share")
        out["grounder_share"] = {"value": share, "met": share is not None and share <= 0.15}
    if "cot" in best and "e2e" in best:
        ratio = best["cot"]["ms_per_example"] / best["e2e"]["ms_per_example"]
        out["cot_over_e2e"] = {"value": round(ratio, 3), "met": ratio <= TARGETS["cot_over_e2e"]}
    return out


def _table(summary: dict[str, Any], smoke: bool) -> str:
    note = " -- smoke run: shrunken CPU models, the figures mean nothing" if smoke else ""
    lines = [f"summary ({summary['dtype']}){note}:"]
    for p in PIPELINES:
        if p in summary:
            s = summary[p]
            verdict = {True: "met", False: "not met", None: "not compared"}[s["speedup_met"]]
            lines.append(
                f"  {p}: best batch {s['best_batch']}, {s['ex_per_s']:.2f} ex/s, "
                f"x{_ratio(s['speedup'])} sequential (target >= 6: {verdict})"
            )
    for key, what in (("grounder_share", "grounder share of CoT wall"), ("cot_over_e2e",
                      "CoT / end-to-end cost per example")):  # fmt: skip
        if key in summary:
            v = summary[key]
            lines.append(f"  {what}: {v['value']} ({'met' if v['met'] else 'not met'})")
    return "\n".join(lines)


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1 (a count, a size, a token number)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _can_write_into(ap: argparse.ArgumentParser, option: str, folder: Path) -> None:
    """An argparse error unless ``folder`` (``--models-dir``, the folder of ``--json``) is a
    writable folder or could be created as one: its nearest existing parent is a writable
    folder. Nothing is created here."""
    existing = folder.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        ap.error(f"{option} {folder}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        ap.error(f"{option} {folder}: {existing} is not writable")


def _writable_dir(ap: argparse.ArgumentParser, option: str, folder: Path) -> Path:
    """The folder of ``option`` (``--work-dir``), created when missing; an argparse error when
    it cannot be created or is not a writable folder (before any checkpoint is built)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        ap.error(f"{option} {folder}: cannot create it ({exc.strerror or exc})")
    if not os.access(folder, os.W_OK | os.X_OK):
        ap.error(f"{option} {folder}: not writable")
    return folder


def positive_seconds(text: str) -> float:
    """An argparse type: a finite number of seconds above 0 (a budget of 0 measures nothing,
    and the run would still exit 0)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text!r}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments (``--smoke`` changes the size defaults). A count or size below 1,
    a budget that is not above 0, a repeated pipeline or batch size, or a ``--work-dir``,
    ``--models-dir`` or ``--json`` folder that cannot be created or written is an argparse
    error (exit status 2) before anything is built."""
    ints = parse_batch_sizes
    count = positive_int
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gpu_workload", description=__doc__)
    ap.add_argument(
        "--dtype",
        choices=["bfloat16", "float32"],
        help="Qwen dtype of the main measurements (bfloat16; smoke float32; GroundingDINO: "
        "float32)",
    )
    ap.add_argument("--grounder", choices=["tiny", "base"], default="tiny")
    ap.add_argument("--examples", type=count, help="runner examples (64; smoke 4)")
    ap.add_argument("--seq-examples", type=count, help="sequential-loop examples (8; smoke 2)")
    ap.add_argument("--batch-sizes", type=ints, help="runner batch sizes (16,32,64; smoke 2,4)")
    ap.add_argument("--pipelines", type=parse_pipelines, default=list(PIPELINES))
    ap.add_argument("--new-tokens", type=count, default=16)
    ap.add_argument("--image-side", type=count, help="long side of every picture (768; smoke 256)")
    ap.add_argument(
        "--max-batch-visual-tokens",
        type=count,
        help="Qwen option max_batch_visual_tokens (default: none)",
    )
    ap.add_argument(
        "--fast-grounder-processor",
        action="store_true",
        help="GroundingDINO option fast_image_processor (pre-processing on the GPU; pixels "
        "differ slightly)",
    )
    ap.add_argument(
        "--pad-grounder-batches",
        action="store_true",
        help="GroundingDINO option pad_batches (answers may differ slightly)",
    )
    ap.add_argument("--memory-tokens", type=ints, help="visual tokens per image (256,1024,4096)")
    ap.add_argument("--memory-batches", type=ints, help="requests per pass (1,4)")
    ap.add_argument("--memory-images", type=count, default=6, help="images per request")
    ap.add_argument("--no-memory-sweep", action="store_true")
    ap.add_argument(
        "--static-cache",
        action="store_true",
        help="also measure static-KV-cache decoding (compiled on CUDA)",
    )
    ap.add_argument("--static-batch", type=count, default=16)
    ap.add_argument("--no-fp32-check", action="store_true")
    ap.add_argument("--check-examples", type=count, default=8)
    ap.add_argument("--check-batch", type=count, default=8)
    ap.add_argument(
        "--budget-s",
        type=positive_seconds,
        default=330.0,
        help="start no measurement that would end later than this (330)",
    )
    ap.add_argument("--models-dir", type=Path, default=Path.home() / ".cache/cot-ground-bench")
    ap.add_argument("--work-dir", type=Path, help="run folders (default: a temporary folder)")
    ap.add_argument(
        "--json",
        type=Path,
        default=Path("gpu_workload.json"),
        help="results, rewritten after every measurement (gpu_workload.json)",
    )
    ap.add_argument("--smoke", action="store_true", help="CPU, shrunken shapes (checks the code)")
    args = ap.parse_args(argv)  # fmt: skip
    defaults = {
        "examples": (64, 4), "seq_examples": (8, 2), "batch_sizes": ([16, 32, 64], [2, 4]),
        "image_side": (768, 256), "memory_tokens": ([256, 1024, 4096], [4, 16]),
        "memory_batches": ([1, 4], [1, 2]),
    }  # fmt: skip
    for key, (full, smoke) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, smoke if args.smoke else full)
    args.dtype = args.dtype or ("float32" if args.smoke else "bfloat16")
    if args.smoke:
        args.memory_images = min(args.memory_images, 2)
        args.check_examples, args.check_batch = min(args.check_examples, 2), 2
    if args.work_dir is not None:
        args.work_dir = _writable_dir(ap, "--work-dir", args.work_dir)
    _can_write_into(ap, "--models-dir", args.models_dir)
    _can_write_into(ap, "--json", args.json.parent)
    args.qwen_options = (
        {"max_batch_visual_tokens": args.max_batch_visual_tokens}
        if args.max_batch_visual_tokens is not None
        else {}
    )
    args.gdino_options = {
        **({"pad_batches": True} if args.pad_grounder_batches else {}),
        **({"fast_image_processor": True} if args.fast_grounder_processor else {}),
    }
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run every phase the budget allows; return the result document."""
    import torch

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if not args.smoke and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU machine, or pass --smoke to check the code")
    with tempfile.TemporaryDirectory(prefix="cot-ground-gpu-bench-") as tmp:
        args.work_dir = args.work_dir or Path(tmp)
        return _run(args, argv)


@contextmanager
def guarded(report: LiveReport, phase: str) -> Any:
    """Run one phase; an error ends only that phase: it is recorded (``errors``) and printed,
    GPU memory is freed, and the run goes on with the next phase."""
    from cot_ground.models.oom import free_accelerator_memory

    try:
        yield
    except Exception as exc:
        report.add(
            "errors",
            {"phase": phase, "error": f"{type(exc).__name__}: {exc}"},
            f"{phase} FAILED: {type(exc).__name__}: {str(exc)[:300]}",
        )
        free_accelerator_memory()


def _run(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    report = LiveReport(
        args.json,
        {
            "workload": "gpu-smoke" if args.smoke else "gpu",
            "command": shlex.join(["python", "-m", "benchmarks.gpu_workload", *argv]),
            "settings": settings,
            "environment": environment(),
            "tf32": _set_tf32(False) if args.dtype == "float32" else _tf32_state(),
        },
    )
    report.say(f"results file: {args.json} (rewritten after every measurement)")
    work = Workload(args, report)
    work.measure_all(work.checkpoints())
    summary = summarize(report.document.get("rows", []), args.pipelines, args.dtype)
    report.set("summary", summary)
    report.set("max_rss_mib", round(max_rss_mib(), 1))
    print(_table(summary, args.smoke), flush=True)
    return report.document


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
