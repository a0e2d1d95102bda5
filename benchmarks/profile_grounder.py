"""Where the GroundingDINO step's time goes: pre-processing, forward passes, the rest.

``python -m benchmarks.profile_grounder [--device cpu|cuda] [--requests 16] [--json FILE]``

Builds (once) the random-weight GroundingDINO tiny/base-shaped checkpoint of
:mod:`benchmarks.gpu_checkpoints`, takes ``--requests`` MIG-Lite pictures upscaled to
``--image-side`` pixels (a copy beside the MIG-Lite build, :mod:`benchmarks.workloads`), and
times one ``ground`` call of all of them in four settings, each
starting with empty image and pre-processing caches (so each decodes its files):
pre-processing in 1 thread vs ``--threads``, and batches by pre-processed shape vs padded
batches (``pad_batches``). For each it reports the wall
seconds spent pre-processing (``pixel_values``), inside the model's forward passes (CUDA
synchronized), and the rest (tokenizing, moving tensors, ranking candidates), plus the number of
forward passes. Then a pyinstrument profile of the one-thread call shows what pre-processing is
made of. ``--preprocess-only`` times and profiles only the pre-processing (1 thread vs
``--threads``; what a CPU can measure when the forward passes would take minutes there).
``--smoke`` shrinks the model (checks the script; its figures mean nothing).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.gpu_checkpoints import build_gdino
from benchmarks.live_report import LiveReport
from benchmarks.measure import environment
from benchmarks.workloads import MODEL_TASKS, lite_benchmark
from cot_ground.images import IMAGE_CACHE


class PhaseClock:
    """Wall seconds inside ``pixel_values`` and the model's forward, and forward-pass count,
    while the block runs (``with PhaseClock(grounder, cuda) as clock:``; the model is shared
    between adapters, so its forward is put back at the end)."""

    def __init__(self, grounder: Any, cuda: Any) -> None:
        self.grounder = grounder
        self.preprocess = self.forward = 0.0
        self.passes = 0
        pixel_values, forward = grounder.pixel_values, grounder.model.forward

        def timed_pixels(paths: list[str]) -> list[Any]:
            t0 = time.perf_counter()
            try:
                return pixel_values(paths)
            finally:
                self.preprocess += time.perf_counter() - t0

        def timed_forward(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                out = forward(*args, **kwargs)
                if cuda is not None:
                    cuda.synchronize()
                return out
            finally:
                self.forward += time.perf_counter() - t0
                self.passes += 1

        grounder.pixel_values = timed_pixels
        grounder.model.forward = timed_forward

    def __enter__(self) -> PhaseClock:
        return self

    def __exit__(self, *exc: object) -> None:
        del self.grounder.pixel_values  # the instance attributes set above
        del self.grounder.model.forward


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.profile_grounder", description=__doc__)
    ap.add_argument("--grounder", choices=["tiny", "base"], default="tiny")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=4, help="pre-processing worker threads")
    ap.add_argument("--image-side", type=int, default=768)
    ap.add_argument("--models-dir", type=Path, default=Path.home() / ".cache/cot-ground-bench")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--profile-html", type=Path, help="also write the pyinstrument HTML here")
    ap.add_argument("--preprocess-only", action="store_true", help="no forward passes")
    ap.add_argument("--smoke", action="store_true", help="shrunken model (checks the code)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Time the four settings, then profile the one-thread call; return the result document."""
    import torch

    from cot_ground.bench import load_benchmark
    from cot_ground.models.base import GroundRequest
    from cot_ground.models.registry import build, clear_cache
    from cot_ground.models.settings import ModelSettings

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    report = LiveReport(
        args.json,
        {"workload": "profile-grounder",
         "command": shlex.join(["python", "-m", "benchmarks.profile_grounder", *argv]),
         "settings": {k: str(v) for k, v in vars(args).items()}, "environment": environment()},
    )  # fmt: skip
    root = args.models_dir / ("smoke" if args.smoke else "full")
    folder = build_gdino(root / f"gdino-{args.grounder}-shape", args.grounder, "cpu", args.smoke)
    data = lite_benchmark(root / "lite", args.requests, MODEL_TASKS, image_side=args.image_side)
    examples = load_benchmark(
        data, root=data.parent, tasks=list(MODEL_TASKS), answer_frame="unit"
    ).examples
    pictures = list(dict.fromkeys(p for ex in examples for p in ex.images))[: args.requests]
    requests = [GroundRequest(image=p, phrase="the red car on the left") for p in pictures]
    cuda = torch.cuda if args.device.startswith("cuda") else None
    settings_of = {
        f"{n} thread{'s' if n > 1 else ''}, {'padded' if pad else 'by shape'}": {
            "preprocess_threads": n, "pad_batches": pad,
        }
        for pad in (False, True)
        for n in (1, args.threads)
    }  # fmt: skip
    warm = build("gdino-hf", ModelSettings(path=str(folder), device=args.device, dtype="float32"))
    if args.preprocess_only:
        return _preprocess_only(report, warm, pictures, args.threads)
    warm.ground(requests[:2])  # first-call costs outside the timings
    for label, options in settings_of.items():
        grounder = build(
            "gdino-hf",
            ModelSettings(path=str(folder), device=args.device, dtype="float32",
                          options={"batch_size": args.batch_size, **options}),
        )  # fmt: skip
        grounder.clear_cache()
        IMAGE_CACHE.clear()
        with PhaseClock(grounder, cuda) as clock:
            t0 = time.perf_counter()
            grounder.ground(requests)
            wall = time.perf_counter() - t0
        row = {
            "setting": label, "requests": len(requests), "wall_s": round(wall, 4),
            "preprocess_s": round(clock.preprocess, 4), "forward_s": round(clock.forward, 4),
            "rest_s": round(wall - clock.preprocess - clock.forward, 4),
            "forward_passes": clock.passes,
            "ms_per_request": round(1000 * wall / len(requests), 2),
        }  # fmt: skip
        report.add(
            "rows", row,
            f"{label:<22} {row['ms_per_request']:8.1f} ms/request: pre-processing "
            f"{100 * clock.preprocess / wall:4.1f}%, forward {100 * clock.forward / wall:4.1f}% "
            f"({clock.passes} passes), rest {100 * row['rest_s'] / wall:4.1f}%",
        )  # fmt: skip
    grounder = build(
        "gdino-hf",
        ModelSettings(path=str(folder), device=args.device, dtype="float32",
                      options={"batch_size": args.batch_size, "preprocess_threads": 1}),
    )  # fmt: skip
    profiler = _cold_profile(report, grounder, lambda: grounder.ground(requests))
    if args.profile_html:
        args.profile_html.write_text(profiler.output_html(), encoding="utf-8")
    clear_cache()
    return report.document


def _cold_profile(report: LiveReport, grounder: Any, work: Any) -> Any:
    """Profile ``work()`` with the grounder's and the image caches empty; the text goes into
    ``report`` (``profile_text``) and to stdout. Returns the pyinstrument profiler."""
    from pyinstrument import Profiler

    grounder.clear_cache()
    IMAGE_CACHE.clear()
    profiler = Profiler(interval=0.001)
    with profiler:
        work()
    text = profiler.output_text(unicode=False, color=False)
    report.set("profile_text", text)
    print(text, flush=True)
    return profiler


def _preprocess_only(
    report: LiveReport, grounder: Any, pictures: list[str], threads: int
) -> dict[str, Any]:
    """Pre-processing alone, cold cache: 1 thread vs ``threads``, then a profile of 1 thread."""

    grounder.pixel_values(pictures)  # first-call costs and file reads outside the timings
    for n in (1, threads):
        grounder.options["preprocess_threads"] = n
        grounder.clear_cache()
        IMAGE_CACHE.clear()  # every pass decodes its files too
        t0 = time.perf_counter()
        grounder.pixel_values(pictures)
        wall = time.perf_counter() - t0
        row = {
            "setting": f"pre-processing only, {n} thread(s)",
            "requests": len(pictures),
            "wall_s": round(wall, 4),
            "ms_per_image": round(1000 * wall / len(pictures), 2),
        }
        report.add("rows", row, f"{row['setting']:<32} {row['ms_per_image']:8.1f} ms/image")
    grounder.options["preprocess_threads"] = 1
    _cold_profile(report, grounder, lambda: grounder.pixel_values(pictures))
    return report.document


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
