"""Florence-2 phrase grounding (``<CAPTION_TO_PHRASE_GROUNDING>``) as CoT step-2 grounder.

Loads ``Florence2ForConditionalGeneration`` checkpoints in the transformers layout (``model_type``
``florence2``, e.g. the ``florence-community/Florence-2-base`` / ``-large`` conversions) through
``AutoModelForImageTextToText``. The prompt is the task token followed by the phrase (whitespace
collapsed); the processor turns it into "Locate the phrases in the caption: ...". The answer is
decoded with its special tokens and read with the ``florence2`` entry of
:mod:`cot_ground.models.box_syntax`: each box is four ``<loc_i>`` tokens, x1 y1 x2 y2 over 1000
bins per side, converted to the unit frame at the bin centre ``(i + 0.5) / 1000`` (as
transformers' ``Florence2PostProcessor.dequantize``). Candidates come in generation order (the
order of the model's own post-processor) with the phrase text before them as label. Florence-2
states no confidence; ``score`` is the geometric mean probability of the box's four location
tokens under the decoding (``exp`` of their mean log-probability, from
``compute_transition_scores``), recorded for inspection, not used to reorder.

The BART encoder reads the image tokens and the text together, at most
``text_config.max_position_embeddings`` positions (1024 for the released checkpoints): a phrase
that would not fit is cut to its first tokens and ``notes["text_truncated"]`` records it.
Decoding is greedy with ``num_beams`` (option, default 1; the Florence-2 model card examples use
3). Options: ``num_beams``, ``max_candidates`` (10), ``batch_size`` (4),
``fast_image_processor`` (False; recorded). Option values are checked before anything loads,
every problem at once (:data:`OPTION_RULES`; :func:`settings_problems` lists them without
building the adapter).
"""

from __future__ import annotations

import math
import re
from typing import Any

from PIL import Image

from cot_ground.models.base import GroundRequest, GroundResult
from cot_ground.models.batch_plan import in_batches
from cot_ground.models.box_syntax import BOX_SYNTAX
from cot_ground.models.hf_loading import (
    adapter_settings,
    input_device,
    load_processor,
    load_weights,
    open_images,
)
from cot_ground.models.open_vocab import checked_family
from cot_ground.models.options import (
    PROCESSOR_OPTIONS,
    PROCESSOR_RULES,
    OptionRule,
    option_problems,
    resolve_options,
    whole_number,
)
from cot_ground.models.settings import ModelSettings
from cot_ground.records import Candidate

NAME = "florence2"
TASK = "<CAPTION_TO_PHRASE_GROUNDING>"
SYNTAX = BOX_SYNTAX["florence2"]

# a label (text without tokens) followed by one or more location quadruples
_LABELLED = re.compile(r"([^<]*)((?:<loc_\d+>)+)")
_WRAPPERS = ("<s>", "</s>", "<pad>")
_LOC_TOKEN = re.compile(r"<loc_\d+>")

OPTIONS: dict[str, Any] = {
    "num_beams": 1,
    "max_candidates": 10,
    "batch_size": 4,
    **PROCESSOR_OPTIONS,
}
"""Every option of ``florence2``, with its default."""

OPTION_RULES: dict[str, OptionRule] = {
    "num_beams": whole_number(1),
    "max_candidates": whole_number(1),
    "batch_size": whole_number(1),
    **PROCESSOR_RULES,
}
"""What each option's value must be (:mod:`cot_ground.models.options`)."""


def settings_problems(name: str, settings: ModelSettings) -> list[str]:
    """Problems of the options of ``florence2`` (``name``): unknown keys and bad values, all at
    once, loading nothing; for the pre-flight check."""
    return option_problems(name, settings.options, OPTIONS, OPTION_RULES)


def florence2_phrase(phrase: str) -> str:
    """The phrase as sent after the task token: whitespace collapsed."""
    return " ".join(phrase.split())


class Florence2Grounder:
    """Single-image grounder: image + phrase → boxes in generation order, each with the
    probability of its location tokens as score."""

    def __init__(self, settings: ModelSettings):
        from transformers import AutoModelForImageTextToText

        self.name = NAME
        self.options = resolve_options(NAME, settings.options, OPTIONS, OPTION_RULES)
        path = checked_family(settings, NAME, "florence2")
        fast = bool(self.options["fast_image_processor"])
        self.processor = load_processor(path, fast_image_processor=fast)
        self.model = load_weights(AutoModelForImageTextToText, path, settings)
        self.max_positions = int(self.model.config.text_config.max_position_embeddings)
        vocab = self.processor.tokenizer.get_vocab()
        self.loc_ids = frozenset(i for t, i in vocab.items() if _LOC_TOKEN.fullmatch(t))
        # encoder positions the prompt takes with an empty phrase (image tokens, task words)
        blank = self.processor(text=[TASK], images=[Image.new("RGB", (8, 8))])
        self.overhead = len(blank["input_ids"][0])
        self.generate_kwargs: dict[str, Any] = {
            "max_new_tokens": settings.max_new_tokens,
            "do_sample": False,
            "num_beams": int(self.options["num_beams"]),
        }
        self.settings = adapter_settings(
            NAME,
            path,
            settings,
            {"frame": SYNTAX.frame, "task": TASK},
            {
                "max_new_tokens": settings.max_new_tokens,
                "num_beams": int(self.options["num_beams"]),
                "max_candidates": self.options["max_candidates"],
                "fast_image_processor": fast,
            },
        )

    def prompt(self, request: GroundRequest) -> str:
        """The text given to the processor (before any cut to fit the encoder)."""
        return TASK + florence2_phrase(request.phrase)

    def ground(self, requests: list[GroundRequest]) -> list[GroundResult]:
        """One :class:`GroundResult` per request (status from the box syntax)."""
        return in_batches(requests, int(self.options["batch_size"]), self._ground_batch)

    def _fitted(self, request: GroundRequest) -> tuple[str, dict[str, int] | None]:
        """The prompt, cut so that image tokens + text fit the encoder, and the cut made."""
        tokenizer = self.processor.tokenizer
        phrase = florence2_phrase(request.phrase)
        ids = tokenizer(phrase, add_special_tokens=False)["input_ids"]
        room = self.max_positions - self.overhead
        if len(ids) <= room:
            return TASK + phrase, None
        kept = tokenizer.decode(ids[: max(0, room)])
        return TASK + kept, {"tokens": len(ids), "kept": max(0, room)}

    def _ground_batch(self, requests: list[GroundRequest]) -> list[GroundResult]:
        import torch

        fitted = [self._fitted(r) for r in requests]
        images = open_images([r.image for r in requests])
        inputs = self.processor(
            text=[p for p, _ in fitted], images=images, padding=True, return_tensors="pt"
        ).to(input_device(self.model))
        inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        with torch.inference_mode():
            out = self.model.generate(
                **inputs, **self.generate_kwargs, return_dict_in_generate=True, output_scores=True
            )
            logp = self.model.compute_transition_scores(
                out.sequences, out.scores, getattr(out, "beam_indices", None), normalize_logits=True
            )
        generated = out.sequences[:, -logp.shape[1] :].tolist()
        texts = self.processor.batch_decode(out.sequences, skip_special_tokens=False)
        results = []
        for b, (text, (_, cut)) in enumerate(zip(texts, fitted, strict=True)):
            scores = self.box_scores(generated[b], logp[b].float().tolist())
            result = self.result_from_text(text, scores)
            if cut is not None:
                result.notes["text_truncated"] = cut
            results.append(result)
        return results

    def box_scores(self, ids: list[int], logprobs: list[float]) -> list[float]:
        """For each box (four consecutive location tokens, in order) of a generated answer: the
        geometric mean probability of its four tokens, ``exp(mean log p)``."""
        scores: list[float] = []
        run: list[float] = []
        for token, lp in [*zip(ids, logprobs, strict=True), (None, 0.0)]:
            if token is not None and token in self.loc_ids:
                run.append(lp)
                continue
            for start in range(0, len(run) - 3, 4):
                scores.append(math.exp(sum(run[start : start + 4]) / 4))
            run = []
        return scores

    def result_from_text(self, text: str, scores: list[float] | None = None) -> GroundResult:
        """Candidates read from a decoded answer (special tokens kept); ``scores``: one per box,
        in order (:meth:`box_scores`), else None."""
        for token in _WRAPPERS:
            text = text.replace(token, "")
        boxes, status = SYNTAX.parse(text)
        labels: list[str | None] = []
        for match in _LABELLED.finditer(text):
            n = len(SYNTAX.numbers.findall(match.group(2)))
            labels += [match.group(1).strip() or None] * n
        known: list[float | None] = list(scores or [])
        if len(known) != len(boxes):
            known = [None] * len(boxes)
        candidates = [
            Candidate(box=box, label=label, score=score)
            for box, label, score in zip(boxes, labels, known, strict=True)
        ][: max(1, int(self.options["max_candidates"]))]
        return GroundResult(
            candidates=candidates, raw_text=text, status=status, settings=dict(self.settings)
        )


def build_grounder(settings: ModelSettings) -> Florence2Grounder:
    """Registry factory for ``florence2``."""
    return Florence2Grounder(settings)
