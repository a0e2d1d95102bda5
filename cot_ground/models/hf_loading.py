"""Loading transformers checkpoints: where the weights are, checks, device/dtype, a shared cache.

* ``settings.path`` (``${ENV_VAR}`` and ``~`` expanded) is a local folder or a Hugging Face Hub
  model id ``org/name`` with an optional ``@revision`` (branch, tag or commit). An existing
  folder always wins; anything else of the form ``org/name[@rev]`` is a Hub id, resolved with
  ``huggingface_hub.snapshot_download`` in the standard cache (``HF_HUB_CACHE``, else
  ``HF_HOME/hub``, else the library default, read when the id is resolved): downloaded when
  online, read from the cache only when ``HF_HUB_OFFLINE`` is set (then an id that is not cached
  raises :class:`ModelLoadError` naming the id and the cache folder). Weights are then always
  loaded from the resolved local folder (``local_files_only=True``). :func:`resolve_model_source`
  gives the id, the resolved commit hash and the snapshot folder that a run records.
* A missing or incomplete folder raises one :class:`ModelLoadError` that names the folder and
  every missing file; :func:`check_model_source` returns the same problems as a list (pre-flight).
* ``device="auto"`` picks CUDA when available, else CPU; ``dtype="auto"`` picks bfloat16 on CUDA
  and float32 on CPU. ``device_map`` (e.g. ``"auto"``) is passed to ``from_pretrained`` as is.
* Models are loaded once per process: :func:`shared` keeps them by a key made of the loader, the
  resolved folder and the settings that change the loaded weights, for as long as an adapter
  holds them (weak references: dropping the adapters, e.g. ``registry.clear_cache()``, frees
  the memory).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from PIL import Image

from cot_ground.images import open_rgb
from cot_ground.models.base import ModelLoadError
from cot_ground.models.settings import ModelSettings
from cot_ground.models.weights_identity import weights_digest

T = TypeVar("T")

_SHARED: weakref.WeakValueDictionary[tuple[Any, ...], Any] = weakref.WeakValueDictionary()
_LOCK = threading.Lock()

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "vocab.txt", "tokenizer.model")
_PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")


# org/name[@revision]: Hub naming rules (letters, digits, '-', '_', '.'; no leading '.' or '-').
_HUB_ID = re.compile(
    r"^(?P<repo>[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*)(?:@(?P<rev>[\w./-]+))?$"
)
# files a model snapshot never needs (other frameworks' weights); everything else is fetched
_HUB_IGNORE = ["*.onnx", "onnx/*", "*.msgpack", "*.h5", "*.ot", "*.gguf", "*.tflite", "*.mlmodel"]


@dataclass(frozen=True)
class ModelSource:
    """Where an adapter's weights come from.

    ``path`` is the local folder loaded (for a Hub id: the snapshot folder in the cache);
    ``hub_id``, ``revision`` (as requested; None = ``main``) and ``commit`` (the resolved commit
    hash) are None for a local folder.
    """

    spec: str
    path: Path
    hub_id: str | None = None
    revision: str | None = None
    commit: str | None = None

    def record(self) -> dict[str, str | None]:
        """JSON-ready fields for ``run.json``: ``path``, ``hub_id``, ``revision``, ``commit``."""
        return {
            "path": str(self.path),
            "hub_id": self.hub_id,
            "revision": self.revision,
            "commit": self.commit,
        }


def expand_path(spec: str, adapter: str | None = None) -> str:
    """``spec`` with ``$VARS`` and ``~`` expanded; :class:`ModelLoadError` for an unset variable."""
    expanded = os.path.expanduser(os.path.expandvars(spec))
    if "$" in expanded:
        who = f"adapter {adapter!r}: " if adapter else ""
        raise ModelLoadError(f"{who}model path {spec!r} names an unset environment variable")
    return expanded


def parse_hub_id(spec: str) -> tuple[str, str | None] | None:
    """``(repo_id, revision)`` when ``spec`` reads as ``org/name[@revision]``, else None."""
    match = _HUB_ID.match(spec)
    if match is None or ".." in spec:
        return None
    return match.group("repo"), match.group("rev")


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set to a true value (read at call time)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def hub_cache_dir() -> str | None:
    """The Hub cache folder named by the environment now (``HF_HUB_CACHE``, else
    ``HF_HOME/hub``); None lets ``huggingface_hub`` use its default."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    return None


def resolve_model_source(spec: str, adapter: str | None = None) -> ModelSource:
    """The local folder behind ``spec`` (a folder, or a Hub id resolved as the module says).

    Raises :class:`ModelLoadError` naming the id when it is neither a folder nor resolvable
    (not cached while offline, unknown repository or revision, network failure).
    """
    expanded = expand_path(spec, adapter)
    local = Path(expanded)
    hub = parse_hub_id(expanded)
    if local.exists() or hub is None:
        return ModelSource(spec=spec, path=local.resolve())
    repo_id, revision = hub
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    offline = hub_offline()
    cache = hub_cache_dir()
    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=cache,
            local_files_only=offline,
            ignore_patterns=_HUB_IGNORE,
        )
    except (OSError, ValueError, HFValidationError) as exc:  # hub errors derive from these
        where = cache or "the default Hugging Face cache"
        if offline:
            reason = f"not in the Hub cache ({where}) and HF_HUB_OFFLINE is set"
        else:
            reason = f"could not be downloaded: {type(exc).__name__}: {exc}"
        rev = f" at revision {revision!r}" if revision else ""
        raise ModelLoadError(
            f"model {spec!r}: no local folder of that name, and Hub model {repo_id!r}{rev} {reason}"
        ) from exc
    path = Path(folder).resolve()
    return ModelSource(spec=spec, path=path, hub_id=repo_id, revision=revision, commit=path.name)


def model_path(settings: ModelSettings, adapter: str) -> Path:
    """The local folder of ``settings.path`` (see :func:`resolve_model_source`)."""
    if not settings.path:
        raise ModelLoadError(
            f"adapter {adapter!r} needs settings.path (a local model folder or a Hub id)"
        )
    return resolve_model_source(settings.path, adapter).path


def check_model_source(path: str, *, processor: bool = True) -> list[str]:
    """Problems with model ``path`` (folder or Hub id) found without loading anything; empty when
    fine. A Hub id is fine when cached (its snapshot is then checked like a folder) or, online,
    when not cached yet (it will be downloaded when the model loads)."""
    try:
        expanded = expand_path(path)
    except ModelLoadError as exc:
        return [str(exc)]
    hub = parse_hub_id(expanded)
    if hub is not None and not Path(expanded).exists() and not hub_offline():
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(
            hub[0], "config.json", cache_dir=hub_cache_dir(), revision=hub[1]
        )
        if not isinstance(cached, str):
            return []  # online: downloaded at load time
    try:
        folder = resolve_model_source(path).path
    except ModelLoadError as exc:
        return [str(exc)]
    if not folder.is_dir():
        return [f"model folder not found: {folder}"]
    try:
        missing = folder_problems(folder, processor=processor)
    except ModelLoadError as exc:  # an unreadable weight index
        return [str(exc)]
    if missing:
        return [f"model folder {folder} is incomplete; missing: {', '.join(missing)}"]
    return []


def check_model_folder(path: Path, *, processor: bool = True) -> None:
    """Raise :class:`ModelLoadError` naming ``path`` and what is missing (config, weights...)."""
    if not path.is_dir():
        raise ModelLoadError(f"model folder not found: {path}")
    missing = folder_problems(path, processor=processor)
    if missing:
        raise ModelLoadError(f"model folder {path} is incomplete; missing: {', '.join(missing)}")


def folder_problems(path: Path, *, processor: bool = True) -> list[str]:
    """What an existing model folder lacks (config, weights or a shard, processor, tokenizer)."""
    missing: list[str] = []
    if not (path / "config.json").is_file():
        missing.append("config.json")
    missing += _missing_weights(path)
    if processor:
        if not any((path / n).is_file() for n in _PROCESSOR_FILES):
            missing.append("preprocessor_config.json (image processor)")
        if not any((path / n).is_file() for n in _TOKENIZER_FILES):
            missing.append("tokenizer files (tokenizer.json / vocab.json / vocab.txt)")
    return missing


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


def adapter_settings(
    name: str,
    path: Path | str,
    settings: ModelSettings,
    identity: dict[str, Any],
    rest: dict[str, Any],
) -> dict[str, Any]:
    """The ``settings`` an adapter records (traces, step-cache key): ``adapter`` (``name``),
    ``path`` (the local folder loaded), ``weights_digest`` (what that folder holds:
    :func:`~cot_ground.models.weights_identity.weights_digest`, computed here, once per adapter
    load; None only when ``path`` is not a folder), ``commit`` (the resolved Hub commit when
    ``settings.path`` is a Hub id, else None), the ``identity`` entries (family, frame, ...), the
    resolved ``device`` and ``dtype`` (``"bfloat16"``, ``"float32"``...), ``device_map``, then the
    ``rest`` (generation and processing options), in that order. Other weights written to the
    same folder change ``weights_digest``, so the step-1 cache misses instead of serving their
    predecessor's answers. Raises ``OSError`` when a file of the folder cannot be read."""
    device = resolve_device(settings.device)
    return {
        "adapter": name,
        "path": str(path),
        "weights_digest": weights_digest(path),
        "commit": _hub_commit(settings.path, Path(path)),
        **identity,
        "device": device,
        "dtype": str(resolve_dtype(settings.dtype, device)).removeprefix("torch."),
        "device_map": settings.device_map,
        **rest,
    }


def _hub_commit(spec: str | None, path: Path) -> str | None:
    """The commit of the snapshot ``path`` that Hub id ``spec`` resolved to (its folder name, as
    :func:`resolve_model_source` records it); None when ``spec`` names a local folder."""
    if not spec:
        return None
    expanded = expand_path(spec)
    if Path(expanded).exists() or parse_hub_id(expanded) is None:
        return None
    return path.name


def float32_when_auto(settings: ModelSettings) -> ModelSettings:
    """``settings`` with ``dtype="auto"`` read as float32, for the GroundingDINO family: in
    transformers 4.57 its attention fails in bfloat16 ("mat1 and mat2 must have the same dtype"),
    so ``auto`` must not pick bfloat16 on CUDA for these models. An explicit dtype is kept."""
    if settings.dtype != "auto":
        return settings
    return settings.model_copy(update={"dtype": "float32"})


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
    """``loader.from_pretrained(path)`` offline, on the settings' device and dtype, shared per
    process while the folder holds the same files (its
    :func:`~cot_ground.models.weights_identity.weights_digest` is part of the key: a notebook
    that rebuilds a checkpoint in place loads the new one)."""
    kwargs, device = load_kwargs(settings)
    key = (
        getattr(loader, "__name__", repr(loader)),
        str(path),
        weights_digest(path),
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


def load_processor(path: Path, *, fast_image_processor: bool, left_padding: bool = False) -> Any:
    """The checkpoint's ``AutoProcessor`` (shared per process), with its image processor chosen
    explicitly: the slow one unless ``fast_image_processor`` (option of the same name, see
    :data:`cot_ground.models.options.PROCESSOR_OPTIONS`); ``left_padding`` for generation.
    Raises :class:`ModelLoadError` naming the folder."""
    from transformers import AutoImageProcessor, AutoProcessor

    def _load() -> Any:
        try:
            # the image processor is replaced right below (use_fast on the processor would
            # also pick the pure-Python tokenizer), so transformers' notices about the image
            # processor it picks while use_fast is unset do not apply and are dropped
            with _fast_default_notice_dropped():
                processor = AutoProcessor.from_pretrained(str(path), local_files_only=True)
            processor.image_processor = AutoImageProcessor.from_pretrained(
                str(path), local_files_only=True, use_fast=fast_image_processor
            )
        except (OSError, ValueError, TypeError) as exc:
            raise ModelLoadError(f"cannot load the processor from {path}: {exc}") from exc
        if left_padding:
            processor.tokenizer.padding_side = "left"
        return processor

    key = ("processor", str(path), weights_digest(path), fast_image_processor, left_padding)
    return shared(key, _load)


# transformers' notices about the image processor it picks while ``use_fast`` is unset ("fast
# by default", "slow image processor as `use_fast` is unset"), from the auto image processor
# (Florence-2...) or a processor with a slow/fast pair (OWLv2...)
_PROCESSOR_NOTICES = (
    "as a fast processor by default",
    "Using a slow image processor as `use_fast`",
)
_PROCESSOR_LOGGERS = (
    "transformers.models.auto.image_processing_auto",
    "transformers.processing_utils",
)


class _DropProcessorNotices(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in _PROCESSOR_NOTICES)


@contextlib.contextmanager
def _fast_default_notice_dropped() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in _PROCESSOR_LOGGERS]
    notice = _DropProcessorNotices()
    for logger in loggers:
        logger.addFilter(notice)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(notice)


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
