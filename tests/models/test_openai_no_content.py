"""A served answer without text (``content`` null, a refusal, a filtered or cut answer) is a
``model_error`` naming what the server sent, never an empty answer: it is not stored in the
step-1 cache, so ``--retry-failed`` asks the server again once it answers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import runner_fakes as rf
from chat_server import JsonHandler, QuietServer, completion, serving

from cot_ground.models.base import ChatRequest
from cot_ground.models.openai_chat import EndpointError, OpenAIChatClient
from cot_ground.models.settings import ModelSettings
from cot_ground.runner.cache import StepCache
from cot_ground.runner.config import parse_config
from cot_ground.runner.run import run_experiment
from cot_ground.runner.store import RunFolder

ANSWER = '{"image": 2, "description": "the red square"}'


class Server:
    """Answers every chat completion with ``self.message`` (the choice's ``message`` fields
    besides ``role``) and ``self.finish_reason``; ``self.choices`` False sends no choice."""

    def __init__(self) -> None:
        self.message: dict[str, Any] = {"content": ANSWER}
        self.finish_reason = "stop"
        self.choices = True
        self.requests = 0
        server = self

        class Handler(JsonHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                server.requests += 1
                body = completion("", "served-vlm")
                choice = body["choices"][0]
                choice["message"].update(server.message)
                choice["finish_reason"] = server.finish_reason
                if not server.choices:
                    body["choices"] = []
                self.reply(200, body)

        self.httpd = QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    with serving(srv.httpd):
        yield srv


def _complete(server: Server, tmp_path) -> str | Exception:
    from PIL import Image

    image = tmp_path / "a.png"
    Image.new("RGB", (16, 12), "red").save(image)
    options = {"base_url": server.url, "model": "served-vlm", "retry_backoff_s": 0.01}
    client = OpenAIChatClient("openai-reasoner", ModelSettings(max_new_tokens=8, options=options))
    [outcome] = client.complete([ChatRequest(images=[str(image)], prompt="where?")])
    return outcome


@pytest.mark.parametrize(
    ("message", "finish_reason", "named"),
    [
        ({"content": None}, "stop", "content None, finish_reason 'stop'"),
        (
            {"content": None, "refusal": "I can't help with that."},
            "stop",
            "refusal \"I can't help with that.\"",
        ),
        ({"content": ""}, "content_filter", "content '', finish_reason 'content_filter'"),
        ({"content": ""}, "length", "finish_reason 'length'"),
    ],
)
def test_an_answer_without_text_is_an_error_naming_what_was_sent(
    server, tmp_path, message, finish_reason, named
):
    server.message, server.finish_reason = message, finish_reason
    outcome = _complete(server, tmp_path)
    assert isinstance(outcome, EndpointError)
    assert f"endpoint {server.url} sent no answer text" in str(outcome)
    assert named in str(outcome)
    assert server.requests == 1  # an answer, not a transport failure: not sent again


def test_no_choice_is_an_error_and_an_empty_finished_answer_is_an_answer(server, tmp_path):
    server.choices = False
    outcome = _complete(server, tmp_path)
    assert isinstance(outcome, EndpointError) and "no choice" in str(outcome)
    server.choices, server.message = True, {"content": ""}
    assert _complete(server, tmp_path) == ""  # the model ended its answer with no text


def test_retry_failed_asks_again_after_answers_without_text(server, tmp_path):
    bench = rf.make_benchmark(tmp_path / "bench", n=3)
    config = rf.experiment(bench, tmp_path / "run", tmp_path / "cache")
    config["models"]["reasoner"] = {
        "adapter": "openai-reasoner",
        "options": {"base_url": server.url, "model": "served-vlm", "max_retries": 0},
    }
    config["pipelines"] = {"cot": {"kind": "cot", "reasoner": "reasoner", "grounder": "grounder"}}
    rf.register_fakes()
    try:
        server.message = {"content": None}
        first = run_experiment(parse_config(config))
        records = RunFolder(tmp_path / "run").read_predictions("cot")
        assert [r["error"]["category"] for r in records] == ["model_error"] * 3
        assert all("content None" in r["error"]["message"] for r in records)
        assert first.cache_misses == 3
        cache = StepCache(tmp_path / "cache")
        try:
            assert cache.entries() == 0  # no answer text: nothing stored
        finally:
            cache.close()

        server.message = {"content": ANSWER}  # the server is fixed
        again = run_experiment(parse_config(config), retry_failed={"model_error"})
    finally:
        rf.reset()
        rf.unregister_fakes()
    assert (again.cache_hits, again.cache_misses) == (0, 3)
    assert again.pipelines["cot"].retried == 3 and server.requests == 6
    records = RunFolder(tmp_path / "run").read_predictions("cot")
    assert [r["error"] for r in records] == [None] * 3
    assert all(json.loads(r["trace"][0]["raw_output"])["image"] == 2 for r in records)
