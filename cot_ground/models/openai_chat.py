"""Models behind an OpenAI-compatible chat endpoint (vLLM, SGLang, hosted APIs).

Every request is one user message: each image as a base64 ``data:`` URL (in order), then the
prompt. An image is sent as the lossless PNG of the picture :func:`cot_ground.images.open_rgb`
decodes (EXIF orientation applied, transparency on white), never as the file's own bytes, so a
served model sees the pixels a local one sees. Options:

* ``base_url`` (required), e.g. ``http://127.0.0.1:8000/v1``; ``model`` (required): served name.
* ``api_key_env``: name of the environment variable holding the key, read at call time and never
  stored (default: none, sends the placeholder key ``EMPTY`` that local servers accept).
* ``timeout_s`` (60): a deadline per request for the whole answer (a server that sends one byte
  a second is cut off at it); ``max_retries`` (3), ``retry_backoff_s`` (1.0; doubles per
  retry), ``concurrency`` (4 requests in flight).
* ``family`` (default none): ``qwen2_vl``, ``qwen2_5_vl`` or ``qwen3_vl``. When set, every image
  is resized here to the size the model's own processor would give it for the settings'
  ``min_pixels``/``max_pixels`` (both required; :mod:`cot_ground.models.resize`) and sent as
  lossless PNG, so the input size the server sees is known exactly. The server must be started
  with the same pixel range (``docs/scaling.md``) so it does not resize again.
* ``frame`` (e2e only): the frame the served model answers in: ``unit``, ``qwen1000``,
  ``qwen3_1000`` or ``pixels``; default: the family's frame (``pixels`` for Qwen2.5-VL), else
  ``qwen1000``. ``pixels`` needs ``family`` (the resized size is known only then); a box is
  converted with the resized size of the image the answer names.

Decoding is greedy (``temperature`` 0) unless ``do_sample``; ``max_new_tokens`` is sent as
``max_tokens``. A batch is sent in rounds (:meth:`OpenAIChatClient.complete`): connection
errors, missed deadlines, 429 and 5xx answers are retried in the next round, after the backoff;
then :class:`EndpointError` names the endpoint and the last error. A batch in which some
requests failed raises :class:`~cot_ground.models.base.RequestErrors`, so nothing is sent
again by the caller. Error messages are redacted (:mod:`cot_ground.redaction`: the value of
``api_key_env``, ``Bearer`` tokens) and carry no original exception.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cot_ground.boxes import Frame
from cot_ground.images import ImageLoadError, open_rgb
from cot_ground.models.base import ChatRequest, EndToEndResult, ReasonerResult, results_or_raise
from cot_ground.models.box_syntax import QWEN_FAMILY_FRAMES
from cot_ground.models.options import resolve_options
from cot_ground.models.resize import SizeWH, family_factor, model_input_size, resize_to
from cot_ground.models.settings import ModelSettings
from cot_ground.parsing import parse
from cot_ground.redaction import redact, register_secret_env

_OPTIONS: dict[str, Any] = {
    "base_url": None,
    "model": None,
    "api_key_env": None,
    "timeout_s": 60.0,
    "max_retries": 3,
    "retry_backoff_s": 1.0,
    "concurrency": 4,
    "family": None,
}


class EndpointError(RuntimeError):
    """The endpoint could not be reached or refused the request; names the URL and the cause."""


def image_data_url(path: str) -> str:
    """``data:`` URL (lossless PNG) of the picture :func:`~cot_ground.images.open_rgb` decodes
    from ``path``: a served model sees the same pixels as a local one (EXIF orientation applied,
    transparency on white, 8-bit RGB). Raises :class:`~cot_ground.images.ImageLoadError`."""
    buffer = io.BytesIO()
    open_rgb(path).save(buffer, format="PNG")
    return f"data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


class OpenAIChatClient:
    """Sends chat requests with images to one endpoint, with retries and backoff."""

    def __init__(self, name: str, settings: ModelSettings, extra_options: dict[str, Any]):
        self.name = name
        self.options = resolve_options(name, settings.options, {**_OPTIONS, **extra_options})
        for key in ("base_url", "model"):
            if not self.options[key]:
                raise ValueError(f"adapter {name!r} needs options.{key}")
        self.base_url = str(self.options["base_url"]).rstrip("/")
        if self.options["api_key_env"]:
            register_secret_env(str(self.options["api_key_env"]))
        self.family: str | None = self.options["family"]
        self.pixel_range: tuple[int, int] | None = None
        if self.family is not None:
            self.factor = family_factor(self.family)
            if settings.min_pixels is None or settings.max_pixels is None:
                raise ValueError(
                    f"adapter {name!r}: options.family {self.family!r} resizes images on the "
                    "client and needs min_pixels and max_pixels (the server's values)"
                )
            self.pixel_range = (settings.min_pixels, settings.max_pixels)
        self.max_tokens = settings.max_new_tokens
        self.temperature = 1.0 if settings.do_sample else 0.0
        self.settings: dict[str, Any] = {
            "adapter": name,
            "base_url": self.base_url,
            "model": self.options["model"],
            "max_new_tokens": self.max_tokens,
            "do_sample": settings.do_sample,
            "temperature": self.temperature,
        }
        if self.pixel_range is not None:
            self.settings.update(
                family=self.family,
                min_pixels=self.pixel_range[0],
                max_pixels=self.pixel_range[1],
                resize="client",
            )

    def input_sizes_wh(self, paths: list[str]) -> list[SizeWH]:
        """The (width, height) each image is sent at (client-side resize), in order; raises
        ``ValueError`` when no ``family`` is set (the server's size is unknown then)."""
        if self.pixel_range is None:
            raise ValueError(f"adapter {self.name!r}: input sizes are known only with a family")
        return [model_input_size(open_rgb(p).size, self.factor, *self.pixel_range) for p in paths]

    def image_url(self, path: str) -> str:
        """The ``data:`` URL sent for one image: resized to the model's input size (PNG) when
        a family is set, else the file's own bytes."""
        if self.pixel_range is None:
            return image_data_url(path)
        (size,) = self.input_sizes_wh([path])
        buffer = io.BytesIO()
        resize_to(open_rgb(path), size).save(buffer, format="PNG")
        return f"data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"

    def _api_key(self) -> str:
        env = self.options["api_key_env"]
        if not env:
            return "EMPTY"
        key = os.environ.get(env, "")
        if not key:
            raise EndpointError(
                f"adapter {self.name!r}: environment variable {env} (options.api_key_env) "
                "is not set"
            )
        return key

    def complete(self, requests: list[ChatRequest]) -> list[str | Exception]:
        """The answer text of each request, in order, or the exception that request ended with
        (:class:`EndpointError`, redacted; :class:`~cot_ground.images.ImageLoadError`).

        Raises :class:`EndpointError` only for what fails every request (no API key).
        """
        if not requests:
            return []
        key = self._api_key()
        unreadable: dict[int, Exception] = {}
        contents: dict[int, list[dict[str, Any]]] = {}
        for i, request in enumerate(requests):
            try:
                contents[i] = self._content(request)
            except ImageLoadError as exc:
                unreadable[i] = exc
        sent = _run_coroutine(self._send_all(key, contents))
        return [sent[i] if i in sent else unreadable[i] for i in range(len(requests))]

    def _content(self, request: ChatRequest) -> list[dict[str, Any]]:
        content: list[dict[str, Any]] = [
            {"type": "image_url", "image_url": {"url": self.image_url(p)}} for p in request.images
        ]
        content.append({"type": "text", "text": request.prompt})
        return content

    async def _send_all(
        self, key: str, contents: dict[int, list[dict[str, Any]]]
    ) -> dict[int, str | Exception]:
        """Send every request in rounds: a round sends all unfinished requests (``concurrency``
        at a time); retryable failures (connection, deadline, 429, 5xx) go to the next round
        after the backoff, for at most ``1 + max_retries`` rounds. When the server looks dead in
        a round (a connection failure or a missed deadline before any answer), the requests of
        that round not yet sent are not sent: waiting on a dead server does not grow with the
        batch size."""
        import openai

        out: dict[int, str | Exception] = {}
        tries = dict.fromkeys(contents, 0)
        pending = sorted(contents)
        rounds = 1 + max(0, int(self.options["max_retries"]))
        async with openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=key,
            timeout=float(self.options["timeout_s"]),
            max_retries=0,
        ) as client:
            for number in range(rounds):
                if number:
                    await asyncio.sleep(float(self.options["retry_backoff_s"]) * 2 ** (number - 1))
                state = _Round(asyncio.Semaphore(max(1, int(self.options["concurrency"]))))
                answers = await asyncio.gather(
                    *(self._send_one(client, contents[i], state) for i in pending)
                )
                retry = []
                for i, (answer, retryable) in zip(pending, answers, strict=True):
                    if answer is not _SKIPPED:
                        tries[i] += 1
                    out[i] = answer if answer is not _SKIPPED else state.down  # type: ignore[assignment]
                    if retryable:
                        retry.append(i)
                pending = retry
                if not pending:
                    break
        for i in pending:
            what = (
                f"failed after {tries[i]} attempt(s)"
                if tries[i]
                else f"was not sent: the server looked down in each of {rounds} round(s)"
            )
            out[i] = self._failure(out[i], what)  # type: ignore[arg-type]
        return out

    async def _send_one(
        self, client: Any, content: list[dict[str, Any]], state: _Round
    ) -> tuple[Any, bool]:
        """``(answer text or exception, retryable)``; ``_SKIPPED`` when the round found the
        server dead before this request was sent."""
        import openai

        async with state.slots:
            if state.down is not None:
                return _SKIPPED, True
            deadline = float(self.options["timeout_s"])
            try:
                response = await asyncio.wait_for(
                    client.chat.completions.create(
                        model=self.options["model"],
                        messages=[{"role": "user", "content": content}],
                        max_tokens=self.max_tokens,
                        temperature=self.temperature,
                    ),
                    timeout=deadline,
                )
            except (TimeoutError, openai.APIConnectionError) as exc:  # includes openai timeouts
                if isinstance(exc, TimeoutError):
                    exc = TimeoutError(f"no complete answer within timeout_s={deadline:g} s")
                if not state.answered:
                    state.down = exc
                return exc, True
            except (openai.RateLimitError, openai.InternalServerError) as exc:
                return exc, True
            except openai.APIError as exc:
                return self._failure(exc, "refused the request"), False
            state.answered = True
            return response.choices[0].message.content or "", False

    def _failure(self, exc: BaseException, what: str) -> EndpointError:
        """An :class:`EndpointError` naming the endpoint, its message redacted (API key,
        ``Bearer`` tokens) and without the original exception attached."""
        message = f"endpoint {self.base_url} {what}: {type(exc).__name__}: {exc}"
        return EndpointError(redact(message))


_SKIPPED = object()


class _Round:
    """Shared state of one round of requests: free slots, and whether the server is down."""

    def __init__(self, slots: asyncio.Semaphore) -> None:
        self.slots = slots
        self.answered = False
        self.down: Exception | None = None


def _run_coroutine(coroutine: Any) -> Any:
    """Run ``coroutine`` to the end from synchronous code, also where an event loop is already
    running in this thread (a notebook): then in a helper thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


class OpenAIReasoner:
    """CoT step 1 through an endpoint (answer read once by :func:`parse_step1`)."""

    def __init__(self, settings: ModelSettings):
        self.client = OpenAIChatClient("openai-reasoner", settings, {})
        self.name = self.client.name
        self.settings = dict(self.client.settings)

    def reason(self, requests: list[ChatRequest]) -> list[ReasonerResult]:
        """One :class:`ReasonerResult` per request."""
        return per_request(
            self.client.complete(requests),
            lambda i, text: ReasonerResult.from_text(text, requests[i], self.settings),
        )


class OpenAIEndToEnd:
    """End-to-end grounding through an endpoint (answer read by :func:`parse`)."""

    def __init__(self, settings: ModelSettings):
        self.client = OpenAIChatClient("openai-e2e", settings, {"frame": None})
        self.name = self.client.name
        family = self.client.family
        default = QWEN_FAMILY_FRAMES[family] if family else Frame.QWEN1000
        self.frame = Frame(self.client.options["frame"] or default)
        if self.frame is Frame.PIXELS and family is None:
            raise ValueError(
                "adapter 'openai-e2e': the pixels frame needs the resized input size; set "
                "options.family (and min_pixels/max_pixels) so images are resized on the client"
            )
        self.settings = {**self.client.settings, "frame": self.frame.value}

    def predict(self, requests: list[ChatRequest]) -> list[EndToEndResult]:
        """One :class:`EndToEndResult` per request."""
        return per_request(
            self.client.complete(requests),
            lambda i, text: self.result_from_text(text, self._input_sizes_wh(requests[i])),
        )

    def _input_sizes_wh(self, request: ChatRequest) -> list[SizeWH]:
        """The (w, h) each image was sent at; needed (and computed) only for the pixels frame."""
        return self.client.input_sizes_wh(request.images) if self.frame is Frame.PIXELS else []

    def result_from_text(self, text: str, input_sizes_wh: Sequence[SizeWH] = ()) -> EndToEndResult:
        """The result for an answer ``text``, read by :func:`cot_ground.parsing.parse` in the
        adapter's frame; ``input_sizes_wh``: the (w, h) each image was sent at (pixels frame).
        A pixel answer that names no image while the sizes differ places no box
        (``malformed``); pixel boxes are clipped to the image."""
        parsed = parse(text, self.frame, input_sizes_wh)
        box = parsed.box
        if box is not None and self.frame is Frame.PIXELS:
            box = box.clipped()
        return EndToEndResult.from_parse(text, parsed, box, self.settings)


def per_request(outcomes: list[str | Exception], build: Callable[[int, str], Any]) -> list[Any]:
    """``build(i, text)`` for each answered request; a failed request's exception is raised
    alone for one request, else as :class:`~cot_ground.models.base.RequestErrors` carrying
    every result and error (so a batch is never sent again because one request failed)."""
    results: list[Any] = []
    errors: list[BaseException | None] = []
    for i, outcome in enumerate(outcomes):
        failed = isinstance(outcome, Exception)
        results.append(None if failed else build(i, outcome))  # type: ignore[arg-type]
        errors.append(outcome if failed else None)  # type: ignore[arg-type]
    return results_or_raise(results, errors)


def build_reasoner(settings: ModelSettings) -> OpenAIReasoner:
    """Registry factory for ``openai-reasoner``."""
    return OpenAIReasoner(settings)


def build_end_to_end(settings: ModelSettings) -> OpenAIEndToEnd:
    """Registry factory for ``openai-e2e``."""
    return OpenAIEndToEnd(settings)
