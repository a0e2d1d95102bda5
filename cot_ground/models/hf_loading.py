"""Loading transformers checkpoints from local folders: checks, device/dtype, a shared cache.

* Weights load from a local folder only (``local_files_only=True``); ``settings.path`` may be
  ``${ENV_VAR}``. A missing or incomplete folder raises one :class:`ModelLoadError` that names
  the folder and every missing file.
* ``device="auto"`` picks CUDA when available, else CPU; ``dtype="auto"`` picks bfloat16 on CUDA
  and float32 on CPU. ``device_map`` (e.g. ``"auto"``) is passed to ``from_pretrained`` as is.
* Models are loaded once per process: :func:`shared` keeps them by a key made of the loader, the
  resolved folder and the settings that change the loaded weights, for as long as an adapter
  holds them (weak references: dropping the adapters, e.g. ``registry.clear_cache()``, frees
  the memory).
"""

from __future__ import annotations

import json
import os
import threading
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from PIL import Image

from cot_ground.images import open_rgb
from cot_ground.models.base import ModelLoadError
from cot_ground.models.settings import ModelSettings

T = TypeVar("T")

_SHARED: weakref.WeakValueDictionary[tuple[Any, ...], Any] = weakref.WeakValueDictionary()
_LOCK = threading.Lock()

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "vocab.txt", "tokenizer.model")
_PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")


def model_path(settings: ModelSettings, adapter: str) -> Path:
    """``settings.path`` with ``$VARS`` and ``~`` expanded; an error when it is not set."""
    if not settings.path:
        raise ModelLoadError(f"adapter {adapter!r} needs settings.path (a local model folder)")
    expanded = os.path.expanduser(os.path.expandvars(settings.path))
    if "$" in expanded:
        raise ModelLoadError(
            f"adapter {adapter!r}: model path {settings.path!r} names an unset environment variable"
        )
    return Path(expanded).resolve()


def check_model_folder(path: Path, *, processor: bool = True) -> None:
    """Raise :class:`ModelLoadError` naming ``path`` and what is missing (config, weights...)."""
    if not path.is_dir():
        raise ModelLoadError(f"model folder not found: {path}")
    missing: list[str] = []
    if not (path / "config.json").is_file():
        missing.append("config.json")
    missing += _missing_weights(path)
    if processor:
        if not any((path / n).is_file() for n in _PROCESSOR_FILES):
            missing.append("preprocessor_config.json (image processor)")
        if not any((path / n).is_file() for n in _TOKENIZER_FILES):
            missing.append("tokenizer files (tokenizer.json / vocab.json / vocab.txt)")
    if missing:
        raise ModelLoadError(f"model folder {path} is incomplete; missing: {', '.join(missing)}")


def _missing_weights(path: Path) -> list[str]:
    if any((path / n).is_file() for n in _WEIGHT_FILES):
        return []
    for index_name in _WEIGHT_INDEXES:
        index = path / index_name
        if index.is_file():
            try:
                shards = sorted(set(json.loads(index.read_text()).get("weight_map", {}).values()))
            except (OSError, ValueError, AttributeError, TypeError) as exc:  # not a weight index
                raise ModelLoadError(f"cannot read the weight index {index}: {exc}") from exc
            absent = [s for s in shards if not (path / s).is_file()]
            return [f"weight shard {s}" for s in absent]
    return ["weights (model.safetensors, pytorch_model.bin or a sharded index)"]


def read_model_type(path: Path) -> str:
    """``model_type`` from the folder's ``config.json``."""
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"cannot read {path / 'config.json'}: {exc}") from exc
    return str(config.get("model_type", ""))


def resolve_device(device: str) -> str:
    """``"auto"`` → ``"cuda"`` when available, else ``"cpu"``; anything else unchanged."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: str, device: str) -> Any:
    """The torch dtype: ``"auto"`` → bfloat16 on CUDA, float32 elsewhere."""
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, dtype)


def load_kwargs(settings: ModelSettings) -> tuple[dict[str, Any], str]:
    """``from_pretrained`` keyword arguments and the device inputs go to (offline, dtype, map)."""
    device = resolve_device(settings.device)
    kwargs: dict[str, Any] = {
        "local_files_only": True,
        "dtype": resolve_dtype(settings.dtype, device),
    }
    if settings.device_map:
        kwargs["device_map"] = settings.device_map
    return kwargs, device


def load_weights(loader: Any, path: Path, settings: ModelSettings) -> Any:
    """``loader.from_pretrained(path)`` offline, on the settings' device and dtype, cached."""
    kwargs, device = load_kwargs(settings)
    key = (
        getattr(loader, "__name__", repr(loader)),
        str(path),
        device,
        str(kwargs["dtype"]),
        settings.device_map,
    )

    def _load() -> Any:
        try:
            model = loader.from_pretrained(str(path), **kwargs)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot load model from {path}: {exc}") from exc
        if not settings.device_map:
            model = model.to(device)
        return model.eval()

    return shared(key, _load)


def shared(key: tuple[Any, ...], loader: Callable[[], T]) -> T:
    """The live object kept under ``key``, else a new one from ``loader()`` (process-wide)."""
    with _LOCK:
        value = _SHARED.get(key)
        if value is None:
            value = loader()
            _SHARED[key] = value
        return value


def input_device(model: Any) -> Any:
    """The device a model's inputs must be on (its first parameter's, also with a device map)."""
    return next(model.parameters()).device


def open_images(paths: Sequence[str]) -> list[Image.Image]:
    """Decoded RGB images (through the shared cache); :class:`ImageLoadError` names a bad path."""
    return [open_rgb(p) for p in paths]
