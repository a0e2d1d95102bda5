"""make-lite over an existing folder: built aside and swapped in, no stale pictures; a
non-empty folder is refused without --force, and --force replaces only a MIG-Lite folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cot_ground.cli.app import _register_commands, app
from cot_ground.lite import generate as generate_module
from cot_ground.lite import generate_lite

_register_commands()


def _pictures(folder: Path) -> int:
    return sum(1 for _ in folder.rglob("*.jpg"))


def test_force_rebuild_leaves_no_stale_pictures(tmp_path: Path) -> None:
    out = tmp_path / "lite"
    big = generate_lite(out, per_task=3, tasks=["diff", "region"])
    assert _pictures(out) == big.images
    small = generate_lite(out, per_task=1, tasks=["region"], force=True)
    assert small.images < big.images
    assert _pictures(out) == small.images
    assert not (out / "MIG-Bench" / "images" / "diff").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lite"]  # no temporary folders left


def test_non_empty_folder_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "lite"
    generate_lite(out, per_task=1, tasks=["diff"])
    with pytest.raises(ValueError, match=r"not empty .*--force"):
        generate_lite(out, per_task=1, tasks=["diff"])
    other = tmp_path / "notes"
    other.mkdir()
    (other / "thesis.tex").write_text("keep me", encoding="utf-8")
    with pytest.raises(ValueError, match="not a MIG-Lite folder"):
        generate_lite(other, per_task=1, tasks=["diff"], force=True)
    assert (other / "thesis.tex").read_text(encoding="utf-8") == "keep me"

    done = CliRunner().invoke(app, ["make-lite", str(out), "--per-task", "1", "--task", "diff"])
    assert done.exit_code == 2
    assert "--force" in done.output
    done = CliRunner().invoke(
        app, ["make-lite", str(out), "--per-task", "1", "--task", "diff", "--force"]
    )
    assert done.exit_code == 0, done.output


def test_a_failed_build_leaves_the_old_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "lite"
    generate_lite(out, per_task=1, tasks=["diff"])
    before = sorted(p.relative_to(out) for p in out.rglob("*"))

    def broken(ctx, rng):
        raise RuntimeError("builder failed")

    monkeypatch.setitem(generate_module.BUILDERS, "diff", broken)
    with pytest.raises(RuntimeError, match="builder failed"):
        generate_lite(out, per_task=1, tasks=["diff"], force=True)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lite"]


def test_force_never_replaces_a_mig_bench_folder(tmp_path: Path) -> None:
    bench = tmp_path / "MIG-Bench-download"
    (bench / "images/common").mkdir(parents=True)
    (bench / "MIG_data.json").write_text("[]", encoding="utf-8")
    (bench / "images/common/case0_1.png").write_bytes(b"precious")
    with pytest.raises(ValueError, match=r"not a MIG-Lite folder .*images.*choose another"):
        generate_lite(bench, per_task=1, tasks=["diff"], force=True)
    done = CliRunner().invoke(app, ["make-lite", str(bench), "--task", "diff", "--force"])
    assert done.exit_code == 2 and "not a MIG-Lite folder" in done.output
    assert (bench / "images/common/case0_1.png").read_bytes() == b"precious"

    # a Lite build that other files joined, or an info file of something else: kept too
    lite = tmp_path / "lite"
    generate_lite(lite, per_task=1, tasks=["diff"])
    (lite / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(ValueError, match=r"holds notes\.txt"):
        generate_lite(lite, per_task=1, tasks=["diff"], force=True)
    (lite / "notes.txt").unlink()
    (lite / "lite_info.json").write_text('{"benchmark": "other"}', encoding="utf-8")
    with pytest.raises(ValueError, match=r"lite_info\.json does not mark"):
        generate_lite(lite, per_task=1, tasks=["diff"], force=True)
