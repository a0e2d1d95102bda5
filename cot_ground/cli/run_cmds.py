"""``run``, ``merge`` and ``show``: run an experiment config, combine shards, read one trace."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from cot_ground.cli.common import fail

console = Console()
err_console = Console(stderr=True)


class _StderrHandler(logging.StreamHandler):
    """A stream handler that writes to ``sys.stderr`` as it is when each record is emitted, so a
    caller that swaps stderr for a while (a test's CLI runner) leaves no handler on a closed
    stream behind."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _setup_logging() -> None:
    """Warnings through rich on a terminal; INFO lines (progress) on stderr otherwise."""
    root = logging.getLogger("cot_ground")
    root.handlers[:] = [h for h in root.handlers if not getattr(h, "_cot_ground_cli", False)]
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(console=err_console, show_path=False)
        handler.setLevel(logging.WARNING)
    else:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        handler.setLevel(logging.INFO)
    handler._cot_ground_cli = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def run(
    config: Annotated[Path, typer.Argument(help="experiment config (experiments/*.yaml)")],
    categories: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[CATEGORY...]",
            help="with --retry-failed: the error categories to re-run"
            " (default: model_error image_error cache_error)",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="at most this many examples")
    ] = None,
    per_task: Annotated[
        int | None, typer.Option("--per-task", min=1, help="the first N examples of every task")
    ] = None,
    sample: Annotated[
        int | None,
        typer.Option("--sample", min=1, help="N examples drawn with --seed, stratified by task"),
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", min=0, help="seed of --sample (default 0)")
    ] = None,
    tasks: Annotated[
        str | None, typer.Option("--tasks", help="comma-separated tasks, e.g. diff,region")
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option("--shard", help="run the K-th of N slices, K/N with K from 1 (e.g. 2/4)"),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option("--batch-size", min=1, help="requests per model call, across examples"),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="run folder (default: the config's `output`)")
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="neither read nor write the step-1 cache")
    ] = False,
    ray: Annotated[
        bool, typer.Option("--ray", help="models in Ray actors, one per GPU (docs/scaling.md)")
    ] = False,
    ray_address: Annotated[
        str | None,
        typer.Option("--ray-address", help="join this Ray cluster (implies --ray; default: local)"),
    ] = None,
    ray_workers: Annotated[
        int | None, typer.Option("--ray-workers", min=1, help="replicas (default: GPUs, else 2)")
    ] = None,
    retry_failed: Annotated[
        bool,
        typer.Option(
            "--retry-failed",
            help="also re-run examples whose record failed in CATEGORY... (default: the"
            " transient model_error, image_error, cache_error); their lines are replaced",
        ),
    ] = False,
    allow_changed: Annotated[
        bool,
        typer.Option(
            "--allow-changed",
            help="resume although a pipeline's prompt files or settings changed (recorded)",
        ),
    ] = False,
    unit_floats: Annotated[
        str | None,
        typer.Option(
            "--unit-floats",
            help="override the config's unit_floats for every box-reading model: 'reject'"
            " (frame_mismatch), 'fraction' or 'migician' (docs/benchmark.md)",
        ),
    ] = None,
) -> None:
    """Run every pipeline of CONFIG over the same examples into a run folder.

    Re-running the same command resumes: examples already written are skipped. Every setup
    problem (unset variables, model folders, benchmark file, missing images, prompt files, a
    changed pipeline) is reported at once before any model loads (exit status 2). Ctrl-C stops
    after the examples in flight are written (press again to quit at once).
    """
    from cot_ground.parsing import UNIT_FLOATS
    from cot_ground.records import ErrorCategory
    from cot_ground.runner.config import ConfigError, load_config
    from cot_ground.runner.pipelines import SetupError
    from cot_ground.runner.progress import default_progress
    from cot_ground.runner.retry import TRANSIENT_CATEGORIES, failure_lines
    from cot_ground.runner.run import run_experiment
    from cot_ground.runner.shard import parse_shard
    from cot_ground.runner.store import RunFolderError

    _setup_logging()
    known = [c.value for c in ErrorCategory]
    unknown = [c for c in categories or [] if c not in known]
    if categories and not retry_failed:
        fail(f"unexpected argument(s) {' '.join(categories)}: categories follow --retry-failed")
    if unknown:
        fail(f"--retry-failed: unknown category {', '.join(unknown)} (known: {', '.join(known)})")
    retry = (categories or list(TRANSIENT_CATEGORIES)) if retry_failed else []
    # the options alone first, each message naming its option, then the config file
    if unit_floats is not None and unit_floats not in UNIT_FLOATS:
        fail(f"--unit-floats: unknown value {unit_floats!r} (allowed: {', '.join(UNIT_FLOATS)})")
    selections = [f"--{n}" for n, v in (("limit", limit), ("per-task", per_task),
                                        ("sample", sample)) if v is not None]  # fmt: skip
    if len(selections) > 1:
        fail(f"give at most one of --limit, --per-task and --sample (got {' '.join(selections)})")
    if seed is not None and sample is None:
        fail("--seed applies to --sample only")
    task_list = [t.strip() for t in tasks.split(",") if t.strip()] if tasks is not None else None
    if task_list == []:
        fail(f"--tasks names no task ({tasks!r}); give a comma-separated list, e.g. diff,region")
    try:
        shard_kn = parse_shard(shard) if shard else None
        cfg = load_config(config, defer_unset_env=True)
        if unit_floats is not None:
            cfg = cfg.with_unit_floats(unit_floats)
        cfg = cfg.with_selection(limit=limit, per_task=per_task, sample=sample, seed=seed)
    except (ConfigError, ValueError) as exc:
        fail(str(exc))
    run_dir = out if out is not None else cfg.output_dir()
    existing = next(p for p in (run_dir.absolute(), *run_dir.absolute().parents) if p.exists())
    if not existing.is_dir():
        fail(f"run folder {run_dir}: {existing} exists and is not a folder; choose another --out")
    backend: Any = run_experiment
    if ray or ray_address:
        from functools import partial

        from cot_ground.runner.ray_backend import run_experiment_ray

        backend = partial(run_experiment_ray, address=ray_address, workers=ray_workers)
    try:
        summary = backend(
            cfg,
            limit=limit,
            tasks=task_list,
            shard=shard_kn,
            batch_size=batch_size,
            out=out,
            use_cache=not no_cache,
            progress=default_progress(),
            retry_failed=retry,
            allow_changed=allow_changed,
        )
    except (SetupError, RunFolderError) as exc:
        fail(str(exc), code=getattr(exc, "exit_code", 2))
    except KeyboardInterrupt:
        fail("interrupted; every line written so far is kept, re-run to resume", code=130)
    table = Table(
        title=f"run {summary.out}",
        caption="this session: before = already done, retried, written and failed now; the lines"
        " below count the failed records of the whole run folder",
    )
    for col in ("pipeline", "examples", "before", "retried", "written", "failed now", "ex/s"):
        table.add_column(col, justify="left" if col == "pipeline" else "right")
    for name, s in summary.pipelines.items():
        rate = f"{s.written / s.wall_s:.2f}" if s.wall_s > 0 and s.written else "-"
        table.add_row(
            name,
            str(s.total),
            str(s.done_before),
            str(s.retried),
            str(s.written),
            str(s.failed),
            rate,
        )
    console.print(table)
    for line in failure_lines(summary.out):
        console.print(escape(line), highlight=False, soft_wrap=True)
    if summary.cache_hits or summary.cache_misses:
        console.print(f"step-1 cache: {summary.cache_hits} hits, {summary.cache_misses} misses")
    if summary.interrupted:
        console.print("[yellow]interrupted[/yellow]: re-run the same command to resume")
        raise typer.Exit(code=130)
    console.print(f"next: cot-ground report {summary.out}")


def merge(
    shard_dirs: Annotated[list[Path], typer.Argument(help="run folders of the shards")],
    out: Annotated[Path, typer.Option("--out", help="new folder for the merged run")],
) -> None:
    """Combine the shard folders of one run (same config, `--shard K/N`) into one run folder."""
    from cot_ground.runner.shard import merge_runs
    from cot_ground.runner.store import RunFolderError

    try:
        merged = merge_runs(shard_dirs, out)
    except (RunFolderError, ValueError) as exc:
        fail(str(exc))
    console.print(
        f"merged {len(shard_dirs)} shard(s) into [bold]{out}[/bold]:"
        f" {merged['n_examples']} examples"
    )
    for name, count in merged["predictions"].items():
        console.print(f"  {name}: {count} predictions")
    if merged.get("missing_shards"):
        console.print(f"[yellow]missing shards[/yellow]: {merged['missing_shards']}")
    from cot_ground.analysis.run_warnings import unfinished_shard_warnings

    for warning in unfinished_shard_warnings(merged):
        console.print(f"[yellow]warning[/yellow]: {warning}", highlight=False)


# C0 controls but newline and tab, DEL and C1 controls: a terminal acts on them (ESC starts a
# colour or cursor sequence, U+009B is CSI on some terminals)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def visible(text: str) -> str:
    """``text`` with every control character but newline and tab written out as its Python
    escape (ESC as ``\\x1b``, CR as ``\\r``), so a model's text printed by ``show`` shows what
    it holds and cannot move the cursor, recolour or retitle the terminal."""
    return _CONTROL.sub(lambda m: ascii(m.group())[1:-1], text)


def _json_text(data: Any) -> Text:
    """``data`` as indented, highlighted JSON whose control characters are all ``\\uXXXX``
    escapes (``json`` escapes only U+0000..U+001F; DEL and C1 controls are escaped here)."""
    from rich.highlighter import JSONHighlighter

    dumped = json.dumps(data, indent=2, ensure_ascii=False)
    return JSONHighlighter()(_CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", dumped))


def _find_example(examples: list[dict[str, Any]], wanted: str) -> dict[str, Any]:
    exact = [e for e in examples if e["id"] == wanted]
    if exact:
        return exact[0]
    prefixed = [e for e in examples if str(e["id"]).startswith(wanted)]
    if len(prefixed) == 1:
        return prefixed[0]
    if not prefixed:
        fail(f"example {wanted!r} is not in this run folder")
    fail(f"example id prefix {wanted!r} matches {len(prefixed)} examples; give more characters")


def _box_text(box: dict[str, Any] | None) -> str:
    if not box:
        return "-"
    return "[" + ", ".join(f"{box[k]:.3f}" for k in ("x1", "y1", "x2", "y2")) + "]"


# trace fields holding 0-based positions in the example's images (as recorded); `show` labels
# them "(0-based)" where every number it prints itself is 1-based ("image 2")
ZERO_BASED_FIELDS = frozenset(
    {"image_index", "step2_image", "reference_image", "reference_index", "targeted_image",
     "target_image", "tried_images"}
)  # fmt: skip


def _label_zero_based(value: Any) -> Any:
    """``value`` (a trace's parsed data) with each 0-based image field renamed
    ``NAME (0-based)``; a proposal's ``image`` too (``{"id", "image", "mark", ...}``)."""
    if isinstance(value, list):
        return [_label_zero_based(v) for v in value]
    if not isinstance(value, dict):
        return value
    proposal = "mark" in value and isinstance(value.get("image"), int)
    out = {}
    for key, v in value.items():
        numbers = isinstance(v, int) or (isinstance(v, list) and all(isinstance(i, int) for i in v))
        zero_based = key in ZERO_BASED_FIELDS or (proposal and key == "image")
        out[f"{key} (0-based)" if zero_based and numbers else key] = _label_zero_based(v)
    return out


def _image_names(paths: list[str], example_images: list[str]) -> str:
    """A step's input images: "image K (file)" for the example's own (K 1-based), else the
    file name (a drawn or cropped picture the run made)."""
    names = []
    for p in paths:
        name = Path(p).name
        names.append(
            f"image {example_images.index(p) + 1} ({name})" if p in example_images else name
        )
    return visible(", ".join(names))


def _trace_step(entry: dict[str, Any], pipeline: str, example_images: list[str]) -> Panel:
    from cot_ground.analysis.html_report import cut_text

    parts: list[Any] = []
    head = Text(f"wall {entry.get('wall_s', 0.0):.3f}s")
    if entry.get("cached"):
        head.append("  cached", style="green")
    if entry.get("images"):
        head.append(f"  input {_image_names(entry['images'], example_images)}")
    parts.append(head)
    if entry.get("prompt"):
        parts.append(Text("prompt:", style="bold"))
        parts.append(Text(visible(cut_text(entry["prompt"], pipeline)), style="cyan"))
    if entry.get("raw_output") is not None:
        parts.append(Text("raw output:", style="bold"))
        parts.append(Text(visible(cut_text(entry["raw_output"], pipeline)), style="magenta"))
    if entry.get("parsed"):
        parsed = json.dumps(_label_zero_based(entry["parsed"]), ensure_ascii=False)
        parts.append(Text("parsed: " + visible(cut_text(parsed, pipeline))))
    for c in entry.get("candidates") or []:
        score = f"{c['score']:.3f}" if c.get("score") is not None else "-"
        label = visible(c.get("label") or "")
        parts.append(Text(f"candidate {_box_text(c['box'])} score {score} {label}"))
    if entry.get("error"):
        err = entry["error"]
        message = visible(cut_text(err["message"], pipeline))
        parts.append(Text(f"error {err['category']}: {message}", style="red"))
    title = visible(str(entry["node"]))
    title += f" (attempt {entry['attempt']})" if entry.get("attempt") else ""
    return Panel(Group(*parts), title=Text(title), title_align="left")


def show(
    run_dir: Annotated[Path, typer.Argument(help="run folder written by `cot-ground run`")],
    example_id: Annotated[str, typer.Argument(help="example id (a unique prefix is enough)")],
    pipeline: Annotated[
        str | None, typer.Option("--pipeline", help="only this pipeline (default: all)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the raw records as JSON")] = False,
) -> None:
    """Show one example of a run: its images, question and ground truth, then for each pipeline
    the prediction and the full trace (prompts, raw outputs, parsed values, candidates).

    Images are numbered from 1 ("image 2"); recorded 0-based fields are labelled "(0-based)".
    Texts longer than the HTML report's limit are cut with a note naming the JSONL file that
    holds them in full (``--json`` prints the records uncut). Control characters in recorded
    texts (a model's escape sequences) are printed as escapes (``\\x1b``), never sent raw.
    Warns first when the run's benchmark file is gone or was rebuilt since the run (the images
    shown may then be other pictures than those the run was scored on).
    """
    from cot_ground.analysis.html_report import cut_text
    from cot_ground.analysis.run_paths import example_images
    from cot_ground.analysis.run_warnings import benchmark_file_warnings
    from cot_ground.records import Example, Prediction
    from cot_ground.runner.store import RunFolder
    from cot_ground.scoring import ScoreRow, score_row

    folder = RunFolder(run_dir)
    if not folder.examples_path.is_file():
        fail(f"{run_dir} is not a run folder (no examples.jsonl)")
    example = _find_example(folder.read_examples(), example_id)
    names = [pipeline] if pipeline else folder.pipelines()
    if pipeline and pipeline not in folder.pipelines():
        fail(f"pipeline {pipeline!r} is not in {run_dir} (has: {', '.join(folder.pipelines())})")
    records = {}
    for name in names:
        found = [r for r in folder.read_predictions(name) if r["example_id"] == example["id"]]
        if found:
            records[name] = found[0]
    if as_json:
        console.print(_json_text({"example": example, "predictions": records}), soft_wrap=True)
        return
    scored = Example.model_validate(example)
    info = Table.grid(padding=(0, 1))
    info.add_row("id", Text(visible(str(example["id"]))))
    info.add_row("task", Text(visible(str(example["task"]))))
    info.add_row("question", Text(visible(example["question"])))
    info.add_row("numbering", "images from 1; recorded fields marked (0-based) count from 0")
    manifest = folder.read_manifest() or {}
    for warning in benchmark_file_warnings(manifest):
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)
    benchmark = manifest.get("benchmark") or {}
    for i, path in enumerate(example_images(scored, benchmark)):
        text = Text(visible(path))
        if path != example["images"][i]:  # the benchmark root moved since the example was stored
            text.append(f"  (recorded as {visible(example['images'][i])})")
        elif not os.path.isfile(path):
            text.append("  (not found)", style="red")
        if i == example["target_image"]:
            text.append("  <- target", style="bold green")
        info.add_row(f"image {i + 1}", text)
    info.add_row(
        "ground truth", _box_text(example["gt_box"]) + f" on image {example['target_image'] + 1}"
    )
    console.print(Panel(info, title="example", title_align="left"))
    if not records:
        console.print("[yellow]no pipeline has finished this example yet[/yellow]")
    for name, rec in records.items():
        image = rec.get("image_index")
        summary = Table.grid(padding=(0, 1))
        summary.add_row("status", Text(visible(str(rec.get("status", "-")))))
        summary.add_row("chosen", f"image {image + 1}" if image is not None else "-")
        summary.add_row("box", _box_text(rec.get("box")))
        score = score_row(ScoreRow.from_prediction(Prediction.model_validate(rec), scored))
        summary.add_row("IoU", f"{score.iou:.3f} (strict {score.strict_iou:.3f})")
        if rec.get("fallbacks"):
            summary.add_row("fallbacks", Text(visible(", ".join(rec["fallbacks"]))))
        if rec.get("timing"):
            timing = ", ".join(f"{k} {v:.3f}s" for k, v in rec["timing"].items())
            summary.add_row("timing", Text(visible(timing)))
        if rec.get("error"):
            err = rec["error"]
            message = visible(cut_text(err["message"], name))
            summary.add_row("error", Text(f"{err['category']}: {message}", style="red"))
        steps = [_trace_step(e, name, example["images"]) for e in rec.get("trace") or []]
        title = Text(f"pipeline {visible(name)}")
        console.print(Panel(Group(summary, *steps), title=title, title_align="left"))


def register(app: typer.Typer) -> None:
    """Add ``run``, ``merge`` and ``show`` to ``app``."""
    app.command("run")(run)
    app.command("merge")(merge)
    app.command("show")(show)
