"""What a run folder may be resumed by, and what each session records: a model key a stored
pipeline used may not be redefined by a later config, records without run.json are never
adopted, uncommitted code edits and another machine between sessions are environment changes,
a full disk or read-only folder gives one line (and run.json says so when it can), and the
retry hint repeats --no-cache. The real runner on scripted adapters (tests/runner_fakes.py)."""

from __future__ import annotations

import errno
import json
import logging
import os
from pathlib import Path

import pytest
import runner_fakes as rf

from cot_ground.runner.config import parse_config
from cot_ground.runner.pipelines import SetupError
from cot_ground.runner.retry import failure_lines
from cot_ground.runner.run import run_experiment
from cot_ground.runner.store import JsonlAppender, RunFolder, RunFolderWriteError, read_jsonl

pytestmark = pytest.mark.usefixtures("fakes")


def _config(bench: Path, tmp: Path, **overrides) -> dict:
    return rf.experiment(bench, tmp / "run", tmp / "cache", **overrides)


def _run(config: dict, **kw):
    return run_experiment(parse_config(config), **kw)


def _manifest(tmp: Path) -> dict:
    return RunFolder(tmp / "run").read_manifest()


def _only(config: dict, pipeline: str) -> dict:
    """``config`` with only ``pipeline`` (and every model kept)."""
    return {**config, "pipelines": {pipeline: config["pipelines"][pipeline]}}


# 1. a model key a stored pipeline used, redefined by a config that drops that pipeline


def test_a_model_key_of_a_dropped_pipeline_redefined_refuses_the_resume(tmp_path: Path) -> None:
    bench = rf.make_benchmark(tmp_path / "bench", n=3)
    first = _only(_config(bench, tmp_path), "cot")
    _run(first)
    second = _config(bench, tmp_path)
    second["models"]["grounder"] = {"adapter": "fake-grounder", "options": {"shrink": 1.0}}
    second["pipelines"] = {
        "cot2": {"kind": "cot", "reasoner": "reasoner", "grounder": "grounder"},
    }
    with pytest.raises(
        SetupError,
        match=r"pipeline 'cot' has changed .*model 'grounder' redefined by this config"
        r" \(used by cot2\): config options\.shrink",
    ):
        _run(second)
    # the stored description is unchanged, and nothing of cot2 was written
    assert _manifest(tmp_path)["config"]["models"]["grounder"]["options"] == {}
    assert not (tmp_path / "run/predictions/cot2.jsonl").exists()

    _run(second, allow_changed=True)
    manifest = _manifest(tmp_path)
    assert manifest["sessions"][-1]["changed"] == {
        "cot": ["model 'grounder' redefined by this config (used by cot2): config options.shrink"]
    }


def test_a_dropped_pipeline_whose_models_are_unchanged_resumes(tmp_path: Path) -> None:
    bench = rf.make_benchmark(tmp_path / "bench", n=3)
    config = _config(bench, tmp_path)
    _run(_only(config, "cot"))
    _run(_only(config, "e2e"))  # same model definitions, another pipeline
    manifest = _manifest(tmp_path)
    assert manifest["pipelines"] == ["cot", "e2e"]
    assert "changed" not in manifest["sessions"][-1]


# 2. records without run.json


def test_records_without_run_json_are_not_adopted(tmp_path: Path) -> None:
    bench = rf.make_benchmark(tmp_path / "bench", n=3)
    _run(_config(bench, tmp_path))
    (tmp_path / "run/run.json").unlink()
    with pytest.raises(
        SetupError,
        match=r"holds records \(examples\.jsonl, predictions/cot\.jsonl, predictions/e2e\.jsonl\)"
        r" but no run\.json",
    ):
        _run(_config(bench, tmp_path))
    assert not (tmp_path / "run/run.json").exists()


def test_a_new_run_folder_gets_run_json_before_any_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = rf.make_benchmark(tmp_path / "bench", n=2)
    seen: list[bool] = []
    opened = JsonlAppender.__init__

    def spy(self, path, key):  # run.json exists whenever a record file is opened
        seen.append((tmp_path / "run/run.json").is_file())
        opened(self, path, key)

    monkeypatch.setattr(JsonlAppender, "__init__", spy)
    _run(_config(bench, tmp_path))
    assert seen and all(seen)


# 3. uncommitted code changes


def test_uncommitted_edits_between_sessions_are_an_environment_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import cot_ground.runner.manifest as manifest_module

    checkout = tmp_path / "checkout"
    (checkout / "cot_ground").mkdir(parents=True)
    rf.git(checkout, "init", "-q")
    (checkout / "cot_ground/code.py").write_text("A = 1\n")
    rf.git(checkout, "add", ".")
    rf.git(checkout, "commit", "-q", "-m", "first")
    commit = rf.git(checkout, "rev-parse", "HEAD")
    monkeypatch.setattr(manifest_module, "source_checkout", lambda: checkout)
    bench = rf.make_benchmark(tmp_path / "bench", n=2)
    config = _config(bench, tmp_path)

    (checkout / "cot_ground/code.py").write_text("A = 2\n")  # dirty
    _run(config)
    (checkout / "cot_ground/code.py").write_text("A = 3\n")  # dirty, other edit
    with caplog.at_level(logging.WARNING, logger="cot_ground"):
        _run(config)
    (checkout / "cot_ground/new_module.py").write_text("B = 1\n")  # untracked module
    (checkout / "notes.txt").write_text("not code\n")  # untracked, not a module: ignored
    _run(config)
    (checkout / "notes.txt").write_text("other\n")
    _run(config)

    one, two, three, four = _manifest(tmp_path)["sessions"]
    assert all(s["git"]["commit"] == commit and s["git"]["dirty"] for s in (one, two, three))
    hashes = [s["git"]["changes"] for s in (one, two, three, four)]
    assert None not in hashes and len(set(hashes[:3])) == 3 and hashes[3] == hashes[2]
    assert two["environment_changed"] == [f"git changes {hashes[0]} -> {hashes[1]}"]
    assert three["environment_changed"] == [f"git changes {hashes[1]} -> {hashes[2]}"]
    assert "environment_changed" not in four
    assert f"git changes {hashes[0]} -> {hashes[1]}" in caplog.text

    rf.git(checkout, "add", ".")
    rf.git(checkout, "commit", "-q", "-m", "second")
    clean = manifest_module.git_state()
    assert clean["dirty"] is False and clean["changes"] is None
    assert manifest_module.git_state(tmp_path / "bench") == {  # not a checkout
        "commit": None,
        "dirty": None,
        "changes": None,
    }


# 4. the machine of each session


def test_each_session_records_its_device_and_another_gpu_is_an_environment_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import cot_ground.runner.manifest as manifest_module

    real = manifest_module.device_info
    monkeypatch.setattr(manifest_module, "git_state", lambda: {"commit": "c", "dirty": False})

    def on(gpus: list[str]):
        return lambda: {**real(), "cuda": gpus}

    bench = rf.make_benchmark(tmp_path / "bench", n=2)
    config = _config(bench, tmp_path)
    monkeypatch.setattr(manifest_module, "device_info", on(["NVIDIA A100-SXM4-80GB"]))
    _run(config)
    monkeypatch.setattr(manifest_module, "device_info", on(["NVIDIA H200", "NVIDIA H200"]))
    with caplog.at_level(logging.WARNING, logger="cot_ground"):
        _run(config)

    manifest = _manifest(tmp_path)
    one, two = manifest["sessions"]
    assert one["device"]["cuda"] == ["NVIDIA A100-SXM4-80GB"]
    assert two["device"]["cuda"] == ["NVIDIA H200", "NVIDIA H200"] == manifest["device"]["cuda"]
    assert one["device"]["host"] == two["device"]["host"]
    change = "device cuda ['NVIDIA A100-SXM4-80GB'] -> ['NVIDIA H200', 'NVIDIA H200']"
    assert two["environment_changed"] == [change]
    assert change in caplog.text


# 5. disk full, read-only folder


def _disk_full_after(monkeypatch: pytest.MonkeyPatch, records: int, run_json_too: bool) -> None:
    """Predictions files raise ENOSPC from their ``records``-th record on; with
    ``run_json_too`` every fsync raises it too from then on (run.json cannot be written)."""
    full = {"now": False}
    append = JsonlAppender.append
    fsync = os.fsync

    def appending(self, record):
        if self.path.parent.name == "predictions":
            full["n"] = full.get("n", 0) + 1
            if full["n"] >= records:
                full["now"] = True
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return append(self, record)

    def syncing(fd):
        if full["now"] and run_json_too:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return fsync(fd)

    monkeypatch.setattr(JsonlAppender, "append", appending)
    monkeypatch.setattr(os, "fsync", syncing)


def _cache_closes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the closes of the step-1 cache the run opens (not the pre-flight's probe)."""
    import cot_ground.runner.run as run_module

    closed: list[int] = []
    open_cache = run_module.open_cache

    def opening(*args, **kwargs):
        cache = open_cache(*args, **kwargs)
        close = cache.close

        def closing():
            closed.append(1)
            close()

        cache.close = closing
        return cache

    monkeypatch.setattr(run_module, "open_cache", opening)
    return closed


def test_a_full_disk_stops_the_run_with_one_line_and_records_the_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = rf.make_benchmark(tmp_path / "bench", n=4)
    closed = _cache_closes(monkeypatch)
    _disk_full_after(monkeypatch, records=3, run_json_too=False)
    with pytest.raises(RunFolderWriteError) as caught:
        _run(_config(bench, tmp_path))
    message = str(caught.value)
    assert "\n" not in message and caught.value.__cause__ is None
    assert f"run folder {tmp_path / 'run'}" in message
    assert "[Errno 28] No space left on device" in message
    assert "the session's failure is recorded in run.json" in message
    assert closed == [1]
    session = _manifest(tmp_path)["sessions"][-1]
    assert session["status"] == "failed" and session["ended"]
    assert session["error"] == "OSError: [Errno 28] No space left on device"
    assert len(read_jsonl(tmp_path / "run/predictions/cot.jsonl")) == 2
    assert not list((tmp_path / "run").rglob("*.tmp"))

    monkeypatch.undo()  # space freed: the same command resumes
    summary = _run(_config(bench, tmp_path))
    assert summary.pipelines["cot"].done_before == 2 and summary.pipelines["cot"].written == 2
    assert [s["status"] for s in _manifest(tmp_path)["sessions"]] == ["failed", "finished"]


def test_a_full_disk_that_cannot_take_run_json_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = rf.make_benchmark(tmp_path / "bench", n=4)
    closed = _cache_closes(monkeypatch)
    _disk_full_after(monkeypatch, records=2, run_json_too=True)
    with pytest.raises(RunFolderWriteError, match=r"run\.json could not be updated either"):
        _run(_config(bench, tmp_path))
    assert closed == [1]
    assert not list((tmp_path / "run").rglob("*.tmp"))  # no empty run.json.tmp left
    stored = json.loads((tmp_path / "run/run.json").read_text())  # the last good one
    assert stored["sessions"][-1]["status"] == "running"


def test_a_full_disk_while_storing_the_examples_records_the_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = rf.make_benchmark(tmp_path / "bench", n=4)
    _run(_config(bench, tmp_path), limit=2)
    append = JsonlAppender.append

    def appending(self, record):
        if self.path.name == "examples.jsonl" and record["id"] not in self.ids:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return append(self, record)

    monkeypatch.setattr(JsonlAppender, "append", appending)
    with pytest.raises(RunFolderWriteError, match="the session's failure is recorded"):
        _run(_config(bench, tmp_path), limit=4, allow_changed=True)
    session = _manifest(tmp_path)["sessions"][-1]
    assert session["status"] == "failed" and "No space left" in session["error"]


def test_the_cli_prints_one_line_for_a_full_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml
    from typer.testing import CliRunner

    from cot_ground.cli.app import _register_commands, app

    _register_commands()

    bench = rf.make_benchmark(tmp_path / "bench", n=3)
    config_file = tmp_path / "exp.yaml"
    config_file.write_text(yaml.safe_dump(_config(bench, tmp_path)))
    _disk_full_after(monkeypatch, records=2, run_json_too=False)
    done = CliRunner().invoke(app, ["run", str(config_file)])
    assert done.exit_code == 1
    assert "Traceback" not in done.output and "During handling" not in done.output
    assert "No space left on device" in done.output and str(tmp_path / "run") in done.output


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_run_folder_is_refused_before_any_model_loads(tmp_path: Path) -> None:
    bench = rf.make_benchmark(tmp_path / "bench", n=2)
    config = _config(bench, tmp_path)
    _run(config)
    run = tmp_path / "run"
    run.chmod(0o555)
    try:
        rf.reset()
        with pytest.raises(SetupError, match=rf"run folder {run}: cannot write {run} "):
            _run(config)
        assert rf.CALLS == []  # no model was called
        parent = tmp_path / "ro"
        parent.mkdir(mode=0o555)
        absent = {**config, "output": str(parent / "new/run")}
        with pytest.raises(SetupError, match=rf"run folder {parent / 'new/run'}: cannot write"):
            _run(absent)
    finally:
        run.chmod(0o755)
        (tmp_path / "ro").chmod(0o755)


def test_a_folder_the_process_cannot_write_is_refused_in_the_preflight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same check as above, the permission answer scripted (it runs as root too)."""
    bench = rf.make_benchmark(tmp_path / "bench", n=2)
    config = _config(bench, tmp_path)
    _run(config)
    run = tmp_path / "run"
    access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode: access(p, mode) and Path(p) != run / "run.json"
    )
    rf.reset()
    with pytest.raises(SetupError, match=rf"run folder {run}: cannot write {run / 'run.json'} "):
        _run(config)
    assert rf.CALLS == []


# 7. the retry hint repeats the options the run was given


def test_the_retry_hint_repeats_no_cache(tmp_path: Path) -> None:
    bench = rf.make_benchmark(tmp_path / "bench", n=3)
    config = _config(bench, tmp_path)
    config["models"]["e2e"]["options"]["raise_on"] = ["item001"]  # a model_error
    _run(config, use_cache=False)
    hint = [line for line in failure_lines(tmp_path / "run") if line.startswith("re-run")]
    assert hint and hint[0].endswith("--no-cache --retry-failed")
    _run(config)  # a session with the cache: the hint follows the latest session
    hint = [line for line in failure_lines(tmp_path / "run") if line.startswith("re-run")]
    assert "--no-cache" not in hint[0]
