"""MM-GroundingDINO, OWLv2 and Florence-2 grounders on tiny random-weight checkpoints
(CPU, offline), loaded by name through the registry like real checkpoints."""

from __future__ import annotations

import pytest
from noise_pictures import noise_pictures

from cot_ground.models.base import Grounder, GroundRequest, ModelLoadError
from cot_ground.models.open_vocab import owlv2_query, square_to_image
from cot_ground.models.registry import build
from cot_ground.models.settings import ModelSettings
from cot_ground.records import ParseStatus

ADAPTERS = {"mm-gdino-hf": "mm_gdino", "owlv2": "owlv2", "florence2": "florence2"}
LONG_PHRASE = " ".join(["the small red car parked beside the old wooden fence"] * 13)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Noise pictures of three sizes (the first two the same size)."""
    return noise_pictures(
        tmp_path_factory.mktemp("grounder-images"), [(120, 80), (120, 80), (64, 128)], seed=2
    )


def _grounder(tiny_grounder_paths, name: str, **options: object):
    settings = ModelSettings(
        path=str(tiny_grounder_paths[ADAPTERS[name]]),
        device="cpu",
        max_new_tokens=12,
        options=dict(options),
    )
    return build(name, settings)


def _requests(images: list[str]) -> list[GroundRequest]:
    return [
        GroundRequest(image=images[0], phrase="The  Red car"),
        GroundRequest(image=images[2], phrase="a dog."),
        GroundRequest(image=images[1], phrase="person on the left"),
    ]


def _view(result) -> list:
    return [(c.box.to_list(), c.score, c.label) for c in result.candidates]


@pytest.mark.parametrize("name", list(ADAPTERS))
def test_grounders_build_by_name_and_batch_like_one_at_a_time(tiny_grounder_paths, images, name):
    grounder = _grounder(tiny_grounder_paths, name, batch_size=3)
    assert isinstance(grounder, Grounder)
    assert grounder.name == name and grounder.settings["adapter"] == name
    assert grounder.settings["frame"] and grounder.settings["device"] == "cpu"
    requests = _requests(images)
    batched = grounder.ground(requests)
    single = [grounder.ground([r])[0] for r in requests]
    assert len(batched) == 3
    for b, s in zip(batched, single, strict=True):
        assert b.raw_text == s.raw_text and b.status == s.status
        assert [(c.label, c.score) for c in b.candidates] == [
            (c.label, c.score if c.score is None else pytest.approx(c.score, abs=1e-5))
            for c in s.candidates
        ]
        for cb, cs in zip(b.candidates, s.candidates, strict=True):
            assert cb.box.to_list() == pytest.approx(cs.box.to_list(), abs=1e-5)


@pytest.mark.parametrize("name", ["mm-gdino-hf", "owlv2"])
def test_detectors_rank_scored_candidates_and_keep_the_best(tiny_grounder_paths, images, name):
    grounder = _grounder(tiny_grounder_paths, name, box_threshold=0.0, max_candidates=5)
    (result,) = grounder.ground([GroundRequest(image=images[2], phrase="a dog")])
    scores = [c.score for c in result.candidates]
    assert len(scores) == 5 and scores == sorted(scores, reverse=True)
    assert result.status is ParseStatus.OK
    assert all(c.box.in_unit_range for c in result.candidates)
    strict = _grounder(tiny_grounder_paths, name, box_threshold=1.5, top1_fallback=True)
    (best,) = strict.ground([GroundRequest(image=images[2], phrase="a dog")])
    assert len(best.candidates) == 1 and best.candidates[0].score == pytest.approx(scores[0])
    none = _grounder(tiny_grounder_paths, name, box_threshold=1.5, top1_fallback=False)
    (empty,) = none.ground([GroundRequest(image=images[2], phrase="a dog")])
    assert empty.candidates == [] and empty.status is ParseStatus.NO_BOX


def test_each_grounder_sends_its_phrase_form(tiny_grounder_paths, images):
    gdino, owl, florence = (_grounder(tiny_grounder_paths, n) for n in ADAPTERS)
    requests = _requests(images)[:2]
    assert [r.raw_text for r in gdino.ground(requests)] == ["the red car.", "a dog."]
    assert [r.raw_text for r in owl.ground(requests)] == ["The Red car", "a dog"]
    assert owlv2_query("  a   dog. ") == "a dog"
    assert florence.prompt(requests[0]) == "<CAPTION_TO_PHRASE_GROUNDING>The Red car"


@pytest.mark.parametrize("name", list(ADAPTERS))
def test_a_phrase_over_the_text_limit_is_cut_and_recorded(tiny_grounder_paths, images, name):
    grounder = _grounder(tiny_grounder_paths, name)
    short, long = grounder.ground(
        [
            GroundRequest(image=images[0], phrase="a dog"),
            GroundRequest(image=images[0], phrase=LONG_PHRASE),
        ]
    )
    assert "text_truncated" not in short.notes
    cut = long.notes["text_truncated"]
    assert cut["tokens"] > cut["kept"] > 0


def test_wrong_checkpoint_family_is_refused(tiny_grounder_paths, tiny_gdino_hf_path):
    with pytest.raises(ModelLoadError, match=r"mm-grounding-dino.*'grounding-dino'"):
        build("mm-gdino-hf", ModelSettings(path=str(tiny_gdino_hf_path), device="cpu"))
    with pytest.raises(ModelLoadError, match="needs model_type 'owlv2'"):
        build("owlv2", ModelSettings(path=str(tiny_grounder_paths["florence2"]), device="cpu"))


def test_owlv2_boxes_leave_the_padded_square_frame():
    # a 200 x 100 image is padded to a 200 x 200 square: y fractions double, x stay
    assert square_to_image([0.5, 0.25, 0.5, 0.5], (200, 100)) == [0.5, 0.5, 0.5, 1.0]
    assert square_to_image([0.25, 0.5, 0.5, 0.5], (100, 200)) == [0.5, 0.5, 1.0, 0.5]
    assert square_to_image([0.1, 0.2, 0.3, 0.4], (64, 64)) == [0.1, 0.2, 0.3, 0.4]


def test_florence2_location_tokens_convert_through_generate(
    tiny_grounder_paths, images, monkeypatch
):
    florence = _grounder(tiny_grounder_paths, "florence2")
    answer = "a red car<loc_100><loc_200><loc_300><loc_400>"
    tokenizer = florence.processor.tokenizer
    target = tokenizer(answer, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    start: list[int] = []

    def allowed(_batch: int, ids) -> list[int]:
        if not start:
            start.append(ids.shape[-1])
        step = ids.shape[-1] - start[0]
        return [target[step]] if step < len(target) else [eos]

    kwargs = {**florence.generate_kwargs, "prefix_allowed_tokens_fn": allowed}
    monkeypatch.setattr(florence, "generate_kwargs", {**kwargs, "max_new_tokens": 20})
    (result,) = florence.ground([GroundRequest(image=images[2], phrase="a red car")])
    assert result.raw_text.strip() == answer and result.status is ParseStatus.OK
    (cand,) = result.candidates
    assert cand.label == "a red car"
    assert cand.score == pytest.approx(1.0)  # every location token was forced
    assert cand.box.to_list() == pytest.approx([0.1005, 0.2005, 0.3005, 0.4005])
    # the same frame as transformers' own post-processor (integer pixels on a 64 x 128 image)
    done = florence.processor.post_process_generation(
        text=answer, task="<CAPTION_TO_PHRASE_GROUNDING>", image_size=(64, 128)
    )
    pixels = done["<CAPTION_TO_PHRASE_GROUNDING>"]["bboxes"][0]
    assert [int(v) for v in cand.box.to_pixels(64, 128)] == [int(v) for v in pixels]


def test_florence2_box_scores_average_the_four_location_tokens(tiny_grounder_paths):
    import math

    florence = _grounder(tiny_grounder_paths, "florence2")
    tokenizer = florence.processor.tokenizer
    loc = tokenizer.convert_tokens_to_ids([f"<loc_{i}>" for i in range(9)])
    word = tokenizer.convert_tokens_to_ids("a")
    ids = [word, *loc[:4], word, *loc[4:9]]  # a box, then five location tokens: one box
    logp = [-9.0, -1.0, -1.0, -1.0, -1.0, -9.0, -2.0, -2.0, -2.0, -2.0, -9.0]
    scores = florence.box_scores(ids, logp)
    assert scores == pytest.approx([math.exp(-1.0), math.exp(-2.0)])


def test_florence2_answers_degrade_to_a_status(tiny_grounder_paths):
    florence = _grounder(tiny_grounder_paths, "florence2")
    none = florence.result_from_text("</s><s>a red car</s>")
    assert none.candidates == [] and none.status is ParseStatus.NO_BOX
    two = florence.result_from_text(
        "<s>car<loc_1><loc_2><loc_3><loc_4>dog<loc_5><loc_6><loc_7><loc_8></s>"
    )
    assert [c.label for c in two.candidates] == ["car", "dog"]
    assert [c.score for c in two.candidates] == [None, None]  # no decoding scores given
    scored = florence.result_from_text("car<loc_1><loc_2><loc_3><loc_4>", [0.25])
    assert scored.candidates[0].score == 0.25
    assert two.status is ParseStatus.SEVERAL_BOXES
