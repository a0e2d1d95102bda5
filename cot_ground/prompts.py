"""Prompt files by kind × variant × task: loading, rendering and hashing.

Layout (under :func:`cot_ground.paths.prompts_dir`)::

    prompts/<kind>/<variant>/_all.yaml     fields shared by every task of the variant (optional)
    prompts/<kind>/<variant>/<task>.yaml   fields of one task (override ``_all.yaml``)

``kind`` is ``cot`` (the two-step graph's step 1), ``e2e`` (the end-to-end graph), or the
proposal-based graph of that name: ``som``, ``perception-prompt``, ``verify``. A user adds
a variant by adding a folder of files; no code changes. Each file is a YAML mapping of named
fields. String fields are templates: ``{name}`` is replaced by a variable of the example (see
:func:`example_variables`) or by another string field of the same prompt set; ``{{name}}``
writes a literal ``{name}``; any other brace (such as JSON in the text) is left as written.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cot_ground.paths import prompts_dir
from cot_ground.records import text_hash

KINDS = ("cot", "e2e", "som", "perception-prompt", "verify", "multi-image")
ANSWER_KINDS = ("image_and_description", "description", "image")
# fields every prompt set of a kind must have after merging _all.yaml and <task>.yaml
REQUIRED: dict[str, tuple[str, ...]] = {
    "cot": ("step1", "reformat", "answer"),
    "e2e": ("prompt",),
    "som": ("prompt", "reformat"),
    "perception-prompt": ("prompt", "reformat"),
    "verify": ("question",),
    "multi-image": ("polling", "all", "request"),
}
DEFAULTS: dict[str, dict[str, Any]] = {
    "cot": {"phrase": "{description}", "question_remove": []},
    "e2e": {"question_remove": []},
    "som": {"question_remove": []},
    "perception-prompt": {"question_remove": []},
    "verify": {"question_remove": []},
    "multi-image": {"question_remove": []},
}
SHARED_FILE = "_all.yaml"
_PLACEHOLDER = re.compile(r"\{\{([a-z_][a-z0-9_]*)\}\}|\{([a-z_][a-z0-9_]*)\}")
_QUESTION_BOX = re.compile(r"<\|box_start\|>(.*?)<\|box_end\|>", re.DOTALL)
_OBJECT_REF = re.compile(
    r"<\|object_ref_start\|>(.*?)<\|object_ref_end\|>|<ref>(.*?)</ref>", re.DOTALL
)


class PromptError(ValueError):
    """A prompt file is missing, malformed, or a template names an unknown placeholder."""


@dataclass(frozen=True)
class RenderedPrompt:
    """The exact text sent to a model, with where it came from."""

    text: str
    hash: str
    variant: str
    template: str
    source: str


@dataclass(frozen=True)
class PromptSet:
    """The merged fields of one kind × variant × task, as read from its files."""

    kind: str
    variant: str
    task: str
    fields: dict[str, Any]
    files: tuple[str, ...] = field(default_factory=tuple)

    def render(self, name: str, variables: dict[str, Any]) -> RenderedPrompt:
        """Render the template field ``name`` with ``variables`` (example values win)."""
        if not isinstance(self.fields.get(name), str):
            raise PromptError(f"{self.source}: no text field {name!r}")
        text = self._expand(name, variables, depth=0)
        return RenderedPrompt(
            text=text, hash=text_hash(text), variant=self.variant, template=name, source=self.source
        )

    @property
    def source(self) -> str:
        """The files this set was read from, for error messages and traces."""
        return " + ".join(self.files)

    @functools.cached_property
    def template_hash(self) -> str:
        """Hash of the merged, unrendered fields (changes whenever a file's content changes)."""
        return text_hash(yaml.safe_dump(self.fields, sort_keys=True, allow_unicode=True))

    def _expand(self, name: str, variables: dict[str, Any], depth: int) -> str:
        if depth > 8:
            raise PromptError(f"{self.source}: field {name!r} refers to itself in a loop")
        template = self.fields[name]

        def substitute(match: re.Match[str]) -> str:
            literal, key = match.group(1), match.group(2)
            if literal is not None:
                return "{" + literal + "}"
            if key in variables:
                return str(variables[key])
            if isinstance(self.fields.get(key), str):
                return self._expand(key, variables, depth + 1)
            known = ", ".join(sorted(set(variables) | _text_fields(self.fields)))
            raise PromptError(
                f"{self.source}: field {name!r} uses unknown placeholder {{{key}}} "
                f"(available here: {known})"
            )

        return _PLACEHOLDER.sub(substitute, template)


def _text_fields(fields: dict[str, Any]) -> set[str]:
    return {k for k, v in fields.items() if isinstance(v, str)}


def list_variants(kind: str, root: str | Path | None = None) -> list[str]:
    """The variant folders present for ``kind`` (sorted)."""
    base = _kind_dir(kind, root)
    return sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))


def variant_dir(kind: str, variant: str, root: str | Path | None = None) -> Path:
    """The folder of ``variant``; raises :class:`PromptError` naming it and the known ones."""
    path = _kind_dir(kind, root) / variant
    if not path.is_dir():
        known = ", ".join(list_variants(kind, root)) or "none"
        raise PromptError(f"prompt variant {variant!r} not found: {path} (available: {known})")
    return path


def load_prompts(kind: str, variant: str, task: str, root: str | Path | None = None) -> PromptSet:
    """The prompt set for ``task``; raises :class:`PromptError` naming any missing file."""
    base = variant_dir(kind, variant, root)
    return _load_cached(kind, str(base), variant, task, _mtimes(base, task))


def _mtimes(base: Path, task: str) -> tuple[float, float]:
    def mtime(p: Path) -> float:
        return p.stat().st_mtime if p.is_file() else -1.0

    return mtime(base / SHARED_FILE), mtime(base / f"{task}.yaml")


@functools.lru_cache(maxsize=256)
def _load_cached(
    kind: str, base_str: str, variant: str, task: str, mtimes: tuple[float, float]
) -> PromptSet:
    base = Path(base_str)
    merged: dict[str, Any] = dict(DEFAULTS[kind])
    files: list[str] = []
    for path in (base / SHARED_FILE, base / f"{task}.yaml"):
        if path.is_file():
            merged.update(_read_yaml(path))
            files.append(str(path))
    missing = [name for name in REQUIRED[kind] if name not in merged]
    if missing:
        task_file = base / f"{task}.yaml"
        where = "not found" if not task_file.is_file() else f"lacks field(s) {', '.join(missing)}"
        raise PromptError(
            f"prompt file {task_file} {where} (needed fields: {', '.join(REQUIRED[kind])}; "
            f"{SHARED_FILE} of the variant may hold the shared ones)"
        )
    prompt_set = PromptSet(kind=kind, variant=variant, task=task, fields=merged, files=tuple(files))
    _validate(prompt_set)
    return prompt_set


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise PromptError(f"prompt file {path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PromptError(f"prompt file {path} must hold a mapping of named fields")
    return data


def _validate(prompt_set: PromptSet) -> None:
    fields = prompt_set.fields
    for name in REQUIRED[prompt_set.kind]:
        if name != "answer" and not isinstance(fields[name], str):
            raise PromptError(f"{prompt_set.source}: field {name!r} must be text")
    if prompt_set.kind == "cot" and fields["answer"] not in ANSWER_KINDS:
        raise PromptError(
            f"{prompt_set.source}: answer must be one of {', '.join(ANSWER_KINDS)}, "
            f"got {fields['answer']!r}"
        )
    remove = fields.get("question_remove")
    if not isinstance(remove, list) or not all(isinstance(s, str) for s in remove):
        raise PromptError(f"{prompt_set.source}: question_remove must be a list of strings")


def _kind_dir(kind: str, root: str | Path | None) -> Path:
    if kind not in KINDS:
        raise PromptError(f"unknown prompt kind {kind!r}; known kinds: {', '.join(KINDS)}")
    base = Path(root) if root is not None else prompts_dir()
    path = base / kind
    if not path.is_dir():
        raise PromptError(f"prompt folder not found: {path}")
    return path


def question_ref(question: str) -> str:
    """The referring phrase tagged in a question (``<|object_ref_start|>…`` or ``<ref>…``)."""
    match = _OBJECT_REF.search(question)
    if match is None:
        return ""
    return (match.group(1) if match.group(1) is not None else match.group(2)).strip()


def example_variables(
    question: str, n_images: int, question_remove: list[str] | tuple[str, ...] = ()
) -> dict[str, Any]:
    """Variables every template may use, from the question and the number of images.

    ``question`` (with each ``question_remove`` string deleted), ``n_images``,
    ``image_choices`` (``"Image1 | Image2."``, the public script's choice list) and
    ``question_ref`` (the tagged referring phrase, empty when the question has none) and, only
    when the question states a box, ``question_box``: the text between its first
    ``<|box_start|>`` and ``<|box_end|>`` as written (e.g. ``"(451,265),(519,388)"``, the
    question's Qwen 0-1000 frame), so a template that needs it fails on a question without one.
    """
    for text in question_remove:
        question = question.replace(text, "")
    variables: dict[str, Any] = {
        "question": question,
        "n_images": n_images,
        "image_choices": " | ".join(f"Image{i}" for i in range(1, n_images + 1)) + ".",
        "question_ref": question_ref(question),
    }
    box = _QUESTION_BOX.search(question)
    if box is not None:
        variables["question_box"] = box.group(1).strip()
    return variables
