"""``leaderboard``: the pipelines of several run folders in one table, with their settings."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cot_ground.cli.common import fail


def leaderboard(
    targets: Annotated[
        list[str],
        typer.Argument(
            help="run folders (every pipeline) or RUN_DIR:PIPELINE (one)", show_default=False
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Rank the pipelines of several runs: Acc@0.5 official and strict (mean over tasks) and
    mIoU, with each run's number of examples (n), benchmark (sha256), example selection and
    pipeline settings. A warning follows when the rows differ in n or selection, and for each
    run that never ended, mixes sessions (changes allowed, a changed selection) or whose
    ranked pipelines lack examples or tasks of the run.

    Pipelines on different benchmark files (different sha256) are listed but are not
    comparable example by example; `cot-ground compare RUN_A:PIPE RUN_B:PIPE` pairs them
    when the files match.
    """
    from cot_ground.analysis.cross_run import leaderboard as build_leaderboard
    from cot_ground.analysis.cross_run import leaderboard_run_warnings, leaderboard_warnings

    try:
        table = build_leaderboard(targets)
        warnings = leaderboard_warnings(table) + leaderboard_run_warnings(table)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc), code=1)
    if as_json:
        typer.echo(json.dumps(table.to_dict("records"), indent=2))
        for line in warnings:
            typer.echo(f"warning: {line}", err=True)
        return
    shas = set(table["sha256"])
    caption = "Acc@0.5 and mIoU in %, mean over tasks; official: only the box counts; strict:"
    caption += " the named image must be the target too"
    if len(shas) > 1:
        caption += f"; {len(shas)} different benchmark files: compare rows of one sha256 only"
    out = Table(title="leaderboard", caption=caption)
    for col in ("#", "run", "pipeline", "n", "official", "strict", "mIoU", "sha256"):
        out.add_column(col, justify="left" if col in ("run", "pipeline", "sha256") else "right")
    out.add_column("selection / settings")
    for rank, row in enumerate(table.itertuples(index=False), start=1):
        out.add_row(
            str(rank),
            row.run,
            row.pipeline,
            str(row.n),
            f"{row.official:.2f}",
            f"{row.strict:.2f}",
            f"{row.miou:.2f}",
            row.sha256,
            f"{row.selection}; {row.settings}",
        )
    console = Console()
    console.print(out)
    for line in warnings:
        console.print(f"[yellow]warning[/yellow]: {escape(line)}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add ``leaderboard`` to ``app``."""
    app.command("leaderboard")(leaderboard)
