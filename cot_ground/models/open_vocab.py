"""Open-vocabulary detectors from transformers as CoT step-2 grounders: MM-GroundingDINO (which
also loads LLMDet checkpoints) and OWLv2. A referring expression names one object, so candidates
are ranked by score and the pipeline takes the first (``top1_fallback``: the best box even when
every score is under ``box_threshold``).

* ``mm-gdino-hf``: ``MMGroundingDinoForObjectDetection`` checkpoints (``model_type``
  ``mm-grounding-dino``) through the GroundingDINO adapter's code
  (:mod:`cot_ground.models.gdino_hf`): the same phrase form (lower case, ending with ``.``),
  same-shape batching, the phrase cut to the text encoder's ``max_text_len`` with
  ``notes["text_truncated"]``, boxes normalized (unit frame).
* ``owlv2``: ``Owlv2ForObjectDetection`` with one text query per image (the phrase with
  whitespace collapsed and a final ``.`` removed). The image processor pads each image at the
  bottom and right to a square of side max(width, height) before resizing, so the predicted
  ``(cx, cy, w, h)`` are fractions of that square: × max(w, h) / width (x) and / height (y)
  gives the unit frame of the image, then boxes are clipped (the padding lies outside the
  image). CLIP's text tower reads at most ``max_position_embeddings`` tokens (16 for the
  released checkpoints): a longer query is cut and ``notes["text_truncated"]`` records it. Each
  image is padded and resized on its own, so requests of any size batch together.
  Options: ``box_threshold`` (0.1, the threshold of the transformers OWLv2 examples),
  ``top1_fallback`` (True), ``max_candidates`` (10), ``batch_size`` (4),
  ``fast_image_processor`` (False; recorded).

Option values are checked before anything loads, every problem at once (:data:`OWLV2_RULES`,
:data:`cot_ground.models.gdino_hf.OPTION_RULES`; :func:`settings_problems` lists them without
building the adapter).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cot_ground.models import gdino_hf
from cot_ground.models.base import GroundRequest, GroundResult, ModelLoadError
from cot_ground.models.batch_plan import in_batches
from cot_ground.models.detections import DETECTOR_RULES, rank_candidates
from cot_ground.models.gdino_hf import GroundingDinoHF
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
    whole_number,
)
from cot_ground.models.settings import ModelSettings
from cot_ground.records import ParseStatus

MM_GDINO = "mm-gdino-hf"
OWLV2 = "owlv2"

OWLV2_OPTIONS = {
    "box_threshold": 0.1,
    "top1_fallback": True,
    "max_candidates": 10,
    "batch_size": 4,
    **PROCESSOR_OPTIONS,
}

OWLV2_RULES: dict[str, OptionRule] = {
    **{k: DETECTOR_RULES[k] for k in ("box_threshold", "top1_fallback", "max_candidates")},
    **PROCESSOR_RULES,
    "batch_size": whole_number(1),
}
"""What each value of :data:`OWLV2_OPTIONS` must be (:mod:`cot_ground.models.options`)."""


def settings_problems(name: str, settings: ModelSettings) -> list[str]:
    """Problems of the options of ``name`` (``mm-gdino-hf`` or ``owlv2``): unknown keys and bad
    values, all at once, loading nothing; for the pre-flight check."""
    if name == OWLV2:
        return option_problems(OWLV2, settings.options, OWLV2_OPTIONS, OWLV2_RULES)
    return gdino_hf.settings_problems(name, settings)


def checked_family(settings: ModelSettings, adapter: str, model_type: str) -> Path:
    """The checkpoint folder of ``settings``, checked complete and of ``model_type``."""
    path = model_path(settings, adapter)
    check_model_folder(path)
    found = read_model_type(path)
    if found != model_type:
        raise ModelLoadError(
            f"{path}: adapter {adapter!r} needs model_type {model_type!r}, "
            f"the checkpoint's config.json says {found!r}"
        )
    return path


def build_mm_gdino(settings: ModelSettings) -> Any:
    """Registry factory for ``mm-gdino-hf`` (MM-GroundingDINO / LLMDet checkpoints); bad
    options are refused before the folder is read."""
    problems = settings_problems(MM_GDINO, settings)
    if problems:
        raise ValueError("; ".join(problems))
    checked_family(settings, MM_GDINO, "mm-grounding-dino")
    return GroundingDinoHF(settings, name=MM_GDINO)


def owlv2_query(phrase: str) -> str:
    """The OWLv2 text query for ``phrase``: whitespace collapsed, a final ``.`` removed."""
    return " ".join(phrase.split()).rstrip(".").strip()


def square_to_image(box: list[float], size: tuple[int, int]) -> list[float]:
    """An OWLv2 ``(cx, cy, w, h)`` in fractions of the padded square → fractions of the
    ``(width, height)`` image (not clipped: the padding lies beyond 1)."""
    width, height = size
    side = max(width, height)
    cx, cy, w, h = box
    return [cx * side / width, cy * side / height, w * side / width, h * side / height]


class Owlv2Grounder:
    """Single-image grounder: image + phrase (one text query) → boxes ranked by score."""

    def __init__(self, settings: ModelSettings):
        from transformers import AutoModelForZeroShotObjectDetection

        self.name = OWLV2
        self.options = resolve_options(OWLV2, settings.options, OWLV2_OPTIONS, OWLV2_RULES)
        path = checked_family(settings, OWLV2, "owlv2")
        fast = bool(self.options["fast_image_processor"])
        self.processor = load_processor(path, fast_image_processor=fast)
        self.model = load_weights(AutoModelForZeroShotObjectDetection, path, settings)
        self.max_text_len = int(self.model.config.text_config.max_position_embeddings)
        frame = "unit (from fractions of the padded square, × max(w, h) / w or h, clipped)"
        options = {k: v for k, v in self.options.items() if k != "batch_size"}
        self.settings = adapter_settings(
            OWLV2, path, settings, {"frame": frame}, {"max_text_len": self.max_text_len, **options}
        )

    def prompt(self, request: GroundRequest) -> str:
        """The text query sent for ``request`` (before any cut to ``max_text_len`` tokens)."""
        return owlv2_query(request.phrase)

    def ground(self, requests: list[GroundRequest]) -> list[GroundResult]:
        """One :class:`GroundResult` per request, candidates best first."""
        return in_batches(requests, int(self.options["batch_size"]), self._ground_batch)

    def _ground_batch(self, requests: list[GroundRequest]) -> list[GroundResult]:
        import torch

        images = open_images([r.image for r in requests])
        queries = [self.prompt(r) for r in requests]
        lengths = [len(self.processor.tokenizer(q)["input_ids"]) for q in queries]
        inputs = self.processor(
            text=[[q] for q in queries],
            images=images,
            truncation=True,
            max_length=self.max_text_len,
            return_tensors="pt",
        ).to(input_device(self.model))
        inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        with torch.inference_mode():
            outputs = self.model(**inputs)
        scores = outputs.logits[..., 0].float().sigmoid().cpu().tolist()
        boxes = outputs.pred_boxes.float().cpu().tolist()
        results = []
        for b, (image, query) in enumerate(zip(images, queries, strict=True)):
            candidates = rank_candidates(
                scores[b],
                [square_to_image(box, image.size) for box in boxes[b]],
                lambda _i, q=query: q,
                box_threshold=self.options["box_threshold"],
                top1_fallback=self.options["top1_fallback"],
                max_candidates=self.options["max_candidates"],
            )
            result = GroundResult(
                candidates=candidates,
                raw_text=query,
                status=ParseStatus.OK if candidates else ParseStatus.NO_BOX,
                settings=dict(self.settings),
            )
            if lengths[b] > self.max_text_len:
                result.notes["text_truncated"] = {"tokens": lengths[b], "kept": self.max_text_len}
            results.append(result)
        return results


def build_owlv2(settings: ModelSettings) -> Owlv2Grounder:
    """Registry factory for ``owlv2``."""
    return Owlv2Grounder(settings)
