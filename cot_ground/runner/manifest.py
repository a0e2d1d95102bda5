"""``run.json``: everything needed to say what a run was (config, benchmark, code, machine)."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cot_ground import __version__
from cot_ground.mentions import READER
from cot_ground.paths import source_checkout

PACKAGE_DIR = "cot_ground"
"""The package's folder in its checkout (untracked modules there count as code changes)."""

PACKAGES = (
    "torch",
    "torchvision",
    "transformers",
    "accelerate",
    "langgraph",
    "pydantic",
    "pillow",
    "numpy",
    "groundingdino-py",
    "openai",
    "ray",
)


def now_iso() -> str:
    """The current UTC time, ISO 8601."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that change results (None when absent)."""
    out: dict[str, str | None] = {"python": platform.python_version(), "cot-ground": __version__}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_state(root: Path | None = None) -> dict[str, Any]:
    """Commit, dirty flag and ``changes`` of the checkout cot-ground runs from (each None
    outside git, and for an installed wheel).

    ``changes``: sha256 of the uncommitted code, i.e. ``git diff HEAD`` (tracked files) plus the
    path and content of every untracked ``*.py`` file under ``cot_ground/`` (not ignored); None
    when there is none. Two sessions on one commit with other edits differ in it."""
    root = root if root is not None else source_checkout()
    if root is None:
        return {"commit": None, "dirty": None, "changes": None}

    def _git(*args: str) -> bytes | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    head = _git("rev-parse", "HEAD")
    if head is None:
        return {"commit": None, "dirty": None, "changes": None}
    diff = _git("diff", "HEAD", "--binary", "--no-ext-diff", "--no-textconv")
    untracked = _git(
        "ls-files", "-z", "--others", "--exclude-standard", "--", f"{PACKAGE_DIR}/*.py"
    )
    if diff is None or untracked is None:
        return {"commit": head.decode().strip(), "dirty": None, "changes": None}
    digest = hashlib.sha256(diff)
    for name in sorted(n for n in untracked.split(b"\0") if n):
        digest.update(b"\0untracked\0" + name + b"\0")
        with contextlib.suppress(OSError):  # removed meanwhile: its name still counts
            digest.update((root / name.decode()).read_bytes())
    changed = bool(diff or untracked)
    return {
        "commit": head.decode().strip(),
        "dirty": changed,
        "changes": digest.hexdigest() if changed else None,
    }


def device_info() -> dict[str, Any]:
    """Host, CPU count and accelerators visible to torch.

    torch is asked only when an adapter already imported it (no adapter, no torch import)."""
    info: dict[str, Any] = {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cuda": [],
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        if torch.cuda.is_available():
            info["cuda"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["torch_threads"] = torch.get_num_threads()
    return info


def model_sources(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per model key of ``config``: the weights it names, resolved (local folder; for a Hub id
    the id, requested revision, commit hash and snapshot folder) and ``weights_digest``
    (:func:`cot_ground.models.weights_identity.weights_digest` of that folder; None when it is
    not a folder, ``"unreadable: ERROR"`` when a file of it cannot be read). Models without
    a ``path`` (served models, classical baselines) are left out; an unresolvable path is
    recorded with its error (the adapter build reports it)."""
    from cot_ground.models.base import ModelLoadError
    from cot_ground.models.hf_loading import resolve_model_source
    from cot_ground.models.weights_identity import weights_digest

    out: dict[str, dict[str, Any]] = {}
    for key, model in (config.get("models") or {}).items():
        path = model.get("path") if isinstance(model, dict) else None
        if not path:
            continue
        try:
            source = resolve_model_source(path)
        except ModelLoadError as exc:
            out[key] = {"spec": path, "error": str(exc)}
            continue
        try:
            digest = weights_digest(source.path)
        except OSError as exc:  # an unreadable file: the adapter's load reports it
            digest = f"unreadable: {exc}"
        out[key] = {"spec": path, **source.record(), "weights_digest": digest}
    return out


ENVIRONMENT_KEYS = ("git", "packages", "models", "device")
"""Keys of ``run.json`` (top level: the latest session) and of each session entry that say which
code, packages, model weights and machine a session ran with."""


def environment_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs in :data:`ENVIRONMENT_KEYS` between two sessions' records: ``"git commit A ->
    B"``, ``"git dirty A -> B"``, ``"git changes A -> B"`` (other uncommitted code),
    ``"package P A -> B"``, ``"model K FIELD A -> B"``, ``"device FIELD A -> B"`` (host, GPUs,
    torch threads...; a key, model or field one of them lacks is not compared)."""
    changes: list[str] = []
    old_git, new_git = old.get("git") or {}, new.get("git") or {}
    for key in ("commit", "dirty", "changes"):
        if key in old_git and old_git[key] != new_git.get(key):
            changes.append(f"git {key} {old_git[key]} -> {new_git.get(key)}")
    old_pkg, new_pkg = old.get("packages") or {}, new.get("packages") or {}
    changes += [
        f"package {name} {old_pkg[name]} -> {new_pkg[name]}"
        for name in sorted(set(old_pkg) & set(new_pkg))
        if old_pkg[name] != new_pkg[name]
    ]
    old_models, new_models = old.get("models") or {}, new.get("models") or {}
    for key in sorted(set(old_models) & set(new_models)):
        before, after = old_models[key], new_models[key]
        changes += [
            f"model {key} {name} {before[name]} -> {after[name]}"
            for name in sorted(set(before) & set(after))
            if before[name] != after[name]
        ]
    old_device, new_device = old.get("device") or {}, new.get("device") or {}
    changes += [
        f"device {name} {old_device[name]} -> {new_device[name]}"
        for name in sorted(set(old_device) & set(new_device))
        if old_device[name] != new_device[name]
    ]
    return changes


def image_settings() -> dict[str, Any]:
    """How pictures are decoded for this run (:mod:`cot_ground.images`): the pixel limit above
    which a picture is an ``image_error``."""
    from cot_ground.images import MAX_PIXELS_ENV, max_pixels

    return {"max_pixels": max_pixels(), "max_pixels_env": MAX_PIXELS_ENV}


def build_manifest(
    *,
    config: dict[str, Any],
    benchmark: dict[str, Any],
    shard: dict[str, int] | None,
    n_examples: int,
    argv: list[str] | None = None,
) -> dict[str, Any]:
    """A fresh manifest; ``sessions`` gets one entry per start (resumes add more)."""
    return {
        "format": 1,
        "name": config.get("name"),
        "config": config,
        "benchmark": benchmark,
        "shard": shard,
        "n_examples": n_examples,
        "pipelines": sorted(config.get("pipelines", {})),
        "models": model_sources(config),
        "packages": package_versions(),
        "git": git_state(),
        "device": device_info(),
        "images": image_settings(),
        "image_reader": READER,  # rules that read which image an answer names
        "argv": argv if argv is not None else sys.argv,
        "started": now_iso(),
        "ended": None,
        "sessions": [],
    }
