"""``python -m benchmarks.run --workload overhead|tiny|rescore``: JSON figures and a short table.

* ``overhead`` — instant scripted adapters on MIG-Lite, pinned to one CPU core: what the graph,
  trace, batching and JSONL writing cost per example (target: under 2 ms for the CoT graph).
* ``tiny`` — tiny random-weight Qwen2-VL + GroundingDINO on CPU, decoding a fixed number of
  tokens: the sequential batch-1 loop against the runner at each batch size.
* ``rescore`` — rescoring every released log under ``--released`` (target: under 1 s).

Figures are comparable only within one run: always read the ratio measured side by side.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.compare import compare, dump, prepare
from benchmarks.measure import Stopwatch, environment, max_rss_mib, median, pin_to_one_core
from benchmarks.workloads import (
    MODEL_TASKS,
    fix_generation_length,
    instant_config,
    lite_benchmark,
    model_config,
)
from cot_ground.lite.builders import LITE_TASKS

DEFAULT_RELEASED = Path(__file__).resolve().parents[2] / "shared/migbench/released_outputs"
OVERHEAD_TARGET_MS = 2.0
RESCORE_TARGET_S = 1.0


PIPELINES = ("cot", "e2e")


def parse_batch_sizes(text: str) -> list[int]:
    """``--batch-sizes`` (argparse type): comma-separated sizes, each at least 1, none twice (it
    would be measured twice)."""
    try:
        sizes = [int(x) for x in text.split(",")]  # an empty item ("4,,8") is an error
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected e.g. 1,2,4, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be >= 1, got {text!r}")
    _refuse_repeats(sizes, text)
    return sizes


def parse_pipelines(text: str) -> list[str]:
    """``--pipelines`` (argparse type): comma-separated names among :data:`PIPELINES`, none
    twice."""
    names = [p.strip() for p in text.split(",") if p.strip()]
    unknown = sorted(set(names) - set(PIPELINES))
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"expected {', '.join(PIPELINES)} or both, got {text!r}")
    _refuse_repeats(names, text)
    return names


def _refuse_repeats(items: list, text: str) -> None:
    repeated = sorted({str(x) for x in items if items.count(x) > 1})
    if repeated:
        raise argparse.ArgumentTypeError(f"{text!r} names {', '.join(repeated)} more than once")


def overhead(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Instant adapters: the library's own cost per example."""
    cpu = pin_to_one_core() if args.one_core else None
    data = lite_benchmark(args.data or work / "lite", args.examples, LITE_TASKS)
    setup = prepare(instant_config(data, args.examples), work)
    rows = [
        row
        for p in args.pipelines
        for row in compare(setup, p, args.batch_sizes, args.repeats, args.warmup)
    ]
    cot_b1 = next(
        (
            r
            for r in rows
            if r["pipeline"] == "cot" and r["mode"] == "runner" and r["batch_size"] == 1
        ),
        None,
    )
    target = None
    if cot_b1 is not None:
        target = {
            "what": "CoT graph + trace + fsynced JSONL line per example, runner at batch 1",
            "ms_per_example": cot_b1["ms_per_example"],
            "target_ms": OVERHEAD_TARGET_MS,
            "cpu_ms_per_example": cot_b1["cpu_ms_per_example"],
            "met": cot_b1["ms_per_example"] < OVERHEAD_TARGET_MS,
        }
    return {"pinned_cpu": cpu, "rows": rows, "target": target}


def tiny(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Tiny random-weight models on CPU, decoding exactly ``--new-tokens`` tokens."""
    from cot_ground.testing import build_tiny_gdino_hf, build_tiny_qwen_vl

    models = Path(args.models_dir or work / "tiny-models")
    qwen_dir = build_tiny_qwen_vl(models / "qwen2_vl", "qwen2_vl")
    fix_generation_length(qwen_dir, args.new_tokens)
    gdino_dir = build_tiny_gdino_hf(models / "gdino-hf")
    data = lite_benchmark(args.data or work / "lite", args.examples, MODEL_TASKS)
    config = model_config(
        "bench-tiny",
        data,
        args.examples,
        qwen_dir,
        gdino_dir,
        device="cpu",
        qwen_dtype="float32",
        new_tokens=args.new_tokens,
        batch_size=max(args.batch_sizes),
    )
    setup = prepare(config, work)
    rows = [
        row
        for p in args.pipelines
        for row in compare(setup, p, args.batch_sizes, args.repeats, args.warmup)
    ]
    return {"new_tokens": args.new_tokens, "rows": rows}


def rescore(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Rescore every released log, one model folder at a time."""
    from cot_ground.bench.released import read_released_log, rescore_logs

    root = Path(args.released)
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not folders:
        raise SystemExit(f"no released-log folders under {root}")
    rows = []
    for folder in folders:
        paths = sorted(glob.glob(str(folder / "*.json")))
        calibration = "migician-y" if folder.name.lower().startswith("migician") else None
        n = sum(len(read_released_log(p).records) for p in paths)
        for _ in range(args.warmup):
            rescore_logs(paths, calibration=calibration)
        walls, cpus = [], []
        for _ in range(args.repeats):
            with Stopwatch() as sw:
                rescore_logs(paths, calibration=calibration)
            walls.append(sw.wall)
            cpus.append(sw.cpu)
        rows.append(
            {
                "model": folder.name,
                "files": len(paths),
                "records": n,
                "calibration": calibration,
                "wall_s": [round(w, 4) for w in walls],
                "wall_s_median": round(median(walls), 4),
                "cpu_s_median": round(median(cpus), 4),
                "records_per_s": round(n / median(walls)),
            }
        )
    total = sum(r["wall_s_median"] for r in rows)
    return {
        "rows": rows,
        "all": {"records": sum(r["records"] for r in rows), "wall_s": round(total, 4)},
        "target": {
            "what": "rescore_logs over one model's released logs (parse, score, agreement)",
            "target_s": RESCORE_TARGET_S,
            "met": all(r["wall_s_median"] < RESCORE_TARGET_S for r in rows),
        },
    }


def _table(result: dict[str, Any]) -> str:
    if result["workload"] == "rescore":
        lines = [f"{'model':<12}{'records':>9}{'s (median)':>12}{'records/s':>11}"]
        for r in result["rows"]:
            lines.append(
                f"{r['model']:<12}{r['records']:>9}{r['wall_s_median']:>12.3f}"
                f"{r['records_per_s']:>11}"
            )
        lines.append(f"{'all':<12}{result['all']['records']:>9}{result['all']['wall_s']:>12.3f}")
        return "\n".join(lines)
    head = (
        f"{'pipeline':<9}{'mode':<11}{'batch':>5}{'ex/s':>10}{'ms/ex':>9}{'cpu ms/ex':>10}"
        f"{'x seq':>7}{'identical':>11}{'peak MiB':>10}{'decodes/file':>13}"
    )
    lines = [head]
    for r in result["rows"]:
        lines.append(
            f"{r['pipeline']:<9}{r['mode']:<11}{r['batch_size']:>5}{r['ex_per_s']:>10.2f}"
            f"{r['ms_per_example']:>9.2f}{r['cpu_ms_per_example']:>10.2f}"
            f"{r.get('speedup_vs_sequential', 1.0):>7.2f}"
            f"{r.get('identical_to_sequential', '-'):>11}{r['peak_host_mib']:>10.0f}"
            f"{r['images']['decodes_per_distinct_file']:>13.2f}"
        )
    return "\n".join(lines)


WORKLOADS = {"overhead": overhead, "tiny": tiny, "rescore": rescore}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--workload", choices=sorted(WORKLOADS), required=True)
    ap.add_argument("--json", type=Path, help="write the full results here")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes per measurement")
    ap.add_argument("--warmup", type=int, default=1, help="untimed short passes first")
    ap.add_argument("--batch-sizes", type=parse_batch_sizes, default=[1, 2, 4, 8, 16])
    ap.add_argument("--examples", type=int, default=None, help="MIG-Lite examples per pass")
    ap.add_argument(
        "--pipelines", type=parse_pipelines, default=list(PIPELINES), help="cot, e2e or both"
    )
    ap.add_argument("--new-tokens", type=int, default=16, help="tiny: tokens decoded per call")
    ap.add_argument("--data", type=Path, help="MIG-Lite folder to reuse (made when missing)")
    ap.add_argument("--models-dir", type=Path, help="tiny: folder for the tiny models")
    ap.add_argument("--released", type=Path, default=DEFAULT_RELEASED, help="rescore: logs root")
    ap.add_argument(
        "--all-cores", dest="one_core", action="store_false", help="overhead: do not pin"
    )
    args = ap.parse_args(argv)
    if args.examples is None:
        args.examples = 200 if args.workload == "overhead" else 24
    if args.repeats < 1 or args.warmup < 0 or args.examples < 1:
        ap.error("--repeats and --examples must be >= 1, --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run one workload; print the JSON path (if any) and the table last."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cot-ground-bench-") as tmp:
        body = WORKLOADS[args.workload](args, Path(tmp))
    result = {
        "workload": args.workload,
        "settings": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "json"
        },
        "environment": environment(),
        "max_rss_mib": round(max_rss_mib(), 1),
        **body,
    }
    dump(result, args.json)
    if args.json:
        print(f"results: {args.json}", file=sys.stderr)
    print(_table(result))
    if body.get("target"):
        t = body["target"]
        print(f"target ({t['what']}): {'met' if t['met'] else 'NOT met'}")
    return result


if __name__ == "__main__":
    main()
