"""GroundingDINO grounders (transformers and groundingdino-py) on tiny random-weight models."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from noise_pictures import noise_pictures

from cot_ground.images import ImageLoadError
from cot_ground.models.base import Grounder, GroundRequest, ModelLoadError
from cot_ground.models.detections import normalize_phrase, rank_candidates
from cot_ground.models.registry import build
from cot_ground.models.settings import ModelSettings
from cot_ground.records import ParseStatus


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Two noise pictures of one size and one of another."""
    return noise_pictures(
        tmp_path_factory.mktemp("gdino-images"), [(200, 120), (200, 120), (90, 150)], seed=1
    )


def _requests(images: list[str]) -> list[GroundRequest]:
    phrases = ["The Red car", "dog on the left side of the image", "a person."]
    return [GroundRequest(image=p, phrase=t) for p, t in zip(images, phrases, strict=True)]


def _hf(path: Path, **options: object) -> Grounder:
    return build("gdino-hf", ModelSettings(path=str(path), options=options))


def _py(files, **options: object) -> Grounder:
    opts = {"config_file": str(files.config), "bert_path": str(files.bert), "image_size": 64}
    return build("gdino-py", ModelSettings(path=str(files.checkpoint), options={**opts, **options}))


def test_phrase_normalization():
    assert normalize_phrase("  The Red   CAR ") == "the red car."
    assert normalize_phrase("a dog.") == "a dog."


def test_rank_candidates_threshold_and_top1_fallback():
    boxes = [[0.5, 0.5, 0.2, 0.2], [0.1, 0.1, 0.4, 0.4], [0.9, 0.9, 0.1, 0.1]]
    scores = [0.2, 0.6, 0.4]
    ranked = rank_candidates(
        scores, boxes, str, box_threshold=0.3, top1_fallback=True, max_candidates=10
    )
    assert [c.label for c in ranked] == ["1", "2"] and ranked[0].score == 0.6
    assert ranked[1].box.to_list() == pytest.approx([0.85, 0.85, 0.95, 0.95])
    assert ranked[0].box.to_list() == pytest.approx([0.0, 0.0, 0.3, 0.3])  # clipped at 0
    weak = rank_candidates(
        scores, boxes, str, box_threshold=0.9, top1_fallback=True, max_candidates=10
    )
    assert [c.label for c in weak] == ["1"]  # best box, not "no box"
    assert (
        rank_candidates(
            scores, boxes, str, box_threshold=0.9, top1_fallback=False, max_candidates=5
        )
        == []
    )


def test_hf_grounder_candidates_ranked_and_in_unit_frame(tiny_gdino_hf_path, images):
    grounder = _hf(tiny_gdino_hf_path, max_candidates=4, box_threshold=0.0)
    assert isinstance(grounder, Grounder)
    results = grounder.ground(_requests(images))
    assert [r.raw_text for r in results] == [
        "the red car.",
        "dog on the left side of the image.",
        "a person.",
    ]
    for r in results:
        assert r.status is ParseStatus.OK and len(r.candidates) == 4
        scores = [c.score for c in r.candidates]
        assert scores == sorted(scores, reverse=True)
        assert all(c.box.in_unit_range and not c.box.is_inverted for c in r.candidates)
    assert results[0].settings["box_threshold"] == 0.0
    assert results[0].settings["frame"] == "unit"


def test_hf_batched_equals_one_at_a_time(tiny_gdino_hf_path, images):
    grounder = _hf(tiny_gdino_hf_path, batch_size=3)
    requests = _requests(images)
    batched = grounder.ground(requests)
    single = [grounder.ground([r])[0] for r in requests]
    for b, s in zip(batched, single, strict=True):
        assert [c.box.to_list() for c in b.candidates] == [
            pytest.approx(c.box.to_list(), abs=1e-5) for c in s.candidates
        ]


def test_hf_never_returns_no_box_when_the_best_box_is_asked(tiny_gdino_hf_path, images):
    requests = _requests(images)[:1]
    fallback = _hf(tiny_gdino_hf_path, box_threshold=1.5).ground(requests)[0]
    assert fallback.status is ParseStatus.OK and len(fallback.candidates) == 1
    strict = _hf(tiny_gdino_hf_path, box_threshold=1.5, top1_fallback=False).ground(requests)[0]
    assert strict.status is ParseStatus.NO_BOX and strict.candidates == []


def test_hf_errors(tiny_gdino_hf_path, tmp_path):
    with pytest.raises(ModelLoadError, match=re.escape(str(tmp_path / "none"))):
        build("gdino-hf", ModelSettings(path=str(tmp_path / "none")))
    with pytest.raises(ValueError, match="box_treshold"):
        _hf(tiny_gdino_hf_path, box_treshold=0.3)
    with pytest.raises(ImageLoadError, match=re.escape("missing.jpg")):
        _hf(tiny_gdino_hf_path).ground(
            [GroundRequest(image=str(tmp_path / "missing.jpg"), phrase="x")]
        )


def test_py_grounder_runs_from_checkpoint_config_and_local_bert(tiny_gdino_py_files, images):
    grounder = _py(tiny_gdino_py_files, max_candidates=3, box_threshold=0.0)
    assert isinstance(grounder, Grounder)
    assert grounder.settings["device"] == "cpu"
    assert grounder.settings["bert_path"] == str(tiny_gdino_py_files.bert)
    assert next(grounder.model.parameters()).device.type == "cpu"
    results = grounder.ground(_requests(images))
    assert results[0].raw_text == "the red car."
    for r in results:
        assert r.status is ParseStatus.OK and len(r.candidates) == 3
        scores = [c.score for c in r.candidates]
        assert scores == sorted(scores, reverse=True)
        assert all(c.box.in_unit_range for c in r.candidates)
    fallback = _py(tiny_gdino_py_files, box_threshold=1.5).ground(_requests(images)[:1])[0]
    assert len(fallback.candidates) == 1


def test_py_checkpoint_weights_are_loaded(tiny_gdino_py_files):
    import torch

    grounder = _py(tiny_gdino_py_files)
    saved = torch.load(tiny_gdino_py_files.checkpoint, weights_only=True)["model"]
    name = "transformer.decoder.norm.weight"
    assert torch.equal(grounder.model.state_dict()[name], saved[name])


def test_py_refuses_to_download_bert(tiny_gdino_py_files, tmp_path):
    hub_config = tmp_path / "hub.py"
    text = tiny_gdino_py_files.config.read_text()
    hub_config.write_text(
        text.replace(repr(str(tiny_gdino_py_files.bert)), repr("bert-base-uncased"))
    )
    settings = ModelSettings(
        path=str(tiny_gdino_py_files.checkpoint), options={"config_file": str(hub_config)}
    )
    with pytest.raises(ModelLoadError, match="bert_path"):
        build("gdino-py", settings)
    with pytest.raises(ModelLoadError, match="not a folder"):
        _py(tiny_gdino_py_files, bert_path=str(tmp_path / "no-bert"))
    # the tiny config names its local BERT folder, so bert_path may be left out
    local = ModelSettings(
        path=str(tiny_gdino_py_files.checkpoint),
        options={"config_file": str(tiny_gdino_py_files.config), "image_size": 96},
    )
    assert build("gdino-py", local).settings["bert_path"] == str(tiny_gdino_py_files.bert)


def test_py_missing_files(tiny_gdino_py_files, tmp_path):
    with pytest.raises(ModelLoadError, match="checkpoint not found"):
        build(
            "gdino-py",
            ModelSettings(
                path=str(tmp_path / "x.pth"),
                options={"config_file": str(tiny_gdino_py_files.config)},
            ),
        )
    with pytest.raises(ModelLoadError, match="config_file"):
        build("gdino-py", ModelSettings(path=str(tiny_gdino_py_files.checkpoint)))
    with pytest.raises(ModelLoadError, match=re.escape("nope.py")):
        _py(tiny_gdino_py_files, config_file=str(tmp_path / "nope.py"))


def test_py_checkpoint_config_mismatch(tiny_gdino_py_files, tmp_path):
    deeper = tmp_path / "deeper.py"
    deeper.write_text(
        tiny_gdino_py_files.config.read_text().replace("dec_layers = 2", "dec_layers = 3")
    )
    with pytest.raises(ModelLoadError, match="does not match"):
        _py(tiny_gdino_py_files, config_file=str(deeper))


def test_hf_dtype_auto_means_float32_for_the_grounding_dino_family(monkeypatch):
    from cot_ground.models import hf_loading

    monkeypatch.setattr(hf_loading, "resolve_device", lambda device: "cuda")
    auto = hf_loading.float32_when_auto(ModelSettings(path="x"))
    assert hf_loading.load_kwargs(auto)[0]["dtype"] == torch.float32  # not bfloat16 on CUDA
    explicit = hf_loading.float32_when_auto(ModelSettings(path="x", dtype="bfloat16"))
    assert explicit.dtype == "bfloat16"
