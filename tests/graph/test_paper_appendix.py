"""Prompt variant ``paper-appendix``: the Migician paper's printed wording (arXiv 2501.05767v3,
appendix "Prompt Template for Single-Image CoT") beside ``paper`` (the public script's)."""

from __future__ import annotations

import pytest
from scripted_models import ScriptedGrounder, ScriptedReasoner, candidate, make_example

from cot_ground.graph import CoTConfig, build_cot_graph, run_example
from cot_ground.graph.nodes import step1_variables, step2_texts
from cot_ground.prompts import PromptError, example_variables, load_prompts
from cot_ground.tasks import TASKS

# the six tasks whose appendix wording differs from the public script (docs/graph.md)
DIFFERENT = {
    "correspondence",
    "group_grounding",
    "multi_view",
    "object_tracking",
    "refer_grounding",
    "view_diff",
}
BOX_QUESTION = (
    "For the area marked by the red bounding box in the first image"
    "(<|box_start|>(139,305),(495,743)<|box_end|>), locate the corresponding area in the "
    "second image. "
)


def _texts(variant: str, task: str, question: str | None = None) -> tuple[str, str | None]:
    ex = make_example(task, n_images=3, target=1, question=question)
    prompts = load_prompts("cot", variant, task)
    variables = step1_variables(ex, prompts, "paper")
    _, step2 = step2_texts(prompts, {**variables, "description": "D", "image_number": 2})
    return prompts.render("step1", variables).text, step2


@pytest.mark.parametrize("task", sorted(TASKS))
def test_differs_from_the_script_in_exactly_the_six_tasks(task):
    question = BOX_QUESTION if task == "correspondence" else None
    same = _texts("paper", task, question) == _texts("paper-appendix", task, question)
    assert same is (task not in DIFFERENT)


def test_reference_box_is_the_questions_own_text():
    step1, _ = _texts("paper-appendix", "multi_view")
    assert "red bounding box(<|box_start|>(451,265),(519,388)<|box_end|>) with simple" in step1
    step1, step2 = _texts("paper-appendix", "correspondence", BOX_QUESTION)
    assert step1.endswith("red bounding box (<|box_start|>(139,305),(495,743)<|box_end|>).")
    assert step2.startswith(
        "Ground the area that shares the same semantic or functional meaning of: D."
    )
    assert example_variables("no box here", 2).get("question_box") is None


def test_appendix_wording_of_the_rewritten_steps():
    _, step2 = _texts("paper-appendix", "view_diff")
    assert step2.startswith('Now ground the object difference/change : "D" with bounding box')
    _, step2 = _texts("paper-appendix", "object_tracking")
    assert step2.startswith("Now ground the target moving object D with bounding box")
    step1, _ = _texts("paper-appendix", "refer_grounding")
    assert step1 == "Watch carefully and briefly describe the object in the Image-1."
    grp = load_prompts("cot", "paper-appendix", "group_grounding")
    assert grp.render("step1", example_variables("Q.", 3)).text == (
        "Q. Just recognize and tell me which image is it in. Answer from: Image1 | Image2 | Image3."
    )


def test_a_question_without_the_reference_box_is_a_config_error_not_a_made_up_box():
    prompts = load_prompts("cot", "paper-appendix", "correspondence")
    ex = make_example("correspondence", n_images=2, question="Find the matching area. ")
    with pytest.raises(PromptError, match=r"\{question_box\}"):
        prompts.render("step1", step1_variables(ex, prompts, "paper"))
    reasoner = ScriptedReasoner(["the handle"])
    graph = build_cot_graph(
        reasoner,
        ScriptedGrounder({ex.images[1]: [candidate(0.1, 0.1, 0.5, 0.5)]}),
        config=CoTConfig(mode="paper", prompt_variant="paper-appendix"),
    )
    pred = run_example(graph, ex)
    assert pred.box is None and pred.error is not None
    assert pred.error.category.value == "config_error" and "question_box" in pred.error.message
    assert reasoner.requests == []  # nothing was sent


def test_paper_mode_runs_the_appendix_variant_end_to_end():
    ex = make_example("multi_view", n_images=3, target=1)
    reasoner = ScriptedReasoner(["a red mug."])
    grounder = ScriptedGrounder({ex.images[1]: [candidate(0.1, 0.1, 0.5, 0.5)]})
    graph = build_cot_graph(
        reasoner, grounder, config=CoTConfig(mode="paper", prompt_variant="paper-appendix")
    )
    pred = run_example(graph, ex)
    assert pred.box is not None and pred.image_index == 1
    assert pred.prompt_variant == "paper-appendix" and pred.prompt_hash
    assert "(451,265),(519,388)" in reasoner.requests[0].prompt
    assert grounder.requests[0].prompt.startswith(
        "Locate and ground the object <|object_ref_start|>a red mug<|object_ref_end|>"
    )
