"""Pipelines from different run folders side by side: paired comparison and a leaderboard.

A pipeline is named across runs as ``RUN_DIR:PIPELINE``. Two runs are paired by example id
(a hash of task, image paths as written in the annotation file and question, so it does not
depend on where the images live); pairing is refused unless both runs were made on the same
benchmark file, identified by the sha256 in their ``run.json``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from cot_ground.analysis.load import load_run, pipeline_specs, read_manifest
from cot_ground.analysis.run_warnings import (
    RunSelection,
    benchmark_file_warnings,
    record_warnings,
    session_warnings,
    state_warnings,
)
from cot_ground.analysis.scores import AVERAGE, score_tables, scores_frame


@dataclass(frozen=True)
class PipelineRef:
    """``RUN_DIR:PIPELINE``: one pipeline of one run folder."""

    run_dir: Path
    pipeline: str

    @classmethod
    def parse(cls, text: str) -> PipelineRef:
        """Split at the last ``:``; ValueError naming ``text`` when either part is missing."""
        run, sep, pipeline = str(text).rpartition(":")
        if not sep or not run or not pipeline:
            raise ValueError(f"{text!r}: expected RUN_DIR:PIPELINE (e.g. runs/a:cot_agent)")
        return cls(Path(run), pipeline)

    @classmethod
    def target(cls, text: str) -> tuple[Path, str | None]:
        """``(run folder, pipeline or None)`` of a leaderboard target: a run folder, or
        ``RUN_DIR:PIPELINE``. FileNotFoundError naming the folder when neither exists."""
        if Path(text).is_dir():
            return Path(text), None
        run, sep, pipeline = str(text).rpartition(":")
        if sep and run and pipeline and Path(run).is_dir():
            return Path(run), pipeline
        missing = run if sep and run and pipeline else text
        raise FileNotFoundError(
            f"run folder not found: {missing} (give RUN_DIR, or RUN_DIR:PIPELINE for one pipeline)"
        )

    def __str__(self) -> str:
        return f"{self.run_dir}:{self.pipeline}"


def benchmark_sha256(run_dir: str | os.PathLike[str]) -> str:
    """The benchmark sha256 recorded in ``run.json``; ValueError when the run has none."""
    sha = (read_manifest(run_dir).get("benchmark") or {}).get("sha256")
    if not sha:
        raise ValueError(f"{run_dir}: run.json records no benchmark sha256 (not a run folder?)")
    return str(sha)


def load_cross_run(a: PipelineRef, b: PipelineRef) -> tuple[pd.DataFrame, str, str]:
    """One DataFrame holding pipeline ``a`` of its run and ``b`` of its run, relabelled so they
    differ, and the two labels (``RUN:PIPE``, or the pipeline names when they already differ
    and come from one run). Raises ValueError, showing both hashes, when the runs were made on
    different benchmark files; FileNotFoundError for a missing folder or pipeline.
    """
    sha_a, sha_b = benchmark_sha256(a.run_dir), benchmark_sha256(b.run_dir)
    if sha_a != sha_b:
        raise ValueError(
            f"the runs were made on different benchmark files, so their examples cannot be"
            f" paired: {a.run_dir} has sha256 {sha_a}, {b.run_dir} has sha256 {sha_b}"
        )
    same_run = Path(a.run_dir).resolve() == Path(b.run_dir).resolve()
    if same_run and a.pipeline != b.pipeline:
        label_a, label_b = a.pipeline, b.pipeline
    else:
        label_a, label_b = str(a), str(b)
    if label_a == label_b:
        raise ValueError(f"{a} is compared with itself")
    dfs = []
    for ref, label in ((a, label_a), (b, label_b)):
        df = load_run(ref.run_dir, pipelines=[ref.pipeline])
        dfs.append(df.assign(pipeline=label))
    return pd.concat(dfs, ignore_index=True), label_a, label_b


def pipeline_settings(manifest: dict[str, Any], pipeline: str) -> str:
    """A short line of what defines ``pipeline`` in a run: its kind, mode, prompt variant, the
    graph options that tell training-free variants apart (answer form, proposals per image,
    verified proposals, unmarked choice, zoom-in) and the adapter of every model it uses (from
    ``run.json``'s config)."""
    spec = pipeline_specs(manifest).get(pipeline, {})
    models = (manifest.get("config") or {}).get("models") or {}
    parts = [f"{k}={spec[k]}" for k in (*_DEFINING_KEYS, *_GRAPH_KEYS) if spec.get(k)]
    if spec.get("zoom"):
        parts.append("zoom=" + ",".join(f"{k}:{v}" for k, v in sorted(spec["zoom"].items())))
    for role in ("reasoner", "grounder", "fallback_grounder", "zoom_grounder", "model"):
        key = spec.get(role)
        if key:
            adapter = (models.get(key) or {}).get("adapter", "?")
            parts.append(f"{role}={adapter}")
    return " ".join(parts)


_DEFINING_KEYS = ("kind", "mode", "prompt_variant")
_GRAPH_KEYS = ("answer_form", "top_k", "verify_top", "unmarked_choice")


def selection_text(manifest: dict[str, Any]) -> str:
    """Which examples a run selected (tasks, limit, per_task, sample and seed), in words."""
    bench = manifest.get("benchmark") or {}
    parts = []
    if bench.get("tasks"):
        parts.append("tasks=" + ",".join(bench["tasks"]))
    for key in ("limit", "per_task"):
        if bench.get(key) is not None:
            parts.append(f"{key}={bench[key]}")
    if bench.get("sample") is not None:
        parts.append(f"sample={bench['sample']} seed={bench.get('seed', 0)}")
    shard = manifest.get("shard")
    if shard:
        parts.append(f"shard={shard.get('k')}/{shard.get('n')}")
    return " ".join(parts) or "all"


LEADERBOARD_COLUMNS = (
    "run",
    "pipeline",
    "n",
    "official",
    "strict",
    "miou",
    "benchmark",
    "sha256",
    "selection",
    "settings",
)


def leaderboard(targets: list[str]) -> pd.DataFrame:
    """Acc@0.5 (official and strict, mean over tasks) and mIoU (official) of every pipeline of
    every ``RUN_DIR`` (or only ``RUN_DIR:PIPELINE``) in ``targets``, best official first, with
    the benchmark (name, sha256 prefix), the example selection and the pipeline's settings.

    Columns: :data:`LEADERBOARD_COLUMNS` (percentages). Rows on different benchmark files
    show different sha256 prefixes; their figures are not comparable example by example.
    """
    rows = []
    for target in targets:
        run_dir, pipeline = PipelineRef.target(target)
        wanted = None if pipeline is None else [pipeline]
        manifest = read_manifest(run_dir)
        bench = manifest.get("benchmark") or {}
        df = load_run(run_dir, pipelines=wanted)
        if df.empty:
            raise ValueError(f"{run_dir}: no predictions to rank")
        scores = scores_frame(score_tables(df))
        average = scores[scores["task"] == AVERAGE].set_index(["pipeline", "mode"])
        for pipeline in dict.fromkeys(df["pipeline"]):
            rows.append(
                {
                    "run": str(run_dir),
                    "pipeline": pipeline,
                    "n": int(average.loc[(pipeline, "official"), "n"]),
                    "official": float(average.loc[(pipeline, "official"), "acc@0.5"]),
                    "strict": float(average.loc[(pipeline, "strict"), "acc@0.5"]),
                    "miou": float(average.loc[(pipeline, "official"), "miou"]),
                    "benchmark": bench.get("name", ""),
                    "sha256": str(bench.get("sha256", ""))[:12],
                    "selection": selection_text(manifest),
                    "settings": pipeline_settings(manifest, pipeline),
                }
            )
    table = pd.DataFrame(rows, columns=list(LEADERBOARD_COLUMNS))
    return table.sort_values("official", ascending=False, kind="stable").reset_index(drop=True)


def run_state_warnings(run_dirs: list[str | os.PathLike[str]]) -> list[str]:
    """``RUN_DIR: warning`` for each run folder that never ended, was interrupted, mixes
    sessions (changes allowed, a changed selection, other code or weights), or whose benchmark
    file changed since it ran: :func:`~cot_ground.analysis.run_warnings.state_warnings`,
    :func:`~cot_ground.analysis.run_warnings.session_warnings` and
    :func:`~cot_ground.analysis.run_warnings.benchmark_file_warnings`."""
    out = []
    for run_dir in dict.fromkeys(str(r) for r in run_dirs):
        manifest = read_manifest(run_dir)
        found = (
            *state_warnings(manifest),
            *session_warnings(manifest),
            *benchmark_file_warnings(manifest),
        )
        out += [f"{run_dir}: {w}" for w in found]
    return out


def leaderboard_run_warnings(table: pd.DataFrame) -> list[str]:
    """``RUN_DIR: warning`` for every run of a :func:`leaderboard` table whose ranked pipelines
    are not those of one finished, unchanged run (:func:`run_state_warnings`, then the record
    checks of :func:`~cot_ground.analysis.run_warnings.record_warnings` on its ranked
    pipelines: examples or tasks of the run without records)."""
    out = run_state_warnings(list(table["run"]))
    for run_dir in dict.fromkeys(table["run"]):
        ranked = list(dict.fromkeys(table.loc[table["run"] == run_dir, "pipeline"]))
        df = load_run(run_dir, pipelines=ranked)
        found = record_warnings(df, read_manifest(run_dir), RunSelection.of(run_dir), ranked)
        out += [f"{run_dir}: {w}" for w in found]
    return out


def leaderboard_warnings(table: pd.DataFrame) -> list[str]:
    """Lines warning that the rows of a :func:`leaderboard` table were scored on different
    example sets (different ``n`` or selection) or benchmark files; empty when all match."""
    lines = []
    shas = list(dict.fromkeys(table["sha256"]))
    if len(shas) > 1:
        lines.append(
            f"{len(shas)} different benchmark files ({', '.join(shas)}): compare rows of one"
            " sha256 only"
        )
    sizes = sorted(set(table["n"]))
    selections = list(dict.fromkeys(table["selection"]))
    if len(sizes) > 1 or len(selections) > 1:
        lines.append(
            f"the rows are scored on different examples (n = {', '.join(map(str, sizes))};"
            f" selections: {' | '.join(selections)}): their ranks are not a like-for-like"
            " comparison"
        )
    return lines
