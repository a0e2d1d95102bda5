"""CoT graph logic with scripted models: every branch of the graph, recorded in the trace."""

from __future__ import annotations

import json

import pytest
from scripted_models import (
    RaisingAdapter,
    ScriptedGrounder,
    ScriptedReasoner,
    candidate,
    make_example,
)

from cot_ground.graph import CoTConfig, build_cot_graph, initial_state, run_example
from cot_ground.images import ImageLoadError
from cot_ground.prompts import PromptError, load_prompts
from cot_ground.records import ErrorCategory, ParseStatus, Prediction, text_hash

BOX = candidate(0.2, 0.3, 0.6, 0.7)


def nodes(pred: Prediction) -> list[str]:
    return [s.node for s in pred.trace]


def run(reasoner, grounder, example, **config):
    graph = build_cot_graph(reasoner, grounder, config=CoTConfig(**config))
    return run_example(graph, example)


def test_success_records_prompt_candidates_and_timing():
    ex = make_example(n_images=3, target=1)
    reasoner = ScriptedReasoner(['{"image": 2, "description": "the white truck"}'])
    grounder = ScriptedGrounder({ex.images[1]: [BOX, candidate(0, 0, 0.1, 0.1, 0.2)]})
    pred = run(reasoner, grounder, ex)

    assert pred.status is ParseStatus.OK and pred.error is None
    assert pred.box == BOX.box and pred.image_index == 1
    assert pred.pipeline == "cot-agent-structured" and pred.prompt_variant == "structured"
    assert nodes(pred) == ["select_and_describe", "parse_selection", "ground", "finalize"]
    step1, parse, ground, _ = pred.trace
    assert step1.prompt == reasoner.requests[0].prompt and ex.question in step1.prompt
    assert pred.prompt_hash == step1.prompt_hash == text_hash(step1.prompt)
    assert step1.images == ex.images and step1.settings == {"scripted": True}
    assert parse.parsed["description"] == "the white truck" and parse.parsed["step2_image"] == 1
    assert ground.candidates[0].box == BOX.box and len(ground.candidates) == 2
    assert ground.prompt == "the white truck" and ground.images == [ex.images[1]]
    request = grounder.requests[0]
    assert request.task == "group_grounding" and request.phrase == "the white truck"
    assert set(pred.timing) == {*nodes(pred), "total"}
    json.dumps(pred.model_dump(mode="json"))  # plain JSON


def test_unparseable_then_successful_retry_sends_reformat_prompt():
    ex = make_example(n_images=3)
    reasoner = ScriptedReasoner(
        ["hmm, hard to say", '```json\n{"image": 3, "description": "a truck"}\n```']
    )
    grounder = ScriptedGrounder({ex.images[2]: [BOX]})
    pred = run(reasoner, grounder, ex)

    assert pred.status is ParseStatus.OK and pred.image_index == 2
    assert nodes(pred) == [
        "select_and_describe", "parse_selection",
        "select_and_describe", "parse_selection", "ground", "finalize",
    ]  # fmt: skip
    first, retry = reasoner.requests
    assert retry.prompt.startswith(first.prompt) and "hmm, hard to say" in retry.prompt
    assert pred.trace[1].parsed["next"] == "retry"
    assert pred.trace[2].attempt == 1 and pred.trace[2].parsed["template"] == "reformat"
    assert pred.prompt_hash == text_hash(first.prompt)  # the first prompt is the one recorded


@pytest.mark.parametrize("max_retries", [0, 1, 2])
def test_unparseable_every_time_is_a_format_failure(max_retries):
    ex = make_example()
    reasoner = ScriptedReasoner(["no idea"])
    grounder = ScriptedGrounder({})
    pred = run(reasoner, grounder, ex, max_retries=max_retries)

    assert len(reasoner.requests) == max_retries + 1 and grounder.requests == []
    assert pred.status is ParseStatus.MALFORMED and pred.box is None
    assert pred.error.category is ErrorCategory.FORMAT and "no idea" in pred.error.message
    assert nodes(pred)[-2:] == ["parse_selection", "finalize"]


def test_grounder_finds_nothing_then_fallbacks_in_order():
    ex = make_example(n_images=3)
    reasoner = ScriptedReasoner(['{"image": 2, "description": "a truck"}'])
    grounder = ScriptedGrounder({ex.images[0]: [BOX]})  # nothing on the chosen image 2
    second = ScriptedGrounder({}, name="second-grounder")
    graph = build_cot_graph(
        reasoner,
        grounder,
        fallback_grounder=second,
        config=CoTConfig(fallbacks=["mllm-grounder", "next-image"]),
    )
    pred = run_example(graph, ex)

    assert pred.fallbacks == ["mllm-grounder", "next-image"]
    assert pred.box == BOX.box and pred.image_index == 0 and pred.error is None
    assert nodes(pred) == [
        "select_and_describe", "parse_selection", "ground", "fallback", "fallback", "finalize",
    ]  # fmt: skip
    assert second.requests[0].image == ex.images[1]
    assert [s.parsed["policy"] for s in pred.trace if s.node == "fallback"] == [
        "mllm-grounder",
        "next-image",
    ]


def test_no_box_anywhere_is_recorded():
    ex = make_example(n_images=2)
    reasoner = ScriptedReasoner(['{"image": 1, "description": "a truck"}'])
    pred = run(reasoner, ScriptedGrounder({}), ex, fallbacks=["next-image", "next-image"])

    assert pred.box is None and pred.status is ParseStatus.NO_BOX
    assert pred.error.category is ErrorCategory.NO_BOX and "a truck" in pred.error.message
    # the second next-image has no untried image left: recorded as skipped, not taken
    assert pred.fallbacks == ["next-image"]
    assert pred.trace[-2].parsed["skipped"] == "every image has been tried"


def test_image_index_out_of_range_is_a_recorded_error():
    ex = make_example(n_images=2)
    grounder = ScriptedGrounder({})
    pred = run(ScriptedReasoner(['{"image": 7, "description": "a truck"}']), grounder, ex)

    assert pred.error.category is ErrorCategory.INDEX and "image 7" in pred.error.message
    assert pred.box is None and grounder.requests == []
    assert nodes(pred) == ["select_and_describe", "parse_selection", "finalize"]


def test_oracle_image_and_agent_take_different_images():
    ex = make_example(n_images=3, target=2)
    answer = ['{"image": 1, "description": "a truck"}']
    grounder = ScriptedGrounder({ex.images[0]: [BOX], ex.images[2]: [BOX]})
    agent = run(ScriptedReasoner(answer), grounder, ex, mode="agent")
    oracle = run(ScriptedReasoner(answer), grounder, ex, mode="oracle-image")

    assert agent.image_index == 0 and oracle.image_index == 2
    assert [r.image for r in grounder.requests] == [ex.images[0], ex.images[2]]
    assert agent.prompt_hash == oracle.prompt_hash  # step 1 is the same in both modes
    assert oracle.trace[1].parsed["image_index"] == 0  # step 1's own choice stays recorded
    assert oracle.trace[1].parsed["step2_rule"] == "oracle"


@pytest.mark.parametrize(
    "answer",
    [
        '{"image": null, "description": "the motion-blurred clock"}',
        '{"description": "the motion-blurred clock"}',
        "The motion-blurred clock on the wall.",
    ],
)
def test_oracle_image_grounds_a_description_when_step1_names_no_image(answer):
    ex = make_example(n_images=3, target=2)
    grounder = ScriptedGrounder({ex.images[2]: [BOX]})
    oracle = run(ScriptedReasoner([answer]), grounder, ex, mode="oracle-image", max_retries=2)
    agent = run(ScriptedReasoner([answer]), ScriptedGrounder({}), ex, mode="agent", max_retries=0)

    assert oracle.status is ParseStatus.OK and oracle.error is None
    assert oracle.image_index == 2 and oracle.box == BOX.box
    assert "motion-blurred clock" in grounder.requests[0].phrase
    assert nodes(oracle) == ["select_and_describe", "parse_selection", "ground", "finalize"]
    parse = oracle.trace[1].parsed  # the reasoner named no image: recorded, not retried
    assert parse["image_named"] is False and parse["image_index"] is None
    assert parse["status"] != "ok" and parse["step2_rule"] == "oracle"
    assert agent.error.category is ErrorCategory.FORMAT  # agent mode still needs the choice


@pytest.mark.parametrize(
    "answer", ['{"image": null, "description": ""}', '{"image": null}', '{"image": "none"}']
)
def test_oracle_image_without_a_usable_description_is_still_a_format_failure(answer):
    ex = make_example(n_images=3, target=2)
    grounder = ScriptedGrounder({ex.images[2]: [BOX]})
    pred = run(ScriptedReasoner([answer]), grounder, ex, mode="oracle-image", max_retries=0)

    assert pred.error.category is ErrorCategory.FORMAT and pred.status is ParseStatus.MALFORMED
    assert grounder.requests == [] and "image_named" not in pred.trace[1].parsed


def test_oracle_image_needs_no_choice_from_an_image_only_answer():
    # paper variant, group_grounding: step 1 answers only an image, the phrase is the question's
    ex = make_example("group_grounding", n_images=3, target=2)
    grounder = ScriptedGrounder({ex.images[2]: [BOX]})
    pred = run(
        ScriptedReasoner(["I cannot tell."]), grounder, ex, mode="oracle-image",
        prompt_variant="paper", max_retries=0,
    )  # fmt: skip
    assert pred.status is ParseStatus.OK and pred.image_index == 2 and pred.box == BOX.box
    assert pred.trace[1].parsed["image_named"] is False and len(grounder.requests) == 1


def test_paper_mode_sends_the_step1_prompt_not_the_question():
    ex = make_example("diff", n_images=2, target=1)
    reasoner = ScriptedReasoner(["The red car."])
    grounder = ScriptedGrounder({ex.images[1]: [BOX]})
    pred = run(reasoner, grounder, ex, mode="paper", prompt_variant="paper")

    expected = load_prompts("cot", "paper", "diff").fields["step1"]
    assert reasoner.requests[0].prompt == expected == pred.trace[0].prompt
    assert ex.question not in pred.trace[0].prompt
    assert (
        grounder.requests[0].phrase == "The red car" and "Format" not in grounder.requests[0].phrase
    )
    assert grounder.requests[0].image == ex.images[1] and pred.image_index == 1
    assert grounder.requests[0].reference_image == ex.images[0]  # diff: the other image


class PromptingGrounder(ScriptedGrounder):
    """A grounder that sends a text prompt, like qwen-vl-grounder: the request's, else its own."""

    def prompt(self, request):
        return request.prompt if request.prompt is not None else f"<template> {request.phrase}"


def test_paper_step2_prompt_reaches_a_prompting_grounder_and_the_trace():
    ex = make_example("diff", n_images=2, target=1)
    grounder = PromptingGrounder({ex.images[1]: [BOX]})
    pred = run(
        ScriptedReasoner(["The red car."]), grounder, ex, mode="paper", prompt_variant="paper"
    )

    expected = (
        "According to the object difference/change: The red car, please ground this difference "
        "with bounding box coordinates. Format:<|box_start|>(x1,y1),(x2,y2)<|box_end|>. "
        "Don't generate additional words."
    )
    request = grounder.requests[0]
    assert request.prompt == expected and request.phrase == "The red car"
    parse, ground = pred.trace[1], pred.trace[2]
    assert parse.parsed["step2_prompt"] == expected
    assert ground.prompt == expected and ground.prompt_hash == text_hash(expected)

    # group grounding: the phrase is the tagged one, the step-2 prompt the whole question
    ex = make_example("group_grounding", n_images=3, target=1)
    grounder = PromptingGrounder({ex.images[1]: [BOX]})
    run(ScriptedReasoner(["Image2"]), grounder, ex, mode="paper", prompt_variant="paper")
    request = grounder.requests[0]
    assert request.phrase == "a white truck with a crane on top"
    assert request.prompt.startswith(ex.question) and request.prompt.count("Format:") == 1


def test_variant_without_step2_leaves_the_grounder_template():
    ex = make_example(n_images=3, target=1)
    grounder = PromptingGrounder({ex.images[1]: [BOX]})
    pred = run(ScriptedReasoner(['{"image": 2, "description": "a truck"}']), grounder, ex)

    assert grounder.requests[0].prompt is None and pred.trace[1].parsed["step2_prompt"] is None
    assert pred.trace[2].prompt == "<template> a truck"


def test_paper_mode_falls_back_to_the_first_image_and_agent_mode_fails_honestly():
    ex = make_example("group_grounding", n_images=4, target=2)
    grounder = ScriptedGrounder({p: [BOX] for p in ex.images})
    pred = run(
        ScriptedReasoner(["I cannot tell."]), grounder, ex, mode="paper", prompt_variant="paper"
    )
    # the paper's appendix: an unreadable image choice sends the first image, recorded
    assert pred.error is None and pred.image_index == 0 and pred.box == BOX.box
    assert pred.fallbacks == ["paper-first-image"]
    parses = [s for s in pred.trace if s.node == "parse_selection"]
    assert parses[-1].parsed["fallback"] == "paper-first-image"
    assert parses[-1].parsed["step2_rule"] == "paper:paper-first-image"
    assert parses[-1].parsed["status"] == "no_box"  # the failure itself stays visible
    assert grounder.requests[-1].image == ex.images[0]

    agent = ScriptedGrounder({p: [BOX] for p in ex.images})
    pred = run(ScriptedReasoner(["I cannot tell."]), agent, ex, mode="agent")
    assert pred.error.category is ErrorCategory.FORMAT and pred.image_index is None
    assert pred.fallbacks == [] and agent.requests == []

    pred = run(ScriptedReasoner(["Image3"]), grounder, ex, mode="paper", prompt_variant="paper")
    assert pred.image_index == 2 and "Image1 | Image2 | Image3 | Image4." in pred.trace[0].prompt
    assert grounder.requests[-1].phrase == "a white truck with a crane on top"
    assert pred.fallbacks == []


def test_paper_mode_grounds_in_the_image_the_question_names():
    named = "Compare these two images carefully and give me the coordinates of their difference "
    ex = make_example("diff", n_images=2, target=0, question=named + "in the 1th image. ")
    ex = ex.model_copy(update={"target_rule": "question_ordinal"})
    grounder = ScriptedGrounder({p: [BOX] for p in ex.images})
    pred = run(ScriptedReasoner(["a red car"]), grounder, ex, mode="paper", prompt_variant="paper")
    assert pred.image_index == 0 and grounder.requests[0].image == ex.images[0]
    assert pred.trace[1].parsed["step2_rule"] == "paper:question"

    # a question that names no image keeps the public script's fixed image
    plain = make_example("diff", n_images=2, target=1)
    plain = plain.model_copy(update={"target_rule": "default_second_image"})
    pred = run(ScriptedReasoner(["a red car"]), grounder, plain, mode="paper",
               prompt_variant="paper")  # fmt: skip
    assert pred.image_index == 1 and pred.trace[1].parsed["step2_rule"] == "paper:image2"


def test_step2_gets_the_cleaned_description_and_the_trace_keeps_the_raw_text():
    ex = make_example("diff", n_images=2, target=1)
    raw = "<|object_ref_start|>the red car<|object_ref_end|><|box_start|>(1,2),(3,4)<|box_end|>"
    grounder = ScriptedGrounder({p: [BOX] for p in ex.images})
    pred = run(ScriptedReasoner([raw]), grounder, ex, mode="paper", prompt_variant="paper")
    assert pred.trace[0].raw_output == raw
    assert grounder.requests[0].phrase == "the red car"
    assert "<|" not in grounder.requests[0].prompt.split("Format:")[0]

    structured = '{"image": 2, "description": "<|object_ref_start|>a cup<|object_ref_end|>"}'
    grounder = ScriptedGrounder({p: [BOX] for p in ex.images})
    pred = run(ScriptedReasoner([structured]), grounder, ex)
    assert grounder.requests[0].phrase == "a cup" and pred.trace[0].raw_output == structured


def test_each_prediction_records_what_can_change_its_figure():
    class Sized(ScriptedReasoner):
        def __init__(self, answers):
            super().__init__(answers)
            self.settings = {"max_new_tokens": 128, "do_sample": False, "path": "/m"}

    ex = make_example(n_images=3, target=1)
    grounder = ScriptedGrounder({ex.images[1]: [BOX]})
    grounder.settings = {"max_new_tokens": 128, "unit_floats": "fraction"}
    pred = run(Sized(['{"image": 2, "description": "a truck"}']), grounder, ex)
    assert pred.settings == {
        "mode": "agent",
        "image_reader": "mentions-3",
        "step1": {"max_new_tokens": 128, "do_sample": False},
        "step2": {"max_new_tokens": 128, "unit_floats": "fraction"},
    }


def test_paper_region_and_multi_view_references():
    region = make_example("region", n_images=3, target=0)
    grounder = ScriptedGrounder({region.images[0]: [BOX]})
    pred = run(ScriptedReasoner(["a dog"]), grounder, region, mode="paper", prompt_variant="paper")
    assert "the 2th picture" in pred.trace[0].prompt
    assert grounder.requests[0].image == region.images[0]
    assert grounder.requests[0].reference_image == region.images[1]

    mview = make_example("multi_view", n_images=3, target=1)
    grounder = ScriptedGrounder({mview.images[1]: [BOX]})
    pred = run(ScriptedReasoner(["a mug"]), grounder, mview, mode="paper", prompt_variant="paper")
    request = grounder.requests[0]
    assert request.image == mview.images[1] and request.reference_image == mview.images[0]
    assert request.reference_box.to_list() == pytest.approx([0.451, 0.265, 0.519, 0.388])


def test_agent_mode_with_a_description_only_variant_is_a_config_error():
    pred = run(ScriptedReasoner(["a truck"]), ScriptedGrounder({}), make_example("diff", 2),
               prompt_variant="paper")  # fmt: skip
    assert pred.error.category is ErrorCategory.CONFIG and "'paper'" in pred.error.message


@pytest.mark.parametrize(
    ("exc", "category"),
    [(ImageLoadError("image not found: /x.png"), ErrorCategory.IMAGE),
     (RuntimeError("CUDA out of memory"), ErrorCategory.MODEL)],
)  # fmt: skip
def test_adapter_exceptions_end_the_example_cleanly(exc, category):
    ex = make_example()
    pred = run(RaisingAdapter(exc), ScriptedGrounder({}), ex)
    assert pred.error.category is category and str(exc) in pred.error.message
    assert nodes(pred) == ["select_and_describe", "finalize"]
    assert pred.trace[0].error.category is category

    reasoner = ScriptedReasoner(['{"image": 1, "description": "a truck"}'])
    pred = run(reasoner, RaisingAdapter(exc), ex, fallbacks=["next-image"])
    assert pred.error.category is category and pred.error.node == "ground"
    assert nodes(pred)[-2:] == ["ground", "finalize"]


def test_stream_updates_node_by_node():
    ex = make_example(n_images=2)
    reasoner = ScriptedReasoner(['{"image": 2, "description": "a truck"}'])
    graph = build_cot_graph(reasoner, ScriptedGrounder({ex.images[1]: [BOX]}))
    updates = list(graph.stream(initial_state(ex), stream_mode="updates"))
    assert [next(iter(u)) for u in updates] == [
        "select_and_describe", "parse_selection", "ground", "finalize",
    ]  # fmt: skip
    assert updates[-1]["finalize"]["prediction"]["box"] == BOX.box.model_dump()


def test_batch_across_threads_keeps_examples_apart():
    examples = [make_example(n_images=3, folder=f"/data/{k}") for k in range(6)]

    def answer(request):  # the chosen image depends on the example
        k = int(request.images[0].split("/")[2])
        return json.dumps({"image": k % 3 + 1, "description": f"thing {k}"})

    boxes = {
        ex.images[k % 3]: [candidate(0.1 * k, 0, 0.1 * k + 0.05, 0.5)]
        for k, ex in enumerate(examples)
    }
    graph = build_cot_graph(ScriptedReasoner(answer), ScriptedGrounder(boxes))
    finals = graph.batch([initial_state(ex) for ex in examples], config={"max_concurrency": 4})
    for k, (ex, final) in enumerate(zip(examples, finals, strict=True)):
        pred = Prediction.model_validate(final["prediction"])
        assert pred.example_id == ex.id and pred.image_index == k % 3
        assert pred.trace[2].prompt == f"thing {k}"


def test_build_errors_name_the_problem():
    reasoner, grounder = ScriptedReasoner(["x"]), ScriptedGrounder({})
    with pytest.raises(ValueError, match="mllm-grounder"):
        build_cot_graph(reasoner, grounder, config=CoTConfig(fallbacks=["mllm-grounder"]))
    with pytest.raises(PromptError, match="nonexistent"):
        build_cot_graph(reasoner, grounder, config=CoTConfig(prompt_variant="nonexistent"))
    with pytest.raises(TypeError, match="Reasoner"):
        build_cot_graph(grounder, grounder)
    with pytest.raises(ValueError):
        CoTConfig(fallbacks=["pray"])


def test_new_variant_from_files_only_and_missing_task_file(tmp_path):
    variant = tmp_path / "cot" / "mine"
    variant.mkdir(parents=True)
    (variant / "_all.yaml").write_text(
        "answer: image_and_description\nreformat: '{step1} Again, as JSON.'\n"
    )
    (variant / "diff.yaml").write_text(
        "step1: 'Which of {n_images} images differs? JSON please.'\n"
    )
    config = {"prompt_variant": "mine", "prompts_dir": str(tmp_path)}
    ex = make_example("diff", 2)
    reasoner = ScriptedReasoner(['{"image": 2, "description": "a car"}'])
    pred = run(reasoner, ScriptedGrounder({ex.images[1]: [BOX]}), ex, **config)
    assert pred.status is ParseStatus.OK and pred.prompt_variant == "mine"
    assert reasoner.requests[0].prompt == "Which of 2 images differs? JSON please."

    pred = run(reasoner, ScriptedGrounder({}), make_example("region", 3), **config)
    assert pred.error.category is ErrorCategory.CONFIG
    assert str(variant / "region.yaml") in pred.error.message


def test_a_run_context_replaces_the_build_config_and_is_checked():
    ex = make_example(n_images=3, target=1)
    reasoner = ScriptedReasoner(['{"image": 2, "description": "the white truck"}'])
    grounder = ScriptedGrounder({ex.images[1]: [BOX]})
    graph = build_cot_graph(reasoner, grounder)  # built with the default config (agent)
    pred = run_example(graph, ex, context=CoTConfig(mode="oracle-image", max_retries=0))
    assert pred.pipeline == "cot-oracle-image-structured" and pred.image_index == 1
    assert pred.settings["mode"] == "oracle-image" and pred.box == BOX.box
    assert run_example(graph, ex).pipeline == "cot-agent-structured"  # no context: as built
    with pytest.raises(ValueError, match="mllm-grounder"):
        run_example(graph, ex, context={"fallbacks": ["mllm-grounder"]})
