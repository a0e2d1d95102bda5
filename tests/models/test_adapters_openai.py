"""OpenAI-compatible adapters against a real HTTP server on 127.0.0.1 (real ``openai`` client)."""

from __future__ import annotations

import base64
import io
import json
import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from chat_server import JsonHandler, QuietServer, completion, serving
from PIL import Image

from cot_ground.images import ImageLoadError, open_rgb
from cot_ground.models.base import ChatRequest, EndToEndGrounder, Reasoner
from cot_ground.models.openai_chat import EndpointError
from cot_ground.models.registry import build
from cot_ground.models.settings import ModelSettings
from cot_ground.records import ParseStatus


class ChatServer:
    """A minimal ``/v1/chat/completions`` server: scripted failures, then a fixed reply."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.failures: list[int] = []  # HTTP statuses to answer first, in order
        self.reply = "ok"
        self.delay_s = 0.0
        server = self

        class Handler(JsonHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(
                    {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
                )
                time.sleep(server.delay_s)
                if server.failures:
                    self.reply(server.failures.pop(0), {"error": {"message": "scripted failure"}})
                    return
                self.reply(200, completion(server.reply, body["model"]))

        self.httpd = QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"


@pytest.fixture
def server() -> Iterator[ChatServer]:
    chat = ChatServer()
    with serving(chat.httpd):
        yield chat


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    folder = tmp_path_factory.mktemp("openai-images")
    paths = []
    for i, (fmt, color) in enumerate([("PNG", "red"), ("JPEG", "blue")]):
        path = folder / f"{i}.{fmt.lower()}"
        Image.new("RGB", (20, 10), color).save(path, format=fmt)
        paths.append(str(path))
    return paths


def _settings(url: str, **options: Any) -> ModelSettings:
    opts = {"base_url": url, "model": "served-vlm", "retry_backoff_s": 0.01, **options}
    return ModelSettings(max_new_tokens=32, options=opts)


def test_reasoner_sends_images_as_data_urls(server, images, monkeypatch):
    monkeypatch.setenv("TEST_VLM_KEY", "secret-key")
    server.reply = '{"image": 2, "description": "the blue square"}'
    reasoner = build("openai-reasoner", _settings(server.url, api_key_env="TEST_VLM_KEY"))
    assert isinstance(reasoner, Reasoner)
    results = reasoner.reason(
        [
            ChatRequest(images=images, prompt="Which one?"),
            ChatRequest(images=images[:1], prompt="?"),
        ]
    )
    assert results[0].image_index == 1 and results[0].description == "the blue square"
    assert results[0].status is ParseStatus.OK
    assert results[1].status is not ParseStatus.OK  # image 2 of a one-image request
    first = next(
        r
        for r in server.requests
        if r["body"]["messages"][0]["content"][-1]["text"] == "Which one?"
    )
    assert first["path"] == "/v1/chat/completions" and first["auth"] == "Bearer secret-key"
    body = first["body"]
    assert body["model"] == "served-vlm" and body["max_tokens"] == 32 and body["temperature"] == 0
    content = body["messages"][0]["content"]
    assert [c["type"] for c in content] == ["image_url", "image_url", "text"]
    for part, path in zip(content, images, strict=False):
        # the decoded picture, losslessly: the pixels a local model sees, not the file's bytes
        header, data = part["image_url"]["url"].split(",", 1)
        assert header == "data:image/png;base64"
        with Image.open(io.BytesIO(base64.b64decode(data))) as sent:
            assert sent.format == "PNG" and sent.mode == "RGB"
            assert sent.tobytes() == open_rgb(path).tobytes()
    # the key is read from the environment and never recorded
    assert "secret-key" not in json.dumps(reasoner.settings)
    assert "secret-key" not in json.dumps([r.model_dump() for r in results])


def test_e2e_parses_image_and_box_in_the_configured_frame(server, images):
    server.reply = "In the second image: [100, 200, 300, 1000]"
    e2e = build("openai-e2e", _settings(server.url, frame="qwen3_1000"))
    assert isinstance(e2e, EndToEndGrounder)
    [result] = e2e.predict([ChatRequest(images=images, prompt="Find the square.")])
    assert result.image_index == 1 and result.status is ParseStatus.OK
    assert result.box.to_list() == pytest.approx([0.1, 0.2, 0.3, 1.0])
    assert result.settings["frame"] == "qwen3_1000" and result.settings["base_url"] == server.url


def test_server_errors_are_retried_with_backoff(server, images):
    server.failures = [503, 500]
    server.reply = "[1, 2, 3, 4]"
    e2e = build("openai-e2e", _settings(server.url, max_retries=2))
    [result] = e2e.predict([ChatRequest(images=images[:1], prompt="x")])
    assert result.box is not None and len(server.requests) == 3
    server.failures = [503, 503]
    with pytest.raises(EndpointError, match="after 2 attempt"):
        build("openai-e2e", _settings(server.url, max_retries=1)).predict(
            [ChatRequest(images=images[:1], prompt="x")]
        )


def test_client_errors_are_not_retried(server, images):
    server.failures = [400]
    with pytest.raises(EndpointError, match="refused"):
        build("openai-reasoner", _settings(server.url)).reason(
            [ChatRequest(images=images[:1], prompt="x")]
        )
    assert len(server.requests) == 1


def test_timeout_gives_a_clear_error(server, images):
    server.delay_s = 1.0
    adapter = build("openai-reasoner", _settings(server.url, timeout_s=0.2, max_retries=0))
    with pytest.raises(EndpointError, match="Timeout"):
        adapter.reason([ChatRequest(images=images[:1], prompt="x")])


def test_unreachable_endpoint_names_the_url(images):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    url = f"http://127.0.0.1:{port}/v1"
    adapter = build("openai-e2e", _settings(url, max_retries=1))
    with pytest.raises(EndpointError, match=re.escape(f"127.0.0.1:{port}")):
        adapter.predict([ChatRequest(images=images[:1], prompt="x")])


def test_configuration_errors(server, images, tmp_path, monkeypatch):
    monkeypatch.delenv("MISSING_VLM_KEY", raising=False)
    adapter = build("openai-reasoner", _settings(server.url, api_key_env="MISSING_VLM_KEY"))
    with pytest.raises(EndpointError, match="MISSING_VLM_KEY"):
        adapter.reason([ChatRequest(images=images[:1], prompt="x")])
    with pytest.raises(ValueError, match="base_url"):
        build("openai-reasoner", ModelSettings(options={"model": "m"}))
    with pytest.raises(ValueError, match="pixels"):
        build("openai-e2e", _settings(server.url, frame="pixels"))
    with pytest.raises(ImageLoadError, match=re.escape("gone.png")):
        build("openai-reasoner", _settings(server.url)).reason(
            [ChatRequest(images=[str(tmp_path / "gone.png")], prompt="x")]
        )
    assert server.requests == []
