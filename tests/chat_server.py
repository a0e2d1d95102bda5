"""A local HTTP server for the OpenAI-compatible client tests: JSON replies, a chat-completion
body and the thread that serves it."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def completion(text: str, model: str) -> dict[str, Any]:
    """A ``chat.completion`` body whose one choice answers ``text``."""
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


class JsonHandler(BaseHTTPRequestHandler):
    """A request handler that answers JSON and logs nothing."""

    def head(self, status: int, length: int) -> None:
        """Status line and headers of a JSON body of ``length`` bytes."""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def reply(self, status: int, payload: dict[str, Any] | bytes) -> None:
        """Answer ``payload`` (a dict is JSON-encoded) with ``status``."""
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.head(status, len(data))
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


class QuietServer(ThreadingHTTPServer):
    """A threaded server whose handler threads die with the test and print nothing: a client
    that gave up closes its socket mid-answer, and the traceback of that broken pipe would
    otherwise land in whatever output a later test captures."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


@contextlib.contextmanager
def serving(httpd: ThreadingHTTPServer) -> Iterator[None]:
    """Serve ``httpd`` from a thread while the block runs; shut it down and close it after."""
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        httpd.shutdown()
        httpd.server_close()
