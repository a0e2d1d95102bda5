"""Pre-flight: every setup problem of a run, found before any model loads and reported at once.

:func:`preflight` checks, in this order, without loading a model or decoding an image:

* environment variables the config references (all unset ones, with the keys using them);
* adapters: a known registry name or an importable ``module:factory``, in the role its pipeline
  slot needs;
* model folders and options: each adapter's check (:data:`MODEL_CHECKS`; config files and
  weights present for transformers checkpoints, the checkpoint and config of groundingdino-py,
  the API key variable of a served model; for every registry adapter the option keys and
  values, by its module's ``settings_problems``,
  :data:`~cot_ground.models.options.OPTION_CHECKS`); an adapter living outside cot-ground may
  give its factory a ``preflight`` attribute, a function ``(ModelSettings) -> list[str]``;
* the benchmark file, its image root, every bad item of the selection (each image path that
  leaves the root, each malformed field), and the selection (tasks, limit, shard) not being empty;
* every image file of the selected examples exists (``os.stat``, no decoding);
* the prompt files of every pipeline for every selected task;
* the step-1 cache file opens (a corrupt one is moved aside with a warning);
* an existing run folder was made by the same benchmark, selection, shard and pipeline fingerprint
  (:mod:`cot_ground.runner.fingerprint`).

Problems are collected, not raised one by one; :class:`PreflightError` lists them all and the
command line exits with status 2.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cot_ground.models import registry
from cot_ground.models.options import adapter_option_problems
from cot_ground.models.settings import ModelSettings
from cot_ground.runner.pipelines import SetupError, role_problems

if TYPE_CHECKING:
    from cot_ground.bench import Benchmark
    from cot_ground.records import Example
    from cot_ground.runner.config import ExperimentConfig

ModelCheck = Callable[[ModelSettings], list[str]]
"""Problems of one adapter's settings (empty when it can be built); never loads weights."""

SHOWN_PATHS = 5
"""Missing image paths quoted in the message (the rest are counted)."""


class PreflightError(SetupError):
    """The run cannot start; ``problems`` lists every reason (one line each)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"the run cannot start ({len(self.problems)} problem(s)):\n{lines}")


def _unexpanded(value: str | None) -> bool:
    """True for a value still holding a ``${VAR}`` reference (already reported as unset)."""
    return bool(value) and "${" in str(value)


def _options_only(adapter: str) -> ModelCheck:
    """The check of an adapter without weights: its options (:func:`adapter_option_problems`)."""

    def check(settings: ModelSettings) -> list[str]:
        return adapter_option_problems(adapter, settings)

    return check


def _hf_folder(adapter: str, processor: bool = True) -> ModelCheck:
    """The check of a transformers checkpoint: its option values
    (:func:`adapter_option_problems`), then a local folder (config, weights, processor files)
    or a Hub id ``org/name[@rev]`` that is cached, or will be downloaded when online
    (:func:`cot_ground.models.hf_loading.check_model_source`)."""

    def check(settings: ModelSettings) -> list[str]:
        from cot_ground.models.hf_loading import check_model_source

        problems = adapter_option_problems(adapter, settings)
        if not settings.path:
            return [
                *problems,
                f"adapter {adapter!r} needs settings.path (a model folder or Hub id)",
            ]
        return [*problems, *check_model_source(settings.path, processor=processor)]

    return check


def _gdino_py(settings: ModelSettings) -> list[str]:
    """groundingdino-py: its options and dtype (:func:`adapter_option_problems`), the
    checkpoint file, the config file and the local BERT folder."""
    from cot_ground.models import gdino_py
    from cot_ground.models.base import ModelLoadError
    from cot_ground.models.hf_loading import model_path

    problems = adapter_option_problems(gdino_py.NAME, settings)
    try:
        checkpoint = model_path(settings, gdino_py.NAME)
        if not checkpoint.is_file():
            problems.append(f"groundingdino-py checkpoint file not found: {checkpoint}")
    except ModelLoadError as exc:
        problems.append(str(exc))
    options = settings.options
    paths = [options.get("config_file"), options.get("bert_path")]
    if any(not isinstance(p, str | None) or _unexpanded(p) for p in paths):
        return problems  # a bad value is reported above, an unset variable earlier
    try:
        config = gdino_py._config_path(options.get("config_file"))
        bert = gdino_py._bert_dir(options.get("bert_path"), config)
        if not bert.is_dir():
            problems.append(f"groundingdino-py BERT folder not found: {bert}")
    except ModelLoadError as exc:
        problems.append(str(exc))
    return problems


def _served(adapter: str) -> ModelCheck:
    """A model behind an OpenAI-compatible endpoint: its options and their values
    (:func:`cot_ground.models.openai_chat.settings_problems`: ``base_url``, ``model``, the
    client-side resize) and the key variable."""

    def check(settings: ModelSettings) -> list[str]:
        problems = adapter_option_problems(adapter, settings)
        env = settings.options.get("api_key_env")
        if env and not os.environ.get(str(env)):
            problems.append(
                f"adapter {adapter!r}: environment variable {env} (options.api_key_env) is not set"
            )
        return problems

    return check


_TRANSFORMERS_ADAPTERS = (
    "qwen-vl-reasoner",
    "qwen-vl-grounder",
    "qwen-vl-e2e",
    "migician",
    "gdino-hf",
    "hf-chat-reasoner",
    "hf-chat-grounder",
    "hf-chat-e2e",
    "mm-gdino-hf",
    "owlv2",
    "florence2",
)

MODEL_CHECKS: dict[str, ModelCheck] = {
    **{name: _hf_folder(name) for name in _TRANSFORMERS_ADAPTERS},
    "gdino-py": _gdino_py,
    "openai-reasoner": _served("openai-reasoner"),
    "openai-e2e": _served("openai-e2e"),
    **{
        name: _options_only(name)
        for name in (
            "rule-reasoner",
            "template-grounder",
            "diff-grounder",
            "classical-grounder",
            "keypoint-grounder",
        )
    },
}
"""Registry adapter name → its settings check (the classical adapters, which load no weights:
their options only); :func:`register_model_check` adds or replaces one."""


def register_model_check(adapter: str, check: ModelCheck) -> None:
    """Use ``check`` for adapter ``adapter`` (a registry name) in every later pre-flight."""
    MODEL_CHECKS[adapter] = check


def _model_check(adapter: str) -> tuple[ModelCheck | None, str | None]:
    """(check or None, problem importing a ``module:factory`` adapter or None)."""
    if ":" not in adapter:
        return MODEL_CHECKS.get(adapter), None
    module_name, factory_name = adapter.split(":", 1)
    try:
        factory = getattr(importlib.import_module(module_name), factory_name)
    except (ImportError, AttributeError) as exc:
        return None, f"cannot load adapter {adapter!r}: {exc}"
    check = getattr(factory, "preflight", None)
    return (check if callable(check) else None), None


def model_problems(config: ExperimentConfig) -> list[str]:
    """Problems of every model a pipeline uses (``models.<key>: ...``); loads nothing."""
    used = {key for pipe in config.pipelines.values() for key in pipe.model_refs().values()}
    problems: list[str] = []
    for key in sorted(used):
        model = config.models[key]
        if ":" not in model.adapter and model.adapter not in registry.ADAPTERS:
            continue  # reported by role_problems
        if _unexpanded(model.path) or any(_unexpanded(str(v)) for v in model.options.values()):
            continue  # reported as an unset environment variable
        check, import_problem = _model_check(model.adapter)
        if import_problem:
            problems.append(f"models.{key}: {import_problem}")
            continue
        if check is None:
            continue
        try:
            found = check(model.settings())
        except Exception as exc:  # a check must not stop the other checks
            found = [f"{type(exc).__name__}: {exc}"]
        problems.extend(f"models.{key} ({model.adapter}): {p}" for p in found)
    return problems


def benchmark_problems(
    config: ExperimentConfig, shard: tuple[int, int] | None
) -> tuple[Benchmark | None, list[Example], list[str]]:
    """(benchmark, selected examples, problems): the file loads, the root is a folder, and the
    selection (tasks, limit, shard) holds at least one example. Every bad item is a problem of
    its own (image paths leaving the root, bad fields); the items that did load are returned
    with no benchmark, so their image files are checked too."""
    from cot_ground.bench import BenchmarkError
    from cot_ground.bench.migbench import BenchmarkItemsError
    from cot_ground.runner.shard import select_shard
    from cot_ground.tasks import TASK_ORDER

    bench_cfg = config.benchmark
    if _unexpanded(bench_cfg.file) or _unexpanded(bench_cfg.root):
        return None, [], []
    problems: list[str] = []
    if bench_cfg.root is not None and not Path(bench_cfg.root).is_dir():
        problems.append(f"benchmark.root: image folder not found: {bench_cfg.root}")
    # unknown task names are named whatever else the file holds (the loader checks them only
    # after reading the file and its frame); the known ones are loaded, so the file is checked too
    unknown = [t for t in bench_cfg.tasks or () if t not in TASK_ORDER]
    if unknown:
        known_tasks = ", ".join(TASK_ORDER)
        problems.append(f"benchmark.tasks: unknown task(s) {unknown}; known: {known_tasks}")
        known = [t for t in bench_cfg.tasks or () if t in TASK_ORDER]
        bench_cfg = bench_cfg.model_copy(update={"tasks": known})
    try:
        bench = bench_cfg.load()
    except BenchmarkItemsError as exc:
        return None, exc.examples, [*problems, *(f"benchmark: {p}" for p in exc.problems)]
    except (BenchmarkError, OSError) as exc:
        return None, _frame_free_examples(bench_cfg, shard), [*problems, f"benchmark: {exc}"]
    examples = list(bench.examples)
    if shard is not None:
        examples = select_shard(examples, *shard)
    if unknown:
        return None, examples, problems  # the selection asked for is not what was loaded
    if not examples:
        problems.append(empty_selection(bench_cfg.file, len(bench.examples), bench_cfg, shard))
    return bench, examples, problems


def _frame_free_examples(bench_cfg: Any, shard: tuple[int, int] | None) -> list[Example]:
    """The selected examples (``shard`` applied) of a file that did not load with its
    ``answer_frame`` (e.g. one that contradicts the frame a published file states), read
    without it, so that their image files are checked too; none when it does not load that way
    either (its error is already named)."""
    from cot_ground.bench import BenchmarkError
    from cot_ground.runner.shard import select_shard

    if bench_cfg.answer_frame is None:
        return []
    try:
        examples = list(bench_cfg.model_copy(update={"answer_frame": None}).load().examples)
    except (BenchmarkError, OSError):
        return []
    return select_shard(examples, *shard) if shard is not None else examples


def empty_selection(file: str, loaded: int, bench_cfg: Any, shard: tuple[int, int] | None) -> str:
    """The message for a selection without examples, naming what selected nothing."""
    if loaded == 0:
        filters = [
            f"{name}={value}"
            for name, value in (
                ("tasks", bench_cfg.tasks),
                ("limit", bench_cfg.limit),
                ("per_task", bench_cfg.per_task),
                ("sample", bench_cfg.sample),
            )
            if value is not None
        ]
        why = f"the filters ({', '.join(filters)}) select" if filters else "the file holds"
        return f"benchmark: no examples to run: {why} no item of {file}"
    k, n = shard or (0, 0)
    return (
        f"benchmark: no examples to run: shard {k}/{n} of the {loaded} selected example(s) is"
        f" empty; use at most {loaded} shards"
    )


def image_problems(
    examples: list[Example], root: str | None, file: str | os.PathLike[str] | None = None
) -> list[str]:
    """One problem summarising the image files of ``examples`` that do not exist (stat only):
    how many, then (up to :data:`SHOWN_PATHS`) each missing file with the annotation item that
    names it, ``item N (task): path`` (N: 0-based position in ``file``, as the loader's
    messages count; the example id when ``file`` is not given or cannot be matched)."""
    paths = list(dict.fromkeys(p for ex in examples for p in ex.images))
    missing = [p for p in paths if not os.path.isfile(p)]
    if not missing:
        return []
    users: dict[str, list[Example]] = {}
    for ex in examples:
        for p in dict.fromkeys(ex.images):
            users.setdefault(p, []).append(ex)
    numbers = item_numbers(file) if file is not None else {}
    shown = []
    for p in missing[:SHOWN_PATHS]:
        first, *others = users[p]
        where = f"item {numbers[first.id]}" if first.id in numbers else f"example {first.id}"
        more = f" and {len(others)} other item(s)" if others else ""
        shown.append(f"{where} ({first.task}){more}: {p}")
    listed = "; ".join(shown) + (
        f"; ... ({len(missing) - SHOWN_PATHS} more)" if len(missing) > SHOWN_PATHS else ""
    )
    hint = f" under benchmark.root {root}" if root else ""
    named = f" {file}" if file is not None else ""
    return [
        f"images: {len(missing)} of {len(paths)} image file(s) of the selected examples do not"
        f" exist{hint} (check benchmark.root, e.g. MIGBENCH_ROOT); in{named or ' the file'}:"
        f" {listed}"
    ]


def item_numbers(file: str | os.PathLike[str]) -> dict[str, int]:
    """Example id → 0-based position of its item in the annotation file ``file``, with the
    loader's ids (:func:`cot_ground.bench.migbench.load_benchmark`: a repeated item's k-th copy
    is ``ID-k``); empty when the file cannot be read."""
    from collections import Counter

    from cot_ground.bench import BenchmarkError
    from cot_ground.bench.migbench import read_items
    from cot_ground.records import example_id

    try:
        items = read_items(file)
    except (BenchmarkError, OSError):
        return {}
    seen: Counter[str] = Counter()
    numbers: dict[str, int] = {}
    for number, item in enumerate(items):
        try:
            base = example_id(item["task"], item["images"], item["question"])
        except (KeyError, TypeError, ValueError):
            continue  # a malformed item is reported by the loader
        seen[base] += 1
        numbers[base if seen[base] == 1 else f"{base}-{seen[base]}"] = number
    return numbers


def prompt_problems(config: ExperimentConfig, tasks: set[str]) -> list[str]:
    """Every pipeline's prompt files load for every task in ``tasks``
    (:func:`~cot_ground.runner.config.pipeline_prompt_problems` on ``config.pipelines``)."""
    from cot_ground.runner.config import pipeline_prompt_problems

    return pipeline_prompt_problems(dict(config.pipelines), tasks)


def cache_problems(config: ExperimentConfig, use_cache: bool) -> list[str]:
    """The step-1 cache opens (a corrupt file is moved aside with a warning)."""
    from cot_ground.runner.cache import CacheError, StepCache

    if not (use_cache and config.cache.enabled) or _unexpanded(config.cache.dir):
        return []
    try:
        StepCache(config.cache.dir, timeout_s=config.cache.timeout_s).close()
    except (CacheError, OSError) as exc:
        return [f"cache: {exc}"]
    return []


def preflight(
    config: ExperimentConfig,
    shard: tuple[int, int] | None = None,
    *,
    use_cache: bool = True,
    run_folder: Callable[[Benchmark, list[Example]], list[str]] | None = None,
) -> tuple[Benchmark, list[Example]]:
    """Check everything a run needs (module docstring) and return (benchmark, examples).

    ``config`` is resolved (:func:`~cot_ground.runner.resume.resolve_config`). ``run_folder``
    checks an existing run folder against the benchmark and examples. Raises
    :class:`PreflightError` listing every problem found.
    """
    problems = list(config.unset_env)
    problems += role_problems(config)
    problems += model_problems(config)
    bench, examples, found = benchmark_problems(config, shard)
    problems += found
    problems += image_problems(examples, config.benchmark.root, config.benchmark.file)
    problems += prompt_problems(config, {ex.task for ex in examples})
    problems += cache_problems(config, use_cache)
    if bench is not None and examples and run_folder is not None:
        problems += run_folder(bench, examples)
    if problems or bench is None:
        raise PreflightError(problems or ["benchmark: not loaded"])
    return bench, examples
