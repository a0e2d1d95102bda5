"""Reports on mixed and unfinished runs say so: run folders written by the real runner on
scripted models, resumed with changes allowed, or killed (SIGKILL) part-way."""

from __future__ import annotations

import html
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import runner_fakes as rf
import typer
from typer.testing import CliRunner

from cot_ground.analysis.load import load_run
from cot_ground.analysis.run_warnings import (
    merge_warnings,
    run_warnings,
    session_warnings,
    state_warnings,
)
from cot_ground.analysis.scores import WARNINGS_TITLE
from cot_ground.cli import leaderboard_cmd, report_cmds, run_cmds
from cot_ground.paths import prompts_dir
from cot_ground.runner.config import parse_config
from cot_ground.runner.preflight import PreflightError
from cot_ground.runner.run import run_experiment
from cot_ground.runner.shard import merge_runs
from cot_ground.runner.store import RunFolder, read_jsonl

TESTS = Path(__file__).resolve().parents[1]

# runs the real runner on the scripted models in a child process and kills it (SIGKILL, what
# `kill -9` does) when the grounder is called for the (N+1)-th time; an optional 4th argument
# K/N runs one shard
KILLED_RUN = """
import json, os, signal, sys
sys.path.insert(0, sys.argv[1])
import runner_fakes as rf
rf.register_fakes()
ground, calls = rf.FakeGrounder.ground, []
def dying(self, requests):
    calls.append(len(requests))
    if len(calls) > int(sys.argv[3]):
        os.kill(os.getpid(), signal.SIGKILL)
    return ground(self, requests)
rf.FakeGrounder.ground = dying
from cot_ground.runner.config import parse_config
from cot_ground.runner.run import run_experiment
shard = tuple(map(int, sys.argv[4].split("/"))) if len(sys.argv) > 4 else None
run_experiment(parse_config(json.loads(open(sys.argv[2]).read())), shard=shard)
"""


@pytest.fixture(scope="module")
def cli() -> typer.Typer:
    app = typer.Typer()
    report_cmds.register(app)
    leaderboard_cmd.register(app)
    return app


def _config(tmp: Path, bench: Path, **models: dict[str, Any]) -> dict[str, Any]:
    config = rf.experiment(bench, tmp / "run", tmp / "cache")
    for key, settings in models.items():
        config["models"][key].update(settings)
    return config


def _report(cli: typer.Typer, run: Path) -> tuple[str, str, dict[str, Any], str]:
    done = CliRunner().invoke(cli, ["report", str(run), "--sample-per-category", "1"])
    assert done.exit_code == 0, done.output
    out = run / "report"
    scores = json.loads((out / "scores.json").read_text(encoding="utf-8"))
    page = (out / "report.html").read_text(encoding="utf-8")
    return done.output, (out / "scores.md").read_text(encoding="utf-8"), scores, page


def _run_box(page: str) -> str:
    return page.split("<h2>Run</h2>")[1].split("<h2>")[0]


@pytest.mark.slow
def test_a_run_resumed_with_changes_allowed_is_reported_as_mixed(
    cli: typer.Typer, tmp_path: Path, fakes: None
) -> None:
    bench = rf.make_benchmark(tmp_path / "bench", n=8)
    prompts = tmp_path / "prompts"
    shutil.copytree(prompts_dir(), prompts)
    config = _config(tmp_path, bench, reasoner={"max_new_tokens": 8})
    config["pipelines"]["cot"]["prompts_dir"] = str(prompts)
    run_experiment(parse_config(config))
    _, _, clean, page = _report(cli, tmp_path / "run")
    assert clean["warnings"] == [] and WARNINGS_TITLE not in page  # one finished session

    # the prompt edited, max_new_tokens 8 -> 9 and --limit 4, resumed with --allow-changed
    edited = prompts / "cot/structured/_all.yaml"
    edited.write_text(edited.read_text() + "\n# reworded\n")
    config["models"]["reasoner"]["max_new_tokens"] = 9
    run_experiment(parse_config(config), limit=4, allow_changed=True)

    output, markdown, scores, page = _report(cli, tmp_path / "run")
    # a commit landing in the checkout between the two sessions is a third, true warning
    warnings = [w for w in scores["warnings"] if "ran other code" not in w]
    assert len(warnings) == 2, warnings
    changed, selection = warnings
    assert changed.startswith("session 2 (started ")
    assert "with changes allowed (--allow-changed): cot: prompt file cot/structured/_all.yaml" in (
        changed
    )
    assert "config models.reasoner.max_new_tokens" in changed and "are mixed" in changed
    assert "run.json's config is the last session's" in changed
    assert "changed the example selection (limit None -> 4)" in selection
    for text in (output, markdown):
        assert WARNINGS_TITLE in text
        assert "models.reasoner.max_new_tokens" in text and "limit None -> 4" in text
    assert markdown.index(WARNINGS_TITLE) < markdown.index("## Acc@0.5 (official)")
    assert output.index(WARNINGS_TITLE) < output.index("Acc@0.5: the paper's group means")
    # the page opens with the warnings, and its run box does not contradict itself
    assert page.index(WARNINGS_TITLE) < page.index("How to read this report")
    assert html.escape(changed) in page
    box = _run_box(page)
    assert "<dt>examples in the run (every session&#x27;s selection)</dt><dd>8</dd>" in box
    selection_box = "<dd>tasks: all; limit: 4; examples selected: 4</dd>"
    assert f"<dt>selection (last session; see sessions)</dt>{selection_box}" in box
    assert "examples: 4" not in box  # the last session's count is not shown as the run's
    assert "<h3>Sessions</h3>" in box
    assert "<td>1</td><td>" in box and "<td>8</td>" in box and "<td>4</td>" in box
    assert "limit None -&gt; 4" in box and "models.reasoner.max_new_tokens" in box
    # both pipelines still hold all 8 examples: the tables are not called partial
    assert "different example sets" not in output and "records for only" not in output


@pytest.mark.slow
def test_a_killed_run_is_reported_as_unfinished(
    cli: typer.Typer, tmp_path: Path, fakes: None
) -> None:
    bench = rf.make_benchmark(tmp_path / "bench", n=8)
    items = json.loads(bench.read_text(encoding="utf-8"))  # tasks alternate: one task first
    bench.write_text(json.dumps(sorted(items, key=lambda item: item["task"])), encoding="utf-8")
    config_file = tmp_path / "config.json"
    config = _config(tmp_path, bench)
    config_file.write_text(json.dumps(config), encoding="utf-8")
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_RUN, str(TESTS), str(config_file), "3"],
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -9, killed.stderr
    run = tmp_path / "run"
    manifest = RunFolder(run).read_manifest()
    assert manifest["ended"] is None and manifest["pipelines"] == ["cot", "e2e"]
    cot = read_jsonl(run / "predictions/cot.jsonl")
    assert len(cot) == 3 and not (run / "predictions/e2e.jsonl").is_file()
    tasks = {r["id"]: r["task"] for r in RunFolder(run).read_examples()}
    assert {tasks[r["example_id"]] for r in cot} == {"common_object"}

    output, markdown, scores, page = _report(cli, run)
    warnings = scores["warnings"]
    assert "the run never ended" in warnings[0] and "killed, or is still running" in warnings[0]
    assert "pipeline e2e listed in run.json has no records" in warnings[1]
    assert "every pipeline has records for only 3 of the run's 8 examples" in warnings[2]
    assert "cot has no records for 1 of the run's 2 tasks (group_grounding)" in warnings[3]
    assert "its AVERAGE is over 1 of 2 tasks" in warnings[3] and len(warnings) == 4
    assert "1/2!" in output  # the terminal table's tasks column
    # the overview keeps a (blank) column for the task no pipeline has records for
    assert "| cot | acc@0.5 | 100.00 |  | 100.00 | 100.00 |" in markdown
    for text in (output, markdown, page):
        assert WARNINGS_TITLE in text
    assert "never (killed, or still running)" in _run_box(page)
    assert "e2e listed in run.json" in output

    # resumed to the end, the same folder reports clean
    run_experiment(parse_config(config))
    output, markdown, scores, page = _report(cli, run)
    assert scores["warnings"] == []
    assert WARNINGS_TITLE not in output + markdown + page and "2/2" in output
    assert "<td>killed</td>" in _run_box(page)  # the runner marked the killed session


def _kill_run(tmp: Path, config: dict[str, Any], grounder_calls: int, *shard: str) -> None:
    config_file = tmp / f"config_{Path(config['output']).name}.json"
    config_file.write_text(json.dumps(config), encoding="utf-8")
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            KILLED_RUN,
            str(TESTS),
            str(config_file),
            str(grounder_calls),
            *shard,
        ],
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -9, killed.stderr


def test_a_rebuilt_or_missing_benchmark_file_is_reported(
    cli: typer.Typer, tmp_path: Path, fakes: None
) -> None:
    bench = rf.make_benchmark(tmp_path / "bench", n=4)
    config = _config(tmp_path, bench)
    run_experiment(parse_config(config))
    run = tmp_path / "run"
    _, _, clean, _ = _report(cli, run)
    assert clean["warnings"] == []

    # the benchmark rebuilt in place: same paths, other items (what `make-lite --force` does)
    recorded = RunFolder(run).read_manifest()["benchmark"]["sha256"]
    items = json.loads(bench.read_text(encoding="utf-8"))
    bench.write_text(json.dumps(items[::-1]), encoding="utf-8")
    with pytest.raises(PreflightError, match="holds results on another benchmark file"):
        run_experiment(parse_config(config))  # `run` on the folder refuses it
    output, markdown, scores, page = _report(cli, run)
    (warning,) = scores["warnings"]
    assert warning.startswith(f"the run's benchmark file {bench} has changed since the run")
    assert f"vs {recorded[:12]}… in run.json" in warning
    assert "the pictures report and show draw for the run's examples" in warning
    assert "may not be what the run was scored on" in warning
    assert markdown.index(warning) < markdown.index("## Acc@0.5 (official)")
    assert html.escape(warning) in page and WARNINGS_TITLE in output
    assert "has changed since the run" in " ".join(output.split())
    app = typer.Typer()
    run_cmds.register(app)
    example = RunFolder(run).read_examples()[0]["id"]
    shown = CliRunner().invoke(app, ["show", str(run), example])
    assert shown.exit_code == 0, shown.output
    assert shown.output.startswith("warning: the run's benchmark file")
    assert "has changed since the run" in " ".join(shown.output.split())
    from cot_ground.analysis.cross_run import run_state_warnings  # leaderboard and compare

    (ranked,) = run_state_warnings([run])
    assert ranked.startswith(f"{run}: the run's benchmark file") and "has changed" in ranked

    bench.unlink()
    (warning,) = run_warnings(run, load_run(run))
    assert warning.startswith(f"the run's benchmark file {bench} is missing, so it cannot be")


@pytest.mark.slow
def test_a_merge_lacking_shards_or_with_a_killed_shard_is_reported(
    cli: typer.Typer, tmp_path: Path, fakes: None
) -> None:
    bench = rf.make_benchmark(tmp_path / "bench", n=6)
    config = _config(tmp_path, bench)
    shards = {k: {**config, "output": str(tmp_path / f"s{k}")} for k in (1, 2)}
    run_experiment(parse_config(shards[1]), shard=(1, 2))
    merged = tmp_path / "m1"
    assert merge_runs([tmp_path / "s1"], merged)["missing_shards"] == [2]
    output, markdown, scores, page = _report(cli, merged)
    (warning,) = scores["warnings"]  # its 3 examples are all the merged folder selected
    assert warning.startswith("the merge lacks shard 2 (run.json missing_shards; merged: shard 1")
    assert "every figure is over part of the run's selection" in warning
    assert html.escape(warning) in page and warning in markdown
    assert "the merge lacks shard 2" in output
    board = CliRunner().invoke(cli, ["leaderboard", str(merged)])
    assert board.exit_code == 0, board.output
    assert f"{merged}: the merge lacks shard 2" in " ".join(board.output.split())

    # shard 2 killed after one grounder call (its session still "running"), then merged
    _kill_run(tmp_path, shards[2], 1, "2/2")
    both = tmp_path / "m2"
    argv = ["merge", str(tmp_path / "s1"), str(tmp_path / "s2"), "--out", str(both)]
    from cot_ground.cli.app import _register_commands, app

    _register_commands()
    said = CliRunner().invoke(app, argv)
    assert said.exit_code == 0, said.output
    assert "warning: session 2 (shard 2/2" in " ".join(said.output.split())
    manifest = json.loads((both / "run.json").read_text())
    assert manifest["missing_shards"] == [] and manifest["ended"] is not None
    assert [s["status"] for s in manifest["sessions"]] == ["finished", "running"]
    scores = _report(cli, both)[2]
    never = [w for w in scores["warnings"] if "has no end time" in w]
    assert len(never) == 1, scores["warnings"]
    assert never[0].startswith("session 2 (shard 2/2, started ")
    assert (
        "status running) has no end time: shard 2/2 was killed, or was still running" in (never[0])
    )

    # the killed shard resumed to the end: its killed session was taken over, no warning
    run_experiment(parse_config(shards[2]), shard=(2, 2))
    done = merge_runs([tmp_path / "s2", tmp_path / "s1"], tmp_path / "m3")
    assert [s["status"] for s in done["sessions"]] == ["killed", "finished", "finished"]
    assert _report(cli, tmp_path / "m3")[2]["warnings"] == []


def test_merge_warnings_name_each_unfinished_shard_session() -> None:
    def session(k: int, started: str, **state: Any) -> dict[str, Any]:
        return {"shard": {"k": k, "n": 3}, "started": started, "ended": "T9", **state}

    merged = {
        "merged_from": [{"path": "/s1", "shard": {"k": 1, "n": 3}}],
        "missing_shards": [2, 3],
        "ended": "T9",
        "sessions": [
            session(1, "T1", ended=None, status="killed"),  # taken over by the next
            session(1, "T2", interrupted=True),
        ],
    }
    lacks, interrupted = state_warnings(merged)
    assert lacks.startswith("the merge lacks shards 2, 3 (run.json missing_shards; merged:")
    assert interrupted == (
        "session 2 (shard 1/3, started T2), the last session of shard 1/3, was interrupted"
        " (Ctrl-C) before every pipeline finished"
    )
    # sessions merged before they named their shard: every one that never ended is named
    merged["missing_shards"] = []
    merged["sessions"] = [
        {"started": "T1", "ended": None, "status": "running"},
        {"started": "T2", "ended": "T3", "status": "finished"},
    ]
    (never,) = merge_warnings(merged)
    assert never.startswith("session 1 (started T1, status running) has no end time: its shard")
    # the same sessions in a plain run: only the last session counts
    assert state_warnings({**merged, "merged_from": None}) == []


def test_leaderboard_and_compare_warn_about_mixed_runs(
    cli: typer.Typer, tmp_path: Path, fakes: None
) -> None:
    bench = rf.make_benchmark(tmp_path / "bench", n=4)
    config = _config(tmp_path, bench)
    run_experiment(parse_config(config), limit=2)
    config["models"]["e2e"]["options"] = {"image": 1}
    run_experiment(parse_config(config), allow_changed=True)  # e2e changed, selection too
    run = str(tmp_path / "run")
    board = CliRunner().invoke(cli, ["leaderboard", run])
    assert board.exit_code == 0, board.output
    assert f"{run}: session 2 (started " in board.output
    assert "changes allowed (--allow-changed): e2e: config models.e2e.options.image" in board.output
    assert "changed the example selection (limit 2 -> None)" in board.output
    app = typer.Typer()
    report_cmds.register(app)
    compare = CliRunner().invoke(app, ["compare", run, "--a", "cot", "--b", "e2e", "--json"])
    assert compare.exit_code == 0, compare.output
    assert "warning: " in compare.stderr and "models.e2e.options.image" in compare.stderr
    json.loads(compare.stdout)  # the JSON on stdout stays clean


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        ({}, []),  # nothing recorded: unknown, no warning
        ({"sessions": None, "ended": "2026-01-01T00:00:00+00:00"}, []),
        (
            {"ended": None, "sessions": []},
            ["the run never ended: run.json has no end time (its only session was killed"],
        ),
        (
            # a session recorded at its start (ended null, with a status), killed
            {
                "ended": None,
                "sessions": [
                    {"started": "T1", "ended": "T2"},
                    {"started": "T3", "ended": None, "status": "running"},
                ],
            },
            ["the run never ended: session 2 (started T3, status running) has no end time"],
        ),
        (
            {"ended": "T2", "sessions": [{"started": "T1", "ended": "T2", "interrupted": True}]},
            ["the last session (session 1, started T1) was interrupted (Ctrl-C)"],
        ),
    ],
)
def test_state_warnings_read_old_and_new_session_entries(
    manifest: dict[str, Any], expected: list[str]
) -> None:
    found = state_warnings(manifest)
    assert len(found) == len(expected)
    for line, start in zip(found, expected, strict=True):
        assert line.startswith(start), line


def test_session_warnings_name_every_recorded_change() -> None:
    sessions = [
        {"started": "T1"},
        {
            "started": "T2",
            "environment_changed": ["git commit aaa -> bbb", "package torch 2.4 -> 2.5"],
            "benchmark_changed": ["answer_frame unit -> 1000"],
        },
        {"started": "T3", "changed": None, "selection_changed": []},  # recorded: none
    ]
    environment_first = session_warnings({"sessions": sessions})
    assert environment_first == [
        "session 2 (started T2) changed the benchmark's settings (answer_frame unit -> 1000):"
        " records scored under both are mixed",
        "session 2 (started T2) ran other code, packages, model weights or machine than the"
        " session before it that wrote records (git commit aaa -> bbb, package torch 2.4 ->"
        " 2.5): records made by both are mixed",
    ]


def test_a_moved_benchmark_root_is_a_note_not_mixed_ground_truth() -> None:
    sessions = [
        {"started": "T1"},
        {"started": "T2", "benchmark_changed": ["root /data/lite -> /data/lite_moved"]},
    ]
    (note,) = session_warnings({"sessions": sessions})
    assert "read the images from another benchmark root (root /data/lite ->" in note
    assert "mixed" not in note
    sessions[1]["benchmark_changed"].append("answer_frame unit -> qwen1000")
    mixed, root = session_warnings({"sessions": sessions})
    assert "(answer_frame unit -> qwen1000): records scored under both are mixed" in mixed
    assert "another benchmark root" in root


def _session(started: str, commit: str, written: int) -> dict:
    return {
        "started": started,
        "git": {"commit": commit, "dirty": False},
        "packages": {"torch": "2.4"},
        "models": {},
        "pipelines": {"cot": {"records_before": 0, "written": written}},
    }


def test_environment_changes_count_only_between_sessions_that_wrote_records() -> None:
    # session 2 resumed with new code but had nothing left to do: it mixes nothing
    idle = [_session("T1", "aaa", 5), _session("T2", "bbb", 0)]
    assert session_warnings({"sessions": idle}) == []
    # session 3 writes with that code: compared with session 1, the last that wrote
    mixed = [*idle, _session("T3", "bbb", 2)]
    (warning,) = session_warnings({"sessions": mixed})
    assert warning.startswith("session 3 (started T3) ran other code")
    assert "git commit aaa -> bbb" in warning
    # a killed session (no written count) wrote what the next session found beyond its start
    killed = _session("T2", "bbb", 0)
    killed["pipelines"] = {"cot": {"records_before": 5}}
    after = _session("T3", "bbb", 0)
    after["pipelines"]["cot"]["records_before"] = 7
    (warning,) = session_warnings({"sessions": [_session("T1", "aaa", 5), killed, after]})
    assert warning.startswith("session 2 (started T2) ran other code")


def test_a_run_folder_without_sessions_or_selection_reports_no_warning(tmp_path: Path) -> None:
    from analysis_fixtures import standard_run

    run = standard_run(tmp_path)  # run.json without ended, sessions, pipelines list, n_examples
    assert run_warnings(run, load_run(run)) == []
