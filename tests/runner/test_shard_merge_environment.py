"""`merge` of shards that ran with other code or packages: every session keeps its own record,
the sessions that differ from the first shard say how (``environment_changed``, which the
report warns about), and the top level does not claim one environment for every record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import runner_fakes as rf

from cot_ground.analysis.run_warnings import session_warnings
from cot_ground.runner import manifest as manifest_module
from cot_ground.runner.config import parse_config
from cot_ground.runner.run import run_experiment
from cot_ground.runner.shard import merge_runs
from cot_ground.runner.store import RunFolder

pytestmark = pytest.mark.usefixtures("fakes")

COMMIT, OTHER_COMMIT = "a" * 40, "b" * 40
GIT = {"commit": COMMIT, "dirty": False, "changes": None}


def _shards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **per_shard: Any) -> list[Path]:
    """Three shards of one run of 6 examples, each run on commit ``COMMIT`` (a fixed git state:
    the checkout may change while the test runs); ``shard2``/``shard3``: ``(function name in
    cot_ground.runner.manifest, its return value)`` while that shard runs."""
    bench = rf.make_benchmark(tmp_path / "bench", n=6)
    folders = []
    for k in (1, 2, 3):
        out = tmp_path / f"shard{k}"
        change = per_shard.get(f"shard{k}")
        with monkeypatch.context() as patched:
            patched.setattr(manifest_module, "git_state", lambda: GIT)
            if change is not None:
                name, value = change
                patched.setattr(manifest_module, name, lambda value=value: value)
            config = parse_config(rf.experiment(bench, out, tmp_path / "cache"))
            run_experiment(config, shard=(k, 3))
        folders.append(out)
    return folders


def test_shards_of_other_code_and_packages_are_merged_with_each_session_s_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    packages = {**manifest_module.package_versions(), "transformers": "0.0-other"}
    other_git = {"commit": OTHER_COMMIT, "dirty": True, "changes": "c" * 64}
    folders = _shards(
        tmp_path,
        monkeypatch,
        shard2=("git_state", other_git),
        shard3=("package_versions", packages),
    )
    first = RunFolder(folders[0]).read_manifest()

    merged = merge_runs(folders, tmp_path / "merged")

    assert merged == RunFolder(tmp_path / "merged").read_manifest()
    one, two, three = merged["sessions"]
    assert "environment_changed" not in one and one["git"] == first["git"]
    assert two["git"]["commit"] == OTHER_COMMIT and two["git"]["dirty"] is True
    assert two["environment_changed"] == [
        f"shard 2/3 against shard 1/3: git commit {COMMIT} -> {OTHER_COMMIT}",
        "shard 2/3 against shard 1/3: git dirty False -> True",
        f"shard 2/3 against shard 1/3: git changes None -> {'c' * 64}",
    ]
    assert three["environment_changed"] == [
        f"shard 3/3 against shard 1/3: package transformers {first['packages']['transformers']}"
        " -> 0.0-other"
    ]
    # the top level names no single code version or package set for every record
    assert merged["git"] is None and merged["packages"] is None
    assert merged["mixed_environment"] == ["git", "packages"]
    assert merged["device"] == first["device"]  # one machine: the same for every shard
    warnings = session_warnings(merged)
    assert len(warnings) == 2
    assert "session 2" in warnings[0] and f"-> {OTHER_COMMIT}" in warnings[0]
    assert "session 3" in warnings[1] and "transformers" in warnings[1]
    # the shard folders are left as they were
    assert RunFolder(folders[1]).read_manifest()["sessions"][0].get("environment_changed") is None


def test_shards_of_one_environment_merge_without_notes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folders = _shards(tmp_path, monkeypatch)
    first = RunFolder(folders[0]).read_manifest()

    merged = merge_runs(folders, tmp_path / "merged")

    assert merged["mixed_environment"] == [] and session_warnings(merged) == []
    assert merged["git"] == first["git"] and merged["packages"] == first["packages"]
    assert [s.get("environment_changed") for s in merged["sessions"]] == [None] * 3
