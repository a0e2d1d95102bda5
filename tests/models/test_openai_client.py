"""The served-model client against real HTTP servers on 127.0.0.1 that misbehave: errors, rate
limits, a server that never answers, one that drips its answer a byte at a time, and one that
echoes the API key back. Every case is bounded by short deadlines."""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from chat_server import JsonHandler, QuietServer, completion, serving
from PIL import Image
from repo_paths import TESTS

from cot_ground.models.base import ChatRequest, RequestErrors
from cot_ground.models.openai_chat import EndpointError
from cot_ground.models.registry import build
from cot_ground.models.settings import ModelSettings
from cot_ground.redaction import redact
from cot_ground.runner.batching import BatchCoordinator, BatchingEndToEnd

KEY = "sk-test-0123456789abcdef"
ANSWER = "In the first image: [100, 200, 300, 400]"


class Server:
    """``/MODE/v1/chat/completions`` for MODE in ok, error500, busy429 (429 for the first
    ``busy_first`` requests, then ok), hang (never answers), drip (a valid answer, one byte
    every 0.1 s) and echo401 (a 401 whose body repeats the key and the Authorization header)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.busy_first = 2
        self.release = threading.Event()  # ends every hanging or dripping handler
        server = self

        class Handler(JsonHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                mode = self.path.strip("/").split("/")[0]
                server.counts[mode] += 1
                if mode == "hang":
                    server.release.wait()
                    return
                if mode == "error500":
                    return self.reply(500, {"error": {"message": "internal"}})
                if mode == "busy429" and server.counts[mode] <= server.busy_first:
                    return self.reply(429, {"error": {"message": "slow down"}})
                if mode == "echo401":
                    auth = self.headers.get("Authorization", "")
                    body = {"error": {"message": f"invalid key {KEY}; you sent {auth}"}}
                    return self.reply(401, body)
                body = json.dumps(completion(ANSWER, "served-vlm")).encode()
                if mode != "drip":
                    return self.reply(200, body)
                self.head(200, len(body))
                for byte in body:
                    if server.release.wait(0.1):
                        return
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()

        self.httpd = QuietServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, mode: str) -> str:
        return f"{self.base}/{mode}/v1"


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    with serving(srv.httpd):
        yield srv
        srv.release.set()


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("served") / "a.png"
    Image.new("RGB", (16, 12), "red").save(path)
    return str(path)


def _e2e(url: str, **options: Any) -> Any:
    opts = {"base_url": url, "model": "served-vlm", "retry_backoff_s": 0.01, **options}
    return build("openai-e2e", ModelSettings(max_new_tokens=8, options=opts))


def _requests(image: str, n: int) -> list[ChatRequest]:
    return [ChatRequest(images=[image], prompt=f"find thing {i}") for i in range(n)]


def test_ok_batch(server, image):
    results = _e2e(server.url("ok"), concurrency=3).predict(_requests(image, 5))
    assert [r.image_index for r in results] == [0] * 5 and server.counts["ok"] == 5


def test_rate_limited_requests_are_retried(server, image):
    results = _e2e(server.url("busy429"), concurrency=1, max_retries=2).predict(_requests(image, 3))
    assert all(r.box is not None for r in results)
    assert server.counts["busy429"] == 3 + 2  # two 429 answers, each sent once more


def test_a_failing_batch_is_retried_once_not_twice(server, image):
    """3 examples, max_retries 2: 3 requests per example, also through the batch coordinator
    (which used to retry the whole failed batch one request at a time: 6 per example)."""
    coordinator = BatchCoordinator(max_batch=3)
    model = BatchingEndToEnd(_e2e(server.url("error500"), max_retries=2), coordinator)
    errors: list[BaseException] = []

    def example(request: ChatRequest) -> None:
        try:
            model.predict([request])
        except EndpointError as exc:
            errors.append(exc)
        finally:
            coordinator.leave()

    coordinator.join(3)  # all three live before any parks: one batch of 3
    threads = [threading.Thread(target=example, args=(r,)) for r in _requests(image, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(errors) == 3 and all("after 3 attempt(s)" in str(e) for e in errors)
    assert server.counts["error500"] == 9
    assert coordinator.batch_sizes()["openai-e2e.predict"] == [3]


def test_batch_failures_say_which_request_failed(server, image, tmp_path):
    requests = [*_requests(image, 2), ChatRequest(images=[str(tmp_path / "gone.png")], prompt="")]
    with pytest.raises(RequestErrors) as info:
        _e2e(server.url("ok")).predict(requests)
    results, errors = info.value.results, info.value.errors
    assert [r is not None for r in results] == [True, True, False]
    assert errors[:2] == [None, None] and "gone.png" in str(errors[2])
    assert server.counts["ok"] == 2


def test_a_dead_server_costs_the_same_for_any_batch_size(server, image):
    """A server that never answers: each round sends at most ``concurrency`` requests, then the
    round gives up on the rest; the number of requests sent does not grow with the batch."""
    sent = []
    for n in (2, 8):
        before = server.counts["hang"]
        with pytest.raises(RequestErrors) as info:
            _e2e(server.url("hang"), timeout_s=0.3, max_retries=1, concurrency=2).predict(
                _requests(image, n)
            )
        assert all("timeout_s=0.3" in str(e) for e in info.value.errors)
        sent.append(server.counts["hang"] - before)
    assert sent == [4, 4]  # 2 rounds × 2 in flight, for a batch of 2 and a batch of 8


def test_timeout_is_a_deadline_for_the_whole_answer(server, image):
    """The drip server sends a complete, valid answer one byte every 0.1 s (about 25 s in all),
    so no single read ever waits long: only a deadline on the whole request stops it."""
    model = _e2e(server.url("drip"), timeout_s=0.5, max_retries=0)
    with pytest.raises(EndpointError, match=r"timeout_s=0\.5"):  # the drip would have succeeded
        model.predict(_requests(image, 1))


def test_an_echoed_key_is_redacted_everywhere(server, image, monkeypatch):
    monkeypatch.setenv("ECHO_TEST_KEY", KEY)
    model = _e2e(server.url("echo401"), api_key_env="ECHO_TEST_KEY")
    with pytest.raises(EndpointError) as info:
        model.predict(_requests(image, 1))
    message = str(info.value)
    assert "401" in message and KEY not in message and "[redacted]" in message
    assert info.value.__cause__ is None  # the unredacted client error is not attached


def test_redaction_of_bearer_tokens_and_registered_secrets(monkeypatch):
    monkeypatch.setenv("SOME_SECRET", "hunter2-long")
    from cot_ground.redaction import register_secret_env

    register_secret_env("SOME_SECRET")
    text = "failed: hunter2-long; header Authorization: Bearer abc.DEF-123_x, 'Bearer q'"
    assert redact(text) == (
        "failed: [redacted]; header Authorization: Bearer [redacted], 'Bearer [redacted]'"
    )


def test_a_run_against_an_echoing_server_stores_no_key(server, tmp_path, monkeypatch, caplog):
    """The whole runner (JSONL, trace, run.json, report, logs) on a 401 server that echoes."""
    sys.path.insert(0, str(TESTS))
    import runner_fakes as rf

    from cot_ground.runner.config import parse_config
    from cot_ground.runner.run import run_experiment

    monkeypatch.setenv("ECHO_TEST_KEY", KEY)
    bench = rf.make_benchmark(tmp_path / "bench", n=2)
    config = rf.experiment(bench, tmp_path / "run", tmp_path / "cache")
    config["models"] = {
        "served": {
            "adapter": "openai-e2e",
            "options": {
                "base_url": server.url("echo401"),
                "model": "m",
                "api_key_env": "ECHO_TEST_KEY",
                "max_retries": 0,
            },
        }
    }
    config["pipelines"] = {"served": {"kind": "e2e", "model": "served"}}
    caplog.set_level(logging.DEBUG)
    run_experiment(parse_config(config))
    lines = (tmp_path / "run/predictions/served.jsonl").read_text().splitlines()
    errors = [json.loads(line)["error"] for line in lines]
    assert [e["category"] for e in errors] == ["model_error"] * 2
    assert all("401" in e["message"] and "[redacted]" in e["message"] for e in errors)
    stored = "".join(p.read_text() for p in (tmp_path / "run").rglob("*") if p.is_file())
    assert KEY not in stored and KEY not in caplog.text
