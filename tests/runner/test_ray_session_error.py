"""The Ray backend ends a session that an error stopped as ``failed`` with that error, and
reports a disk-full run folder in one line, as the plain runner does (it recorded ``finished``):
here the driver cannot write its 5th record."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest
import runner_fakes as rf

from cot_ground.runner.config import parse_config
from cot_ground.runner.store import RunFolder, RunFolderWriteError

ray = pytest.importorskip("ray")


@pytest.mark.slow
def test_a_write_error_fails_the_ray_session(tmp_path: Path, monkeypatch) -> None:
    from cot_ground.runner import ray_backend

    written = {"n": 0}
    write = ray_backend.write_record

    def disk_fills_up(record: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        written["n"] += 1
        if written["n"] == 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        write(record, *args, **kwargs)

    monkeypatch.setattr(ray_backend, "write_record", disk_fills_up)
    rf.register_fakes()
    bench = rf.make_benchmark(tmp_path / "bench", n=6)
    config = parse_config(rf.experiment(bench, tmp_path / "run", tmp_path / "cache"))
    try:
        with pytest.raises(RunFolderWriteError) as caught:
            ray_backend.run_experiment_ray(config, workers=1, batch_size=2)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        rf.reset()
        rf.unregister_fakes()
    message = str(caught.value)
    assert message.startswith(f"run folder {tmp_path / 'run'}: the run stopped on [Errno 28]")
    assert "the session's failure is recorded in run.json" in message
    manifest = RunFolder(tmp_path / "run").read_manifest()
    session = manifest["sessions"][-1]
    assert session["status"] == "failed" and session["ended"]
    assert session["error"] == "OSError: [Errno 28] No space left on device"
    assert session["pipelines"]["cot"]["written"] == 4
    assert len(RunFolder(tmp_path / "run").read_predictions("cot")) == 4
