"""``cot-ground models``: the table of every adapter (the one ``docs/models.md`` opens with)."""

from __future__ import annotations

from typing import Annotated

import typer


def models(
    markdown: Annotated[
        bool, typer.Option("--markdown", help="print the Markdown table of docs/models.md")
    ] = False,
) -> None:
    """Every adapter: role, checkpoints, answer frame, batching, how it loads, what is tested
    here on tiny models and what needs real weights."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from cot_ground.models.catalog import COLUMNS, markdown_table, model_table

    if markdown:
        typer.echo(markdown_table(), nl=False)
        return
    table = Table(show_lines=True)
    for _, title in COLUMNS:
        # a checkpoint id longer than its column wraps onto the next line instead of being cut
        table.add_column(title, overflow="fold")
    for row in model_table():
        table.add_row(*(escape(row[field].replace("`", "")) for field, _ in COLUMNS))
    Console().print(table)


def register(app: typer.Typer) -> None:
    """Add the ``models`` command to ``app``."""
    app.command("models")(models)
