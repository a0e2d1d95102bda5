"""Run fingerprints: what each pipeline's results depend on, recorded in ``run.json``.

A pipeline's fingerprint holds

* ``prompt_files``: ``{path: sha256}`` of every prompt file it reads for the tasks it ran (the
  step-1 / end-to-end prompt set of its variant, and the grounding prompt file of a
  ``qwen-vl-grounder``), paths relative to the prompt folder when inside it;
* ``config``: the pipeline's resolved config (mode, prompt variant, retries, fallbacks, parser
  options) and the full config of every model it uses (adapter, weights path, generation lengths,
  pixels, adapter options).

Resuming a run folder compares the new fingerprint with the stored one: a prompt file whose
content changed, or any changed config key, refuses the resume naming each change, unless the
caller allows changes (``--allow-changed``); then the changes are recorded in the session. A
prompt file seen for the first time (a task not run before) is no change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cot_ground.graph.multi_image import PROMPT_KIND as MULTI_IMAGE_KIND
from cot_ground.graph.multi_image import PROMPT_VARIANT as MULTI_IMAGE_VARIANT
from cot_ground.models.registry import SLOTS
from cot_ground.records import file_sha256

MODEL_SLOTS = tuple(slot for slot in SLOTS if slot != "multi_image_grounder")
"""Keys of a pipeline config that name a model (``models.<key>``): the slots of
:data:`~cot_ground.models.registry.SLOTS`, where ``multi_image_grounder`` is the ``grounder``
key."""


def pipeline_definition(config: dict[str, Any], name: str) -> dict[str, Any]:
    """Pipeline ``name`` of a config dump and the models it uses."""
    pipe = config["pipelines"][name]
    refs = [pipe.get(k) for k in MODEL_SLOTS]
    return {"pipeline": pipe, "models": {k: config["models"][k] for k in refs if k}}


def prompt_sets(pipe: dict[str, Any]) -> list[tuple[str, str]]:
    """(prompt kind, variant) of every prompt set a pipeline config (a dump) reads: its own kind's
    ``prompt_variant``, the CoT step-1 prompts of a ``step1_variant`` (verify pipelines) and the
    step-2 prompts of mode ``multi-image``."""
    sets = [(pipe["kind"], pipe["prompt_variant"])]
    if pipe.get("step1_variant"):
        sets.append(("cot", pipe["step1_variant"]))
    if pipe.get("mode") == "multi-image":
        sets.append((MULTI_IMAGE_KIND, MULTI_IMAGE_VARIANT))
    return sets


def _display(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path.resolve())


def prompt_files(config: dict[str, Any], name: str, tasks: set[str]) -> dict[str, str]:
    """``{path: sha256}`` of the prompt files pipeline ``name`` reads for ``tasks``."""
    from cot_ground.paths import prompts_dir
    from cot_ground.prompts import SHARED_FILE, variant_dir

    pipe = config["pipelines"][name]
    root = Path(pipe.get("prompts_dir") or prompts_dir())
    files: list[Path] = []
    for kind, variant in prompt_sets(pipe):
        folder = variant_dir(kind, variant, root)
        for file_name in [SHARED_FILE, *(f"{t}.yaml" for t in sorted(tasks))]:
            if (folder / file_name).is_file():
                files.append(folder / file_name)
    for model in pipeline_definition(config, name)["models"].values():
        if model.get("adapter") == "qwen-vl-grounder":
            chosen = (model.get("options") or {}).get("prompt_file")
            ground = root / "ground"
            files += [Path(chosen)] if chosen else sorted(ground.glob("*.txt"))
    return {_display(p, root): file_sha256(p) for p in files if p.is_file()}


def pipeline_fingerprint(config: dict[str, Any], name: str, tasks: set[str]) -> dict[str, Any]:
    """The fingerprint of pipeline ``name`` (module docstring) over ``tasks``."""
    return {
        "prompt_files": prompt_files(config, name, tasks),
        "config": pipeline_definition(config, name),
    }


def _changed_keys(old: Any, new: Any, where: str) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            sub = f"{where}.{key}" if where else str(key)
            if key not in old or key not in new:
                out.append(sub)
            else:
                out += _changed_keys(old[key], new[key], sub)
        return out
    return [] if old == new else [where]


def fingerprint_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two fingerprints of one pipeline: ``"prompt file X"`` for each file
    whose content changed, ``"config K"`` for each changed key (dotted)."""
    before, after = old.get("prompt_files") or {}, new.get("prompt_files") or {}
    both = sorted(set(before) & set(after))
    changes = [f"prompt file {p}" for p in both if before[p] != after[p]]
    if "config" in old:
        changes += [f"config {k}" for k in _changed_keys(old["config"], new["config"], "")]
    return changes


def merged_fingerprint(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``new`` plus the prompt files only ``old`` knew (tasks of earlier sessions)."""
    files = {**(old.get("prompt_files") or {}), **(new.get("prompt_files") or {})}
    return {**new, "prompt_files": dict(sorted(files.items()))}


def stored_fingerprints(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Fingerprints of a ``run.json``; for a folder written before fingerprints existed, the
    config part rebuilt from its resolved config (its prompt files are unknown)."""
    stored = manifest.get("fingerprints")
    if isinstance(stored, dict):
        return stored
    config = manifest.get("config") or {}
    return {
        name: {"config": pipeline_definition(config, name)} for name in config.get("pipelines", {})
    }
