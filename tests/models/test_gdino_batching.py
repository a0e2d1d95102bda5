"""The transformers GroundingDINO grounder's batching on a tiny random-weight checkpoint (CPU):
pre-processing in worker threads and cached per image, batches by pre-processed shape (answers
equal one-at-a-time), optional padded batches (the processor's own padding)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from noise_pictures import noise_pictures
from PIL import Image

from cot_ground.images import ImageLoadError
from cot_ground.models.base import GroundRequest
from cot_ground.models.gdino_hf import _padded
from cot_ground.models.registry import build
from cot_ground.models.settings import ModelSettings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """200×120 and 250×150 share a pre-processed shape (160×96 for the tiny processor);
    96×160 does not."""
    return noise_pictures(
        tmp_path_factory.mktemp("gdino-batching"),
        [(200, 120), (250, 150), (96, 160), (200, 120)],
        seed=2,
    )


def _grounder(path: Path, **options: object):
    return build("gdino-hf", ModelSettings(path=str(path), device="cpu", options=options))


def _requests(pictures: list[str]) -> list[GroundRequest]:
    phrases = ["the red car", "a dog on the left", "the tall tower", "the red car again"]
    return [GroundRequest(image=p, phrase=t) for p, t in zip(pictures, phrases, strict=True)]


def _passes(grounder) -> list[int]:
    sizes: list[int] = []
    inner = grounder._ground_batch

    def spy(pixels, requests):
        sizes.append(len(requests))
        return inner(pixels, requests)

    grounder._ground_batch = spy
    return sizes


def _same_answers(a, b) -> bool:
    """Same candidates in the same order, boxes and scores within 1e-5 (float32 sums of a
    batched pass are not bit-identical on CPU)."""
    flat = [[[*c.box.to_list(), c.score] for c in r.candidates] for r in a]
    return flat == [
        [pytest.approx([*c.box.to_list(), c.score], abs=1e-5) for c in r.candidates] for r in b
    ]


def test_same_preprocessed_shape_batches_and_answers_do_not_change(tiny_gdino_hf_path, pictures):
    requests = _requests(pictures)
    grounder = _grounder(tiny_gdino_hf_path, batch_size=8)
    shapes = [tuple(p.shape) for p in grounder.pixel_values(pictures)]
    assert shapes[0] == shapes[1] == shapes[3] != shapes[2]
    passes = _passes(grounder)
    batched = grounder.ground(requests)
    assert sorted(passes) == [1, 3]  # three images of two original sizes share one pass
    single = _grounder(tiny_gdino_hf_path, batch_size=1, preprocess_threads=1)
    assert _same_answers(batched, single.ground(requests))
    assert "pad_batches" in grounder.settings and "preprocess_threads" not in grounder.settings


def test_preprocessed_images_are_cached(tiny_gdino_hf_path, pictures):
    grounder = _grounder(tiny_gdino_hf_path, pixel_cache_size=8)
    grounder.clear_cache()
    grounder.ground(_requests(pictures))
    info = grounder._pixel_values.cache_info()
    assert info.misses == 4 and info.currsize == 4
    grounder.ground(_requests(pictures)[:2])  # a retry on the same images
    assert grounder._pixel_values.cache_info().hits == info.hits + 2
    grounder.clear_cache()
    assert grounder._pixel_values.cache_info().currsize == 0


def test_padded_batches_use_the_processors_padding(tiny_gdino_hf_path, pictures):
    grounder = _grounder(tiny_gdino_hf_path, batch_size=8, pad_batches=True)
    assert grounder.settings["pad_batches"] is True
    images = [Image.open(p).convert("RGB") for p in pictures]
    reference = grounder.processor(images=images, return_tensors="pt")
    mine = _padded(grounder.pixel_values(pictures))
    assert torch.equal(mine["pixel_values"], reference["pixel_values"])
    assert torch.equal(mine["pixel_mask"], reference["pixel_mask"])
    passes = _passes(grounder)
    results = grounder.ground(_requests(pictures))
    assert passes == [4] and all(r.candidates for r in results)


def test_a_bad_image_is_named_from_the_worker_threads(tiny_gdino_hf_path, pictures, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    grounder = _grounder(tiny_gdino_hf_path)
    with pytest.raises(ImageLoadError, match=r"broken\.png"):
        grounder.ground(
            [
                GroundRequest(image=pictures[0], phrase="x"),
                GroundRequest(image=str(bad), phrase="y"),
            ]
        )


def test_the_tokenizer_stays_fast_with_the_slow_image_processor(tiny_gdino_hf_path):
    from transformers import GroundingDinoImageProcessor

    grounder = _grounder(tiny_gdino_hf_path)
    assert type(grounder.processor.image_processor) is GroundingDinoImageProcessor
    assert grounder.processor.tokenizer.is_fast
