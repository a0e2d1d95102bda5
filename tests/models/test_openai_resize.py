"""Client-side resize to the Qwen-VL input size: the size module against the real processors, and
the OpenAI-compatible adapters against a local fake server that resizes what it receives like a
Qwen-VL server (transformers' ``smart_resize``) and answers boxes in its own frame."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from chat_server import JsonHandler, QuietServer, completion, serving
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from cot_ground.models.base import ChatRequest
from cot_ground.models.registry import build
from cot_ground.models.resize import (
    ImageSizeError,
    ServedInput,
    family_factor,
    model_input_size,
    resize_to,
    served_input,
    visual_tokens,
)
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


def server_resize(size_wh: tuple[int, int], factor: int, pixel_range: tuple[int, int]):
    """What a Qwen-VL server's processor makes of a received picture: transformers'
    ``smart_resize`` called directly (not through cot_ground), (width, height)."""
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    h, w = smart_resize(size_wh[1], size_wh[0], factor, *pixel_range)
    return w, h


class QwenServer:
    """``/v1/chat/completions`` that decodes every image and resizes it as a Qwen-VL server does
    (:func:`server_resize` with its own pixel range, so a size is resized a second time when it
    is not a fixed point, and an aspect ratio above 200 is answered 400 like a real server). It
    records what it received and what it fed the model, and answers ``reply``: a text, or a
    function of the model input sizes of the request's images (a box in its own frame)."""

    def __init__(self, factor: int, pixel_range: tuple[int, int] = (MIN_PIXELS, MAX_PIXELS)):
        self.factor = factor
        self.pixel_range = pixel_range
        self.sizes: list[list[tuple[int, int]]] = []  # received, per request
        self.inputs: list[list[tuple[int, int]]] = []  # fed to the model, per request
        self.mimes: set[str] = set()
        self.reply: str | Callable[[list[tuple[int, int]]], str] = "ok"
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
                try:
                    inputs = [server_resize(s, server.factor, server.pixel_range) for s in sizes]
                except ValueError as exc:  # smart_resize refuses the aspect ratio
                    self.reply(400, {"error": {"message": str(exc)}})
                    return
                server.sizes.append(sizes)
                server.inputs.append(inputs)
                text = server.reply if isinstance(server.reply, str) else server.reply(inputs)
                self.reply(200, completion(text, body["model"]))

        self.httpd = QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"


@contextlib.contextmanager
def _serving(factor: int, pixel_range: tuple[int, int]) -> Iterator[QwenServer]:
    server = QwenServer(factor, pixel_range)
    with serving(server.httpd):
        yield server


def _serve(factor: int) -> Iterator[QwenServer]:
    with _serving(factor, (MIN_PIXELS, MAX_PIXELS)) as server:
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
    assert qwen25_server.inputs == [sent]  # fixed points: the server did not resize them again
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
    reasoner = build("openai-reasoner", _settings(qwen25_server.url, None))
    reasoner.reason([ChatRequest(images=photos[:1], prompt="x")])
    # the picture goes at its own size and the server picks the model input: unknown here,
    # which is why the pixels frame needs a family
    assert qwen25_server.sizes == [[(500, 333)]] and qwen25_server.inputs != qwen25_server.sizes
    with pytest.raises(ValueError, match="min_pixels and max_pixels"):
        build(
            "openai-e2e",
            ModelSettings(
                options={"base_url": qwen25_server.url, "model": "m", "family": "qwen3_vl"}
            ),
        )
    with pytest.raises(ValueError, match="unknown Qwen-VL family"):
        build("openai-e2e", _settings(qwen25_server.url, "qwen9"))


# (factor, min_pixels, max_pixels): min == max at 256, 512, 1,024 and 1,280 tokens (no fixed
# point for nearly any size), the released default range, a published range (Migician's
# evaluation settings: 128-192 tokens), narrow ranges, and Qwen3-VL's factor 32
SWEEP_SETTINGS = [
    (28, 256 * 784, 256 * 784),
    (28, 512 * 784, 512 * 784),
    (28, 1024 * 784, 1024 * 784),
    (28, 1280 * 784, 1280 * 784),
    (28, 3136, 12845056),
    (28, 100352, 150528),
    (28, 3136, 6272),
    (32, 256 * 1024, 256 * 1024),
    (32, 100352, 150528),
    (32, 3136, 6272),
]
# tiny, ordinary, portrait, and extreme aspect ratios (up to 187.5) that smart_resize accepts
SWEEP_SIZES = [(1, 1), (5, 7), (640, 480), (97, 1203), (1948, 27), (27, 1948), (3000, 16)]


@pytest.fixture(scope="module")
def sweep_photos(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    folder = tmp_path_factory.mktemp("sweep-photos")
    paths = []
    for w, h in SWEEP_SIZES:
        path = folder / f"{w}x{h}.png"
        Image.new("RGB", (w, h), (200, 30, 90)).save(path)
        paths.append(str(path))
    return paths


def _quarter_answer(inputs: list[tuple[int, int]]) -> str:
    """The box x from a quarter to the right edge, y from the middle to the bottom, in the
    server's own frame (its model input)."""
    [(w, h)] = inputs
    return f"[{w // 4}, {h // 2}, {w}, {h}]"


@pytest.mark.slow
@pytest.mark.parametrize(("factor", "min_pixels", "max_pixels"), SWEEP_SETTINGS)
def test_pixel_boxes_land_in_the_original_frame(
    sweep_photos: list[str], factor: int, min_pixels: int, max_pixels: int
) -> None:
    family = {28: "qwen2_5_vl", 32: "qwen3_vl"}[factor]
    with _serving(factor, (min_pixels, max_pixels)) as server:
        server.reply = _quarter_answer
        model_settings = ModelSettings(
            min_pixels=min_pixels,
            max_pixels=max_pixels,
            options={
                "base_url": server.url,
                "model": "served",
                "max_retries": 0,
                "family": family,
                "frame": "pixels",
                "concurrency": 8,
            },
        )
        e2e = build("openai-e2e", model_settings)
        results = e2e.predict([ChatRequest(images=[p], prompt="where?") for p in sweep_photos])
    received = sorted(zip(server.sizes, server.inputs, strict=True))
    for result, (w, h) in zip(results, SWEEP_SIZES, strict=True):
        assert result.status is ParseStatus.OK
        x1, y1, x2, y2 = result.box.to_list()
        # the server's frame is a multiple of 4 wide and of 2 high: the box is exact
        assert [x1, y1, x2, y2] == pytest.approx([0.25, 0.5, 1.0, 1.0], abs=1e-12)
        assert abs(x1 * w - w / 4) <= 1 and abs(y1 * h - h / 2) <= 1
    if (min_pixels, max_pixels) in [(3136, 12845056), (100352, 150528)]:
        ordinary = [s for s in received if max(s[0][0]) <= 20 * min(s[0][0])]
        assert len(ordinary) == 4 and all(s == i for s, i in ordinary)  # kept: resampled once


def test_no_fixed_point_is_resampled_twice_and_logged_once(
    sweep_photos: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    pixels = 1280 * 784  # min == max: the reviewer's case (640×480 → 1176×868 → 1148×840)
    served = served_input((640, 480), 28, pixels, pixels)
    assert served == ServedInput(sent_wh=(1176, 868), input_wh=(1148, 840))
    assert served.resampled_twice
    assert served_input((640, 480), 28, 256 * 784, 256 * 784).input_wh == (532, 392)
    with _serving(28, (pixels, pixels)) as server:
        server.reply = lambda inputs: f"[{inputs[0][0] // 2}, {inputs[0][1] // 2}, 9999, 9999]"
        options = {"base_url": server.url, "model": "served", "family": "qwen2_5_vl"}
        model_settings = ModelSettings(min_pixels=pixels, max_pixels=pixels, options=options)
        e2e = build("openai-e2e", model_settings)
        with caplog.at_level(logging.WARNING, logger="cot_ground.models.openai_chat"):
            results = e2e.predict([ChatRequest(images=[p], prompt="?") for p in sweep_photos[2:4]])
    assert [r.box.to_list() for r in results] == [pytest.approx([0.5, 0.5, 1.0, 1.0])] * 2
    assert server.sizes[0] != server.inputs[0]  # the server did resize again
    [warning] = [r for r in caplog.records if "resampled twice" in r.getMessage()]
    assert "sent at 1176×868" in warning.getMessage() and "to 1148×840" in warning.getMessage()


def test_sizes_a_server_refuses_are_not_sent(tmp_path, photos) -> None:
    from cot_ground.models.base import RequestErrors

    elongated = tmp_path / "strip.png"  # ratio 197: accepted, but sent as 12236×56 (218.5)
    Image.new("RGB", (12229, 62)).save(elongated)
    needle = tmp_path / "needle.png"  # ratio 2038: refused as it is
    Image.new("RGB", (12229, 6)).save(needle)
    paths = [str(elongated), photos[0], str(needle)]
    requests = [ChatRequest(images=[p], prompt="?") for p in paths]
    with _serving(28, (3136, 12845056)) as server, pytest.raises(RequestErrors) as info:
        server.reply = "[0, 0, 28, 28]"
        options = {"base_url": server.url, "model": "served", "family": "qwen2_5_vl"}
        model_settings = ModelSettings(min_pixels=3136, max_pixels=12845056, options=options)
        build("openai-e2e", model_settings).predict(requests)
    first, _, last = info.value.errors
    assert isinstance(first, ImageSizeError) and isinstance(last, ImageSizeError)
    assert str(elongated) in str(first) and "12229×62" in str(first) and "12236×56" in str(first)
    assert str(needle) in str(last) and "12229×6 " in str(last)
    assert info.value.results[1].status is ParseStatus.OK
    assert server.sizes == [[(504, 336)]]  # only the ordinary picture reached the server


@settings(max_examples=300, deadline=None)
@given(
    width=st.integers(1, 4000),
    height=st.integers(1, 4000),
    factor=st.sampled_from([28, 32]),
    min_tokens=st.integers(1, 2000),
    widen=st.sampled_from([1.0, 1.05, 1.25, 1.5, 2.0, 4.0, 16384.0]),
)
def test_the_frame_is_the_servers_one_pass_over_what_is_sent(
    width: int, height: int, factor: int, min_tokens: int, widen: float
) -> None:
    assume(max(width, height) <= 150 * min(width, height))
    min_pixels = min_tokens * factor * factor
    max_pixels = int(min_pixels * widen)
    try:
        served = served_input((width, height), factor, min_pixels, max_pixels)
    except ImageSizeError:  # the size it would be sent at exceeds the aspect ratio limit
        local = server_resize((width, height), factor, (min_pixels, max_pixels))
        assert max(local) > 200 * min(local)
        return
    sent, frame = served.sent_wh, served.input_wh
    assert server_resize(sent, factor, (min_pixels, max_pixels)) == frame
    assert sent[0] % factor == 0 and sent[1] % factor == 0
    local = server_resize((width, height), factor, (min_pixels, max_pixels))
    if served.resampled_twice:  # no fixed point: the local size is sent, the server's is used
        assert sent == local
    else:  # a fixed point: the server keeps it
        assert server_resize(frame, factor, (min_pixels, max_pixels)) == frame


@given(
    width=st.integers(1, 4000),
    height=st.integers(1, 4000),
    min_pixels=st.integers(3136, 1_003_520),
    max_pixels=st.integers(6273, 2_007_040),
)
@example(width=65, height=130, min_pixels=4704, max_pixels=6273)
@example(width=288, height=144, min_pixels=6273, max_pixels=6273)
@example(width=74, height=123, min_pixels=3136, max_pixels=6273)
@settings(deadline=None)
def test_with_sglangs_bounds_every_sent_size_passes_its_first_resize(
    width: int, height: int, min_pixels: int, max_pixels: int
) -> None:
    # SGLang resizes a picture itself (factor 28, at least 3,136 pixels) before the processor
    # runs and keeps a size of multiples of 28 whose area is at least 3,136 (docs/scaling.md):
    # with min_pixels >= 3,136 and max_pixels > 6,272 every size the client sends is such a
    # size, kept (inside the range) or not.
    assume(min_pixels <= max_pixels and max(width, height) <= 150 * min(width, height))
    try:
        sent = served_input((width, height), 28, min_pixels, max_pixels).sent_wh
    except ImageSizeError:
        return
    assert sent[0] % 28 == 0 and sent[1] % 28 == 0
    assert sent[0] * sent[1] >= 3136


@pytest.mark.parametrize(
    ("size", "pixel_range"),
    [((74, 123), (3136, 4704)), ((65, 130), (4704, 6272)), ((288, 144), (6272, 6272))],
)
def test_below_sglangs_bounds_a_size_with_no_fixed_point_can_be_sent_below_3136_pixels(
    size: tuple[int, int], pixel_range: tuple[int, int]
) -> None:
    # the limit docs/scaling.md states: max_pixels <= 6,272 lets the floor of a side under
    # 56 px reach 28, and SGLang's first resize then enlarges what is sent (a wrong frame)
    served = served_input(size, 28, *pixel_range)
    assert served.resampled_twice
    assert served.sent_wh[0] * served.sent_wh[1] < 3136
