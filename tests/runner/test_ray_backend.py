"""The Ray backend on a local Ray instance (two CPU replicas, scripted adapters): same records as
the plain runner, the same resume after a torn write, setup errors before anything runs, and a
replica killed mid-run (its work re-dispatched; with no replica left, a clean resumable stop).

One test, because starting Ray and its actors takes seconds on two cores."""

from __future__ import annotations

from pathlib import Path

import pytest
import runner_fakes as rf

from cot_ground.runner.config import parse_config
from cot_ground.runner.pipelines import SetupError
from cot_ground.runner.run import run_experiment
from cot_ground.runner.store import RunFolder

ray = pytest.importorskip("ray")


def _outcomes(folder: Path, pipeline: str) -> dict[str, tuple]:
    return {
        r["example_id"]: (r["image_index"], r["box"], r["status"], r["error"])
        for r in RunFolder(folder).read_predictions(pipeline)
    }


@pytest.mark.slow
def test_ray_backend_matches_the_plain_runner_and_resumes(tmp_path: Path) -> None:
    from cot_ground.runner.ray_backend import ReplicasLost, connect, run_experiment_ray

    rf.register_fakes()  # registered in this process only: replicas must get them from the driver
    bench = rf.make_benchmark(tmp_path / "bench", n=12)
    config = parse_config(rf.experiment(bench, tmp_path / "plain", tmp_path / "cache"))
    try:
        run_experiment(config, batch_size=2)
        assert connect(None, num_cpus=2)  # one local instance for the three runs below
        try:
            summary = run_experiment_ray(config, workers=2, batch_size=2, out=tmp_path / "ray")
            assert summary.pipelines["cot"].written == 12 and summary.pipelines["e2e"].written == 12
            manifest = RunFolder(tmp_path / "ray").read_manifest()
            replicas = manifest["ray"]["replicas"]
            assert len({r["pid"] for r in replicas}) == 2
            assert manifest["sessions"][-1]["pipelines"]["cot"]["max_batch"]
            for pipeline in ("cot", "e2e"):
                plain = _outcomes(tmp_path / "plain", pipeline)
                assert _outcomes(tmp_path / "ray", pipeline) == plain and len(plain) == 12

            # a kill mid-line: 5 whole records and half of the 6th are left
            path = RunFolder(tmp_path / "ray").predictions_path("cot")
            lines = path.read_bytes().splitlines(keepends=True)
            path.write_bytes(b"".join(lines[:5]) + lines[5][: len(lines[5]) // 2])
            again = run_experiment_ray(
                config, workers=2, batch_size=2, out=tmp_path / "ray", use_cache=False
            )
            assert again.pipelines["cot"].done_before == 5
            assert again.pipelines["cot"].written == 7 and again.pipelines["e2e"].written == 0
            ids = [r["example_id"] for r in RunFolder(tmp_path / "ray").read_predictions("cot")]
            assert len(ids) == len(set(ids)) == 12
            assert _outcomes(tmp_path / "ray", "cot") == _outcomes(tmp_path / "plain", "cot")
            sessions = RunFolder(tmp_path / "ray").read_manifest()["sessions"]
            # each session says whether the cache was off, so the retry hint repeats --no-cache
            assert [s["no_cache"] for s in sessions] == [False, True]

            # proposal graphs on replicas save the pictures they showed beside the run
            marked = rf.experiment(bench, tmp_path / "som", tmp_path / "cache")
            marked["pipelines"] = {
                "som": {
                    "kind": "som",
                    "reasoner": "reasoner",
                    "grounder": "grounder",
                    "unmarked_choice": "top-proposal",
                }
            }
            run_experiment_ray(parse_config(marked), workers=1, batch_size=2, limit=3)
            saved = list((tmp_path / "som" / "artifacts" / "som").glob("*/image*_marks.png"))
            assert len({p.parent.name for p in saved}) == 3

            # a model folder that does not exist fails in the replica, before any folder is made
            broken = rf.experiment(bench, tmp_path / "broken", tmp_path / "cache")
            broken["models"]["grounder"]["path"] = str(tmp_path / "missing-weights")
            with pytest.raises(SetupError, match="missing-weights"):
                run_experiment_ray(parse_config(broken), workers=1)
            assert not (tmp_path / "broken").exists()

            # a replica killed mid-run (SIGKILL from inside its grounder call): its chunk goes
            # to the other replica, nothing is lost or duplicated, and the loss is recorded
            die_file = tmp_path / "die"
            dying = rf.experiment(bench, tmp_path / "dying", tmp_path / "cache")
            dying["models"]["grounder"]["options"] = {"die_file": str(die_file)}
            die_file.write_text("once")
            summary = run_experiment_ray(parse_config(dying), workers=2, batch_size=2)
            assert not die_file.exists()  # one replica took it and died
            assert summary.pipelines["cot"].written == 12 and summary.pipelines["e2e"].written == 12
            assert (
                RunFolder(tmp_path / "dying").read_manifest()["sessions"][-1]["replicas_lost"] == 1
            )
            for pipeline in ("cot", "e2e"):
                assert _outcomes(tmp_path / "dying", pipeline) == _outcomes(
                    tmp_path / "plain", pipeline
                )

            # the only replica dies every time: the driver stops with a clear message, the
            # folder and run.json stay consistent, and the same command resumes it
            lone = rf.experiment(bench, tmp_path / "lone", tmp_path / "cache")
            lone["models"]["grounder"]["options"] = {"die_file": str(die_file)}
            die_file.write_text("always")
            with pytest.raises(ReplicasLost, match="re-run the same command to resume"):
                run_experiment_ray(parse_config(lone), workers=1, batch_size=2)
            session = RunFolder(tmp_path / "lone").read_manifest()["sessions"][-1]
            assert session["ended"] and "every Ray replica has died" in session["error"]
            assert RunFolder(tmp_path / "lone").read_predictions("cot") == []
            die_file.unlink()
            resumed = run_experiment_ray(parse_config(lone), workers=1, batch_size=2)
            assert resumed.pipelines["cot"].written == 12
            assert _outcomes(tmp_path / "lone", "cot") == _outcomes(tmp_path / "plain", "cot")
        finally:
            ray.shutdown()
    finally:
        rf.reset()
        rf.unregister_fakes()
