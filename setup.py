"""Build hook: copy the top-level data folders into the package of a built wheel.

``prompts/`` and ``experiments/`` stay at the top level of the checkout (users edit them); a
wheel carries them as ``cot_ground/_data/prompts`` and ``cot_ground/_data/experiments``, which
:mod:`cot_ground.paths` finds with :mod:`importlib.resources`. Editable installs read the
checkout's folders directly, so nothing is copied for them. Everything else is in
``pyproject.toml``.

The build folder (``build/lib``) outlives a build, and ``build_py`` only adds files to it: a
module or prompt deleted from the checkout would still ship. So the package's build copy is
removed before each (non-editable) build.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

DATA_FOLDERS = ("prompts", "experiments")


class BuildPyWithData(build_py):
    """``build_py`` that starts from an empty ``cot_ground/`` in the build folder (no stale
    files) and also copies the data folders into ``cot_ground/_data/``."""

    def run(self) -> None:
        if not self.editable_mode:
            shutil.rmtree(Path(self.build_lib) / "cot_ground", ignore_errors=True)
        super().run()
        if self.editable_mode:
            return
        here = Path(__file__).resolve().parent
        for name in DATA_FOLDERS:
            source = here / name
            if not source.is_dir():
                raise FileNotFoundError(f"data folder {source} is missing; cannot build the wheel")
            self.copy_tree(str(source), str(Path(self.build_lib) / "cot_ground" / "_data" / name))


setup(cmdclass={"build_py": BuildPyWithData})
