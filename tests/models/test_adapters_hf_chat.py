"""The generic multi-image chat adapter on tiny random-weight InternVL, LLaVA-OneVision and
Idefics3 checkpoints (CPU, offline), and the per-family box syntax table."""

from __future__ import annotations

from pathlib import Path

import pytest
from adapter_checks import assert_batched_reasoning_is_one_at_a_time
from noise_pictures import noise_pictures

from cot_ground.models.base import (
    ChatRequest,
    EndToEndGrounder,
    Grounder,
    GroundRequest,
    ModelLoadError,
    Reasoner,
)
from cot_ground.models.box_syntax import BOX_SYNTAX, box_syntax
from cot_ground.models.registry import build
from cot_ground.models.settings import ModelSettings
from cot_ground.records import ParseStatus

FAMILIES = ("internvl", "llava_onevision", "idefics3")
IMAGE_TOKEN = {"internvl": "<IMG_CONTEXT>", "llava_onevision": "<image>", "idefics3": "<image>"}


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Noise pictures: three of different sizes, then two of the same size."""
    return noise_pictures(
        tmp_path_factory.mktemp("chat-images"),
        [(60, 40), (40, 80), (50, 50), (48, 48), (48, 48)],
        seed=1,
    )


def _settings(path: Path, **kw: object) -> ModelSettings:
    return ModelSettings(
        path=str(path), device="cpu", max_new_tokens=kw.pop("max_new_tokens", 6), **kw
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_reasoner_builds_by_name_and_renders_every_image(tiny_chat_paths, images, family):
    reasoner = build("hf-chat-reasoner", _settings(tiny_chat_paths[family]))
    assert isinstance(reasoner, Reasoner)
    assert reasoner.settings["family"] == family and reasoner.settings["chat_template_hash"]
    runner = reasoner.runner
    text = runner.chat_text(3, "Which image shows the cat?")
    assert text.count(IMAGE_TOKEN[family]) == 3
    assert text.index("Which image shows the cat?") > text.rindex(IMAGE_TOKEN[family])
    # same-size pictures: three images give 3/2 the image tokens of two, in each batch row
    inputs = runner.encode([(images[3:5], "two"), (images[3:5] + images[3:4], "three")])
    token_id = runner.processor.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN[family])
    two, three = (inputs["input_ids"] == token_id).sum(-1).tolist()
    assert two > 0 and 2 * three == 3 * two
    assert inputs["attention_mask"][0, 0] == 0 and inputs["attention_mask"][:, -1].all()


@pytest.mark.parametrize("family", FAMILIES)
def test_batched_greedy_generation_equals_one_at_a_time(tiny_chat_paths, images, family):
    reasoner = build("hf-chat-reasoner", _settings(tiny_chat_paths[family], max_new_tokens=8))
    assert_batched_reasoning_is_one_at_a_time(reasoner, images[:3])


def _force(runner, answers: list[str]):
    """A ``prefix_allowed_tokens_fn`` making row ``i`` of one batch generate ``answers[i]``."""
    tokenizer = runner.processor.tokenizer
    targets = [tokenizer.encode(a, add_special_tokens=False) for a in answers]
    eos = runner.model.generation_config.eos_token_id
    eos = eos[0] if isinstance(eos, list) else eos
    start: list[int] = []

    def allowed(batch_id: int, input_ids) -> list[int]:
        if not start:
            start.append(input_ids.shape[-1])
        step = input_ids.shape[-1] - start[0]
        target = targets[batch_id]
        return [target[step]] if step < len(target) else [eos]

    return allowed


def _constrain(monkeypatch, runner, answers: list[str]) -> None:
    kwargs = {**runner.generate_kwargs, "prefix_allowed_tokens_fn": _force(runner, answers)}
    monkeypatch.setattr(runner, "generate_kwargs", kwargs)


def test_internvl_grounder_reads_its_box_syntax_in_its_frame(tiny_chat_paths, images, monkeypatch):
    grounder = build("hf-chat-grounder", _settings(tiny_chat_paths["internvl"], max_new_tokens=40))
    assert isinstance(grounder, Grounder) and grounder.settings["frame"].startswith("internvl1000")
    request = GroundRequest(image=images[0], phrase="the red car")
    assert grounder.prompt(request).endswith("<ref>the red car</ref>")
    answers = ["<ref>car</ref><box>[[100, 200, 300, 400]]</box>", "<box>[[0, 0, 1000, 500]]</box>"]
    kwargs = {
        **grounder.runner.generate_kwargs,
        "prefix_allowed_tokens_fn": _force(grounder.runner, answers),
    }
    monkeypatch.setattr(grounder.runner, "generate_kwargs", kwargs)
    results = grounder.ground([request, GroundRequest(image=images[1], phrase="sky")])
    assert [r.raw_text for r in results] == answers
    assert results[0].candidates[0].box.to_list() == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert results[1].candidates[0].box.to_list() == pytest.approx([0.0, 0.0, 1.0, 0.5])
    assert all(r.status is ParseStatus.OK for r in results)


def test_internvl_end_to_end_names_image_and_box(tiny_chat_paths, images, monkeypatch):
    model = build("hf-chat-e2e", _settings(tiny_chat_paths["internvl"], max_new_tokens=40))
    assert isinstance(model, EndToEndGrounder)
    answer = "It is in the second image. <box>[[250, 500, 750, 1000]]</box>"
    kwargs = {
        **model.runner.generate_kwargs,
        "prefix_allowed_tokens_fn": _force(model.runner, [answer]),
    }
    monkeypatch.setattr(model.runner, "generate_kwargs", kwargs)
    (result,) = model.predict([ChatRequest(images=images[:2], prompt="Where is the cat?")])
    assert result.raw_text == answer and result.image_index == 1
    assert result.box is not None and result.box.to_list() == pytest.approx([0.25, 0.5, 0.75, 1.0])


@pytest.mark.parametrize("family", ["llava_onevision", "idefics3"])
def test_families_without_a_stated_box_syntax_are_refused_as_grounders(
    tiny_chat_paths, family, monkeypatch
):
    from cot_ground.models import hf_chat

    def no_loading(*args, **kwargs):
        raise AssertionError("weights loaded before the refusal")

    monkeypatch.setattr(hf_chat, "load_weights", no_loading)  # refused before any weights load
    for name in ("hf-chat-grounder", "hf-chat-e2e"):
        with pytest.raises(ModelLoadError, match=f"{family}.*no stated box syntax"):
            build(name, _settings(tiny_chat_paths[family]))


def test_a_checkpoint_without_chat_template_is_refused(tiny_chat_paths, tmp_path):
    import shutil

    folder = tmp_path / "no-template"
    shutil.copytree(tiny_chat_paths["internvl"], folder)
    for name in ("chat_template.jinja", "chat_template.json"):
        (folder / name).unlink(missing_ok=True)
    for name in ("tokenizer_config.json", "processor_config.json"):
        path = folder / name
        if path.is_file():
            import json

            data = json.loads(path.read_text())
            data.pop("chat_template", None)
            path.write_text(json.dumps(data))
    with pytest.raises(ModelLoadError, match="chat template"):
        build("hf-chat-reasoner", _settings(folder))


# ----------------------------------------------------------------- the box-syntax table
@pytest.mark.parametrize(
    ("family", "text", "expected"),
    [
        ("internvl", "<ref>a cat</ref><box>[[100, 250, 500, 1000]]</box>", [0.1, 0.25, 0.5, 1.0]),
        ("internvl", "<box>[[0,0,1000,1000]]</box>", [0.0, 0.0, 1.0, 1.0]),
        ("florence2", "cat<loc_0><loc_100><loc_499><loc_999>", [0.0005, 0.1005, 0.4995, 0.9995]),
        # PaliGemma states y first on a 1024 grid
        ("paligemma", "<loc0256><loc0512><loc0768><loc1023> cat", [0.5, 0.25, 1023 / 1024, 0.75]),
    ],
)
def test_each_family_frame_converts_as_stated(family, text, expected):
    boxes, status = BOX_SYNTAX[family].parse(text)
    assert status is ParseStatus.OK
    assert boxes[0].to_list() == pytest.approx(expected)


@pytest.mark.parametrize(
    ("family", "text", "status", "n"),
    [
        ("internvl", "<box>[[1, 2, 3, 4], [5, 6, 7, 8]]</box>", ParseStatus.SEVERAL_BOXES, 2),
        ("internvl", "<box>[[1, 2, 3]]</box>", ParseStatus.MALFORMED, 0),
        ("internvl", "[100, 200, 300, 400]", ParseStatus.NO_BOX, 0),  # no <box>: not its syntax
        ("internvl", "a cat at 100 200 300 400", ParseStatus.NO_BOX, 0),
        ("florence2", "cat<loc_1><loc_2><loc_3>", ParseStatus.NO_BOX, 0),
        (
            "florence2",
            "a<loc_1><loc_2><loc_3><loc_4>b<loc_5><loc_6><loc_7><loc_8>",
            ParseStatus.SEVERAL_BOXES,
            2,
        ),
        ("paligemma", "<loc12><loc0034><loc0056><loc0078>", ParseStatus.MALFORMED, 0),
        ("paligemma", "detect cat", ParseStatus.NO_BOX, 0),
    ],
)
def test_box_syntax_degrades_to_a_status_never_a_made_up_box(family, text, status, n):
    boxes, got = BOX_SYNTAX[family].parse(text)
    assert got is status and len(boxes) == n


def test_families_without_an_entry_state_no_boxes():
    assert box_syntax("llava_onevision") is None and box_syntax("idefics3") is None
    assert all("{phrase}" in s.ground_prompt for s in BOX_SYNTAX.values())


# ----------------------------------------------------------------- PaliGemma (prompt family)
@pytest.fixture(scope="module")
def paligemma(tiny_models_root: Path) -> Path:
    from cot_ground.testing.tiny_chat_models import build_tiny_chat_model

    return build_tiny_chat_model(tiny_models_root / "paligemma", "paligemma")


def test_paligemma_grounds_with_y_first_location_tokens(paligemma, images, monkeypatch):
    grounder = build("hf-chat-grounder", _settings(paligemma, max_new_tokens=12))
    assert grounder.settings["chat_template_hash"] is None
    assert grounder.settings["frame"].startswith("paligemma1024")
    request = GroundRequest(image=images[0], phrase="red car")
    assert grounder.prompt(request) == "detect red car"
    text = grounder.runner.chat_text(1, "detect red car")
    assert text == grounder.runner.processor.image_token + "detect red car"
    requests = [request, GroundRequest(image=images[1], phrase="a dog")]
    batched = grounder.ground(requests)
    assert [r.raw_text for r in batched] == [grounder.ground([r])[0].raw_text for r in requests]
    answers = [
        "<loc0256><loc0512><loc0768><loc1023> red car",
        "<loc0000><loc0000><loc0512><loc0512>",
    ]
    _constrain(monkeypatch, grounder.runner, answers)
    first, second = grounder.ground(requests)
    assert first.raw_text == answers[0] and second.raw_text == answers[1]
    # y1 x1 y2 x2 on a 1024 grid → x1 y1 x2 y2 in the unit frame
    assert first.candidates[0].box.to_list() == pytest.approx([0.5, 0.25, 1023 / 1024, 0.75])
    assert second.candidates[0].box.to_list() == pytest.approx([0.0, 0.0, 0.5, 0.5])


def test_paligemma_is_a_grounder_only(paligemma, monkeypatch):
    from cot_ground.models import hf_chat

    def no_loading(*args, **kwargs):
        raise AssertionError("weights loaded before the refusal")

    monkeypatch.setattr(hf_chat, "load_weights", no_loading)  # refused before any weights load
    for name in ("hf-chat-reasoner", "hf-chat-e2e"):
        with pytest.raises(ModelLoadError, match="raw prompt, not a chat"):
            build(name, _settings(paligemma))
