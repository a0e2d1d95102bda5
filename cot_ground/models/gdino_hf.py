"""GroundingDINO through transformers (``AutoModelForZeroShotObjectDetection``) as step-2 grounder.

Expects a local folder saved from e.g. ``IDEA-Research/grounding-dino-tiny`` or ``-base``
(config, weights, processor, BERT tokenizer). The phrase is lower-cased and ends with ``.``.
Boxes come out normalized to the image (frame ``unit``). A phrase longer than the text encoder's
``max_text_len`` tokens (256 for the released checkpoints) is cut to its first ``max_text_len``
tokens, as the original implementation does (``groundingdino/models/GroundingDINO/
groundingdino.py``); the result's ``notes["text_truncated"]`` (in the trace) gives the token
count and the number kept. Options: ``box_threshold`` (0.35),
``text_threshold`` (0.25, picks the words a candidate's label shows), ``top1_fallback`` (True:
return the best box even when all scores are under ``box_threshold``), ``max_candidates`` (10),
``batch_size`` (4).
"""

from __future__ import annotations

from typing import Any

from cot_ground.models.base import GroundRequest, GroundResult, ModelLoadError
from cot_ground.models.detections import DETECTOR_OPTIONS, ground_result, normalize_phrase
from cot_ground.models.hf_loading import (
    check_model_folder,
    input_device,
    load_weights,
    model_path,
    open_images,
    resolve_device,
    resolve_dtype,
    shared,
)
from cot_ground.models.options import PROCESSOR_OPTIONS, resolve_options
from cot_ground.models.settings import ModelSettings

NAME = "gdino-hf"


class GroundingDinoHF:
    """Single-image grounder: image + phrase → candidates ranked by score."""

    def __init__(self, settings: ModelSettings):
        from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

        self.name = NAME
        self.options = resolve_options(
            NAME, settings.options, {**DETECTOR_OPTIONS, **PROCESSOR_OPTIONS, "batch_size": 4}
        )
        fast = bool(self.options["fast_image_processor"])
        path = model_path(settings, NAME)
        check_model_folder(path)

        def _processor() -> Any:
            try:
                return AutoProcessor.from_pretrained(
                    str(path), local_files_only=True, use_fast=fast
                )
            except (OSError, ValueError) as exc:
                raise ModelLoadError(f"cannot load the processor from {path}: {exc}") from exc

        self.processor = shared(("gdino-hf-processor", str(path), fast), _processor)
        self.model = load_weights(AutoModelForZeroShotObjectDetection, path, settings)
        self.max_text_len = int(self.model.config.max_text_len)
        tokenizer = self.processor.tokenizer
        self.special_ids = set(tokenizer.all_special_ids) | {tokenizer.convert_tokens_to_ids(".")}
        device = resolve_device(settings.device)
        self.settings: dict[str, Any] = {
            "adapter": NAME,
            "path": str(path),
            "frame": "unit",
            "device": device,
            "dtype": str(resolve_dtype(settings.dtype, device)).removeprefix("torch."),
            "device_map": settings.device_map,
            **{k: v for k, v in self.options.items() if k != "batch_size"},
        }

    def ground(self, requests: list[GroundRequest]) -> list[GroundResult]:
        """One :class:`GroundResult` per request, candidates best first.

        Requests are batched only with others whose image has the same size, so no image is
        padded and a batched answer equals the one-at-a-time answer.
        """
        images = open_images([r.image for r in requests])
        groups: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(images):
            groups.setdefault(image.size, []).append(i)
        size = max(1, int(self.options["batch_size"]))
        out: dict[int, GroundResult] = {}
        for members in groups.values():
            for start in range(0, len(members), size):
                chunk = members[start : start + size]
                results = self._ground_batch(
                    [images[i] for i in chunk], [requests[i] for i in chunk]
                )
                out.update(zip(chunk, results, strict=True))
        return [out[i] for i in range(len(requests))]

    def _ground_batch(self, images: list[Any], requests: list[GroundRequest]) -> list[GroundResult]:
        import torch

        phrases = [normalize_phrase(r.phrase) for r in requests]
        inputs = self.processor(images=images, text=phrases, padding=True, return_tensors="pt")
        lengths = inputs["attention_mask"].sum(dim=1).tolist()
        if inputs["input_ids"].shape[1] > self.max_text_len:  # as the original: keep the first
            for key in ("input_ids", "attention_mask", "token_type_ids"):
                if key in inputs:
                    inputs[key] = inputs[key][:, : self.max_text_len]
        inputs = inputs.to(input_device(self.model))
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        with torch.inference_mode():
            outputs = self.model(**inputs)
        probs = outputs.logits.float().sigmoid().cpu()
        boxes = outputs.pred_boxes.float().cpu()
        ids = inputs["input_ids"].cpu().tolist()
        results = [
            self._result(probs[b], boxes[b].tolist(), ids[b], phrases[b])
            for b in range(len(requests))
        ]
        for result, length in zip(results, lengths, strict=True):
            if length > self.max_text_len:
                result.notes["text_truncated"] = {"tokens": int(length), "kept": self.max_text_len}
        return results

    def _result(
        self, probs: Any, boxes: list[list[float]], ids: list[int], phrase: str
    ) -> GroundResult:
        return ground_result(
            probs,
            boxes,
            ids,
            phrase,
            special_ids=self.special_ids,
            decode=self.processor.tokenizer.decode,
            options=self.options,
            settings=self.settings,
        )


def build_grounder(settings: ModelSettings) -> GroundingDinoHF:
    """Registry factory for ``gdino-hf``."""
    return GroundingDinoHF(settings)
