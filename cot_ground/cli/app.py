"""Entry point of the ``cot-ground`` command: one typer app, commands grouped by module."""

from __future__ import annotations

from cot_ground.cli import (
    bench_cmds,
    demo_cmd,
    leaderboard_cmd,
    lite_cmds,
    models_cmd,
    report_cmds,
    run_cmds,
)
from cot_ground.cli.common import app, widen_piped_output

__all__ = ["app", "main"]


def _register_commands() -> None:
    demo_cmd.register(app)
    run_cmds.register(app)
    report_cmds.register(app)
    bench_cmds.register(app)
    lite_cmds.register(app)
    models_cmd.register(app)
    leaderboard_cmd.register(app)


def main() -> None:
    """Console-script entry point."""
    widen_piped_output()
    _register_commands()
    app()
