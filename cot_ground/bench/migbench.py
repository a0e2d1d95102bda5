"""MIG-Bench annotation files → :class:`~cot_ground.records.Example` lists.

File format (a JSON list, one object per item): ``task``, ``images`` (paths relative to the
benchmark root, the folder that holds ``MIG-Bench/``), ``question``, ``answer`` (the box),
``additional_info`` (for ``group_grounding`` it holds the answer) and ``need_format``.

The frame of ``answer`` differs between releases: for the two published files a sha256 table
supplies it, a MIG-Lite build states it in ``lite_info.json``, and any other file needs an
explicit ``answer_frame`` (an explicit frame that contradicts a known or stated one is refused).
The frame is never guessed from the size of the numbers.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cot_ground.bench.selection import select_examples
from cot_ground.bench.targets import TargetRuleError, target_image
from cot_ground.boxes import Box, Frame
from cot_ground.records import BUILD_INFO_FILE, Example, example_id, file_sha256
from cot_ground.tasks import TASK_ORDER

TASKS: tuple[str, ...] = TASK_ORDER
BENCH_FOLDER = "MIG-Bench"  # the first component of every image path in the published files
REQUIRED_FIELDS: tuple[str, ...] = ("task", "images", "question", "answer")
FRAME_CHOICES = ", ".join([*(f.value for f in Frame), "normalized"])
"""The names an ``answer_frame`` may take (``normalized`` is ``unit``), as messages list them."""


@dataclass(frozen=True)
class KnownFile:
    """A published annotation file, identified by its sha256."""

    name: str
    answer_frame: Frame
    items: int


KNOWN_FILES: dict[str, KnownFile] = {
    "8f6e8fce3720dc6e17462533426d455463cda38b441edc2d70d65afa15681300": KnownFile(
        "MIG_data.json (original release)", Frame.NORMALIZED, 4295
    ),
    "69aea94deef1bd2a9f5e117068b7a325a82bc9c0d11881f98f29338fbe779791": KnownFile(
        "revised_MIG_bench.json (revised release)", Frame.QWEN3_1000, 4276
    ),
}


class BenchmarkError(ValueError):
    """Bad benchmark input; the message names the file and the item."""


class BenchmarkItemsError(BenchmarkError):
    """Items of a selection that cannot be loaded, every one named (bad fields, image paths that
    leave the root, missing images): ``problems`` holds one line per problem, ``examples`` the
    items of the selection that did load (so a caller can check more of them)."""

    def __init__(self, path: Path, problems: list[str], examples: list[Example]) -> None:
        super().__init__(
            f"{len(problems)} problem(s) in the items of {path}:\n" + "\n".join(problems)
        )
        self.problems = problems
        self.examples = examples


@dataclass
class Benchmark:
    """A loaded annotation file: its examples and what identifies it."""

    path: Path
    sha256: str
    answer_frame: Frame
    root: Path
    examples: list[Example] = field(default_factory=list)

    def __len__(self) -> int:
        """Number of examples loaded (after the task filter and limit)."""
        return len(self.examples)

    def __repr__(self) -> str:
        return (
            f"Benchmark({self.name!r}, {len(self.examples)} examples, "
            f"sha256={self.sha256[:12]}..., answer_frame={self.answer_frame.value!r})"
        )

    @property
    def name(self) -> str:
        """The known release name, or the file name."""
        known = KNOWN_FILES.get(self.sha256)
        return known.name if known else self.path.name

    def manifest(self) -> dict[str, Any]:
        """What a run records about its benchmark."""
        return {
            "path": str(self.path),
            "name": self.name,
            "sha256": self.sha256,
            "answer_frame": self.answer_frame.value,
            "root": str(self.root),
            "root_layout": "MIG-Bench folder" if is_bench_folder(self.root) else "parent",
            "examples": len(self.examples),
        }


def read_json(path: str | Path, error: type[Exception], what: str) -> Any:
    """The parsed JSON of ``path``; ``error`` (naming the file as ``what``) when it is missing,
    not UTF-8 (the message gives the byte offset) or not valid JSON."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        bad = exc.object[exc.start : exc.end].hex(" ")
        raise error(
            f"{path}: not UTF-8 text: byte(s) 0x{bad} at byte offset {exc.start} ({exc.reason})"
        ) from None
    except json.JSONDecodeError as exc:
        raise error(f"{path}: not valid JSON ({exc})") from exc


def read_items(path: str | Path) -> list[dict[str, Any]]:
    """The raw list of annotation records of ``path``."""
    items = read_json(path, BenchmarkError, "benchmark file")
    if not isinstance(items, list):
        raise BenchmarkError(f"{path}: expected a JSON list of items, got {type(items).__name__}")
    return items


def stated_frame(sha256: str, path: Path) -> Frame | None:
    """The frame a build states for exactly this file, else ``None``.

    A build (MIG-Lite) writes :data:`BUILD_INFO_FILE` beside its annotation file with
    ``data_sha256`` (the sha256 of that file) and ``answer_frame``; the frame counts only while
    the file is byte for byte the one the build wrote. A sidecar that cannot be read, or that
    names another file or an unknown frame, states nothing."""
    info = _build_info(path)
    if info is None or info.get("data_sha256") != sha256:
        return None
    try:
        return Frame(info.get("answer_frame"))
    except ValueError:
        return None


def _build_info(path: Path) -> dict[str, Any] | None:
    """The :data:`BUILD_INFO_FILE` beside ``path`` as a mapping, or None when there is none
    or it cannot be read."""
    try:
        info = json.loads((path.parent / BUILD_INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def no_frame_reason(sha256: str, path: Path) -> str:
    """Why no build states the frame of ``path`` (for the message asking for one)."""
    info = _build_info(path)
    described = info.get("data_sha256") if info is not None else None
    if isinstance(described, str) and described != sha256:
        return (
            f"{BUILD_INFO_FILE} beside it describes another file (sha256 {described[:12]}...):"
            " the file was edited after the build"
        )
    if info is not None:
        return f"{BUILD_INFO_FILE} beside it states no valid frame for this file"
    return f"no {BUILD_INFO_FILE} beside it stating the frame of this file"


def resolve_frame(sha256: str, path: Path, answer_frame: Frame | str | None) -> Frame:
    """The frame of the boxes of ``path``: the frame of a known file (:data:`KNOWN_FILES`, by
    sha256), else the frame its build states (:func:`stated_frame`), else the explicit one.

    An explicit ``answer_frame`` must agree with a known or stated frame: one that differs
    raises :class:`BenchmarkError` naming both frames and where the known one comes from (a
    wrong frame would scale every ground-truth box). Any other file needs an explicit frame."""
    try:
        explicit = Frame(answer_frame) if answer_frame is not None else None
    except ValueError:
        raise BenchmarkError(
            f"{path}: unknown answer_frame {answer_frame!r} (frames: {FRAME_CHOICES})"
        ) from None
    known = KNOWN_FILES.get(sha256)
    if known is not None:
        frame, source = known.answer_frame, f"the published file {known.name} (by its sha256)"
    else:
        frame = stated_frame(sha256, path)
        source = f"{path.parent / BUILD_INFO_FILE}, written by the build of this file"
    if frame is None:
        if explicit is None:
            raise BenchmarkError(
                f"{path}: unknown annotation file (sha256 {sha256[:12]}...) and "
                f"{no_frame_reason(sha256, path)}; state the frame of its boxes with "
                f"answer_frame= / --answer-frame ({FRAME_CHOICES})"
            )
        return explicit
    if explicit is not None and explicit is not frame:
        raise BenchmarkError(
            f"{path}: answer_frame {explicit.value!r} contradicts the frame of this file, "
            f"{frame.value!r}, stated by {source}; remove answer_frame or set it to "
            f"{frame.value!r}"
        )
    return frame


def open_annotations(
    path: Path, root: str | Path | None, answer_frame: Frame | str | None
) -> tuple[list[Any], str, Frame, Path]:
    """``(raw items, sha256, answer frame, resolved image root)`` of an annotation file."""
    items = read_items(path)
    sha = file_sha256(path)
    frame = resolve_frame(sha, path, answer_frame)
    if frame is Frame.PIXELS:
        raise BenchmarkError(f"{path}: pixel-frame annotations need image sizes (not supported)")
    root_dir = (Path(root) if root is not None else path.parent).resolve()
    return items, sha, frame, root_dir


def load_benchmark(
    path: str | Path,
    root: str | Path | None = None,
    tasks: list[str] | tuple[str, ...] | None = None,
    limit: int | None = None,
    answer_frame: Frame | str | None = None,
    require_images: bool = False,
    allow_outside_root: bool = False,
    per_task: int | None = None,
    sample: int | None = None,
    seed: int = 0,
) -> Benchmark:
    """Load a MIG-Bench annotation file.

    ``root``: folder the image paths are relative to (default: the annotation file's folder).
    ``tasks``: keep only these tasks. ``limit``: keep the first ``limit`` items after the task
    filter. ``per_task``: keep the first ``per_task`` items of every task. ``sample`` (with
    ``seed``): a reproducible sample stratified by task (:mod:`cot_ground.bench.selection`);
    at most one of ``limit``, ``per_task`` and ``sample``.
    ``require_images``: refuse images that do not exist.
    ``allow_outside_root``: accept image paths that leave ``root`` (``../``, absolute paths);
    refused by default (:func:`resolve_image`). Raises :class:`BenchmarkItemsError` naming
    every bad item of the selection at once (:class:`BenchmarkError` for a bad file or
    selection).
    """
    path = Path(path)
    chosen = [n for n, v in (("limit", limit), ("per_task", per_task), ("sample", sample)) if v]
    if len(chosen) > 1:
        raise BenchmarkError(f"give at most one of limit, per_task and sample (got {chosen})")
    items, sha, frame, root_dir = open_annotations(path, root, answer_frame)
    if tasks is not None:
        unknown = sorted(set(tasks) - set(TASKS))
        if unknown:
            raise BenchmarkError(f"unknown task(s) {unknown}; known: {', '.join(TASKS)}")
    seen: Counter[str] = Counter()
    examples: list[Example] = []
    problems: list[str] = []
    failed = 0
    for number, item in enumerate(items):
        where = f"{path} item {number}"
        if tasks is not None and isinstance(item, dict) and item.get("task") not in tasks:
            continue
        if limit is not None and len(examples) + failed >= limit:
            break
        try:
            example = item_to_example(item, where, frame, root_dir, allow_outside_root)
        except BenchmarkError as exc:
            problems.append(str(exc))
            failed += 1
            continue
        if require_images:
            problems += [
                f"{where}: image not found: {p}" for p in example.images if not os.path.isfile(p)
            ]
        seen[example.id] += 1
        if seen[example.id] > 1:  # the published files repeat a few items verbatim
            example = example.model_copy(update={"id": f"{example.id}-{seen[example.id]}"})
        examples.append(example)
    if problems:
        raise BenchmarkItemsError(path, problems, examples)
    examples = select_examples(examples, per_task=per_task, sample=sample, seed=seed)
    return Benchmark(path=path, sha256=sha, answer_frame=frame, root=root_dir, examples=examples)


def item_to_example(
    item: Any,
    where: str,
    frame: Frame,
    root: Path,
    allow_outside_root: bool = False,
) -> Example:
    """One annotation record as an :class:`Example` (``where`` names it in errors)."""
    if not isinstance(item, dict):
        raise BenchmarkError(f"{where}: expected an object, got {type(item).__name__}")
    missing = [k for k in REQUIRED_FIELDS if k not in item]
    if missing:
        raise BenchmarkError(f"{where}: missing field(s) {missing}")
    task = item["task"]
    if task not in TASKS:
        raise BenchmarkError(f"{where}: unknown task {task!r}; known: {', '.join(TASKS)}")
    images = item["images"]
    if not isinstance(images, list) or not images or not all(isinstance(p, str) for p in images):
        raise BenchmarkError(f"{where}: 'images' must be a non-empty list of paths")
    question = item["question"]
    if not isinstance(question, str):
        raise BenchmarkError(f"{where}: 'question' must be a string")
    try:
        gt_box = Box.from_frame(item["answer"], frame)
    except (TypeError, ValueError) as exc:
        raise BenchmarkError(f"{where}: malformed answer box {item['answer']!r}: {exc}") from exc
    additional = item.get("additional_info") or ""
    try:
        index, rule = target_image(task, question, additional, len(images))
    except TargetRuleError as exc:
        raise BenchmarkError(f"{where}: {exc}") from exc
    resolved, outside = [], []
    for p in images:
        try:
            resolved.append(resolve_image(root, p, allow_outside_root))
        except ValueError as exc:
            outside.append(str(exc))
    if outside:
        raise BenchmarkError(f"{where}: {'; '.join(outside)}")
    return Example(
        id=example_id(task, images, question),
        task=task,
        images=resolved,
        question=question,
        gt_box=gt_box,
        target_image=index,
        target_rule=rule,
        raw=item,
    )


def is_bench_folder(root: Path | str) -> bool:
    """True when ``root`` is itself a MIG-Bench folder, the layout of a download of the Hub
    dataset ``Michael4933/MIG-Bench`` with ``images.zip`` unpacked beside ``MIG_data.json``:
    an ``images/`` folder and no ``MIG-Bench/`` folder inside. Image paths written
    ``./MIG-Bench/images/...`` then resolve to ``root/images/...``."""
    base = Path(root)
    return not (base / BENCH_FOLDER).is_dir() and (base / "images").is_dir()


def resolve_image(root: Path | str, image: str, allow_outside_root: bool = False) -> str:
    """An annotation image path (``./MIG-Bench/...`` or ``MIG-Bench/...``) under ``root``, the
    folder that holds ``MIG-Bench/`` or (:func:`is_bench_folder`) the ``MIG-Bench`` folder itself.

    The path is checked as written (``..`` resolved, symbolic links not followed, so a linked
    image folder inside ``root`` is fine): one that leaves ``root`` (``../x.jpg``, an absolute
    path elsewhere) raises ``ValueError`` unless ``allow_outside_root``.
    """
    base = os.path.normpath(os.path.abspath(root))
    parts = Path(os.path.normpath(image)).parts
    if parts[:1] == (BENCH_FOLDER,) and len(parts) > 1 and is_bench_folder(base):
        image = os.path.join(*parts[1:])  # root is the MIG-Bench folder itself (Hub snapshot)
    resolved = os.path.normpath(os.path.join(base, image))
    if not allow_outside_root and os.path.commonpath([base, resolved]) != base:
        raise ValueError(
            f"image path {image!r} leaves the benchmark root {base} (allow it explicitly: "
            "benchmark.allow_outside_root: true in a config, --allow-outside-root for "
            "validate-bench)"
        )
    return resolved
