"""Client-side resize to the Qwen-VL input size: the size module against the real processors, and
the OpenAI-compatible adapters against a local fake server that resizes like a Qwen-VL server
and refuses any image it would have to resize again."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from chat_server import JsonHandler, QuietServer, completion, serving
from PIL import Image

from cot_ground.models.base import ChatRequest
from cot_ground.models.registry import build
from cot_ground.models.resize import family_factor, model_input_size, resize_to, visual_tokens
from cot_ground.models.settings import ModelSettings
from cot_ground.parsing import answer_size
from cot_ground.records import ParseStatus

MIN_PIXELS, MAX_PIXELS = 16 * 28 * 28, 64 * 28 * 28


@pytest.mark.parametrize(
    ("family", "size"),
    [("qwen2_vl", (640, 480)), ("qwen2_5_vl", (97, 1203)), ("qwen3_vl", (50, 40))],
)
def test_input_size_matches_the_processor(family: str, size: tuple[int, int]) -> None:
    from transformers import Qwen2VLImageProcessor

    factor = family_factor(family)
    patch = factor // 2
    processor = Qwen2VLImageProcessor(
        patch_size=patch, merge_size=2, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS
    )
    image = Image.fromarray(np.zeros((size[1], size[0], 3), dtype=np.uint8))
    _, h, w = processor(images=[image], return_tensors="pt")["image_grid_thw"][0].tolist()
    expected = (w * patch, h * patch)
    assert model_input_size(size, factor, MIN_PIXELS, MAX_PIXELS) == expected
    assert expected[0] % factor == 0 and expected[1] % factor == 0
    assert visual_tokens(expected, factor) == h * w // 4  # merge 2 × 2 patches per token
    # a size the processor already made is kept as is: a server does not resize it again
    assert model_input_size(expected, factor, MIN_PIXELS, MAX_PIXELS) == expected


def test_size_helpers_refuse_what_they_cannot_know() -> None:
    with pytest.raises(ValueError, match="qwen3_vl"):
        family_factor("llava")
    with pytest.raises(ValueError, match="min_pixels"):
        model_input_size((100, 100), 28, 0, 10)
    assert answer_size(1, [(28, 56), (56, 28)]) == (56, 28)
    assert answer_size(None, [(28, 56), (56, 28)]) is None  # which image? unknown
    assert answer_size(None, [(28, 56), (28, 56)]) == (28, 56)
    image = Image.new("RGB", (10, 20))
    assert resize_to(image, (10, 20)) is image and resize_to(image, (28, 56)).size == (28, 56)


class QwenServer:
    """``/v1/chat/completions`` that decodes every image, records its size, answers 409 when
    ``smart_resize`` with its own pixel range would change it, else replies ``reply``."""

    def __init__(self, factor: int) -> None:
        self.factor = factor
        self.sizes: list[list[tuple[int, int]]] = []
        self.mimes: set[str] = set()
        self.reply = "ok"
        server = self

        class Handler(JsonHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                sizes = []
                for part in body["messages"][0]["content"]:
                    if part["type"] == "image_url":
                        header, data = part["image_url"]["url"].split(",", 1)
                        server.mimes.add(header)
                        with Image.open(io.BytesIO(base64.b64decode(data))) as im:
                            sizes.append(im.size)
                server.sizes.append(sizes)
                again = [
                    s
                    for s in sizes
                    if model_input_size(s, server.factor, MIN_PIXELS, MAX_PIXELS) != s
                ]
                if again:
                    self.reply(409, {"error": {"message": f"would resize {again}"}})
                    return
                self.reply(200, completion(server.reply, body["model"]))

        self.httpd = QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"


def _serve(factor: int) -> Iterator[QwenServer]:
    server = QwenServer(factor)
    with serving(server.httpd):
        yield server


@pytest.fixture
def qwen25_server() -> Iterator[QwenServer]:
    yield from _serve(28)


@pytest.fixture
def qwen3_server() -> Iterator[QwenServer]:
    yield from _serve(32)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    folder = tmp_path_factory.mktemp("resize-photos")
    paths = []
    for i, size in enumerate([(500, 333), (123, 456)]):
        path = folder / f"{i}.jpg"
        Image.new("RGB", size, (40 * i, 90, 160)).save(path, format="JPEG")
        paths.append(str(path))
    return paths


def _settings(url: str, family: str | None, **extra: Any) -> ModelSettings:
    options = {"base_url": url, "model": "served", "max_retries": 0, **extra}
    if family:
        options["family"] = family
    return ModelSettings(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS, options=options)


def test_qwen25_pixel_answers_use_the_size_sent(qwen25_server: QwenServer, photos) -> None:
    e2e = build("openai-e2e", _settings(qwen25_server.url, "qwen2_5_vl"))
    assert e2e.settings["frame"] == "pixels" and e2e.settings["resize"] == "client"
    assert (e2e.settings["min_pixels"], e2e.settings["max_pixels"]) == (MIN_PIXELS, MAX_PIXELS)
    sent = [model_input_size(Image.open(p).size, 28, MIN_PIXELS, MAX_PIXELS) for p in photos]
    assert sent[0] != sent[1]
    w, h = sent[1]
    qwen25_server.reply = f"The second image: [0, 0, {w // 2}, {h * 2}]"  # y2 beyond: clipped
    [result] = e2e.predict([ChatRequest(images=photos, prompt="where?")])
    assert qwen25_server.sizes == [sent] and qwen25_server.mimes == {"data:image/png;base64"}
    assert result.status is ParseStatus.OK and result.image_index == 1
    assert result.box.to_list() == pytest.approx([0.0, 0.0, (w // 2) / w, 1.0])
    # no image named and the two sizes differ: the box cannot be placed, none is made up
    qwen25_server.reply = "[0, 0, 10, 10]"
    [unplaced] = e2e.predict([ChatRequest(images=photos, prompt="where?")])
    assert unplaced.box is None and unplaced.status is ParseStatus.MALFORMED


def test_qwen3_sizes_are_multiples_of_32(qwen3_server: QwenServer, photos) -> None:
    qwen3_server.reply = '{"image": 1, "description": "the blue one"}'
    reasoner = build("openai-reasoner", _settings(qwen3_server.url, "qwen3_vl"))
    [result] = reasoner.reason([ChatRequest(images=photos, prompt="which?")])
    assert result.image_index == 0 and result.status is ParseStatus.OK
    [sizes] = qwen3_server.sizes
    assert all(w % 32 == 0 and h % 32 == 0 for w, h in sizes)
    e2e = build("openai-e2e", _settings(qwen3_server.url, "qwen3_vl"))
    assert e2e.settings["frame"] == "qwen3_1000"


def test_without_family_the_server_would_resize(qwen25_server: QwenServer, photos) -> None:
    from cot_ground.models.openai_chat import EndpointError

    reasoner = build("openai-reasoner", _settings(qwen25_server.url, None))
    with pytest.raises(EndpointError, match="would resize"):
        reasoner.reason([ChatRequest(images=photos[:1], prompt="x")])
    with pytest.raises(ValueError, match="min_pixels and max_pixels"):
        build(
            "openai-e2e",
            ModelSettings(
                options={"base_url": qwen25_server.url, "model": "m", "family": "qwen3_vl"}
            ),
        )
    with pytest.raises(ValueError, match="unknown Qwen-VL family"):
        build("openai-e2e", _settings(qwen25_server.url, "qwen9"))
