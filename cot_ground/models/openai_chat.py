"""Models behind an OpenAI-compatible chat endpoint (vLLM, SGLang, hosted APIs).

Every request is one user message: each image as a base64 ``data:`` URL (in order), then the
prompt. Options:

* ``base_url`` (required), e.g. ``http://127.0.0.1:8000/v1``; ``model`` (required): served name.
* ``api_key_env``: name of the environment variable holding the key, read at call time and never
  stored (default: none, sends the placeholder key ``EMPTY`` that local servers accept).
* ``timeout_s`` (60), ``max_retries`` (3), ``retry_backoff_s`` (1.0; doubles per retry),
  ``concurrency`` (4 requests in flight).
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
``max_tokens``. Connection errors, timeouts, 429 and 5xx answers are retried with backoff; then
:class:`EndpointError` names the endpoint and the last error.
"""

from __future__ import annotations

import base64
import io
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from cot_ground.boxes import Frame
from cot_ground.images import open_rgb
from cot_ground.models.base import ChatRequest, EndToEndResult, ReasonerResult
from cot_ground.models.options import resolve_options
from cot_ground.models.resize import (
    Size,
    answer_size,
    family_factor,
    model_input_size,
    resize_to,
)
from cot_ground.models.settings import ModelSettings
from cot_ground.parsing import parse_box
from cot_ground.records import ParseStatus

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
_MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif"}


class EndpointError(RuntimeError):
    """The endpoint could not be reached or refused the request; names the URL and the cause."""


def image_data_url(path: str) -> str:
    """``data:`` URL of an image file: its own bytes when JPEG/PNG/WebP/GIF, else PNG."""
    image = open_rgb(path)  # raises ImageLoadError naming the path
    data = Path(path).read_bytes()
    from PIL import Image

    with Image.open(io.BytesIO(data)) as probe:
        mime = _MIME.get(probe.format or "")
    if mime is None:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        data, mime = buffer.getvalue(), "image/png"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


class OpenAIChatClient:
    """Sends chat requests with images to one endpoint, with retries and backoff."""

    def __init__(self, name: str, settings: ModelSettings, extra_options: dict[str, Any]):
        self.name = name
        self.options = resolve_options(name, settings.options, {**_OPTIONS, **extra_options})
        for key in ("base_url", "model"):
            if not self.options[key]:
                raise ValueError(f"adapter {name!r} needs options.{key}")
        self.base_url = str(self.options["base_url"]).rstrip("/")
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

    def input_sizes(self, paths: list[str]) -> list[Size]:
        """The (width, height) each image is sent at (client-side resize), in order; raises
        ``ValueError`` when no ``family`` is set (the server's size is unknown then)."""
        if self.pixel_range is None:
            raise ValueError(f"adapter {self.name!r}: input sizes are known only with a family")
        return [
            model_input_size(open_rgb(p).size, self.factor, *self.pixel_range) for p in paths
        ]

    def image_url(self, path: str) -> str:
        """The ``data:`` URL sent for one image: resized to the model's input size (PNG) when
        a family is set, else the file's own bytes."""
        if self.pixel_range is None:
            return image_data_url(path)
        (size,) = self.input_sizes([path])
        buffer = io.BytesIO()
        resize_to(open_rgb(path), size).save(buffer, format="PNG")
        return f"data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"

    def _client(self) -> Any:
        import openai

        env = self.options["api_key_env"]
        key = "EMPTY"
        if env:
            key = os.environ.get(env, "")
            if not key:
                raise EndpointError(
                    f"adapter {self.name!r}: environment variable {env} (options.api_key_env) "
                    "is not set"
                )
        return openai.OpenAI(
            base_url=self.base_url,
            api_key=key,
            timeout=float(self.options["timeout_s"]),
            max_retries=0,
        )

    def complete(self, requests: list[ChatRequest]) -> list[str]:
        """The answer text of each request, in order."""
        if not requests:
            return []
        client = self._client()
        workers = max(1, min(int(self.options["concurrency"]), len(requests)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(lambda r: self._complete_one(client, r), requests))

    def _complete_one(self, client: Any, request: ChatRequest) -> str:
        import openai

        content: list[dict[str, Any]] = [
            {"type": "image_url", "image_url": {"url": self.image_url(p)}} for p in request.images
        ]
        content.append({"type": "text", "text": request.prompt})
        retryable = (
            openai.APIConnectionError,  # includes timeouts
            openai.RateLimitError,
            openai.InternalServerError,
        )
        attempts = 1 + max(0, int(self.options["max_retries"]))
        last: Exception | None = None
        for attempt in range(attempts):
            if attempt:
                time.sleep(float(self.options["retry_backoff_s"]) * 2 ** (attempt - 1))
            try:
                response = client.chat.completions.create(
                    model=self.options["model"],
                    messages=[{"role": "user", "content": content}],
                    max_tokens=self.max_tokens,
                    temperature=self.temperature,
                )
                return response.choices[0].message.content or ""
            except retryable as exc:
                last = exc
            except openai.APIError as exc:
                raise EndpointError(
                    f"endpoint {self.base_url} refused the request: {type(exc).__name__}: {exc}"
                ) from exc
        raise EndpointError(
            f"endpoint {self.base_url} failed after {attempts} attempt(s): "
            f"{type(last).__name__}: {last}"
        ) from last


class OpenAIReasoner:
    """CoT step 1 through an endpoint (answer parsed with :func:`parse_selection`)."""

    def __init__(self, settings: ModelSettings):
        self.client = OpenAIChatClient("openai-reasoner", settings, {})
        self.name = self.client.name
        self.settings = dict(self.client.settings)

    def reason(self, requests: list[ChatRequest]) -> list[ReasonerResult]:
        """One :class:`ReasonerResult` per request."""
        texts = self.client.complete(requests)
        return [
            ReasonerResult.from_text(text, len(request.images), self.settings)
            for request, text in zip(requests, texts, strict=True)
        ]


class OpenAIEndToEnd:
    """End-to-end grounding through an endpoint (answer parsed with :func:`parse_box`)."""

    def __init__(self, settings: ModelSettings):
        from cot_ground.models.qwen_vl import FAMILY_FRAMES

        self.client = OpenAIChatClient("openai-e2e", settings, {"frame": None})
        self.name = self.client.name
        family = self.client.family
        default = FAMILY_FRAMES[family] if family else Frame.QWEN1000
        self.frame = Frame(self.client.options["frame"] or default)
        if self.frame is Frame.PIXELS and family is None:
            raise ValueError(
                "adapter 'openai-e2e': the pixels frame needs the resized input size; set "
                "options.family (and min_pixels/max_pixels) so images are resized on the client"
            )
        self.settings = {**self.client.settings, "frame": self.frame.value}

    def predict(self, requests: list[ChatRequest]) -> list[EndToEndResult]:
        """One :class:`EndToEndResult` per request."""
        texts = self.client.complete(requests)
        if self.frame is not Frame.PIXELS:
            return [EndToEndResult.from_text(text, self.frame, self.settings) for text in texts]
        return [
            self.pixel_result(text, self.client.input_sizes(r.images))
            for text, r in zip(texts, requests, strict=True)
        ]

    def pixel_result(self, text: str, input_sizes: list[Size]) -> EndToEndResult:
        """The result for a pixel-frame answer; ``input_sizes``: the (w, h) each image was sent
        at. When the answer names no image and the sizes differ, no box is placed
        (``malformed``)."""
        probe = parse_box(text, Frame.QWEN1000)  # image index and status need no frame
        size = answer_size(probe.image_index, input_sizes)
        if probe.box is None or size is None:
            status = probe.status if probe.box is None else ParseStatus.MALFORMED
            return EndToEndResult(
                raw_text=text, image_index=probe.image_index, status=status,
                settings=dict(self.settings),
            )  # fmt: skip
        parsed = parse_box(text, Frame.PIXELS, size)
        return EndToEndResult(
            raw_text=text,
            image_index=probe.image_index,
            box=parsed.box.clipped() if parsed.box is not None else None,
            status=parsed.status,
            settings=dict(self.settings),
        )


def build_reasoner(settings: ModelSettings) -> OpenAIReasoner:
    """Registry factory for ``openai-reasoner``."""
    return OpenAIReasoner(settings)


def build_end_to_end(settings: ModelSettings) -> OpenAIEndToEnd:
    """Registry factory for ``openai-e2e``."""
    return OpenAIEndToEnd(settings)
