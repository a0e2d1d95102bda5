"""``report`` and ``compare``: tables, charts and the HTML report of a run folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cot_ground.cli.common import fail

# columns of the report's summary table: the paper's group means and the average
GROUP_COLUMNS = {"spont.": "SPONTANEOUS", "refer.": "REFERENTIAL", "avg": "AVERAGE"}


def report(
    run_dir: Annotated[Path, typer.Argument(help="run folder written by `cot-ground run`")],
    out: Annotated[
        Path | None, typer.Option("--out", help="output folder (default: RUN_DIR/report)")
    ] = None,
    sample_per_category: Annotated[
        int,
        typer.Option(
            "--sample-per-category", min=0, help="examples drawn per failure category in the HTML"
        ),
    ] = 3,
    seed: Annotated[
        int, typer.Option("--seed", help="seed of the example sample and of the bootstrap")
    ] = 0,
) -> None:
    """Write the score tables, failure attribution, paired comparisons, charts and report.html.

    Output (in RUN_DIR/report or --out): scores.md/.csv/.json (Acc@0.3/0.5/0.7 and mIoU per
    task, official and strict), attribution, oracle_gain, paired (every pair of pipelines),
    charts/*.png and a self-contained report.html with a seeded sample of examples per
    failure category.
    """
    from cot_ground.analysis.report import build_report
    from cot_ground.analysis.scores import AVERAGE
    from cot_ground.runner.retry import failure_lines
    from cot_ground.runner.store import MANIFEST

    if not run_dir.is_dir():
        fail(f"run folder not found: {run_dir}", code=1)
    if not (run_dir / MANIFEST).is_file():
        fail(
            f"{run_dir} is not a run folder (no {MANIFEST}): give the folder written by"
            " `cot-ground run` or `cot-ground merge`",
            code=1,
        )
    try:
        result = build_report(run_dir, out, sample_per_category=sample_per_category, seed=seed)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc), code=1)
    console = Console()
    print_warnings(console, result.warnings)
    scores = result.scores
    table = Table(
        title="Acc@0.5: the paper's group means and the average over tasks",
        caption="tasks: tasks with records / tasks of the run (! = the averages leave some out);"
        " spont. = diff, view_diff, common_object; refer. = the other tasks (Migician paper,"
        " Table 5); stated: mean over tasks of the % of answers naming an image",
    )
    for col in ("pipeline", "mode", "n", "tasks", *GROUP_COLUMNS, "stated %"):
        table.add_column(col, justify="left" if col in ("pipeline", "mode") else "right")
    for pipeline in dict.fromkeys(scores["pipeline"]):
        mine = scores[scores["pipeline"] == pipeline].set_index(["mode", "task"])
        for mode in ("official", "strict"):
            cells = [pipeline if mode == "official" else "", mode]
            cells.append(str(int(mine.loc[(mode, AVERAGE), "n"])))
            have, total = result.task_coverage.get(pipeline, (None, None))
            cells.append("" if have is None else f"{have}/{total}" + ("" if have == total else "!"))
            for row in GROUP_COLUMNS.values():
                value = mine["acc@0.5"].get((mode, row))
                cells.append("" if value is None else f"{value:.2f}")
            stated = mine.loc[(mode, AVERAGE), "image_stated"]
            table.add_row(*cells, f"{stated:.1f}" if mode == "strict" else "")
    console.print(table)
    from cot_ground.analysis.guide import terminal_lines

    for line in terminal_lines(run_dir):
        console.print(line, highlight=False, markup=False)
    for line in failure_lines(run_dir):
        console.print(escape(line), highlight=False, soft_wrap=True)
    console.print(f"report written to [bold]{result.out_dir}[/bold]:")
    for name in result.files:
        console.print(f"  {name}")
    if result.warnings:
        console.print(
            f"[bold yellow]{len(result.warnings)} warning(s) above:[/bold yellow] these figures"
            " are not those of one finished, unchanged run",
            highlight=False,
        )


def print_warnings(console: Console, warnings: list[str]) -> None:
    """The warning block of a mixed or unfinished run (nothing for a clean one)."""
    if not warnings:
        return
    from cot_ground.analysis.scores import WARNINGS_TITLE

    console.print(f"[bold yellow]{escape(WARNINGS_TITLE)}[/bold yellow]", highlight=False)
    for warning in warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)


def compare(
    targets: Annotated[
        list[str],
        typer.Argument(
            help="RUN_DIR (with --a and --b), or RUN_A:PIPE RUN_B:PIPE across run folders",
            show_default=False,
        ),
    ],
    a: Annotated[str | None, typer.Option("--a", help="pipeline A (with one RUN_DIR)")] = None,
    b: Annotated[str | None, typer.Option("--b", help="pipeline B (with one RUN_DIR)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    seed: Annotated[int, typer.Option("--seed", help="bootstrap seed")] = 0,
    allow_partial: Annotated[
        bool,
        typer.Option(
            "--allow-partial",
            help="compare even when A and B ran different example sets (on the shared ones)",
        ),
    ] = False,
) -> None:
    """Compare two pipelines on the examples both ran: 2×2 table, McNemar, bootstrap CI.

    Acc@0.5 (official), per task, POOLED (every example weighs the same; exact McNemar test)
    and TASK_MEAN (every task weighs the same; task-stratified bootstrap): both right / only A /
    only B / neither and a seeded bootstrap 95% interval of A − B in percent points. Refuses
    (exit 1) when A and B ran different example sets, unless --allow-partial. Warns (stderr)
    when a run never ended or mixes sessions (changes allowed, a changed selection).

    Across run folders (``compare RUN_A:PIPE RUN_B:PIPE``) examples are paired by id; both runs
    must have been made on the same benchmark file (same sha256 in run.json), else exit 1
    showing both hashes.
    """
    from cot_ground.analysis.cross_run import PipelineRef, load_cross_run, run_state_warnings
    from cot_ground.analysis.load import load_run
    from cot_ground.analysis.paired import paired_comparison, paired_frame
    from cot_ground.analysis.scores import coverage_warnings

    try:
        if len(targets) == 1 and a and b:
            loaded = load_run(Path(targets[0]), pipelines=[a, b])
            runs = [targets[0]]
        elif len(targets) == 2 and a is None and b is None:
            refs = [PipelineRef.parse(t) for t in targets]
            loaded, a, b = load_cross_run(*refs)
            runs = [str(ref.run_dir) for ref in refs]
        else:
            fail("give RUN_DIR --a PIPE --b PIPE, or RUN_A:PIPE RUN_B:PIPE (no --a/--b)")
        partial = coverage_warnings(loaded)
        mixed = run_state_warnings(runs)
        if partial and not allow_partial:
            fail(f"{partial[0]}. Re-run with --allow-partial to compare anyway.", code=1)
        results = paired_comparison(loaded, a, b, seed=seed)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc), code=1)
    frame = paired_frame(results)
    stderr = Console(stderr=True)
    for warning in mixed:
        stderr.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)
    if as_json:
        records = frame.astype(object).where(frame.notna(), None).to_dict("records")
        typer.echo(json.dumps(records, indent=2))
        return
    for warning in partial:
        stderr.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)
    table = Table(
        title=f"A = {a}  vs  B = {b}  (Acc@0.5, official)",
        caption="2×2: both right / only A / only B / neither; CI: bootstrap 95% of A−B;"
        " p: exact McNemar, unadjusted (--json p_holm: Holm-adjusted over the per-task tests);"
        " POOLED: every"
        " example weighs the same; TASK_MEAN: every task weighs the same (task-stratified"
        " bootstrap; a mean over tasks, so no 2×2)",
        box=box.SIMPLE_HEAD,
    )
    for col in ("task", "n", "2×2", "A%", "B%", "A−B", "95% CI", "p"):
        table.add_column(col, justify="left" if col == "task" else "right", no_wrap=True)
    for r in results:
        table.add_row(
            r.task,
            str(r.n),
            "" if r.both is None else f"{r.both}/{r.only_a}/{r.only_b}/{r.neither}",
            f"{r.acc_a:.1f}",
            f"{r.acc_b:.1f}",
            f"{r.diff:+.1f}",
            f"[{r.ci_low:+.1f}, {r.ci_high:+.1f}]",
            "" if r.p_value is None else f"{r.p_value:.3g}",
        )
    Console().print(table)


def register(app: typer.Typer) -> None:
    """Add ``report`` and ``compare`` to the ``cot-ground`` app."""
    app.command("report")(report)
    app.command("compare")(compare)
