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
``batch_size`` (4), ``pad_batches`` (False; recorded), ``preprocess_threads`` (4),
``pixel_cache_size`` (32). Option values are checked before the checkpoint loads, every problem
at once (:data:`OPTION_RULES`; :func:`settings_problems` lists them without building anything).

Images are pre-processed one by one in ``preprocess_threads`` worker threads, and the result
(``pixel_values``, float32 on the CPU, about 12 MB for an 800 × 1200 input) is kept for the last
``pixel_cache_size`` images, so a retry or another request on the same image skips it. With
``fast_image_processor`` on a CUDA device the (torchvision) processor resizes and normalizes on
the GPU itself and the cache holds GPU tensors (``settings["preprocess_device"]``). By
default requests are batched only with others whose pre-processed image has the same shape: no
image is padded and a batched answer equals the one-at-a-time answer. ``pad_batches`` lets
images of any size share a forward pass, each padded at the bottom and right to the largest
with a pixel mask (what the transformers processor does for a list of images); padding changes
the backbone's features near the edges, so answers can differ slightly from one-at-a-time.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cot_ground.images import open_rgb
from cot_ground.models.base import GroundRequest, GroundResult
from cot_ground.models.batch_plan import plan_batches
from cot_ground.models.detections import (
    DETECTOR_OPTIONS,
    DETECTOR_RULES,
    ground_result,
    normalize_phrase,
)
from cot_ground.models.hf_loading import (
    adapter_settings,
    check_model_folder,
    float32_when_auto,
    input_device,
    load_processor,
    load_weights,
    model_path,
    resolve_device,
)
from cot_ground.models.options import (
    PROCESSOR_OPTIONS,
    PROCESSOR_RULES,
    OptionRule,
    option_problems,
    resolve_options,
    true_or_false,
    whole_number,
)
from cot_ground.models.settings import ModelSettings

NAME = "gdino-hf"

_BATCH_OPTIONS = {
    "batch_size": 4,
    "pad_batches": False,
    "preprocess_threads": 4,
    "pixel_cache_size": 32,
}
# options that change only speed and memory, not answers
_UNRECORDED = ("batch_size", "preprocess_threads", "pixel_cache_size")

OPTIONS: dict[str, Any] = {**DETECTOR_OPTIONS, **PROCESSOR_OPTIONS, **_BATCH_OPTIONS}
"""Every option of ``gdino-hf`` and ``mm-gdino-hf``, with its default."""

OPTION_RULES: dict[str, OptionRule] = {
    **DETECTOR_RULES,
    **PROCESSOR_RULES,
    "batch_size": whole_number(1),
    "pad_batches": true_or_false,
    "preprocess_threads": whole_number(1),
    "pixel_cache_size": whole_number(0),
}
"""What each option's value must be (:mod:`cot_ground.models.options`; ``pixel_cache_size`` 0
keeps no pre-processed image)."""


def settings_problems(name: str, settings: ModelSettings) -> list[str]:
    """Problems of the options of ``name`` (``gdino-hf`` or ``mm-gdino-hf``): unknown keys and
    bad values, all at once, loading nothing; for the pre-flight check."""
    return option_problems(name, settings.options, OPTIONS, OPTION_RULES)


class GroundingDinoHF:
    """Single-image grounder: image + phrase → candidates ranked by score."""

    def __init__(self, settings: ModelSettings, name: str = NAME):
        from transformers import AutoModelForZeroShotObjectDetection

        self.name = name
        self.options = resolve_options(name, settings.options, OPTIONS, OPTION_RULES)
        fast = bool(self.options["fast_image_processor"])
        settings = float32_when_auto(settings)
        path = model_path(settings, name)
        check_model_folder(path)

        self.processor = load_processor(path, fast_image_processor=fast)
        self.model = load_weights(AutoModelForZeroShotObjectDetection, path, settings)
        self.max_text_len = int(self.model.config.max_text_len)
        tokenizer = self.processor.tokenizer
        self.special_ids = set(tokenizer.all_special_ids) | {tokenizer.convert_tokens_to_ids(".")}
        device = resolve_device(settings.device)
        self.settings = adapter_settings(
            name,
            path,
            settings,
            {"frame": "unit"},
            {k: v for k, v in self.options.items() if k not in _UNRECORDED},
        )
        image_processor = self.processor.image_processor
        # the fast (torchvision) processor can resize and normalize on the GPU itself
        on_gpu = {"device": device} if fast and device.startswith("cuda") else {}
        if on_gpu:
            self.settings["preprocess_device"] = device

        @functools.lru_cache(maxsize=self.options["pixel_cache_size"])
        def pixel_values(path: str) -> Any:
            out = image_processor(images=[open_rgb(path)], return_tensors="pt", **on_gpu)
            return out["pixel_values"][0]

        self._pixel_values = pixel_values

    def pixel_values(self, paths: list[str]) -> list[Any]:
        """Pre-processed images (``(3, H, W)`` float32 tensors, CPU) in the order of ``paths``,
        made in worker threads and cached per image; ``ImageLoadError`` names a bad path."""
        unique = list(dict.fromkeys(paths))
        threads = min(len(unique), int(self.options["preprocess_threads"]))
        if threads > 1:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                done = dict(zip(unique, pool.map(self._pixel_values, unique), strict=True))
        else:
            done = {p: self._pixel_values(p) for p in unique}
        return [done[p] for p in paths]

    def clear_cache(self) -> None:
        """Forget every cached pre-processed image."""
        self._pixel_values.cache_clear()

    def ground(self, requests: list[GroundRequest]) -> list[GroundResult]:
        """One :class:`GroundResult` per request, candidates best first (batching: see the
        module docstring)."""
        pixels = self.pixel_values([r.image for r in requests])
        shapes = [tuple(p.shape[1:]) for p in pixels]
        size = self.options["batch_size"]
        if self.options["pad_batches"]:  # similar sizes share a pass: less padding
            plan = plan_batches([h * w for h, w in shapes], [1] * len(shapes), size)
        else:
            groups: dict[tuple[int, ...], list[int]] = {}
            for i, shape in enumerate(shapes):
                groups.setdefault(shape, []).append(i)
            plan = [m[s : s + size] for m in groups.values() for s in range(0, len(m), size)]
        out: dict[int, GroundResult] = {}
        for chunk in plan:
            batch = _padded([pixels[i] for i in chunk])
            results = self._ground_batch(batch, [requests[i] for i in chunk])
            out.update(zip(chunk, results, strict=True))
        return [out[i] for i in range(len(requests))]

    def _ground_batch(
        self, pixels: dict[str, Any], requests: list[GroundRequest]
    ) -> list[GroundResult]:
        import torch

        phrases = [normalize_phrase(r.phrase) for r in requests]
        inputs = self.processor(text=phrases, padding=True, return_tensors="pt")
        inputs.update(pixels)
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


def _padded(pixels: list[Any]) -> dict[str, Any]:
    """``pixel_values`` ``(B, 3, H, W)`` and ``pixel_mask`` ``(B, H, W)`` of pre-processed
    images: each at the top left, zeros below and to the right of it (mask 0 there)."""
    import torch

    height = max(p.shape[1] for p in pixels)
    width = max(p.shape[2] for p in pixels)
    values = pixels[0].new_zeros((len(pixels), 3, height, width))
    mask = torch.zeros((len(pixels), height, width), dtype=torch.long, device=values.device)
    for b, p in enumerate(pixels):
        values[b, :, : p.shape[1], : p.shape[2]] = p
        mask[b, : p.shape[1], : p.shape[2]] = 1
    return {"pixel_values": values, "pixel_mask": mask}


def build_grounder(settings: ModelSettings) -> GroundingDinoHF:
    """Registry factory for ``gdino-hf``."""
    return GroundingDinoHF(settings)
