"""The wheel carries prompts/ and experiments/ inside the package, and an installed copy finds
them there (importlib.resources) rather than in a checkout; COT_GROUND_PROMPTS still wins."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from repo_paths import REPO

from cot_ground import paths

GROUND_FILE = sorted(p.name for p in (REPO / "prompts/ground").iterdir())[0]


def test_checkout_lookup_and_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COT_GROUND_PROMPTS", raising=False)
    assert paths.source_checkout() == REPO
    assert paths.packaged_dir("prompts") is None  # a checkout has no cot_ground/_data
    assert paths.prompts_dir() == REPO / "prompts"
    assert paths.experiments_dir() == REPO / "experiments"

    own = tmp_path / "my-prompts"
    own.mkdir()
    monkeypatch.setenv("COT_GROUND_PROMPTS", str(own))
    assert paths.prompts_dir() == own
    monkeypatch.setenv("COT_GROUND_PROMPTS", str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match="absent"):
        paths.prompts_dir()
    with pytest.raises(ValueError, match="unknown data folder"):
        paths.packaged_dir("models")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return next(out.glob("cot_ground-*.whl"))


@pytest.mark.slow
def test_wheel_ships_every_prompt_and_experiment_file(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in paths.DATA_FOLDERS:
        files = [p for p in (REPO / folder).rglob("*") if p.is_file()]
        assert files, folder
        for file in files:
            assert f"cot_ground/_data/{file.relative_to(REPO).as_posix()}" in names, file


@pytest.mark.slow
def test_unpacked_wheel_reads_its_own_data(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = (
        "from cot_ground import paths, prompts\n"
        "print(paths.prompts_dir()); print(paths.experiments_dir())\n"
        "print(paths.source_checkout())\n"
        "print(prompts.load_prompts('cot', 'paper', 'diff').files[0])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    prompts_dir, experiments_dir, checkout, prompt_file = done.stdout.split("\n")[:4]
    assert prompts_dir == str(site / "cot_ground" / "_data" / "prompts")
    assert experiments_dir == str(site / "cot_ground" / "_data" / "experiments")
    assert checkout == "None"
    assert prompt_file.startswith(prompts_dir)


@pytest.mark.slow
def test_a_file_deleted_from_the_checkout_does_not_ship(tmp_path: Path) -> None:
    """A build folder left by an earlier build (``build/lib``) holds a module and a prompt file
    that the checkout no longer has: the wheel carries neither."""
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("cot_ground", *paths.DATA_FOLDERS):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "setup.py", "README.md", "MANIFEST.in"):
        shutil.copy2(REPO / name, src / name)
    stale = ["cot_ground/graph/deleted_module.py", "cot_ground/_data/prompts/deleted.yaml"]
    for name in stale:
        (src / "build/lib" / name).parent.mkdir(parents=True, exist_ok=True)
        (src / "build/lib" / name).write_text("# from an earlier build\n")
    out = tmp_path / "dist"
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run(
        [*pip, "-w", str(out), str(src)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    names = set(zipfile.ZipFile(next(out.glob("cot_ground-*.whl"))).namelist())
    assert (
        "cot_ground/graph/cot.py" in names
        and f"cot_ground/_data/prompts/ground/{GROUND_FILE}" in names
    )
    assert [n for n in stale if n in names] == []
