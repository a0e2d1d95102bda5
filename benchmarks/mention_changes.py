"""``python -m benchmarks.mention_changes``: which image the released answers name, read by the
image-mention reader (:mod:`cot_ground.mentions`) against the reader it replaced.

The replaced reader is ``parse_image_index`` at commit ``c4e526b`` (first locative mention, else
the first mention), loaded from git history so that the comparison stays reproducible without
keeping that code in the library. Every answer of both released models (8,552) is read as the
end-to-end adapters read it: the old way from the answer alone, the new way with the record's
question (for echoed reference images). Each change is put in one class:

* ``echo``        -- the old choice is a reference image the question itself names, echoed in
  the answer ("the object in the first image …"); the new reader reads no choice from it;
* ``negated``     -- the old choice is rejected in the answer ("not in image 1");
* ``several``     -- several images are named without a correction (a comparison): no choice
  is read now, where the old reader took the first location;
* ``correction``  -- a correction names another image last ("…, actually image 3");
* ``new_mention`` -- the old reader saw no image (Chinese ordinals, full-width digits…);
* ``not_a_mention`` -- the old reader's mention is not an image ("the 3th region picture",
  "the first two images").

Each answer is also read by the previous version of this reader (``mentions-2``, the
:mod:`cot_ground.mentions` of commit ``991a2ce``, also from git history): ``changed_previous``
counts the answers whose image differs from it.

Prints a table (per model × task: answers, image stated old/new, changed, per class, changed
against the previous reader) and writes ``benchmarks/results/mention_changes.json``
(``--out``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import types
from collections import Counter
from pathlib import Path
from typing import Any

from cot_ground.bench.released import read_released_log
from cot_ground.boxes import Frame
from cot_ground.parsing import answer_text, parse_box

OLD_COMMIT = "c4e526b"
PREVIOUS_COMMIT = "991a2ce"  # the last commit with reader mentions-2
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RELEASED = ROOT.parent / "shared" / "migbench" / "released_outputs"
CLASSES = ("echo", "negated", "several", "correction", "new_mention", "not_a_mention")


def _module_at(commit: str, path: str) -> types.ModuleType:
    """The module ``path`` as it was at ``commit`` (source read with ``git show``)."""
    source = subprocess.run(
        ["git", "show", f"{commit}:{path}"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    module = types.ModuleType(f"{Path(path).stem}_{commit}")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{commit}:{path}", "exec"), module.__dict__)
    return module


def old_reader() -> Any:
    """``parse_image_index`` as it was at :data:`OLD_COMMIT`."""
    return _module_at(OLD_COMMIT, "cot_ground/parsing.py").parse_image_index


def previous_reader() -> Any:
    """``image_choice`` of reader ``mentions-2`` (:data:`PREVIOUS_COMMIT`)."""
    module = _module_at(PREVIOUS_COMMIT, "cot_ground/mentions.py")
    assert module.READER == "mentions-2", module.READER
    return module.image_choice


def classify(answer: str, question: str, old: int | None, new: int | None) -> str:
    """Why the image read from ``answer`` changed from ``old`` to ``new`` (see the docstring)."""
    from cot_ground.mentions import read_image_choice

    reading = read_image_choice(answer_text(answer), question)
    roles = {m.index: m.role for m in reading.mentions if m.index == old}
    if old is None:
        return "new_mention"
    if not roles:
        return "not_a_mention"
    if roles[old] == "echo" and new is None:
        return "echo"
    if any(m.role == "negated" and m.index == old for m in reading.mentions):
        return "negated"
    if any(m.role == "echo" and m.index == old for m in reading.mentions):
        return "echo"
    return "several" if reading.rule == "several_images" else "correction"


def compare_readers(released: Path) -> dict[str, Any]:
    """Per model and task: answers, image stated (old/new), changed choices by class, and a
    few examples of each class."""
    parse_old, parse_previous = old_reader(), previous_reader()
    out: dict[str, Any] = {
        "old_reader": f"parse_image_index at {OLD_COMMIT}",
        "previous_reader": f"mentions-2 at {PREVIOUS_COMMIT}",
        "models": {},
    }
    examples: dict[str, list[dict[str, Any]]] = {c: [] for c in CLASSES}
    for model_dir in sorted(p for p in released.iterdir() if p.is_dir()):
        tasks: dict[str, Any] = {}
        for path in sorted(model_dir.glob("*.json")):
            log = read_released_log(path)
            counts: Counter[str] = Counter()
            for rec in log.records:
                old = parse_old(answer_text(rec.answer))
                new = parse_box(rec.answer, Frame.QWEN1000, question=rec.question).image_index
                counts["answers"] += 1
                counts["stated_old"] += old is not None
                counts["stated_new"] += new is not None
                counts["changed_previous"] += new != parse_previous(
                    answer_text(rec.answer), rec.question
                )
                if old != new:
                    kind = classify(rec.answer, rec.question, old, new)
                    counts["changed"] += 1
                    counts[kind] += 1
                    if len(examples[kind]) < 3:
                        examples[kind].append(
                            {"task": log.task, "answer": rec.answer[:160], "old": old, "new": new}
                        )
            tasks[log.task] = dict(counts)
        out["models"][model_dir.name] = tasks
    total: Counter[str] = Counter()
    for tasks in out["models"].values():
        for counts in tasks.values():
            total.update(counts)
    out["total"] = dict(total)
    out["examples"] = examples
    return out


def table(result: dict[str, Any]) -> str:
    """Markdown table of the rows with a change, plus the total."""
    head = ["model", "task", "answers", "stated_old", "stated_new", "changed", *CLASSES]
    head.append("changed_previous")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def row(model: str, task: str, c: dict[str, int]) -> str:
        cells = [model, task] + [str(c.get(k, 0)) for k in head[2:]]
        return "| " + " | ".join(cells) + " |"

    for model, tasks in result["models"].items():
        for task, counts in tasks.items():
            if any(counts.get(k) for k in [*head[3:6], "changed_previous"]):
                lines.append(row(model, task, counts))
    lines.append(row("**all**", "", result["total"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--released", type=Path, default=DEFAULT_RELEASED)
    out = ROOT / "benchmarks" / "results" / "mention_changes.json"
    parser.add_argument("--out", type=Path, default=out)
    args = parser.parse_args(argv)
    result = compare_readers(args.released)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(table(result))
    for kind, items in result["examples"].items():
        for item in items:
            print(f"{kind:13} {item['task']:16} old={item['old']} new={item['new']} "
                  f"{item['answer'][:100]!r}")  # fmt: skip


if __name__ == "__main__":
    main()
