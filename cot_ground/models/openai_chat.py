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
  is resized here for the settings' ``min_pixels``/``max_pixels`` (both required) and sent as
  lossless PNG: to a fixed point of the model's ``smart_resize``, which the server keeps, or,
  where the range admits none (``min_pixels == max_pixels``, narrow ranges), to the size a local
  processor makes, which the server resizes once more
  (:func:`cot_ground.models.resize.served_input`; logged once per adapter). Either way the
  model input size is known exactly when the server runs the same pixel range
  (``docs/scaling.md``). A request with an image whose sent size has
  an aspect ratio above 200, which a server refuses, fails with
  :class:`~cot_ground.models.resize.ImageSizeError` naming the image, before anything is sent.
* ``frame`` (e2e only): the frame the served model answers in: ``unit``, ``qwen1000``,
  ``qwen3_1000`` or ``pixels``; default: the family's frame (``pixels`` for Qwen2.5-VL), else
  ``qwen1000``. ``pixels`` needs ``family`` (the resized size is known only then); a box is
  converted with the model input size of the image the answer names.

Every problem of the options (unknown keys, bad values such as ``concurrency: 0``) is reported
at once when the adapter is built, and by :func:`settings_problems` without building it.

Decoding is greedy (``temperature`` 0) unless ``do_sample``; ``max_new_tokens`` is sent as
``max_tokens``. A batch is sent in rounds (:meth:`OpenAIChatClient.complete`): connection
errors, missed deadlines, 429 and 5xx answers are retried in the next round, after the backoff;
then :class:`EndpointError` names the endpoint and the last error. An answer without text
(``content`` null, or empty with a ``refusal`` or a ``finish_reason`` other than ``stop``) is
an :class:`EndpointError` naming what the server sent, not an empty answer: the example is a
``model_error`` (never stored in the step-1 cache), which ``--retry-failed`` asks again. A
batch in which some requests failed raises :class:`~cot_ground.models.base.RequestErrors`, so
nothing is sent again by the caller. Error messages are redacted (:mod:`cot_ground.redaction`:
the value of ``api_key_env``, ``Bearer`` tokens) and carry no original exception.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cot_ground.boxes import Frame
from cot_ground.images import ImageLoadError, open_rgb
from cot_ground.models.base import ChatRequest, EndToEndResult, ReasonerResult, results_or_raise
from cot_ground.models.box_syntax import QWEN_FAMILY_FRAMES
from cot_ground.models.options import (
    OptionRule,
    option_problems,
    real_number,
    whole_number,
)
from cot_ground.models.resize import (
    ImageSizeError,
    ServedInput,
    SizeWH,
    family_factor,
    resize_to,
    served_input,
)
from cot_ground.models.settings import ModelSettings
from cot_ground.parsing import parse
from cot_ground.redaction import redact, register_secret_env

log = logging.getLogger(__name__)

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

_RULES: dict[str, OptionRule] = {
    "timeout_s": real_number(0, strict=True),
    "max_retries": whole_number(0),
    "retry_backoff_s": real_number(0),
    "concurrency": whole_number(1),
}
"""What each checked option's value must be (:mod:`cot_ground.models.options`)."""

ADAPTER_OPTIONS: dict[str, dict[str, Any]] = {"openai-reasoner": {}, "openai-e2e": {"frame": None}}
"""The options each adapter adds to the endpoint's, with their defaults."""


def settings_problems(name: str, settings: ModelSettings) -> list[str]:
    """Every problem of the settings of adapter ``name`` (a key of :data:`ADAPTER_OPTIONS`),
    all at once and without contacting the server: unknown options and bad values, a missing
    ``base_url`` or ``model``, an unknown ``family`` or one without a valid pixel range, an
    unknown ``frame`` or ``pixels`` without a family. The adapter raises them as one
    ``ValueError``; the pre-flight check can list them."""
    defaults = {**_OPTIONS, **ADAPTER_OPTIONS[name]}
    problems = option_problems(name, settings.options, defaults, _RULES)
    options = {**defaults, **settings.options}
    problems += [
        f"adapter {name!r} needs options.{key}" for key in ("base_url", "model") if not options[key]
    ]
    family = options["family"]
    if family is not None:
        try:
            family_factor(family)
        except ValueError as exc:
            problems.append(f"adapter {name!r}: {exc}")
        if settings.min_pixels is None or settings.max_pixels is None:
            problems.append(
                f"adapter {name!r}: options.family {family!r} resizes images on the client and "
                "needs min_pixels and max_pixels (the server's values)"
            )
        elif not 0 < settings.min_pixels <= settings.max_pixels:
            problems.append(
                f"adapter {name!r}: need 0 < min_pixels <= max_pixels, got "
                f"{settings.min_pixels}, {settings.max_pixels}"
            )
    if "frame" in defaults:
        frame = options["frame"]
        if frame is not None and frame not in _FRAME_NAMES:
            problems.append(
                f"adapter {name!r}: option frame must be one of {', '.join(_FRAME_NAMES)}, "
                f"got {frame!r}"
            )
        elif frame == Frame.PIXELS.value and family is None:
            problems.append(
                f"adapter {name!r}: the pixels frame needs the resized input size; set "
                "options.family (and min_pixels/max_pixels) so images are resized on the client"
            )
    return problems


_FRAME_NAMES = (*(f.value for f in Frame), "normalized")


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

    def __init__(self, name: str, settings: ModelSettings):
        """``name``: a key of :data:`ADAPTER_OPTIONS`; raises ``ValueError`` listing every
        problem :func:`settings_problems` finds."""
        self.name = name
        problems = settings_problems(name, settings)
        if problems:
            raise ValueError("; ".join(problems))
        self.options = {**_OPTIONS, **ADAPTER_OPTIONS[name], **settings.options}
        self.base_url = str(self.options["base_url"]).rstrip("/")
        if self.options["api_key_env"]:
            register_secret_env(str(self.options["api_key_env"]))
        self.family: str | None = self.options["family"]
        self.pixel_range: tuple[int, int] | None = None
        self._warned_twice = False
        if self.family is not None and settings.min_pixels and settings.max_pixels:
            self.factor = family_factor(self.family)
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

    def served_input(self, path: str) -> ServedInput:
        """The size the image at ``path`` is sent at and the model input the server makes of it
        (:func:`cot_ground.models.resize.served_input`). Raises ``ValueError`` when no
        ``family`` is set (the server's size is unknown then),
        :class:`~cot_ground.images.ImageLoadError` for an unreadable image and
        :class:`~cot_ground.models.resize.ImageSizeError` naming the image when a server would
        refuse its size."""
        if self.pixel_range is None:
            raise ValueError(f"adapter {self.name!r}: input sizes are known only with a family")
        size = open_rgb(path).size
        try:
            return served_input(size, self.factor, *self.pixel_range)
        except ImageSizeError as exc:
            raise ImageSizeError(f"image {path}: {exc}") from None

    def input_sizes_wh(self, paths: list[str]) -> list[SizeWH]:
        """The model input (width, height) of each image, in order: the pixel frame of a
        Qwen2.5-VL answer. Raises as :meth:`served_input`."""
        return [self.served_input(p).input_wh for p in paths]

    def image_url(self, path: str) -> str:
        """The ``data:`` URL (lossless PNG) sent for one image: the decoded picture
        (:func:`image_data_url`) at its own size when no family is set, else resized to
        :meth:`served_input`'s ``sent_wh``. Raises as :meth:`served_input`."""
        if self.pixel_range is None:
            return image_data_url(path)
        served = self.served_input(path)
        if served.resampled_twice and not self._warned_twice:
            self._warned_twice = True
            log.warning(
                "%s: %s is sent at %d×%d and the server resizes it again to %d×%d: "
                "min_pixels=%d, max_pixels=%d admit no size the server keeps as is; the "
                "picture is resampled twice and the pixel frame is exact only if the server's "
                "range equals this one and it runs the processor once on what it receives "
                "(vLLM). SGLang resizes first on its own: for Qwen2-VL/Qwen2.5-VL the frame "
                "is then exact for every picture only with min_pixels >= 3136 and max_pixels "
                "> 6272 (else boxes can be wrong with no error); for Qwen3-VL it can differ "
                "(logged once per adapter; docs/scaling.md)",
                self.name,
                path,
                *served.sent_wh,
                *served.input_wh,
                *self.pixel_range,
            )
        buffer = io.BytesIO()
        resize_to(open_rgb(path), served.sent_wh).save(buffer, format="PNG")
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
        (:class:`EndpointError`, redacted; :class:`~cot_ground.images.ImageLoadError`;
        :class:`~cot_ground.models.resize.ImageSizeError`, not sent).

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
            except (ImageLoadError, ImageSizeError) as exc:
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
            return self._answer_text(response), False

    def _answer_text(self, response: Any) -> str | EndpointError:
        """The text of the response's first choice; an :class:`EndpointError` (not retried)
        naming what the server sent when it holds no answer text: no choice, ``content`` null,
        or an empty ``content`` with a ``refusal`` or a ``finish_reason`` other than
        ``"stop"`` (``"length"``, ``"content_filter"``). An empty content that the model ended
        itself (``finish_reason`` ``"stop"``) is its answer."""
        choices = getattr(response, "choices", None) or []
        if not choices:
            return EndpointError(redact(f"endpoint {self.base_url} sent an answer with no choice"))
        choice = choices[0]
        message = getattr(choice, "message", None)
        content = getattr(message, "content", None)
        refusal = getattr(message, "refusal", None)
        finish = getattr(choice, "finish_reason", None)
        if content is None or (not content and (refusal or finish != "stop")):
            sent = f"content {content!r}, finish_reason {finish!r}"
            if refusal:
                sent += f", refusal {refusal!r}"
            return EndpointError(redact(f"endpoint {self.base_url} sent no answer text ({sent})"))
        return content

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
        self.client = OpenAIChatClient("openai-reasoner", settings)
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
        self.client = OpenAIChatClient("openai-e2e", settings)
        self.name = self.client.name
        family = self.client.family
        default = QWEN_FAMILY_FRAMES[family] if family else Frame.QWEN1000
        self.frame = Frame(self.client.options["frame"] or default)
        self.settings = {**self.client.settings, "frame": self.frame.value}

    def predict(self, requests: list[ChatRequest]) -> list[EndToEndResult]:
        """One :class:`EndToEndResult` per request."""
        return per_request(
            self.client.complete(requests),
            lambda i, text: self.result_from_text(text, self._input_sizes_wh(requests[i])),
        )

    def _input_sizes_wh(self, request: ChatRequest) -> list[SizeWH]:
        """The model input (w, h) of each image; needed (and computed) only for the pixels
        frame."""
        return self.client.input_sizes_wh(request.images) if self.frame is Frame.PIXELS else []

    def result_from_text(self, text: str, input_sizes_wh: Sequence[SizeWH] = ()) -> EndToEndResult:
        """The result for an answer ``text``, read by :func:`cot_ground.parsing.parse` in the
        adapter's frame; ``input_sizes_wh``: the model input (w, h) of each image (pixels frame:
        the server's size, :meth:`OpenAIChatClient.input_sizes_wh`).
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
