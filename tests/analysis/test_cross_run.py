"""Comparing pipelines across run folders (paired by example id, same benchmark sha256 only)
and the leaderboard over several runs; runs made by the real graph on MIG-Lite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cot_ground.analysis.cross_run import (
    PipelineRef,
    benchmark_sha256,
    leaderboard,
    leaderboard_warnings,
    pipeline_settings,
)
from cot_ground.cli.app import _register_commands, app
from cot_ground.paths import experiments_dir

_register_commands()
CONFIG = str(experiments_dir() / "lite_classical.yaml")


def _run(lite: Path, out: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> Path:
    monkeypatch.setenv("MIG_LITE_DIR", str(lite))
    done = CliRunner().invoke(app, ["run", CONFIG, "--out", str(out), "--no-cache", *args])
    assert done.exit_code == 0, done.output
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from cot_ground.lite import generate_lite

    base = tmp_path_factory.mktemp("cross")
    lite_a, lite_b = base / "lite-a", base / "lite-b"
    generate_lite(lite_a, per_task=2, seed=0)
    generate_lite(lite_b, per_task=2, seed=1)  # another file: another sha256
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(base)
        return {
            "all": _run(lite_a, base / "run-all", mp),
            "sample": _run(lite_a, base / "run-sample", mp, "--sample", "6", "--seed", "3"),
            "other": _run(lite_b, base / "run-other", mp, "--per-task", "1"),
        }


def test_ref_parsing() -> None:
    assert PipelineRef.parse("runs/a:b:cot") == PipelineRef(Path("runs/a:b"), "cot")
    with pytest.raises(ValueError, match="RUN_DIR:PIPELINE"):
        PipelineRef.parse("runs/a")


@pytest.mark.slow
def test_compare_across_runs_pairs_by_example_id(runs: dict[str, Path]) -> None:
    a, b = f"{runs['all']}:classical_cot", f"{runs['sample']}:classical_cot"
    refused = CliRunner().invoke(app, ["compare", a, b, "--json"])
    assert refused.exit_code == 1  # the sample covers 6 of the 14 examples
    assert "--allow-partial" in refused.output

    done = CliRunner().invoke(app, ["compare", a, b, "--json", "--allow-partial"])
    assert done.exit_code == 0, done.output
    rows = {r["task"]: r for r in json.loads(done.output)}
    pooled = rows["POOLED"]
    assert pooled["n"] == 6 and pooled["a"] == a and pooled["b"] == b
    # the same deterministic pipeline on the same examples: every pair agrees
    assert pooled["only_a"] == pooled["only_b"] == 0 and pooled["diff"] == 0
    assert pooled["both"] + pooled["neither"] == 6


@pytest.mark.slow
def test_compare_refuses_different_benchmarks_showing_both_hashes(runs) -> None:
    a, b = f"{runs['all']}:classical_cot", f"{runs['other']}:classical_cot"
    done = CliRunner().invoke(app, ["compare", a, b])
    assert done.exit_code == 1
    text = done.output.replace("\n", "")
    assert benchmark_sha256(runs["all"]) in text and benchmark_sha256(runs["other"]) in text


@pytest.mark.slow
def test_compare_needs_one_form(runs) -> None:
    done = CliRunner().invoke(app, ["compare", str(runs["all"]), f"{runs['all']}:x", "--a", "y"])
    assert done.exit_code == 2 and "RUN_A:PIPE RUN_B:PIPE" in done.output


@pytest.mark.slow
def test_leaderboard_lists_every_run_with_its_settings(runs) -> None:
    table = leaderboard([str(runs["all"]), str(runs["sample"]), f"{runs['other']}:classical_cot"])
    assert len(table) == 3
    assert list(table["official"]) == sorted(table["official"], reverse=True)
    by_run = table.set_index("run")
    assert by_run.loc[str(runs["sample"]), "selection"] == "sample=6 seed=3"
    assert by_run.loc[str(runs["other"]), "selection"] == "per_task=1"
    assert by_run.loc[str(runs["all"]), "n"] == 14
    assert "reasoner=rule-reasoner" in by_run.loc[str(runs["all"]), "settings"]
    assert table["sha256"].nunique() == 2

    done = CliRunner().invoke(app, ["leaderboard", str(runs["all"]), str(runs["other"])])
    assert done.exit_code == 0, done.output
    assert "2 different benchmark files" in done.output.replace("\n", " ")


@pytest.mark.slow
def test_leaderboard_warns_when_runs_differ_in_size_or_selection(runs) -> None:
    same = leaderboard([str(runs["all"])])
    assert leaderboard_warnings(same) == []
    table = leaderboard([str(runs["all"]), str(runs["sample"])])
    assert sorted(table["n"]) == [6, 14]
    (warning,) = leaderboard_warnings(table)
    assert "n = 6, 14" in warning and "sample=6 seed=3" in warning and "all" in warning

    done = CliRunner().invoke(app, ["leaderboard", str(runs["all"]), str(runs["sample"])])
    assert done.exit_code == 0, done.output
    text = " ".join(done.output.split())
    assert "warning: the rows are scored on different examples (n = 6, 14" in text
    assert "warning" not in CliRunner().invoke(app, ["leaderboard", str(runs["all"])]).output


def test_leaderboard_settings_tell_zoom_and_proposal_variants_apart() -> None:
    models = {"rules": {"adapter": "rule-reasoner"}, "det": {"adapter": "classical-grounder"}}
    som = {"kind": "som", "reasoner": "rules", "grounder": "det", "top_k": 3}
    manifest = {
        "config": {
            "models": models,
            "pipelines": {"som": som, "som_zoom": {**som, "zoom": {"rounds": 1, "expand": 2.0}}},
        }
    }
    plain, zoomed = (pipeline_settings(manifest, p) for p in ("som", "som_zoom"))
    assert plain == "kind=som top_k=3 reasoner=rule-reasoner grounder=classical-grounder"
    assert zoomed == plain.replace("top_k=3", "top_k=3 zoom=expand:2.0,rounds:1")
