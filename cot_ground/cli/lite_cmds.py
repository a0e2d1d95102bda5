"""MIG-Lite commands: ``make-lite`` writes the offline benchmark to a folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from cot_ground.cli.common import fail
from cot_ground.lite import DEFAULT_DIFFICULTY, DEFAULT_PER_TASK, LITE_TASKS, generate_lite
from cot_ground.records import BUILD_INFO_FILE


def make_lite(
    out_dir: Annotated[Path, typer.Argument(help="folder to write MIG_data.json and images to")],
    seed: Annotated[int, typer.Option(help="random seed (same seed: byte-identical files)")] = 0,
    per_task: Annotated[int, typer.Option(help="items per task")] = DEFAULT_PER_TASK,
    difficulty: Annotated[
        float, typer.Option(help="perturbation strength, 0 (none) to 1 (strongest)")
    ] = DEFAULT_DIFFICULTY,
    task: Annotated[
        list[str] | None,
        typer.Option("--task", help=f"only these tasks (repeat); known: {', '.join(LITE_TASKS)}"),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="replace an earlier MIG-Lite build in OUT_DIR")
    ] = False,
) -> None:
    """Generate MIG-Lite from the photographs inside scikit-image (no download).

    The build is written to a fresh folder and swapped in when complete; a non-empty OUT_DIR
    is refused unless --force (which replaces only an earlier MIG-Lite folder).
    """
    console = Console()
    try:
        build = generate_lite(
            out_dir, seed=seed, per_task=per_task, difficulty=difficulty, tasks=task, force=force
        )
    except ValueError as exc:
        fail(str(exc))
    total = sum(build.counts.values())
    console.print(f"wrote {total} items and {build.images} images to {build.out_dir}")
    for name, count in build.counts.items():
        console.print(f"  {name}: {count}")
    console.print(
        f"load with: load_benchmark('{build.data_file}', root='{build.out_dir}') "
        f"(answer frame 'unit', stated in {build.out_dir / BUILD_INFO_FILE})",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    """Add the MIG-Lite commands to ``app``."""
    app.command("make-lite")(make_lite)
