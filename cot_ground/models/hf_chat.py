"""Any transformers multi-image chat model (``AutoModelForImageTextToText``) as CoT reasoner,
and, for families with a stated box syntax, as single-image grounder or end-to-end model.

Works for checkpoints whose processor has a chat template that accepts several images in one
user turn (InternVL -hf, LLaVA-OneVision, Idefics3, SmolVLM, Gemma 3, ...). The prompt is one
user turn: every image in order, then the text, rendered by the checkpoint's own chat template
(its hash is in ``settings["chat_template_hash"]``). How images are handed to the processor is
per family (:data:`FLAT_IMAGE_FAMILIES` take one flat list for the batch, every other family a
list per request). Batches are left-padded and decoded greedily (unless ``do_sample``); the
answer is the new tokens up to the first end-of-sequence or pad token.

* Reasoner (``hf-chat-reasoner``): any such checkpoint; the answer is read once with
  :func:`~cot_ground.parsing.parse_step1` (the request's answer kind and question); its
  ``yes_logprob`` gives the verify graph log P("yes") (:mod:`cot_ground.models.yes_score`).
* Grounder / end-to-end (``hf-chat-grounder``, ``hf-chat-e2e``): only families listed in
  :data:`cot_ground.models.box_syntax.BOX_SYNTAX` (``model_type`` from ``config.json``); others
  are refused at build time, since their box frame is not stated. PaliGemma
  (:data:`PROMPT_FAMILIES`) has no chat: it is a grounder only, prompted with its image tokens
  and ``detect {phrase}``.

Options: ``batch_size`` (4), ``fast_image_processor`` (False: the slow image processor the
checkpoint was saved with; recorded); grounder ``prompt_template`` (text with a ``{phrase}`` slot;
default: the family's grounding prompt from the box-syntax table), used when a request carries
no ``prompt`` of its own. Option values are checked before anything loads, every problem at once
(:data:`OPTION_RULES`; :func:`settings_problems` lists them without building the adapter).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cot_ground.mentions import image_choice
from cot_ground.models.base import (
    ChatRequest,
    EndToEndResult,
    GroundRequest,
    GroundResult,
    ModelLoadError,
    ReasonerResult,
)
from cot_ground.models.batch_plan import in_batches
from cot_ground.models.box_syntax import BoxSyntax, box_syntax
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
    PROCESSOR_RULES,
    OptionRule,
    option_problems,
    resolve_options,
    text,
    whole_number,
)
from cot_ground.models.settings import ModelSettings
from cot_ground.models.yes_score import YesTokens, combine, score_rows
from cot_ground.parsing import answer_text
from cot_ground.records import Candidate, text_hash

# processors that take the images of a whole batch as one flat list (the others: one list per
# request; a flat list there is read as one image per prompt or tiled per image)
FLAT_IMAGE_FAMILIES = frozenset({"internvl"})
# families that read a raw prompt after their image tokens, not a chat (PaliGemma:
# "<image>detect cat"; the processor adds the begin-of-text token and the final newline); they
# can only be grounders
PROMPT_FAMILIES = frozenset({"paligemma"})

ADAPTER_OPTIONS: dict[str, dict[str, Any]] = {
    "hf-chat-reasoner": {},
    "hf-chat-grounder": {"prompt_template": None},
    "hf-chat-e2e": {},
}
"""The options each adapter adds to ``batch_size`` (4) and the processor's, with defaults."""

OPTION_RULES: dict[str, OptionRule] = {
    "batch_size": whole_number(1),
    **PROCESSOR_RULES,
    "prompt_template": text(slot="{phrase}", optional=True),
}
"""What each option's value must be (:mod:`cot_ground.models.options`)."""


def known_options(name: str) -> dict[str, Any]:
    """Every option adapter ``name`` (a key of :data:`ADAPTER_OPTIONS`) takes, with its
    default."""
    return {"batch_size": 4, **PROCESSOR_OPTIONS, **ADAPTER_OPTIONS[name]}


def settings_problems(name: str, settings: ModelSettings) -> list[str]:
    """Problems of the options of adapter ``name`` (a key of :data:`ADAPTER_OPTIONS`): unknown
    keys and bad values (``batch_size: "4"``, a ``prompt_template`` without ``{phrase}``), all
    at once, loading nothing; for the pre-flight check."""
    return option_problems(name, settings.options, known_options(name), OPTION_RULES)


class ChatRunner:
    """A loaded chat checkpoint (processor + model, shared per process) that generates."""

    def __init__(
        self,
        name: str,
        settings: ModelSettings,
        role: str = "reasoner",
    ):
        """``name``: a key of :data:`ADAPTER_OPTIONS`; ``role``: ``reasoner``, ``grounder`` or
        ``e2e``. The option values (``ValueError`` listing every problem), then what the family
        must offer for the role (a chat, a stated box syntax), the folder and the chat template
        are checked before any weights load."""
        from transformers import AutoModelForImageTextToText

        self.name = name
        self.options = resolve_options(name, settings.options, known_options(name), OPTION_RULES)
        fast = bool(self.options["fast_image_processor"])
        path = model_path(settings, name)
        check_model_folder(path)
        self.family = read_model_type(path)
        if self.family in PROMPT_FAMILIES and role != "grounder":
            raise ModelLoadError(
                f"adapter {name!r}: model_type {self.family!r} reads a raw prompt, not a "
                "chat; it can only be a grounder (hf-chat-grounder)"
            )
        self.syntax = box_syntax(self.family)
        if role != "reasoner" and self.syntax is None:
            raise ModelLoadError(
                f"adapter {name!r}: model_type {self.family!r} has no stated box syntax and "
                f"frame (see cot_ground.models.box_syntax); use it as a reasoner only"
            )
        self.processor = load_processor(path, fast_image_processor=fast, left_padding=True)
        template = getattr(self.processor, "chat_template", None)
        if not template and self.family not in PROMPT_FAMILIES:
            raise ModelLoadError(
                f"{path}: adapter {name!r} needs a processor with a chat template "
                f"(model_type {self.family!r} has none)"
            )
        self.model = load_weights(AutoModelForImageTextToText, path, settings)
        self.generate_kwargs: dict[str, Any] = {
            "max_new_tokens": settings.max_new_tokens,
            "do_sample": settings.do_sample,
        }
        if not settings.do_sample:  # silence sampling settings a checkpoint may carry
            self.generate_kwargs.update(temperature=None, top_p=None, top_k=None)
        self.stop_ids = self._stop_ids()
        self.yes_tokens = YesTokens.of(self.processor.tokenizer)
        template_hash = text_hash(str(template)) if template else None
        self.settings = adapter_settings(
            name,
            path,
            settings,
            {"family": self.family, "chat_template_hash": template_hash},
            {
                "max_new_tokens": settings.max_new_tokens,
                "do_sample": settings.do_sample,
                "fast_image_processor": fast,
            },
        )

    def _stop_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        pad = self.processor.tokenizer.pad_token_id
        return ids | ({pad} if pad is not None else set())

    def chat_text(self, n_images: int, prompt: str) -> str:
        """The chat-templated text of one user turn: ``n_images`` images, then ``prompt`` (for
        :data:`PROMPT_FAMILIES`: the processor's image token ``n_images`` times, then
        ``prompt``)."""
        if self.family in PROMPT_FAMILIES:
            return self.processor.image_token * n_images + prompt
        content: list[dict[str, Any]] = [{"type": "image"} for _ in range(n_images)]
        content.append({"type": "text", "text": prompt})
        messages = [{"role": "user", "content": content}]
        return self.processor.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False
        )

    def encode(
        self, requests: Sequence[tuple[Sequence[str], str]], answer_prefixes: Sequence[str] = ()
    ) -> Any:
        """Processor inputs (left-padded token ids, pixels) for ``(image paths, prompt)`` pairs;
        ``answer_prefixes`` (one per request, when given): text placed after the generation
        prompt, as if the model had started its answer with it."""
        texts = [self.chat_text(len(paths), prompt) for paths, prompt in requests]
        if answer_prefixes:
            texts = [t + a for t, a in zip(texts, answer_prefixes, strict=True)]
        per_request = [open_images(paths) for paths, _ in requests]
        images: Any
        if self.family in FLAT_IMAGE_FAMILIES:
            images = [img for imgs in per_request for img in imgs] or None
        else:
            images = per_request if any(per_request) else None
        return self.processor(text=texts, images=images, padding=True, return_tensors="pt")

    def generate(self, requests: Sequence[tuple[Sequence[str], str]]) -> list[str]:
        """Greedy (or sampled) answers for ``(image paths, prompt)`` pairs, in order."""
        return in_batches(requests, int(self.options["batch_size"]), self._generate_batch)

    def yes_logprob(self, requests: Sequence[tuple[Sequence[str], str]]) -> list[float]:
        """Natural-log probability that the answer to each ``(image paths, prompt)`` pair starts
        with "yes" (:mod:`cot_ground.models.yes_score`: which token ids, how they are summed);
        forward passes of at most ``batch_size`` rows, no generation."""
        suffixes = self.yes_tokens.suffixes()
        rows = [(paths, prompt, s) for paths, prompt in requests for s in suffixes]
        scores = in_batches(rows, int(self.options["batch_size"]), self._yes_batch)
        n = len(suffixes)
        ids = [self.yes_tokens.suffix_ids(s) for s in suffixes]
        return [combine(scores[i * n : (i + 1) * n], ids) for i in range(len(requests))]

    def _yes_batch(self, rows: Sequence[tuple[Sequence[str], str, str]]) -> list[Any]:
        inputs = self._inputs([(paths, prompt) for paths, prompt, _ in rows], [r[2] for r in rows])
        suffixes = [self.yes_tokens.suffix_ids(r[2]) for r in rows]
        return score_rows(self.model, inputs, suffixes, self.yes_tokens)

    def _inputs(
        self, requests: Sequence[tuple[Sequence[str], str]], answer_prefixes: Sequence[str] = ()
    ) -> Any:
        """:meth:`encode` on the model's device, pixels in the model's dtype."""
        inputs = self.encode(requests, answer_prefixes).to(input_device(self.model))
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        return inputs

    def _generate_batch(self, requests: Sequence[tuple[Sequence[str], str]]) -> list[str]:
        import torch

        inputs = self._inputs(requests)
        with torch.inference_mode():
            tokens = self.model.generate(**inputs, **self.generate_kwargs)
        new = tokens[:, inputs["input_ids"].shape[1] :].tolist()
        return [self._decode(ids) for ids in new]

    def _decode(self, ids: list[int]) -> str:
        end = next((i for i, t in enumerate(ids) if t in self.stop_ids), len(ids))
        return self.processor.tokenizer.decode(ids[:end], skip_special_tokens=False)


class ChatReasoner:
    """CoT step 1: all images + the question → chosen image and a referring description."""

    def __init__(self, runner: ChatRunner):
        self.runner = runner
        self.name = runner.name
        self.settings = dict(runner.settings)

    def reason(self, requests: list[ChatRequest]) -> list[ReasonerResult]:
        """One :class:`ReasonerResult` per request (read once by ``parse_step1``)."""
        texts = self.runner.generate([(r.images, r.prompt) for r in requests])
        return [
            ReasonerResult.from_text(t, r, self.settings)
            for t, r in zip(texts, requests, strict=True)
        ]

    def yes_logprob(self, requests: list[ChatRequest]) -> list[float]:
        """Natural-log P(the answer starts with "yes") per request, ≤ 0
        (:meth:`ChatRunner.yes_logprob`); the verify graph's log-probability rule."""
        return self.runner.yes_logprob([(r.images, r.prompt) for r in requests])

    @property
    def yes_tokens(self) -> dict[str, Any]:
        """Which token ids :meth:`yes_logprob` sums (:meth:`YesTokens.describe`)."""
        return self.runner.yes_tokens.describe()


def _syntax_of(runner: ChatRunner) -> BoxSyntax:
    """The runner's box syntax (a runner built for a box-answering role always has one)."""
    if runner.syntax is None:
        raise ModelLoadError(
            f"adapter {runner.name!r}: model_type {runner.family!r} states no boxes"
        )
    return runner.syntax


class ChatGrounder:
    """CoT step 2: one image + a phrase → candidate boxes (one per box in the answer, in order;
    the model gives no scores)."""

    def __init__(self, runner: ChatRunner):
        self.runner = runner
        self.name = runner.name
        self.syntax = _syntax_of(runner)
        # a given template holds {phrase} (OPTION_RULES), and so does every family's prompt
        self.template = runner.options["prompt_template"] or self.syntax.ground_prompt
        self.settings = {
            **runner.settings,
            "frame": self.syntax.frame,
            "prompt_template": self.template,
        }

    def prompt(self, request: GroundRequest) -> str:
        """The text sent: the request's own ``prompt``, else the template around its phrase."""
        if request.prompt is not None:
            return request.prompt
        return self.template.replace("{phrase}", request.phrase)

    def ground(self, requests: list[GroundRequest]) -> list[GroundResult]:
        """One :class:`GroundResult` per request."""
        texts = self.runner.generate([([r.image], self.prompt(r)) for r in requests])
        return [self.result_from_text(t) for t in texts]

    def result_from_text(self, text: str) -> GroundResult:
        """Candidates read from ``text`` with the family's box syntax."""
        boxes, status = self.syntax.parse(answer_text(text))
        return GroundResult(
            candidates=[Candidate(box=b) for b in boxes],
            raw_text=text,
            status=status,
            settings=dict(self.settings),
        )


class ChatEndToEnd:
    """All images + the question → image index (when the answer names one) and first box."""

    def __init__(self, runner: ChatRunner):
        self.runner = runner
        self.name = runner.name
        self.syntax = _syntax_of(runner)
        self.settings = {**runner.settings, "frame": self.syntax.frame}

    def predict(self, requests: list[ChatRequest]) -> list[EndToEndResult]:
        """One :class:`EndToEndResult` per request."""
        texts = self.runner.generate([(r.images, r.prompt) for r in requests])
        return [self.result_from_text(t) for t in texts]

    def result_from_text(self, text: str) -> EndToEndResult:
        """Image index (from the words of the answer) and the first box of ``text``."""
        body = answer_text(text)
        boxes, status = self.syntax.parse(body)
        # the image named in the words around the boxes
        index = image_choice(answer_text(self.syntax.span.sub(" ", body)))
        return EndToEndResult(
            raw_text=text,
            image_index=index,
            box=boxes[0] if boxes else None,
            status=status,
            settings=dict(self.settings),
        )


def build_reasoner(settings: ModelSettings) -> ChatReasoner:
    """Registry factory for ``hf-chat-reasoner``."""
    return ChatReasoner(ChatRunner("hf-chat-reasoner", settings))


def build_grounder(settings: ModelSettings) -> ChatGrounder:
    """Registry factory for ``hf-chat-grounder``."""
    return ChatGrounder(ChatRunner("hf-chat-grounder", settings, "grounder"))


def build_end_to_end(settings: ModelSettings) -> ChatEndToEnd:
    """Registry factory for ``hf-chat-e2e``."""
    return ChatEndToEnd(ChatRunner("hf-chat-e2e", settings, "e2e"))
