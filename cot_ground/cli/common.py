"""What every command module shares: the typer ``app``, ``fail`` and the piped-output width.

Command modules import from here and :mod:`cot_ground.cli.app` imports them, so the package has
no import circle.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

import typer

app = typer.Typer(
    name="cot-ground",
    help="Chain-of-thought vs end-to-end multi-image grounding: run, score, compare, report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


# rich lays out output that is not a terminal (a pipe, a log file) at 80 columns, which cuts
# pipeline names in tables; such output gets this width unless COLUMNS says otherwise
PIPED_WIDTH = 200


def widen_piped_output() -> None:
    """Give rich consoles :data:`PIPED_WIDTH` columns when stdout is not a terminal."""
    if not sys.stdout.isatty() and "COLUMNS" not in os.environ:
        os.environ["COLUMNS"] = str(PIPED_WIDTH)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on stderr (as plain text, never read as rich markup) and exit."""
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True).print(f"[red]error:[/red] {escape(message)}", highlight=False)
    raise typer.Exit(code=code)
