"""Prompt files: loading, rendering rules, and frozen snapshots of every task × variant.

Changing a prompt file changes a snapshot; update them on purpose with

    UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/test_prompts.py

and review the diff of ``tests/snapshots/prompts/`` with the prompt change.
"""

from __future__ import annotations

import json
import os

import pytest
from repo_paths import REPO, TESTS
from scripted_models import make_example

from cot_ground.graph.nodes import step1_variables, step2_texts
from cot_ground.prompts import (
    PromptError,
    example_variables,
    list_variants,
    load_prompts,
    question_ref,
)
from cot_ground.records import text_hash
from cot_ground.tasks import TASKS

SNAPSHOTS = TESTS / "snapshots" / "prompts"
UPDATE = os.environ.get("UPDATE_SNAPSHOTS") == "1"

# one question of each MIG-Bench task, in the benchmark's own wording, with its image count
SAMPLES = {
    task: (case["n_images"], case["question"])
    for task, case in json.loads((SNAPSHOTS / "samples.json").read_text(encoding="utf-8")).items()
}


def _render_case(kind: str, variant: str, task: str) -> str:
    n_images, question = SAMPLES[task]
    ex = make_example(task, n_images=n_images, target=1, question=question)
    try:
        prompts = load_prompts(kind, variant, task)
        if kind == "e2e":
            variables = example_variables(ex.question, n_images, prompts.fields["question_remove"])
            parts = {"prompt": prompts.render("prompt", variables).text}
        else:
            variables = step1_variables(ex, prompts, "agent")
            after = {**variables, "previous_answer": "<previous answer>"}
            phrase, step2 = step2_texts(
                prompts, {**variables, "description": "<description>", "image_number": 2}
            )
            parts = {
                "answer": prompts.fields["answer"],
                "step1": prompts.render("step1", variables).text,
                "reformat": prompts.render("reformat", after).text,
                "phrase": phrase,
            }
            if step2 is not None:  # the variant's own step-2 prompt for MLLM grounders
                parts["step2"] = step2
    except PromptError as exc:  # a variant without this task is frozen as such
        root = str(REPO)
        return f"=== error\n{str(exc).replace(root, '<repo>')}\n"
    return "".join(f"=== {name}\n{text}\n" for name, text in parts.items())


CASES = [
    (kind, variant, task)
    for kind in ("cot", "e2e")
    for variant in list_variants(kind)
    for task in sorted(SAMPLES)
]


@pytest.mark.parametrize(("kind", "variant", "task"), CASES)
def test_prompt_snapshot(kind, variant, task):
    rendered = _render_case(kind, variant, task)
    path = SNAPSHOTS / kind / variant / f"{task}.txt"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rendered, encoding="utf-8")
    assert path.is_file(), f"no snapshot {path}; run UPDATE_SNAPSHOTS=1 pytest {__file__}"
    assert rendered == path.read_text(encoding="utf-8"), (
        f"prompt {kind}/{variant}/{task} changed; if on purpose, run "
        f"UPDATE_SNAPSHOTS=1 pytest tests/test_prompts.py and commit the snapshot diff"
    )


def test_no_stale_snapshots():
    expected = {SNAPSHOTS / k / v / f"{t}.txt" for k, v, t in CASES}
    stale = sorted(set(SNAPSHOTS.rglob("*.txt")) - expected)
    if UPDATE:
        for path in stale:
            path.unlink()
        stale = []
    assert not stale, f"snapshots without a prompt case: {stale} (UPDATE_SNAPSHOTS=1 removes them)"


def test_shipped_variants_cover_every_task():
    assert {"paper", "structured"} <= set(list_variants("cot"))
    assert "migician" in list_variants("e2e")
    for variant in ("paper", "structured"):
        for task in TASKS:
            load_prompts("cot", variant, task)  # raises when a file is missing


def test_paper_prompts_are_the_published_wording():
    fields = load_prompts("cot", "paper", "common_object").fields
    assert fields["step1"] == (
        "These images share one object in common. "
        "Recognize it and tell me its name in single phrase or words."
    )
    grp = load_prompts("cot", "paper", "group_grounding")
    text = grp.render("step1", example_variables("Q.", 3)).text
    assert text == (
        "Q. Just recognize and tell me which image is it in. "
        "Strictly answer from choice list: Image1 | Image2 | Image3."
    )


def test_placeholders_literals_and_json_braces(tmp_path):
    d = tmp_path / "e2e" / "v"
    d.mkdir(parents=True)
    (d / "_all.yaml").write_text(
        'hint: "Answer {{question}} literally."\nprompt: \'{question} {hint} Reply {"image": N}\'\n'
    )
    prompts = load_prompts("e2e", "v", "diff", root=tmp_path)
    rendered = prompts.render("prompt", {"question": "Where?"})
    assert rendered.text == 'Where? Answer {question} literally. Reply {"image": N}'
    assert rendered.hash == text_hash(rendered.text) and rendered.variant == "v"

    (d / "_all.yaml").write_text("prompt: '{question} {nope}'\n")
    with pytest.raises(PromptError, match=r"unknown placeholder \{nope\}"):
        load_prompts("e2e", "v", "diff", root=tmp_path).render("prompt", {"question": "q"})


def test_clear_errors_name_the_file(tmp_path):
    d = tmp_path / "cot" / "v"
    d.mkdir(parents=True)
    with pytest.raises(PromptError, match=str(d / "diff.yaml")):
        load_prompts("cot", "v", "diff", root=tmp_path)
    (d / "diff.yaml").write_text("step1: hi\nreformat: again\nanswer: poem\n")
    with pytest.raises(PromptError, match="answer must be one of"):
        load_prompts("cot", "v", "diff", root=tmp_path)
    (d / "diff.yaml").write_text("step1: [unclosed\n")
    with pytest.raises(PromptError, match="not valid YAML"):
        load_prompts("cot", "v", "diff", root=tmp_path)
    with pytest.raises(PromptError, match="available: v"):
        load_prompts("cot", "w", "diff", root=tmp_path)


def test_question_ref_and_variables():
    assert question_ref("find <|object_ref_start|> a cat <|object_ref_end|>.") == "a cat"
    assert question_ref("find <ref>dog</ref>") == "dog"
    assert question_ref("no tags") == ""
    v = example_variables("Find it. Drop me. ", 2, ["Drop me. "])
    assert v["question"] == "Find it. " and v["image_choices"] == "Image1 | Image2."
