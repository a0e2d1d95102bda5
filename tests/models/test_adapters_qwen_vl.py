"""Qwen-VL family and Migician adapters on tiny random-weight checkpoints (CPU, offline)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from adapter_checks import assert_batched_reasoning_is_one_at_a_time
from noise_pictures import noise_pictures
from PIL import Image

from cot_ground.images import ImageLoadError
from cot_ground.models import hf_loading
from cot_ground.models.base import (
    ChatRequest,
    EndToEndGrounder,
    Grounder,
    GroundRequest,
    ModelLoadError,
    Reasoner,
)
from cot_ground.models.registry import build
from cot_ground.models.settings import ModelSettings
from cot_ground.records import ParseStatus
from cot_ground.scoring import apply_calibration

FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Three noise pictures of different sizes."""
    return noise_pictures(
        tmp_path_factory.mktemp("qwen-images"), [(200, 120), (96, 160), (300, 300)], seed=0
    )


def _settings(path: Path, **kw: object) -> ModelSettings:
    return ModelSettings(path=str(path), max_new_tokens=kw.pop("max_new_tokens", 10), **kw)


@pytest.mark.parametrize("family", FAMILIES)
def test_each_adapter_builds_by_name_and_records_settings(tiny_qwen_paths, family):
    s = _settings(tiny_qwen_paths[family], min_pixels=3136, max_pixels=12544)
    reasoner = build("qwen-vl-reasoner", s)
    grounder = build("qwen-vl-grounder", s)
    e2e = build("qwen-vl-e2e", s)
    assert isinstance(reasoner, Reasoner)
    assert isinstance(grounder, Grounder)
    assert isinstance(e2e, EndToEndGrounder)
    for adapter in (reasoner, grounder, e2e):
        assert adapter.settings["family"] == family
        assert adapter.settings["min_pixels"] == 3136
        assert adapter.settings["max_pixels"] == 12544
        assert adapter.settings["max_new_tokens"] == 10
        assert adapter.settings["device"] == "cpu" and adapter.settings["dtype"] == "float32"
    # one process-wide copy of the weights for every adapter on the same folder
    assert reasoner.runner.model is grounder.runner.model is e2e.runner.model
    assert grounder.settings["prompt_file"].endswith(f"ground/{family}.txt")


def test_grounder_sends_the_request_prompt_else_its_family_template(tiny_qwen_paths, images):
    grounder = build("qwen-vl-grounder", _settings(tiny_qwen_paths["qwen2_vl"]))
    plain = GroundRequest(image=images[0], phrase="the cat")
    assert grounder.prompt(plain) == grounder.template.replace("{phrase}", "the cat")
    own = GroundRequest(image=images[0], phrase="the cat", prompt="Ground the cat. Format: box.")
    assert grounder.prompt(own) == "Ground the cat. Format: box."


@pytest.mark.parametrize("family", FAMILIES)
def test_prompt_and_every_image_reach_the_processor(tiny_qwen_paths, images, family):
    runner = build("qwen-vl-reasoner", _settings(tiny_qwen_paths[family])).runner
    text = runner.chat_text(3, "Which image shows the cat?")
    assert text.count("<|vision_start|><|image_pad|><|vision_end|>") == 3
    assert text.index("<|vision_end|>Which image shows the cat?") > text.rindex("<|vision_start|>")
    inputs = runner.encode([(images, "Which image shows the cat?"), (images[:1], "x")])
    image_token = runner.processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    grids = inputs["image_grid_thw"]
    assert grids.shape[0] == 4  # 3 + 1 images, in order
    merge = runner.processor.image_processor.merge_size**2
    per_request = [int(grids[:3].prod(-1).sum()) // merge, int(grids[3:].prod()) // merge]
    assert (inputs["input_ids"] == image_token).sum(-1).tolist() == per_request
    # left padding: the shorter request is padded at the start
    assert inputs["attention_mask"][1, 0] == 0 and inputs["attention_mask"][:, -1].all()


@pytest.mark.parametrize("family", FAMILIES)
def test_batched_greedy_generation_equals_one_at_a_time(tiny_qwen_paths, images, family):
    reasoner = build("qwen-vl-reasoner", _settings(tiny_qwen_paths[family], max_new_tokens=8))
    assert_batched_reasoning_is_one_at_a_time(reasoner, images)


def test_min_max_pixels_change_the_model_input(tiny_qwen_paths, images):
    small = build("qwen-vl-reasoner", _settings(tiny_qwen_paths["qwen2_vl"], max_pixels=56 * 56))
    large = build(
        "qwen-vl-reasoner",
        _settings(tiny_qwen_paths["qwen2_vl"], min_pixels=200 * 200, max_pixels=400 * 400),
    )
    (w1, h1) = small.runner.input_sizes_wh(images[:1])[0]
    (w2, h2) = large.runner.input_sizes_wh(images[:1])[0]
    assert w1 * h1 <= 56 * 56 < 200 * 200 <= w2 * h2


def test_qwen2_vl_frame_is_0_1000(tiny_qwen_paths):
    grounder = build("qwen-vl-grounder", _settings(tiny_qwen_paths["qwen2_vl"]))
    r = grounder.result_from_text(
        "<|object_ref_start|>cat<|object_ref_end|><|box_start|>(100,200),(500,800)<|box_end|>",
        (140, 84),
    )
    assert r.status is ParseStatus.OK
    assert r.candidates[0].box.to_list() == pytest.approx([0.1, 0.2, 0.5, 0.8])


def test_qwen2_5_vl_frame_is_pixels_of_the_resized_input(tiny_qwen_paths, images):
    grounder = build("qwen-vl-grounder", _settings(tiny_qwen_paths["qwen2_5_vl"]))
    w, h = grounder.runner.input_sizes_wh(images[:1])[0]
    original = Image.open(images[0]).size
    assert (w, h) != original and w % 14 == 0 and h % 14 == 0
    text = f'[{{"bbox_2d": [14, 28, {w // 2}, {h + 40}], "label": "cat"}}]'
    r = grounder.result_from_text(text, (w, h))
    assert r.status is ParseStatus.OK
    # converted with the resized size and clipped to it (h + 40 lies outside the input)
    assert r.candidates[0].box.to_list() == pytest.approx([14 / w, 28 / h, (w // 2) / w, 1.0])
    # the adapter's own ground() reports the same resized size it converts with
    request = GroundRequest(image=images[0], phrase="cat")
    gen = grounder.runner.generate([([images[0]], grounder.prompt(request))])[0]
    assert gen.input_sizes_wh == [(w, h)]


def test_qwen3_vl_frame_is_0_1000_inclusive(tiny_qwen_paths):
    grounder = build("qwen-vl-grounder", _settings(tiny_qwen_paths["qwen3_vl"]))
    r = grounder.result_from_text('[{"bbox_2d": [0, 250, 1000, 1000]}, [1, 2, 3, 4]]', (128, 128))
    assert r.status is ParseStatus.SEVERAL_BOXES
    assert [c.box.to_list() for c in r.candidates] == [
        pytest.approx([0.0, 0.25, 1.0, 1.0]),
        pytest.approx([0.001, 0.002, 0.003, 0.004]),
    ]


def test_grounder_on_random_model_output(tiny_qwen_paths, images):
    grounder = build("qwen-vl-grounder", _settings(tiny_qwen_paths["qwen2_5_vl"]))
    results = grounder.ground([GroundRequest(image=p, phrase="the red car") for p in images])
    assert len(results) == 3
    for r in results:
        assert isinstance(r.raw_text, str)
        assert (r.status in (ParseStatus.OK, ParseStatus.SEVERAL_BOXES)) == bool(r.candidates)
        assert all(c.box.in_unit_range for c in r.candidates)


def test_e2e_pixel_box_uses_the_named_image_size(tiny_qwen_paths, images):
    e2e = build("qwen-vl-e2e", _settings(tiny_qwen_paths["qwen2_5_vl"]))
    sizes = e2e.runner.input_sizes_wh(images)
    w, h = sizes[1]
    r = e2e.result_from_text(f"It is in the second image. [0, 0, {w // 2}, {h // 2}]", sizes)
    assert r.image_index == 1 and r.status is ParseStatus.OK
    assert r.box.to_list() == pytest.approx([0, 0, (w // 2) / w, (h // 2) / h])
    unplaced = e2e.result_from_text("[0, 0, 10, 10]", sizes)  # no image named, sizes differ
    assert unplaced.box is None and unplaced.status is ParseStatus.MALFORMED
    nothing = e2e.result_from_text("I cannot tell.", sizes)
    assert nothing.box is None and nothing.status is ParseStatus.NO_BOX


def test_e2e_and_reasoner_answers(tiny_qwen_paths, images):
    s = _settings(tiny_qwen_paths["qwen2_vl"])
    e2e = build("qwen-vl-e2e", s)
    r = e2e.result_from_text("Image-3 <|box_start|>(10,20),(30,40)<|box_end|>", [(1, 1)] * 3)
    assert r.image_index == 2 and r.box.to_list() == pytest.approx([0.01, 0.02, 0.03, 0.04])
    results = e2e.predict([ChatRequest(images=images[:2], prompt="Where is the dog?")])
    assert len(results) == 1 and isinstance(results[0].status, ParseStatus)
    reasoner = build("qwen-vl-reasoner", s)
    request = ChatRequest(images=images[:3], prompt="Which image has the dog?")
    sel = reasoner.result_from_text('{"image": 2, "description": "the small dog"}', request)
    assert sel.image_index == 1 and sel.description == "the small dog"
    assert sel.status is ParseStatus.OK


def test_migician_is_qwen2_vl_with_optional_calibration(tiny_qwen_paths):
    plain = build("migician", _settings(tiny_qwen_paths["qwen2_vl"]))
    assert plain.settings["calibration"] is None and plain.settings["frame"] == "qwen1000"
    calibrated = build(
        "migician", _settings(tiny_qwen_paths["qwen2_vl"], options={"calibration": "migician-y"})
    )
    assert calibrated.settings["calibration"] == "migician-y"
    text = "<|box_start|>(100,200),(300,800)<|box_end|>"
    raw = plain.result_from_text(text, [(1, 1)]).box
    assert raw.to_list() == pytest.approx([0.1, 0.2, 0.3, 0.8])
    assert calibrated.result_from_text(text, [(1, 1)]).box == apply_calibration(raw, "migician-y")
    with pytest.raises(ModelLoadError, match="qwen2_vl"):
        build("migician", _settings(tiny_qwen_paths["qwen2_5_vl"]))
    with pytest.raises(ValueError, match="calibration"):
        build("migician", _settings(tiny_qwen_paths["qwen2_vl"], options={"calibration": "nope"}))


def test_unknown_option_is_rejected(tiny_qwen_paths):
    with pytest.raises(ValueError, match="batchsize"):
        build("qwen-vl-reasoner", _settings(tiny_qwen_paths["qwen2_vl"], options={"batchsize": 2}))


def test_missing_and_incomplete_model_folders(tiny_qwen_paths, tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ModelLoadError, match=re.escape(str(missing))):
        build("qwen-vl-reasoner", _settings(missing))
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(tiny_qwen_paths["qwen2_vl"] / "config.json", partial)
    with pytest.raises(ModelLoadError) as err:
        build("qwen-vl-grounder", _settings(partial))
    assert str(partial) in str(err.value)
    assert "weights" in str(err.value) and "preprocessor_config.json" in str(err.value)
    with pytest.raises(ModelLoadError, match=re.escape("settings.path")):
        build("qwen-vl-e2e", ModelSettings())


def test_sharded_index_names_the_missing_shard(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors.index.json").write_text(
        '{"weight_map": {"a": "model-00001-of-00002.safetensors"}}'
    )
    with pytest.raises(ModelLoadError, match=re.escape("model-00001-of-00002.safetensors")):
        hf_loading.check_model_folder(tmp_path, processor=False)


def test_corrupt_weight_index_is_a_load_error_naming_it(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors.index.json").write_text('{"weight_map": ')
    with pytest.raises(ModelLoadError, match=re.escape("model.safetensors.index.json")):
        hf_loading.check_model_folder(tmp_path, processor=False)


def test_unopenable_images_name_the_path(tiny_qwen_paths, images, tmp_path):
    reasoner = build("qwen-vl-reasoner", _settings(tiny_qwen_paths["qwen2_vl"]))
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a picture")
    with pytest.raises(ImageLoadError, match=re.escape("broken.jpg")):
        reasoner.reason([ChatRequest(images=[images[0], str(bad)], prompt="?")])
    with pytest.raises(ImageLoadError, match=re.escape("absent.png")):
        build("qwen-vl-grounder", _settings(tiny_qwen_paths["qwen2_vl"])).ground(
            [GroundRequest(image=str(tmp_path / "absent.png"), phrase="cat")]
        )


def test_device_and_dtype_choice(monkeypatch, tiny_qwen_paths):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert hf_loading.resolve_device("auto") == "cpu"
    assert hf_loading.resolve_dtype("auto", "cpu") is torch.float32
    assert hf_loading.resolve_dtype("auto", "cuda") is torch.bfloat16
    assert hf_loading.resolve_device("cuda:1") == "cuda:1"
    bf16 = build("qwen-vl-reasoner", _settings(tiny_qwen_paths["qwen2_vl"], dtype="bfloat16"))
    assert bf16.runner.model.dtype is torch.bfloat16 and bf16.settings["dtype"] == "bfloat16"
    kwargs, _ = hf_loading.load_kwargs(ModelSettings(path="x", device_map="auto"))
    assert kwargs["device_map"] == "auto" and kwargs["local_files_only"] is True


def test_env_var_model_path(monkeypatch, tiny_qwen_paths):
    monkeypatch.setenv("TINY_QWEN", str(tiny_qwen_paths["qwen3_vl"]))
    reasoner = build("qwen-vl-reasoner", ModelSettings(path="${TINY_QWEN}", max_new_tokens=4))
    assert reasoner.settings["path"] == str(tiny_qwen_paths["qwen3_vl"].resolve())
    monkeypatch.delenv("TINY_QWEN")
    with pytest.raises(ModelLoadError, match="TINY_QWEN"):
        build("qwen-vl-reasoner", ModelSettings(path="${TINY_QWEN}", max_new_tokens=5))


def test_models_are_freed_with_their_adapters(tiny_qwen_paths):
    import gc
    import weakref

    from cot_ground.models import registry

    adapter = build("qwen-vl-reasoner", _settings(tiny_qwen_paths["qwen3_vl"], max_new_tokens=3))
    model = weakref.ref(adapter.runner.model)
    del adapter
    registry.clear_cache()
    gc.collect()
    assert model() is None
