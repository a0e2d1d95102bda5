"""Qwen2-VL, Qwen2.5-VL and Qwen3-VL as reasoner, single-image grounder and end-to-end model.

The family is read from the checkpoint's ``config.json`` (``model_type``) and fixes the frame the
model states boxes in:

* ``qwen2_vl``   integers in ``[0, 1000)`` → :attr:`Frame.QWEN1000`
* ``qwen2_5_vl`` absolute pixels of the *resized* model input → :attr:`Frame.PIXELS`, with the
  size taken from the processor's ``image_grid_thw`` × patch size (never the original size);
  boxes are clipped to that image.
* ``qwen3_vl``   integers in ``[0, 1000]`` → :attr:`Frame.QWEN3_1000`

Prompts go through the checkpoint's chat template as one user turn: every image in order, then
the text. Decoding is greedy unless ``do_sample``; batches are left-padded, which gives the same
greedy tokens as one request at a time. ``min_pixels`` / ``max_pixels`` (per image) and
``max_new_tokens`` come from :class:`ModelSettings` and are recorded in ``settings`` and in
every result. Options: ``batch_size`` (default 4) and ``max_batch_visual_tokens`` (default
none): the most requests and visual tokens (images × their resized token count) one forward pass
holds, requests bucketed by image count and length (:mod:`cot_ground.models.batch_plan`);
``static_cache`` (default false; recorded when on): a static KV cache, which transformers
compiles the decoding step for on CUDA; ``preprocess_threads`` (4): worker threads for the
images of one batch (:mod:`cot_ground.models.threaded_images`; same tensors as one thread);
grounder ``prompt_file`` (a plain-text template with a ``{phrase}`` slot; default
``prompts/ground/<family>.txt``), used for every request that carries no ``prompt`` of its
own (a CoT variant with a ``step2`` field sends one);
grounder and end-to-end ``unit_floats`` (``reject``, the default, or ``fraction``): how a box of
four numbers in [0, 1], one written with a decimal point, is read in the integer frames
(:func:`cot_ground.parsing.parse_box`), recorded in ``settings``. The end-to-end adapter reads
the image an answer names with the request's prompt as the question
(:func:`cot_ground.mentions.read_image_choice`). The reasoner's ``yes_logprob`` gives the verify
graph log P("yes") from forward passes (:mod:`cot_ground.models.yes_score`). Option values are
checked before the checkpoint loads, every problem at once (:data:`OPTION_RULES`;
:func:`settings_problems` lists them without building the adapter).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cot_ground.boxes import Box, Frame
from cot_ground.models.base import (
    ChatRequest,
    EndToEndResult,
    GroundRequest,
    GroundResult,
    ModelLoadError,
    ReasonerResult,
)
from cot_ground.models.batch_plan import plan_batches
from cot_ground.models.box_syntax import QWEN_FAMILY_FRAMES
from cot_ground.models.hf_loading import (
    adapter_settings,
    check_model_folder,
    input_device,
    load_processor,
    load_weights,
    model_path,
    open_images,
    read_model_type,
)
from cot_ground.models.options import (
    PROCESSOR_OPTIONS,
    OptionRule,
    one_of,
    option_problems,
    resolve_options,
    true_or_false,
    whole_number,
)
from cot_ground.models.resize import SizeWH, model_input_size, visual_tokens
from cot_ground.models.settings import ModelSettings
from cot_ground.models.threaded_images import open_images_threaded, threaded
from cot_ground.models.yes_score import YesTokens, combine, score_rows
from cot_ground.parsing import UNIT_FLOATS, parse, parse_box
from cot_ground.paths import prompts_dir
from cot_ground.records import Candidate, text_hash
from cot_ground.scoring import apply_calibration

# Forward passes per call (see ``generate``) and the optional static-KV-cache decoding path.
BATCH_OPTIONS: dict[str, Any] = {
    "batch_size": 4,
    "max_batch_visual_tokens": None,
    "static_cache": False,
    "preprocess_threads": 4,
}

OPTION_RULES: dict[str, OptionRule] = {
    "batch_size": whole_number(1),
    "max_batch_visual_tokens": whole_number(1, optional=True),
    "static_cache": true_or_false,
    "preprocess_threads": whole_number(1),
    "fast_image_processor": true_or_false,
    "unit_floats": one_of(*UNIT_FLOATS),
}
"""What each checked option's value must be (:mod:`cot_ground.models.options`); a bad value
is refused before the checkpoint loads, and by :func:`settings_problems` in the pre-flight."""

ADAPTER_OPTIONS: dict[str, dict[str, Any]] = {
    "qwen-vl-reasoner": {},
    "qwen-vl-grounder": {"prompt_file": None, "unit_floats": "reject"},
    "qwen-vl-e2e": {"unit_floats": "reject"},
    "migician": {"calibration": None, "unit_floats": "reject"},
}
"""The options each Qwen-VL adapter adds to :data:`BATCH_OPTIONS` and the processor's, with
their defaults."""


def known_options(name: str, default_options: dict[str, Any]) -> dict[str, Any]:
    """Every option adapter ``name`` takes, with its default."""
    return {**BATCH_OPTIONS, **PROCESSOR_OPTIONS, **default_options}


def settings_problems(name: str, settings: ModelSettings) -> list[str]:
    """Problems of the options of Qwen-VL adapter ``name`` (a key of :data:`ADAPTER_OPTIONS`):
    unknown keys and bad values, all at once, loading nothing; for the pre-flight check."""
    defaults = known_options(name, ADAPTER_OPTIONS[name])
    return option_problems(name, settings.options, defaults, OPTION_RULES)


@dataclass(frozen=True)
class Generation:
    """Decoded answer of one request and the resized (width, height) of each input image."""

    text: str
    input_sizes_wh: list[SizeWH]


class QwenVLRunner:
    """A loaded Qwen-VL checkpoint (processor + model, shared per process) that generates."""

    def __init__(
        self,
        name: str,
        settings: ModelSettings,
        default_options: dict[str, Any],
        families: Sequence[str] = tuple(QWEN_FAMILY_FRAMES),
    ):
        from transformers import AutoModelForImageTextToText

        self.name = name
        self.options = resolve_options(
            name, settings.options, known_options(name, default_options), OPTION_RULES
        )
        fast = self.options["fast_image_processor"]
        path = model_path(settings, name)
        check_model_folder(path)
        self.family = read_model_type(path)
        if self.family not in families:
            raise ModelLoadError(
                f"{path}: adapter {name!r} needs model_type {' or '.join(families)}, "
                f"the checkpoint's config.json says {self.family!r}"
            )
        self.frame = QWEN_FAMILY_FRAMES[self.family]

        self.processor = load_processor(path, fast_image_processor=fast, left_padding=True)
        self.shared_processor = self.processor  # keeps the shared one alive for other runners
        if self.options["preprocess_threads"] > 1:  # this runner's own view of it
            self.processor = copy.copy(self.processor)
            self.processor.image_processor = threaded(
                self.processor.image_processor, self.options["preprocess_threads"]
            )
        self.model = load_weights(AutoModelForImageTextToText, path, settings)
        image_processor = self.processor.image_processor
        self.patch_size = int(image_processor.patch_size)
        self.merge_size = int(image_processor.merge_size)
        self.pixel_kwargs = {
            k: v
            for k, v in (("min_pixels", settings.min_pixels), ("max_pixels", settings.max_pixels))
            if v is not None
        }
        size = getattr(image_processor, "size", None) or {}
        self.generate_kwargs: dict[str, Any] = {
            "max_new_tokens": settings.max_new_tokens,
            "do_sample": settings.do_sample,
        }
        if not settings.do_sample:  # silence sampling settings a checkpoint may carry
            self.generate_kwargs.update(temperature=None, top_p=None, top_k=None)
        if self.options["static_cache"]:  # on CUDA, transformers then compiles decoding
            self.generate_kwargs["cache_implementation"] = "static"
        self.stop_ids = self._stop_ids()
        self.yes_tokens = YesTokens.of(self.processor.tokenizer)
        self.settings = adapter_settings(
            name,
            path,
            settings,
            {"family": self.family, "frame": self.frame.value},
            {
                "min_pixels": settings.min_pixels or size.get("shortest_edge"),
                "max_pixels": settings.max_pixels or size.get("longest_edge"),
                "max_new_tokens": settings.max_new_tokens,
                "do_sample": settings.do_sample,
                "fast_image_processor": fast,
            },
        )
        if self.options["static_cache"]:
            self.settings["static_cache"] = True

    def _stop_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        pad = self.processor.tokenizer.pad_token_id
        return ids | ({pad} if pad is not None else set())

    def chat_text(self, n_images: int, prompt: str) -> str:
        """The chat-templated text for one user turn: ``n_images`` images, then ``prompt``."""
        content: list[dict[str, Any]] = [{"type": "image"} for _ in range(n_images)]
        content.append({"type": "text", "text": prompt})
        messages = [{"role": "user", "content": content}]
        return self.processor.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False
        )

    def encode(
        self, requests: Sequence[tuple[Sequence[str], str]], answer_prefixes: Sequence[str] = ()
    ) -> Any:
        """Processor inputs (token ids, pixels, image grids) for ``(image paths, prompt)`` pairs;
        ``answer_prefixes`` (one per request, when given): text placed after the generation
        prompt, as if the model had started its answer with it."""
        texts = [self.chat_text(len(paths), prompt) for paths, prompt in requests]
        if answer_prefixes:
            texts = [t + a for t, a in zip(texts, answer_prefixes, strict=True)]
        paths = [p for request_paths, _ in requests for p in request_paths]
        images = open_images_threaded(paths, self.options["preprocess_threads"])
        return self.processor(
            text=texts,
            images=images or None,
            padding=True,
            return_tensors="pt",
            **self.pixel_kwargs,
        )

    def input_sizes_wh(self, paths: Sequence[str]) -> list[SizeWH]:
        """Resized (width, height) the model sees for each image (processor only, no model)."""
        return self._sizes_wh(self.encode([(paths, "")]), [len(paths)])[0]

    def _sizes_wh(self, inputs: Any, counts: Sequence[int]) -> list[list[SizeWH]]:
        grids = inputs.get("image_grid_thw")
        rows = [] if grids is None else grids.tolist()
        sizes: list[list[SizeWH]] = []
        start = 0
        for n in counts:
            sizes.append(
                [(w * self.patch_size, h * self.patch_size) for _, h, w in rows[start : start + n]]
            )
            start += n
        return sizes

    def visual_tokens(self, paths: Sequence[str]) -> int:
        """Language-model tokens the images of one request take (from their sizes alone)."""
        factor = self.patch_size * self.merge_size
        pixels = (int(self.settings["min_pixels"]), int(self.settings["max_pixels"]))
        return sum(
            visual_tokens(model_input_size(image.size, factor, *pixels), factor)
            for image in open_images(paths)
        )

    def generate(self, requests: Sequence[tuple[Sequence[str], str]]) -> list[Generation]:
        """Greedy (or sampled) answers for ``(image paths, prompt)`` pairs, in order.

        Forward passes follow :func:`~cot_ground.models.batch_plan.plan_batches`: bucketed by
        image count, visual tokens and prompt length, at most ``batch_size`` requests and at
        most ``max_batch_visual_tokens`` visual tokens each (when set)."""
        return self._planned(requests, self._generate_batch)

    def _planned(self, requests: Sequence[Any], run: Any) -> list[Any]:
        """``run`` on the forward passes of ``requests`` (tuples starting ``(image paths,
        text)``), planned as in :meth:`generate`; results in the caller's order."""
        tokens = [self.visual_tokens(r[0]) for r in requests]
        keys = [(len(r[0]), t, len(r[1])) for r, t in zip(requests, tokens, strict=True)]
        plan = plan_batches(
            keys, tokens, self.options["batch_size"], self.options["max_batch_visual_tokens"]
        )
        out: dict[int, Any] = {}
        for members in plan:
            results = run([requests[i] for i in members])
            out.update(zip(members, results, strict=True))
        return [out[i] for i in range(len(requests))]

    def yes_logprob(self, requests: Sequence[tuple[Sequence[str], str]]) -> list[float]:
        """Natural-log probability that the answer to each ``(image paths, prompt)`` pair starts
        with "yes" (:mod:`cot_ground.models.yes_score`: which token ids, how they are summed);
        forward passes planned as in :meth:`generate`, no generation."""
        suffixes = self.yes_tokens.suffixes()
        # (image paths, text to plan by, prompt, appended answer prefix)
        rows = [(p, prompt + s, prompt, s) for p, prompt in requests for s in suffixes]
        scores = self._planned(rows, self._yes_batch)
        n = len(suffixes)
        ids = [self.yes_tokens.suffix_ids(s) for s in suffixes]
        return [combine(scores[i * n : (i + 1) * n], ids) for i in range(len(requests))]

    def _yes_batch(self, rows: Sequence[tuple[Any, ...]]) -> list[tuple[float, float]]:
        inputs = self.encode([(r[0], r[2]) for r in rows], [r[3] for r in rows])
        inputs = inputs.to(input_device(self.model))
        suffixes = [self.yes_tokens.suffix_ids(r[3]) for r in rows]
        return score_rows(self.model, inputs, suffixes, self.yes_tokens)

    def _generate_batch(self, requests: Sequence[tuple[Sequence[str], str]]) -> list[Generation]:
        import torch

        inputs = self.encode(requests).to(input_device(self.model))
        sizes = self._sizes_wh(inputs, [len(paths) for paths, _ in requests])
        with torch.inference_mode():
            tokens = self.model.generate(**inputs, **self.generate_kwargs)
        new = tokens[:, inputs["input_ids"].shape[1] :].tolist()
        return [Generation(self._decode(ids), s) for ids, s in zip(new, sizes, strict=True)]

    def _decode(self, ids: list[int]) -> str:
        end = next((i for i, t in enumerate(ids) if t in self.stop_ids), len(ids))
        return self.processor.tokenizer.decode(ids[:end], skip_special_tokens=False)


def _runner(name: str, settings: ModelSettings) -> QwenVLRunner:
    return QwenVLRunner(name, settings, ADAPTER_OPTIONS[name])


class QwenVLReasoner:
    """CoT step 1: all images + the question → chosen image and a referring description."""

    def __init__(self, runner: QwenVLRunner):
        self.runner = runner
        self.name = runner.name
        self.settings = dict(runner.settings)

    def reason(self, requests: list[ChatRequest]) -> list[ReasonerResult]:
        """One :class:`ReasonerResult` per request (read once by :func:`parse_step1`)."""
        gens = self.runner.generate([(r.images, r.prompt) for r in requests])
        return [self.result_from_text(g.text, r) for g, r in zip(gens, requests, strict=True)]

    def result_from_text(self, text: str, request: ChatRequest) -> ReasonerResult:
        """The result for an answer ``text`` to ``request``."""
        return ReasonerResult.from_text(text, request, self.settings)

    def yes_logprob(self, requests: list[ChatRequest]) -> list[float]:
        """Natural-log P(the answer starts with "yes") per request, ≤ 0
        (:meth:`QwenVLRunner.yes_logprob`); the verify graph's log-probability rule."""
        return self.runner.yes_logprob([(r.images, r.prompt) for r in requests])

    @property
    def yes_tokens(self) -> dict[str, Any]:
        """Which token ids :meth:`yes_logprob` sums (:meth:`YesTokens.describe`)."""
        return self.runner.yes_tokens.describe()


def grounding_prompt_path(prompt_file: str | None, family: str) -> Path:
    """The grounding prompt file a ``qwen-vl-grounder`` reads: option ``prompt_file`` when set,
    else ``<cot_ground.paths.prompts_dir()>/ground/<family>.txt`` (``family``: the checkpoint's
    ``model_type``, e.g. ``qwen2_vl``); a pipeline's ``prompts_dir`` plays no part."""
    return Path(prompt_file) if prompt_file else prompts_dir() / "ground" / f"{family}.txt"


class QwenVLGrounder:
    """CoT step 2: one image + a phrase → candidate boxes (one per box in the answer, in order)."""

    def __init__(self, runner: QwenVLRunner):
        self.runner = runner
        self.name = runner.name
        path = grounding_prompt_path(runner.options["prompt_file"], runner.family)
        try:
            self.template = path.read_text(encoding="utf-8").rstrip("\n")
        except OSError as exc:
            raise ModelLoadError(f"grounding prompt file not readable: {path} ({exc})") from exc
        if "{phrase}" not in self.template:
            raise ModelLoadError(f"grounding prompt {path} has no {{phrase}} slot")
        self.unit_floats = str(runner.options["unit_floats"])
        self.settings = {
            **runner.settings,
            "prompt_file": str(path),
            "prompt_hash": text_hash(self.template),
            "unit_floats": self.unit_floats,
        }

    def prompt(self, request: GroundRequest) -> str:
        """The exact text sent for ``request``: its own ``prompt``, else the template around
        its ``phrase``."""
        if request.prompt is not None:
            return request.prompt
        return self.template.replace("{phrase}", request.phrase)

    def ground(self, requests: list[GroundRequest]) -> list[GroundResult]:
        """One :class:`GroundResult` per request."""
        gens = self.runner.generate([([r.image], self.prompt(r)) for r in requests])
        return [self.result_from_text(g.text, g.input_sizes_wh[0]) for g in gens]

    def result_from_text(self, text: str, input_size_wh: SizeWH) -> GroundResult:
        """Candidates read from ``text``; ``input_size_wh`` is the resized (w, h) the model saw."""
        parsed = parse_box(text, self.runner.frame, input_size_wh, unit_floats=self.unit_floats)
        boxes = [_in_frame(b, self.runner.frame) for b in parsed.boxes]
        return GroundResult(
            candidates=[Candidate(box=b) for b in boxes],
            raw_text=text,
            status=parsed.status,
            settings=dict(self.settings),
        )


class QwenVLEndToEnd:
    """All images + the question → image index (when the answer names one) and box."""

    def __init__(self, runner: QwenVLRunner, calibration: str | None = None):
        self.runner = runner
        self.name = runner.name
        self.calibration = calibration
        self.unit_floats = str(runner.options["unit_floats"])
        self.settings = {**runner.settings, "unit_floats": self.unit_floats}
        if calibration is not None:
            apply_calibration(Box.from_unit([0, 0, 1, 1]), calibration)  # unknown name → error
            self.settings["calibration"] = calibration

    def predict(self, requests: list[ChatRequest]) -> list[EndToEndResult]:
        """One :class:`EndToEndResult` per request."""
        gens = self.runner.generate([(r.images, r.prompt) for r in requests])
        return [
            self.result_from_text(g.text, g.input_sizes_wh, r.prompt)
            for g, r in zip(gens, requests, strict=True)
        ]

    def result_from_text(
        self, text: str, input_sizes_wh: Sequence[SizeWH], question: str | None = None
    ) -> EndToEndResult:
        """Image index and first box of ``text``; ``input_sizes_wh``: resized (w, h) per image;
        ``question``: the prompt answered (tells echoed reference images from a choice).

        Read by :func:`cot_ground.parsing.parse`: in the pixel frame the box is converted with
        the size of the image the answer names; when it names none and the images differ in
        size, the box cannot be placed and the status is ``malformed`` (no box is made up).
        """
        frame = self.runner.frame
        parsed = parse(text, frame, input_sizes_wh, unit_floats=self.unit_floats, question=question)
        box = _in_frame(parsed.box, frame) if parsed.box is not None else None
        if box is not None and self.calibration is not None:
            box = apply_calibration(box, self.calibration)
        return EndToEndResult.from_parse(text, parsed, box, self.settings)


def _in_frame(box: Box, frame: Frame) -> Box:
    """Pixel answers can fall outside the resized input: clip them to it."""
    return box.clipped() if frame is Frame.PIXELS else box


def build_reasoner(settings: ModelSettings) -> QwenVLReasoner:
    """Registry factory for ``qwen-vl-reasoner``."""
    return QwenVLReasoner(_runner("qwen-vl-reasoner", settings))


def build_grounder(settings: ModelSettings) -> QwenVLGrounder:
    """Registry factory for ``qwen-vl-grounder``."""
    return QwenVLGrounder(_runner("qwen-vl-grounder", settings))


def build_end_to_end(settings: ModelSettings) -> QwenVLEndToEnd:
    """Registry factory for ``qwen-vl-e2e`` (direct inference, no fine-tune)."""
    return QwenVLEndToEnd(_runner("qwen-vl-e2e", settings))
