"""Run fingerprints: what each pipeline's results depend on, recorded in ``run.json``.

A pipeline's fingerprint holds

* ``prompt_files``: ``{path: sha256}`` of every prompt file it reads for the tasks it ran (the
  step-1 / end-to-end prompt set of its variant, and the grounding prompt file of a
  ``qwen-vl-grounder``, found as the adapter finds it), paths relative to the prompt folder when
  inside it. A file looked up and absent (a task without its own ``<task>.yaml`` reads
  ``_all.yaml`` only) is recorded as ``None``;
* ``config``: the pipeline's resolved config (mode, prompt variant, retries, fallbacks, parser
  options) and the full config of every model it uses (adapter, weights path, generation lengths,
  pixels, adapter options);
* ``models_weights``: ``{model key: digest}`` of the weights every model it uses reads
  (:func:`cot_ground.models.weights_identity.weights_digest` of the local folder, a Hub id's
  cached snapshot included); models without weights (served models, classical baselines) and
  weights not on this machine yet are left out.

Resuming a run folder compares the new fingerprint with the stored one: a prompt file whose
content changed, that was removed, or that appeared for a task already run, a changed config key,
or other weights under a model key, refuses the resume naming each change, unless the caller
allows changes (``--allow-changed``); then the changes are recorded in the session. A prompt file
seen for the first time (a task not run before), and a key a fingerprint written by an older
version lacks, are no change.
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


def local_model_folder(spec: str | None) -> Path | None:
    """The local folder model path ``spec`` names, found without downloading: an existing
    folder, or a Hub id's snapshot in the Hub cache (as
    :func:`cot_ground.models.hf_loading.resolve_model_source` finds it offline). None when there
    is none on this machine (no path, an unset variable, a Hub id not cached yet)."""
    from cot_ground.models.base import ModelLoadError
    from cot_ground.models.hf_loading import expand_path, hub_cache_dir, parse_hub_id

    if not spec:
        return None
    try:
        expanded = expand_path(spec)
    except ModelLoadError:
        return None
    hub = parse_hub_id(expanded)
    if Path(expanded).exists() or hub is None:
        return Path(expanded).resolve() if Path(expanded).is_dir() else None
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(
            hub[0], "config.json", cache_dir=hub_cache_dir(), revision=hub[1]
        )
    except (OSError, ValueError):  # hub errors derive from these; the adapter's load reports
        return None
    return Path(cached).parent if isinstance(cached, str) else None


def grounder_prompt_file(model: dict[str, Any]) -> Path | None:
    """The grounding prompt file a ``qwen-vl-grounder`` model config (a dump) reads
    (:func:`cot_ground.models.qwen_vl.grounding_prompt_path`, with the family read from the
    checkpoint's ``config.json`` when no ``prompt_file`` is set). None when the checkpoint is
    not on this machine yet."""
    from cot_ground.models.base import ModelLoadError
    from cot_ground.models.hf_loading import read_model_type
    from cot_ground.models.qwen_vl import grounding_prompt_path

    chosen = (model.get("options") or {}).get("prompt_file")
    if chosen:
        return grounding_prompt_path(chosen, "")
    folder = local_model_folder(model.get("path"))
    if folder is None:
        return None
    try:
        family = read_model_type(folder)
    except ModelLoadError:
        return None
    return grounding_prompt_path(None, family)


def prompt_files(config: dict[str, Any], name: str, tasks: set[str]) -> dict[str, str | None]:
    """``{path: sha256}`` of the prompt files pipeline ``name`` reads for ``tasks``; ``None`` for
    a file looked up and absent (``_all.yaml`` or a ``<task>.yaml`` the variant lacks). A
    variant whose folder does not exist adds no files (the pre-flight names it:
    :func:`cot_ground.runner.config.pipeline_prompt_problems`)."""
    from cot_ground.paths import prompts_dir
    from cot_ground.prompts import SHARED_FILE, PromptError, variant_dir

    pipe = config["pipelines"][name]
    root = Path(pipe.get("prompts_dir") or prompts_dir())
    files: list[Path] = []
    for kind, variant in prompt_sets(pipe):
        try:
            folder = variant_dir(kind, variant, root)
        except PromptError:
            continue
        files += [folder / f for f in [SHARED_FILE, *(f"{t}.yaml" for t in sorted(tasks))]]
    for model in pipeline_definition(config, name)["models"].values():
        if model.get("adapter") == "qwen-vl-grounder":
            chosen = grounder_prompt_file(model)
            files += [chosen] if chosen is not None else []
    return {_display(p, root): file_sha256(p) if p.is_file() else None for p in files}


def weights_digests(config: dict[str, Any]) -> dict[str, str]:
    """``{model key: weights digest}`` of every model of ``config`` (a dump) whose weights are
    on this machine (:func:`local_model_folder`); others are left out."""
    from cot_ground.models.weights_identity import weights_digest

    out: dict[str, str] = {}
    for key, model in (config.get("models") or {}).items():
        folder = local_model_folder(model.get("path")) if isinstance(model, dict) else None
        if folder is None:
            continue
        try:
            digest = weights_digest(folder)
        except OSError:  # an unreadable folder: the adapter's load reports it
            continue
        if digest is not None:
            out[key] = digest
    return out


def pipeline_fingerprint(
    config: dict[str, Any],
    name: str,
    tasks: set[str],
    digests: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The fingerprint of pipeline ``name`` (module docstring) over ``tasks``; ``digests``:
    :func:`weights_digests` of ``config`` when already computed."""
    definition = pipeline_definition(config, name)
    digests = weights_digests(config) if digests is None else digests
    return {
        "prompt_files": prompt_files(config, name, tasks),
        "config": definition,
        "models_weights": {k: digests[k] for k in sorted(definition["models"]) if k in digests},
    }


def changed_keys(old: Any, new: Any, where: str = "") -> list[str]:
    """Dotted keys whose values differ between two JSON values (a key only one holds counts)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            sub = f"{where}.{key}" if where else str(key)
            if key not in old or key not in new:
                out.append(sub)
            else:
                out += changed_keys(old[key], new[key], sub)
        return out
    return [] if old == new else [where]


def prompt_file_changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """``"prompt file X"`` (content changed), ``"prompt file X removed"`` and ``"prompt file X
    added for a task already run"`` for each file both maps looked up (a file only one of them
    looked up, e.g. for a task the other did not run, is not compared)."""
    changes = []
    for path in sorted(set(before) & set(after)):
        old, new = before[path], after[path]
        if old == new:
            continue
        if new is None:
            changes.append(f"prompt file {path} removed")
        elif old is None:
            changes.append(f"prompt file {path} added for a task already run")
        else:
            changes.append(f"prompt file {path}")
    return changes


def fingerprint_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two fingerprints of one pipeline: the prompt files of
    :func:`prompt_file_changes`, ``"config K"`` for each changed key (dotted), ``"model weights
    K"`` for each model key whose weights digest differs (parts or keys ``old`` lacks, a
    fingerprint of an older version, are not compared)."""
    changes = prompt_file_changes(old.get("prompt_files") or {}, new.get("prompt_files") or {})
    if "config" in old:
        changes += [f"config {k}" for k in changed_keys(old["config"], new["config"])]
    before, after = old.get("models_weights") or {}, new.get("models_weights") or {}
    changes += [
        f"model weights {k} (digest {before[k][:12]}... -> {after[k][:12]}...)"
        for k in sorted(set(before) & set(after))
        if before[k] != after[k]
    ]
    return changes


def merged_fingerprint(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``new`` plus the prompt files and weight digests only ``old`` knew (tasks of earlier
    sessions, weights not on this machine now)."""
    files = {**(old.get("prompt_files") or {}), **(new.get("prompt_files") or {})}
    weights = {**(old.get("models_weights") or {}), **(new.get("models_weights") or {})}
    return {**new, "prompt_files": dict(sorted(files.items())), "models_weights": weights}


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
