"""``cot-ground demo``: the whole library on a fresh machine, with no weights and no network.

Builds MIG-Lite (unless already built with the ``per_task`` asked for; a build of another size
is replaced, and the run folder made on it with it), builds the tiny random-weight Qwen2-VL and
GroundingDino models (unless already built), runs the classical CoT pipeline and the MLLM code
path on the tiny models over the same examples into one run folder, and writes the report.
The pipelines come from the shipped configs ``experiments/lite_classical.yaml`` and
``experiments/tiny_models.yaml``, so the demo runs exactly what a user would run by hand.
A demo holds its folder's lock from start to end, so a second demo on the same folder (of any
``per_task``) stops before it touches anything.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cot_ground.paths import experiments_dir

CLASSICAL_CONFIG = "lite_classical.yaml"
TINY_CONFIG = "tiny_models.yaml"
DEMO_DIR_ENV = "COT_GROUND_DEMO_DIR"


def default_demo_dir() -> Path:
    """The demo's folder when none is named: ``$COT_GROUND_DEMO_DIR``, else ``~/cot-ground-demo``.

    ``cot-ground demo`` and ``experiments/analysis_example.ipynb`` both use it, so the notebook
    finds the demo's run wherever each was started.
    """
    return Path(os.environ.get(DEMO_DIR_ENV) or "~/cot-ground-demo").expanduser()


class DemoFolderError(ValueError):
    """A folder inside the demo's folder is not the demo's own, so the demo does not replace
    it; the message names it and the way out."""


@dataclass
class DemoResult:
    """Where the demo wrote its benchmark, run folder and report."""

    lite_dir: Path
    run_dir: Path
    report_html: Path
    scores_md: Path


def demo_config(lite_dir: Path, tiny_dir: Path | None, run_dir: Path) -> Any:
    """The demo's experiment config: classical pipeline (+ tiny-model pipelines) in one run."""
    from cot_ground.runner.config import parse_config

    configs = experiments_dir()
    data = yaml.safe_load((configs / CLASSICAL_CONFIG).read_text(encoding="utf-8"))
    if tiny_dir is not None:
        tiny = yaml.safe_load((configs / TINY_CONFIG).read_text(encoding="utf-8"))
        data["models"].update(tiny["models"])
        data["pipelines"].update(tiny["pipelines"])
        data["cache"] = tiny.get("cache", data.get("cache"))
        os.environ["COT_GROUND_TINY_DIR"] = str(tiny_dir)
    os.environ["MIG_LITE_DIR"] = str(lite_dir)
    data["name"] = "demo"
    data["description"] = "cot-ground demo on MIG-Lite"
    data["output"] = str(run_dir)
    # the step-1 cache stays inside the demo folder, not in the current directory
    data["cache"] = {**(data.get("cache") or {}), "dir": str(run_dir.parent / "step1-cache")}
    return parse_config(data, source="demo (lite_classical.yaml + tiny_models.yaml)")


def build_tiny_models(folder: Path) -> Path:
    """Build (or reuse) the tiny random-weight models the demo's MLLM smoke run needs."""
    from cot_ground.testing.tiny_models import build_tiny_gdino_hf, build_tiny_qwen_vl

    build_tiny_qwen_vl(folder / "qwen2_vl", "qwen2_vl")
    build_tiny_gdino_hf(folder / "gdino-hf")
    return folder


def built_per_task(lite_dir: Path) -> int | None:
    """Items per task of the MIG-Lite build in ``lite_dir`` (its ``lite_info.json``), or None
    when there is no readable build there."""
    from cot_ground.records import BUILD_INFO_FILE

    try:
        info = json.loads((lite_dir / BUILD_INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = info.get("per_task") if isinstance(info, dict) else None
    return value if isinstance(value, int) else None


def check_demo_run(run_dir: Path) -> None:
    """Raise :class:`DemoFolderError` unless ``run_dir`` is absent or a run folder the demo wrote
    (``run.json`` names the run ``demo``): any other folder or file is never deleted."""
    if not run_dir.exists():
        return
    try:
        manifest = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = None
    if not (run_dir.is_dir() and isinstance(manifest, dict) and manifest.get("name") == "demo"):
        raise DemoFolderError(
            f"{run_dir} is not a run folder of the demo (no run.json naming the run 'demo'), so"
            " the demo does not replace it; move it away or give another --out"
        )


@contextlib.contextmanager
def demo_folder_locked(out: Path) -> Iterator[None]:
    """Hold the lock of the demo folder ``out`` (the run-folder lock of
    :meth:`cot_ground.runner.store.RunFolder.locked`, on ``out/.lock``) for the block. Raises
    :class:`DemoFolderError` naming the process that holds it (another demo in that folder)."""
    from cot_ground.runner.store import _LOCK_FILE, RunFolder, RunFolderError

    held = contextlib.ExitStack()
    try:
        held.enter_context(RunFolder(out).locked())
    except RunFolderError:
        try:
            holder = (out / _LOCK_FILE).read_text(encoding="utf-8").strip() or "another process"
        except OSError:
            holder = "another process"
        raise DemoFolderError(
            f"the demo folder {out} is in use by {holder} (another demo runs there); wait for"
            " it to finish or give another --out"
        ) from None
    with held:
        yield


def prepare_lite(lite_dir: Path, run_dir: Path, per_task: int, log: Any = print) -> None:
    """MIG-Lite with ``per_task`` items per task in ``lite_dir``: reused when already built so,
    else built. An earlier build of another size is replaced
    (:func:`cot_ground.lite.generate_lite` with ``force``: only a MIG-Lite build is), and the
    demo's run folder ``run_dir`` made on it is deleted (:func:`check_demo_run`), since its
    records came from the other benchmark file; both are checked before either is touched, and
    ``run_dir``'s lock is held while they are replaced. The step-1 cache is kept: it is keyed by
    the images' content, which the same seed writes identically whatever the size. Raises
    :class:`DemoFolderError` when ``lite_dir`` or ``run_dir`` is not the demo's own
    (:func:`cot_ground.lite.generate.check_replaceable`, :func:`check_demo_run`), or when
    another process (a ``cot-ground run`` on it) holds ``run_dir``'s lock."""
    from cot_ground.lite import generate_lite
    from cot_ground.lite.generate import check_replaceable

    built = built_per_task(lite_dir)
    if (lite_dir / "MIG_data.json").is_file() and built == per_task:
        log(f"MIG-Lite already built in {lite_dir} ({per_task} items per task)")
        return
    if not (lite_dir / "MIG_data.json").is_file():
        log(f"building MIG-Lite ({per_task} items per task) in {lite_dir}")
        generate_lite(lite_dir, per_task=per_task)
        return
    had = f"{built} items per task" if built is not None else "an unknown number of items per task"
    try:
        check_replaceable(lite_dir, force=True)
    except ValueError as exc:
        raise DemoFolderError(f"{exc} (the demo keeps MIG-Lite in it)") from None
    check_demo_run(run_dir)
    from cot_ground.runner.store import RunFolder, RunFolderError

    held = contextlib.ExitStack()
    if run_dir.exists():
        try:
            held.enter_context(RunFolder(run_dir).locked())
        except RunFolderError as exc:
            raise DemoFolderError(f"{exc} (MIG-Lite and it were left as they are)") from None
    with held:
        log(f"MIG-Lite in {lite_dir} has {had}, {per_task} asked for: rebuilding it")
        generate_lite(lite_dir, per_task=per_task, force=True)
        if run_dir.exists():
            shutil.rmtree(run_dir)
            log(f"removed the earlier run folder {run_dir} (its records came from the old build)")


def run_demo(
    out_dir: str | os.PathLike[str],
    *,
    per_task: int = 12,
    with_tiny_models: bool = True,
    progress: Any = None,
    log: Any = print,
) -> DemoResult:
    """Run the demo into ``out_dir``: resumes whatever an earlier demo with the same
    ``per_task`` left there, and starts again from a new MIG-Lite build and run folder when
    ``per_task`` differs (:func:`prepare_lite`). Raises :class:`DemoFolderError` when the
    MIG-Lite or run folder in ``out_dir`` is not the demo's own (it is never replaced), or when
    another demo runs in ``out_dir`` (:func:`demo_folder_locked`)."""
    from cot_ground.analysis.report import build_report
    from cot_ground.runner.run import run_experiment

    out = Path(out_dir).resolve()
    lite_dir = out / "mig-lite"
    run_dir = out / "run"
    with demo_folder_locked(out):
        prepare_lite(lite_dir, run_dir, per_task, log)
        tiny_dir = None
        if with_tiny_models:
            log(f"building tiny random-weight models in {out / 'tiny-models'}")
            tiny_dir = build_tiny_models(out / "tiny-models")
        config = demo_config(lite_dir, tiny_dir, run_dir)
        run_experiment(config, progress=progress)
        log("writing the report")
        report = build_report(run_dir)
    return DemoResult(
        lite_dir=lite_dir,
        run_dir=run_dir,
        report_html=report.files["report.html"],
        scores_md=report.files["scores.md"],
    )
