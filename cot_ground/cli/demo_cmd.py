"""``demo``: MIG-Lite + classical and tiny-model pipelines + report, offline, in one command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markdown import Markdown
from rich.markup import escape


def demo(
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="folder for the benchmark, run and report "
            "(default: $COT_GROUND_DEMO_DIR, else ~/cot-ground-demo)",
        ),
    ] = None,
    per_task: Annotated[
        int, typer.Option("--per-task", min=1, help="MIG-Lite items per task")
    ] = 12,
    no_tiny_models: Annotated[
        bool, typer.Option("--no-tiny-models", help="skip the MLLM smoke run on tiny models")
    ] = False,
) -> None:
    """Run the whole library on the built-in offline benchmark (no weights, no network).

    Builds MIG-Lite from scikit-image's photographs, runs the classical CoT pipeline and the
    MLLM code path on tiny random-weight models over the same examples, and writes the report.
    Re-running resumes and reuses what is already built; another --per-task rebuilds MIG-Lite
    and starts a new run folder.
    """
    from cot_ground.cli.common import fail
    from cot_ground.demo import DemoFolderError, default_demo_dir, run_demo
    from cot_ground.runner.progress import default_progress

    console = Console()
    try:
        result = run_demo(
            out if out is not None else default_demo_dir(),
            per_task=per_task,
            with_tiny_models=not no_tiny_models,
            progress=default_progress(),
            log=lambda msg: console.print(f"[bold]demo[/bold] {escape(msg)}", highlight=False),
        )
    except DemoFolderError as exc:
        fail(str(exc))
    sections = result.scores_md.read_text(encoding="utf-8").split("\n## ")
    console.print(Markdown("## " + sections[1].strip()))  # the Acc@0.5 (official) table
    from cot_ground.analysis.guide import terminal_lines

    for line in terminal_lines(result.run_dir):
        console.print(line, highlight=False, markup=False)
    console.print(f"report: [bold]{result.report_html}[/bold]")
    console.print(f"run folder: {result.run_dir}  (cot-ground show {result.run_dir} EXAMPLE_ID)")


def register(app: typer.Typer) -> None:
    """Add the ``demo`` command to ``app``."""
    app.command("demo")(demo)
