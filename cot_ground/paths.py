"""Where cot-ground finds its data folders: ``prompts/`` and ``experiments/``.

Both folders live at the top level of the checkout, because users edit them. A built wheel
carries a copy of each inside the package (``cot_ground/_data/<name>``, written by ``setup.py``
at build time), found here with :mod:`importlib.resources`. Lookup order:

1. an explicit override (``$COT_GROUND_PROMPTS`` for prompts; a config's prompt folder option),
2. the copy inside an installed wheel,
3. the folder of the source checkout (editable installs and plain checkouts).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent
# the checkout root when cot-ground runs from source; site-packages for a wheel install
REPO_ROOT = PACKAGE_ROOT.parent
DATA_FOLDERS = ("prompts", "experiments")


def source_checkout() -> Path | None:
    """The source checkout cot-ground runs from, or None for an installed wheel."""
    return REPO_ROOT if (REPO_ROOT / "pyproject.toml").is_file() else None


def packaged_dir(name: str) -> Path | None:
    """The wheel's copy of data folder ``name`` (``prompts`` / ``experiments``), if installed.

    Raises ValueError for any other name. None when running from a source checkout.
    """
    if name not in DATA_FOLDERS:
        raise ValueError(f"unknown data folder {name!r}; known: {', '.join(DATA_FOLDERS)}")
    folder = resources.files("cot_ground").joinpath("_data", name)
    # a wheel installs as plain files, so the resource is a real directory
    return Path(str(folder)) if isinstance(folder, Path) and folder.is_dir() else None


def data_dir(name: str) -> Path:
    """Data folder ``name``: the wheel's copy, else the checkout's; FileNotFoundError if neither."""
    packaged = packaged_dir(name)
    if packaged is not None:
        return packaged
    checkout = REPO_ROOT / name
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(
        f"data folder {name!r} not found: neither inside the installed package "
        f"({PACKAGE_ROOT / '_data' / name}) nor in a checkout ({checkout}); reinstall cot-ground"
    )


def prompts_dir() -> Path:
    """The prompt folder: ``$COT_GROUND_PROMPTS`` if set, else the shipped ``prompts/``."""
    override = os.environ.get("COT_GROUND_PROMPTS")
    if override:
        path = Path(override)
        if not path.is_dir():
            raise FileNotFoundError(
                f"prompt folder not found: {path} (COT_GROUND_PROMPTS must name a folder of "
                "prompt files)"
            )
        return path
    return data_dir("prompts")


def experiments_dir() -> Path:
    """The shipped experiment configs and the example notebook (``experiments/``)."""
    return data_dir("experiments")
