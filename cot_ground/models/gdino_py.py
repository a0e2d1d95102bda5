"""GroundingDINO through ``groundingdino-py`` (the original code) as step-2 grounder.

``settings.path`` is the checkpoint file (e.g. ``groundingdino_swint_ogc.pth`` or
``groundingdino_swinb_cogcoor.pth``). Options:

* ``config_file`` (required): the model's config ``.py``; ``"SwinT_OGC"`` or ``"SwinB"`` name
  the configs shipped inside the package.
* ``bert_path`` (required unless the config's ``text_encoder_type`` is already a local folder):
  a local ``bert-base-uncased`` folder. Nothing is ever downloaded.
* ``weights_only`` (True): load the checkpoint with ``torch.load(weights_only=True)``; set False
  only for a checkpoint you trust that holds more than tensors.
* ``image_size`` (800) / ``max_size`` (1333): shorter-side resize as in the package's demo.
* ``box_threshold``, ``text_threshold``, ``top1_fallback``, ``max_candidates``: as ``gdino-hf``.

The device comes from ``settings.device`` (the package would default to CUDA); the model runs in
float32. Boxes are normalized to the image (frame ``unit``). Option values and ``dtype`` are
checked before anything loads, every problem at once (:data:`OPTION_RULES`;
:func:`settings_problems` lists them without building the adapter).
"""

from __future__ import annotations

import ast
import warnings
from pathlib import Path
from typing import Any

from cot_ground.models.base import GroundRequest, GroundResult, ModelLoadError
from cot_ground.models.detections import (
    DETECTOR_OPTIONS,
    DETECTOR_RULES,
    ground_result,
    normalize_phrase,
)
from cot_ground.models.gdino_py_compat import build_groundingdino
from cot_ground.models.hf_loading import model_path, open_images, resolve_device, shared
from cot_ground.models.options import (
    OptionRule,
    option_problems,
    text,
    true_or_false,
    whole_number,
)
from cot_ground.models.settings import ModelSettings

NAME = "gdino-py"
PACKAGED_CONFIGS = {
    "SwinT_OGC": "GroundingDINO_SwinT_OGC.py",
    "SwinB": "GroundingDINO_SwinB_cfg.py",
}
_OPTIONS = {
    **DETECTOR_OPTIONS,
    "config_file": None,
    "bert_path": None,
    "weights_only": True,
    "image_size": 800,
    "max_size": 1333,
}

OPTION_RULES: dict[str, OptionRule] = {
    **DETECTOR_RULES,
    "config_file": text(optional=True),
    "bert_path": text(optional=True),
    "weights_only": true_or_false,
    "image_size": whole_number(1),
    "max_size": whole_number(1, optional=True),
}
"""What each option's value must be (:mod:`cot_ground.models.options`; ``max_size`` null: no
cap on the longer side). A missing ``config_file`` is reported by the folder checks."""


def settings_problems(name: str, settings: ModelSettings) -> list[str]:
    """Problems of the options (unknown keys, bad values) and ``dtype`` of ``gdino-py``
    (``name``), all at once, reading no file; for the pre-flight check."""
    problems = option_problems(name, settings.options, _OPTIONS, OPTION_RULES)
    if settings.dtype not in ("auto", "float32"):
        problems.append(f"adapter {name!r} runs in float32; got dtype={settings.dtype!r}")
    return problems


def _config_path(value: Any) -> Path:
    if not value:
        raise ModelLoadError(
            f"adapter {NAME!r} needs options.config_file (a config .py, or one of "
            f"{', '.join(PACKAGED_CONFIGS)})"
        )
    if value in PACKAGED_CONFIGS:
        import groundingdino

        return Path(groundingdino.__file__).parent / "config" / PACKAGED_CONFIGS[value]
    path = Path(str(value)).expanduser().resolve()
    if not path.is_file():
        raise ModelLoadError(f"groundingdino-py config file not found: {path}")
    return path


def _config_text_encoder(config: Path) -> str | None:
    """``text_encoder_type`` assigned in a config file (read without executing it)."""
    for node in ast.parse(config.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "text_encoder_type" for t in node.targets
        ):
            value = node.value
            return value.value if isinstance(value, ast.Constant) else None
    return None


def _bert_dir(option: Any, config: Path) -> Path:
    if option:
        return Path(str(option)).expanduser().resolve()
    configured = _config_text_encoder(config)
    if configured and Path(configured).is_dir():
        return Path(configured)
    raise ModelLoadError(
        f"adapter {NAME!r} needs options.bert_path, a local BERT folder: the config {config} "
        f"names text_encoder_type={configured!r}, which is not a local folder (it would be "
        "downloaded from the hub)"
    )


def load_checkpoint_model(
    checkpoint: Path, config: Path, bert_dir: Path, device: str, weights_only: bool = True
) -> Any:
    """The groundingdino-py model of ``config`` with ``checkpoint``'s weights, on ``device``."""
    import torch
    from groundingdino.util.misc import clean_state_dict

    if not checkpoint.is_file():
        raise ModelLoadError(f"groundingdino-py checkpoint not found: {checkpoint}")
    model = build_groundingdino(config, bert_dir, device="cpu")
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=weights_only)
    except Exception as exc:  # torch raises several types for bad or unsafe files
        raise ModelLoadError(f"cannot read checkpoint {checkpoint}: {exc}") from exc
    state = clean_state_dict(state.get("model", state))
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # tensors of the wrong shape
        raise ModelLoadError(
            f"checkpoint {checkpoint} does not match config {config}: {exc}"
        ) from exc
    # BERT weights may be absent (they come from bert_dir); every other weight must be there.
    missing = [k for k in result.missing_keys if not k.startswith("bert.")]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ModelLoadError(
            f"checkpoint {checkpoint} does not match config {config}: {len(missing)} weights "
            f"missing ({shown})"
        )
    return model.to(device).eval()


class GroundingDinoPy:
    """Single-image grounder on the original GroundingDINO code."""

    def __init__(self, settings: ModelSettings):
        self.name = NAME
        problems = settings_problems(NAME, settings)
        if problems:
            raise ValueError("; ".join(problems))
        self.options = {**_OPTIONS, **settings.options}
        checkpoint = model_path(settings, NAME)
        config = _config_path(self.options["config_file"])
        bert_dir = _bert_dir(self.options["bert_path"], config)
        self.device = resolve_device(settings.device)
        weights_only = bool(self.options["weights_only"])
        key = ("gdino-py", str(checkpoint), str(config), str(bert_dir), self.device, weights_only)
        self.model = shared(
            key,
            lambda: load_checkpoint_model(checkpoint, config, bert_dir, self.device, weights_only),
        )
        tokenizer = self.model.tokenizer
        self.special_ids = set(tokenizer.all_special_ids) | {tokenizer.convert_tokens_to_ids(".")}
        self.settings: dict[str, Any] = {
            "adapter": NAME,
            "path": str(checkpoint),
            "config_file": str(config),
            "bert_path": str(bert_dir),
            "frame": "unit",
            "device": self.device,
            "dtype": "float32",
            **{k: self.options[k] for k in (*DETECTOR_OPTIONS, "image_size", "max_size")},
        }

    def _transform(self) -> Any:
        import groundingdino.datasets.transforms as T

        return T.Compose(
            [
                T.RandomResize(
                    [int(self.options["image_size"])], max_size=self.options["max_size"]
                ),
                T.ToTensor(),
                T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
            ]
        )

    def ground(self, requests: list[GroundRequest]) -> list[GroundResult]:
        """One :class:`GroundResult` per request (one forward pass each), candidates best first."""
        import torch

        transform = self._transform()
        results = []
        for request, image in zip(requests, open_images([r.image for r in requests]), strict=True):
            caption = normalize_phrase(request.phrase)
            tensor, _ = transform(image, None)
            with torch.inference_mode(), warnings.catch_warnings():
                # the package's deprecated torch/transformers calls; nothing a user can act on
                warnings.simplefilter("ignore", FutureWarning)
                warnings.filterwarnings("ignore", message="torch.meshgrid")
                out = self.model(tensor[None].to(self.device), captions=[caption])
            probs = out["pred_logits"].float().sigmoid()[0].cpu()
            boxes = out["pred_boxes"].float()[0].cpu().tolist()
            results.append(self._result(probs, boxes, caption))
        return results

    def _result(self, probs: Any, boxes: list[list[float]], caption: str) -> GroundResult:
        tokenizer = self.model.tokenizer
        return ground_result(
            probs,
            boxes,
            tokenizer(caption)["input_ids"],
            caption,
            special_ids=self.special_ids,
            decode=tokenizer.decode,
            options=self.options,
            settings=self.settings,
        )


def build_grounder(settings: ModelSettings) -> GroundingDinoPy:
    """Registry factory for ``gdino-py``."""
    return GroundingDinoPy(settings)
