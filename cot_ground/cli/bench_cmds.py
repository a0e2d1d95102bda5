"""Benchmark commands: ``rescore`` (released MIG-Bench logs) and ``validate-bench``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from cot_ground.bench.migbench import FRAME_CHOICES, BenchmarkError
from cot_ground.bench.released import ReleasedLogError, rescore_logs
from cot_ground.bench.validate import validate_benchmark
from cot_ground.boxes import Frame
from cot_ground.cli.common import fail
from cot_ground.scoring import CALIBRATIONS
from cot_ground.tasks import TASK_GROUPS, TASK_ORDER


def rescore(
    files: Annotated[list[Path], typer.Argument(help="released per-task log files (one model)")],
    calibration: Annotated[
        str | None,
        typer.Option(help=f"named box calibration ({', '.join(CALIBRATIONS)}); default none"),
    ] = None,
    frame: Annotated[
        str, typer.Option(help="frame of the boxes in the answers")
    ] = Frame.QWEN1000.value,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    unit_floats: Annotated[
        str,
        typer.Option(
            "--unit-floats",
            help="a box of four numbers in [0, 1], one written with a decimal point, in an integer"
            " frame: 'reject'"
            " (status frame_mismatch, default), 'fraction' (read as fractions) or 'migician'"
            " (the rule of the public Migician CoT script's parser: numbers >= 1 divided by"
            " 1000; the released logs' own figures are those of 'reject')",
        ),
    ] = "reject",
    bench: Annotated[
        Path | None,
        typer.Option(
            envvar="MIGBENCH_FILE",
            help="annotation file the logs were scored on (the released logs: the revised"
            " file); gives the target images for strict group_grounding. Default:"
            " $MIGBENCH_FILE",
        ),
    ] = None,
) -> None:
    """Rescore released MIG-Bench logs from their raw answers with cot-ground's parser.

    Official figures (the public evaluation's), and per task strict Acc@0.5 and the share of
    answers that name an image. Strict needs each item's target image: the question names it
    for every task but group_grounding, whose target is in the annotation file (--bench).
    Per task also: answers whose scored box is the box the question states (object_tracking,
    multi_view) and how many of them count at Acc@0.5, and the Acc@0.5 of copying that box.
    """
    if calibration is not None and calibration not in CALIBRATIONS:
        fail(f"unknown calibration {calibration!r} (known: {', '.join(CALIBRATIONS)})")
    _check_frame("--frame", frame)
    try:
        result = rescore_logs(
            list(files),
            calibration=calibration,
            frame=Frame(frame),
            bench=bench,
            unit_floats=unit_floats,
        )
    except (ReleasedLogError, BenchmarkError, ValueError) as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    _print_rescore(result)


def _check_frame(option: str, value: str | None) -> None:
    """Exit with status 2 naming ``option`` and the frames allowed when ``value`` is none."""
    if value is None:
        return
    try:
        Frame(value)
    except ValueError:
        fail(f"{option}: unknown frame {value!r} (frames: {FRAME_CHOICES})")


def _print_rescore(result: dict[str, Any]) -> None:
    title = (
        f"Rescored (mode {result['mode']}, frame {result['frame']}, "
        f"calibration {result['calibration'] or 'none'}, unit floats {result['unit_floats']})"
    )
    caption = (
        "strict @0.5: the named image must be the target (an answer naming none: the image the"
        " question designates); stated: % of answers naming an image; several: answers with"
        " several boxes (the first is scored); none: answers from which no box was read (no_box,"
        " malformed, frame_mismatch: see --json status)"
    )
    if result["average"]["strict"] is None:
        caption += "; strict group_grounding needs --bench (the annotation file)"
    table = Table(title=title, caption=caption, box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("task")
    columns = ("n", "@0.3", "@0.5", "@0.7", "mIoU", "log @0.5", "log mIoU", "strict @0.5")
    for col in (*columns, "stated %", "several", "none"):
        table.add_column(col, justify="right")
    for task, s in result["tasks"].items():
        several = s["status"].get("several_boxes", 0)
        table.add_row(task, *_figures(s), str(several), str(s["without_box"]))
    table.add_section()
    missing = result["missing_tasks"]
    for name, s in result["groups"].items():
        label = _partial(name, s["tasks"], len(TASK_GROUPS[name]), missing)
        table.add_row(label, *_figures(s), "", "")
    average = result["average"]
    label = _partial("average", average["tasks"], len(TASK_ORDER), missing)
    table.add_row(label, *_figures(average), "", "")
    console = Console()
    console.print(table)
    echo = _echo_table(result)
    if echo is not None:
        console.print(echo)
    if missing:
        console.print(
            f"tasks absent: {', '.join(missing)}; the group means and the average are over the"
            " tasks given only, not MIG-Bench's",
            highlight=False,
        )


def _echo_table(result: dict[str, Any]) -> Table | None:
    """Per task whose questions state a box: the answers that copy it and how many of them
    count at Acc@0.5, beside the score of copying it everywhere; None when no task has one."""
    tasks = {
        t: s
        for t, s in result["tasks"].items()
        if s["reference_box_baseline"] is not None or s["reference_box_echo"]["answers"]
    }
    if not tasks:
        return None
    table = Table(
        title="Answers that copy the question's reference box",
        caption="echo: answers whose scored box is the box the question states; hits: how many"
        " of them count at Acc@0.5 (of the task's hits), official and strict; copy @0.5:"
        " official Acc@0.5 of answering every item with the question's box",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    table.add_column("task")
    for col in ("n", "echo", "official hits", "strict hits", "@0.5", "copy @0.5"):
        table.add_column(col, justify="right")
    for task, s in tasks.items():
        echo, baseline = s["reference_box_echo"], s["reference_box_baseline"]
        strict_hits = "n/a"
        if echo["correct_strict"] is not None:
            strict_hits = f"{echo['correct_strict']} of {echo['task_correct_strict']}"
        table.add_row(
            task,
            str(s["n"]),
            str(echo["answers"]),
            f"{echo['correct_official']} of {echo['task_correct_official']}",
            strict_hits,
            f"{s['acc@0.5']:.2f}",
            "" if baseline is None else f"{baseline['acc@0.5']:.2f}",
        )
    return table


def _partial(name: str, tasks: list[str], of: int, missing: list[str]) -> str:
    """Row label of a mean, with the number of tasks it covers when some are absent."""
    return f"{name} ({len(tasks)} of {of} tasks)" if missing and len(tasks) < of else name


def _figures(s: dict[str, Any]) -> list[str]:
    logged = s["logged"]
    return [
        str(s["n"]),
        f"{s['acc@0.3']:.2f}",
        f"{s['acc@0.5']:.2f}",
        f"{s['acc@0.7']:.2f}",
        f"{s['miou']:.2f}",
        f"{logged['acc@0.5']:.2f}",
        f"{logged['miou']:.2f}",
        "n/a" if s["strict"] is None else f"{s['strict']['acc@0.5']:.2f}",
        f"{s['image_stated']:.1f}",
    ]


def validate_bench(
    file: Annotated[Path, typer.Argument(help="MIG-Bench annotation JSON file")],
    root: Annotated[
        Path | None,
        typer.Option(help="folder holding MIG-Bench/ (default: the file's folder)"),
    ] = None,
    answer_frame: Annotated[
        str | None,
        typer.Option(help="frame of the answer boxes (needed for files not known by sha256)"),
    ] = None,
    check_images: Annotated[
        bool, typer.Option("--check-images", help="check that every image file exists")
    ] = False,
    allow_outside_root: Annotated[
        bool,
        typer.Option(
            "--allow-outside-root", help="accept image paths that leave the root (../, absolute)"
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of text")] = False,
) -> None:
    """Report on an annotation file: items per task, bad boxes, target rules. Fixes nothing.

    Exit status 1 when some items cannot be loaded, 2 when the file cannot be read.
    """
    _check_frame("--answer-frame", answer_frame)
    try:
        report = validate_benchmark(
            file,
            root=root,
            answer_frame=answer_frame,
            check_images=check_images,
            allow_outside_root=allow_outside_root,
        )
    except (BenchmarkError, ValueError) as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        _print_report(report)
    if report["errors"]:
        raise typer.Exit(code=1)


def _print_report(report: dict[str, Any]) -> None:
    console = Console()
    console.print(
        f"[bold]{report['name']}[/bold]  {report['path']}\n"
        f"sha256 {report['sha256']}  answer frame {report['answer_frame']}  "
        f"items {report['items']}",
        highlight=False,
    )
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("task", "items", "inverted", "outside [0,1]", "target rules"):
        table.add_column(col, justify="left" if col in ("task", "target rules") else "right")
    inverted = _per_task(report["inverted"])
    outside = _per_task(report["outside_unit"])
    for task, n in report["tasks"].items():
        rules = ", ".join(f"{r} {c}" for r, c in report["target_rules"][task].items())
        table.add_row(task, str(n), str(inverted.get(task, 0)), str(outside.get(task, 0)), rules)
    console.print(table)
    for key, label in (
        ("inverted", "inverted box (x2 < x1 or y2 < y1)"),
        ("outside_unit", "box outside [0, 1]"),
        ("duplicates", "duplicate item"),
    ):
        for e in report[key]:
            extra = f" (same as item {e['same_as']})" if "same_as" in e else ""
            console.print(
                f"{label}: item {e['item']} {e['task']} {e['box']}{extra}", highlight=False
            )
    if report["images_checked"]:
        console.print(f"missing images: {len(report['missing_images'])}")
        for m in report["missing_images"][:20]:
            console.print(f"  item {m['item']} {m['task']}: {m['image']}", highlight=False)
    for e in report["errors"]:
        console.print(f"[red]error[/red] {e['error']}", highlight=False)


def _per_task(entries: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for e in entries:
        counts[e["task"]] = counts.get(e["task"], 0) + 1
    return counts


def register(app: typer.Typer) -> None:
    """Add the benchmark commands to ``app``."""
    app.command("rescore")(rescore)
    app.command("validate-bench")(validate_bench)
