"""Experiment configs (``experiments/*.yaml``): what to run, on which benchmark, with which models.

Every level rejects unknown keys, and every error names the key (``pipelines.cot.modee``).
String values may reference environment variables as ``${VAR}`` or ``${VAR:-default}``; an unset
variable without a default is an error naming both the variable and the key (every unset
variable is listed at once). ``load_config(..., defer_unset_env=True)`` instead keeps such a
reference as written and lists it in :attr:`ExperimentConfig.unset_env`, so that the run's
pre-flight check (:mod:`cot_ground.runner.preflight`) reports it together with every other
setup problem. Relative paths are resolved against the current working directory when the run
starts.

Adapters are named by their registry name (``qwen-vl-reasoner``...) or, for adapters that live
outside cot-ground, by an import string ``package.module:factory`` (the factory takes a
:class:`~cot_ground.models.settings.ModelSettings` and returns the adapter).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from cot_ground.models.settings import ModelSettings

if TYPE_CHECKING:
    from cot_ground.bench import Benchmark

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class ConfigError(ValueError):
    """An experiment config is invalid; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _is_frame(value: Any) -> bool:
    """True when ``value`` names a :class:`~cot_ground.boxes.Frame`."""
    from cot_ground.boxes import Frame

    try:
        Frame(value)
    except ValueError:
        return False
    return True


class BenchmarkConfig(_Strict):
    """Which annotation file, where its images are, and which part of it to run."""

    file: str = Field(description="MIG-Bench style annotation JSON (e.g. MIG_data.json)")
    root: str | None = Field(default=None, description="folder image paths are relative to")
    tasks: list[str] | None = Field(default=None, description="only these tasks (default: all)")
    limit: int | None = Field(default=None, ge=1, description="at most this many examples")
    answer_frame: str | None = Field(
        default=None, description="frame of the file's boxes (loader default when omitted)"
    )
    allow_outside_root: bool = Field(
        default=False,
        description="accept image paths that leave root (../, absolute paths); refused otherwise",
    )
    per_task: int | None = Field(default=None, ge=1, description="the first N examples per task")
    sample: int | None = Field(
        default=None, ge=1, description="N examples drawn with `seed`, stratified by task"
    )
    seed: int = Field(default=0, ge=0, description="seed of `sample`")

    @field_validator("answer_frame")
    @classmethod
    def _known_frame(cls, value: str | None) -> str | None:
        from cot_ground.bench.migbench import FRAME_CHOICES

        if value is None or _ENV_REF.search(value) or _is_frame(value):
            return value  # an unset variable is reported as such
        raise ValueError(f"unknown frame {value!r} (frames: {FRAME_CHOICES})")

    @model_validator(mode="after")
    def _one_selection(self) -> BenchmarkConfig:
        chosen = [k for k in ("limit", "per_task", "sample") if getattr(self, k) is not None]
        if len(chosen) > 1:
            raise ValueError(f"give at most one of limit, per_task and sample (got {chosen})")
        return self

    def load(self) -> Benchmark:
        """The file loaded and the selection applied
        (:func:`cot_ground.bench.migbench.load_benchmark` with these fields). Raises
        ``BenchmarkError`` for a bad file or selection, ``OSError`` when it cannot be read."""
        from cot_ground.bench import load_benchmark

        return load_benchmark(
            self.file,
            root=self.root,
            tasks=self.tasks,
            limit=self.limit,
            per_task=self.per_task,
            sample=self.sample,
            seed=self.seed,
            answer_frame=self.answer_frame,
            allow_outside_root=self.allow_outside_root,
        )


class ModelConfig(ModelSettings):
    """One adapter: its registry name (or ``module:factory``) plus its :class:`ModelSettings`."""

    adapter: str = Field(description="registry name or 'package.module:factory'")

    def settings(self) -> ModelSettings:
        """The :class:`ModelSettings` part (everything but ``adapter``)."""
        return ModelSettings(**self.model_dump(exclude={"adapter"}))


class CoTPipelineConfig(BaseModel):
    """A two-step CoT graph: reasoner (step 1), grounder (step 2), optional fallback grounder.

    Every other key is a :class:`cot_ground.graph.config.CoTConfig` field (``mode``,
    ``prompt_variant``, ``max_retries``, ``fallbacks``...), checked against that class.
    """

    model_config = ConfigDict(extra="allow")

    kind: Literal["cot"]
    reasoner: str = Field(description="key in `models` of a reasoner adapter")
    grounder: str = Field(description="key in `models` of a grounder adapter")
    fallback_grounder: str | None = Field(
        default=None,
        description="key in `models` of the grounder the 'mllm-grounder' fallback uses",
    )
    zoom: dict[str, Any] | None = Field(
        default=None,
        description="zoom-in refinement after step 2: cot_ground.graph.ZoomConfig fields "
        "({} for the defaults); absent: no zoom",
    )
    zoom_grounder: str | None = Field(
        default=None, description="key in `models` of the zoom grounder (default: grounder)"
    )

    def model_refs(self) -> dict[str, str]:
        """Role slot → model key (mode ``multi-image``: the grounder is a multi-image end-to-end
        adapter, slot ``multi_image_grounder``)."""
        slot = "multi_image_grounder" if self.multi_image else "grounder"
        refs = {"reasoner": self.reasoner, slot: self.grounder}
        if self.fallback_grounder:
            refs["fallback_grounder"] = self.fallback_grounder
        if self.zoom_grounder:
            refs["zoom_grounder"] = self.zoom_grounder
        return refs

    def graph_fields(self) -> dict[str, Any]:
        """The keys meant for the graph's config class."""
        return dict(self.model_extra or {})

    @property
    def multi_image(self) -> bool:
        """Step 2 by a multi-image grounder (``mode: multi-image``)."""
        return self.graph_fields().get("mode") == "multi-image"

    @model_validator(mode="after")
    def _multi_image_alone(self) -> CoTPipelineConfig:
        if self.multi_image and (self.zoom is not None or self.fallback_grounder):
            raise ValueError(
                "mode 'multi-image' takes no zoom and no fallback_grounder: its grounder "
                "already sees every image"
            )
        return self


class E2EPipelineConfig(BaseModel):
    """An end-to-end graph with one model (Migician, Qwen2-VL direct inference).

    Every other key is a :class:`cot_ground.graph.config.E2EConfig` field (``prompt_variant``...).
    """

    model_config = ConfigDict(extra="allow")

    kind: Literal["e2e"]
    model: str = Field(description="key in `models` of an end-to-end adapter")

    def model_refs(self) -> dict[str, str]:
        """Role slot → model key."""
        return {"model": self.model}

    def graph_fields(self) -> dict[str, Any]:
        """The keys meant for the graph's config class."""
        return dict(self.model_extra or {})


class ProposalPipelineConfig(BaseModel):
    """A proposal-based graph (``som``, ``perception-prompt``, ``verify``; docs/graph.md):
    reasoner + grounder (which proposes boxes), optional zoom-in afterwards.

    Every other key is a field of the graph's config class
    (:class:`cot_ground.graph.SoMConfig`, ``PerceptionConfig``, ``VerifyConfig``).
    """

    model_config = ConfigDict(extra="allow")

    kind: Literal["som", "perception-prompt", "verify"]
    reasoner: str = Field(description="key in `models` of a reasoner adapter")
    grounder: str = Field(description="key in `models` of the grounder that proposes boxes")
    zoom: dict[str, Any] | None = Field(
        default=None,
        description="zoom-in refinement afterwards: cot_ground.graph.ZoomConfig fields "
        "({} for the defaults); absent: no zoom",
    )
    zoom_grounder: str | None = Field(
        default=None, description="key in `models` of the zoom grounder (default: grounder)"
    )

    def model_refs(self) -> dict[str, str]:
        """Role slot → model key."""
        refs = {"reasoner": self.reasoner, "grounder": self.grounder}
        if self.zoom_grounder:
            refs["zoom_grounder"] = self.zoom_grounder
        return refs

    def graph_fields(self) -> dict[str, Any]:
        """The keys meant for the graph's config class."""
        return dict(self.model_extra or {})


PIPELINE_KINDS = ("cot", "e2e", "som", "perception-prompt", "verify")
PipelineConfig = Annotated[
    CoTPipelineConfig | E2EPipelineConfig | ProposalPipelineConfig, Field(discriminator="kind")
]


class CacheConfig(_Strict):
    """The step-1 cache (see :mod:`cot_ground.runner.cache`)."""

    enabled: bool = True
    dir: str = Field(default=".cot_ground_cache", description="folder of the SQLite cache file")
    timeout_s: float = Field(
        default=30.0, gt=0, description="seconds a cache call waits for another process's lock"
    )


# adapters that read box text and take the ``unit_floats`` option
UNIT_FLOATS_ADAPTERS: frozenset[str] = frozenset({"qwen-vl-grounder", "qwen-vl-e2e", "migician"})


class ExperimentConfig(_Strict):
    """A whole experiment: benchmark, models, pipelines run side by side, batching, output."""

    name: str = Field(pattern=_NAME)
    description: str = ""
    benchmark: BenchmarkConfig
    models: dict[str, ModelConfig]
    pipelines: dict[str, PipelineConfig]
    batch_size: int = Field(default=1, ge=1, description="requests per model call, across examples")
    output: str | None = Field(default=None, description="run folder (default runs/<name>)")
    cache: CacheConfig = Field(default_factory=CacheConfig)
    unit_floats: Literal["reject", "fraction", "migician"] = Field(
        default="reject",
        description="how a box of four numbers in [0, 1], one written with a decimal point, is "
        "read in an integer frame (cot_ground.parsing.parse_box): 'reject' (status "
        "frame_mismatch), 'fraction', 'migician'; given to every model in UNIT_FLOATS_ADAPTERS "
        "whose options do not set unit_floats (so the resolved config in run.json states it for "
        "each model)",
    )
    _unset_env: list[str] = PrivateAttr(default_factory=list)
    _source: str | None = PrivateAttr(default=None)

    @property
    def unset_env(self) -> list[str]:
        """``"key: environment variable VAR is not set ..."`` for each reference left as written
        by ``load_config(..., defer_unset_env=True)`` (empty otherwise)."""
        return list(self._unset_env)

    @property
    def source(self) -> str | None:
        """The file this config was read from (None when built from a mapping)."""
        return self._source

    @model_validator(mode="after")
    def _fill_unit_floats(self) -> ExperimentConfig:
        for model in self.models.values():
            if model.adapter in UNIT_FLOATS_ADAPTERS:
                model.options.setdefault("unit_floats", self.unit_floats)
        return self

    def with_unit_floats(self, value: str) -> ExperimentConfig:
        """A copy where ``unit_floats`` is ``value`` for the experiment and for every model in
        :data:`UNIT_FLOATS_ADAPTERS` (the ``--unit-floats`` option of ``cot-ground run``).
        Raises ``ValueError`` naming the allowed values for any other ``value``."""
        from cot_ground.parsing import UNIT_FLOATS

        if value not in UNIT_FLOATS:
            allowed = ", ".join(UNIT_FLOATS)
            raise ValueError(f"unit_floats: unknown value {value!r} (allowed: {allowed})")
        models = {
            key: model.model_copy(update={"options": {**model.options, "unit_floats": value}})
            if model.adapter in UNIT_FLOATS_ADAPTERS
            else model
            for key, model in self.models.items()
        }
        data = {**self.model_dump(), "models": models, "unit_floats": value}
        copy = type(self).model_validate(data)
        copy._unset_env, copy._source = list(self._unset_env), self._source
        return copy

    def with_selection(
        self,
        *,
        limit: int | None = None,
        per_task: int | None = None,
        sample: int | None = None,
        seed: int | None = None,
    ) -> ExperimentConfig:
        """A copy whose benchmark selection is the one given (``--limit``, ``--per-task``,
        ``--sample``/``--seed`` of ``cot-ground run``), replacing the config file's; unchanged
        when none is given. Raises ``ValueError`` for more than one of the three."""
        if limit is None and per_task is None and sample is None:
            return self
        update = {"limit": limit, "per_task": per_task, "sample": sample}
        if seed is not None:
            update["seed"] = seed
        try:
            bench = BenchmarkConfig.model_validate({**self.benchmark.model_dump(), **update})
        except ValidationError as exc:
            msg = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
            raise ValueError(f"benchmark selection: {msg}") from None
        copy = self.model_copy(update={"benchmark": bench})
        copy._unset_env, copy._source = list(self._unset_env), self._source
        return copy

    @model_validator(mode="after")
    def _check_references(self) -> ExperimentConfig:
        problems = reference_problems(self.pipelines, set(self.models))
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def output_dir(self) -> Path:
        """The run folder: ``output`` or ``runs/<name>``."""
        return Path(self.output) if self.output else Path("runs") / self.name


def reference_problems(pipelines: dict[str, Any], models: set[str]) -> list[str]:
    """Every pipeline name that is not allowed and every model key a pipeline names that is
    not in ``models``, one line each (empty ``pipelines``: the one line saying so)."""
    if not pipelines:
        return ["pipelines: at least one pipeline is required"]
    problems = []
    known = ", ".join(sorted(models)) or "none"
    for name, pipe in pipelines.items():
        if not re.match(_NAME, name):
            problems.append(
                f"pipelines.{name}: pipeline names may hold letters, digits, '_', '.', '-'"
            )
        try:
            refs = pipe.model_refs()
        except AttributeError:  # a required key is missing: reported as such
            refs = {}
        problems += [
            f"pipelines.{name}.{key}: unknown model {ref!r} (models: {known})"
            for key, ref in refs.items()
            if ref not in models
        ]
    return problems


def adapter_problems(pipelines: dict[str, Any], adapters: dict[str, Any]) -> list[str]:
    """Every registry adapter name (``adapters``: model key → adapter name) that is unknown, and
    every model a pipeline puts in a slot of another role (:data:`registry.SLOTS`), one line
    each; loads nothing. Import strings (``module:factory``) and keys ``adapters`` lacks are
    left out (their methods are checked once built; a missing key has its own message)."""
    from cot_ground.models import registry

    problems: list[str] = []
    for pname, pipe in pipelines.items():
        try:
            refs = pipe.model_refs()
        except AttributeError:  # a required key is missing: reported as such
            refs = {}
        for slot, key in refs.items():
            name = adapters.get(key)
            if not isinstance(name, str) or ":" in name or _ENV_REF.search(name):
                continue
            try:
                actual = registry.role_of(name)
            except KeyError as exc:
                problem = f"models.{key}.adapter: {exc.args[0]}"
                if problem not in problems:
                    problems.append(problem)
                continue
            role = registry.SLOTS[slot]
            if actual != role:
                problems.append(
                    f"pipelines.{pname}.{slot}: model {key!r} is adapter {name!r},"
                    f" {registry.ROLE_NOUNS[actual]}, but this slot needs"
                    f" {registry.ROLE_NOUNS[role]}"
                )
    return problems


FRAME_CHECK_MAX_BYTES = 64 * 1024 * 1024
"""Largest annotation file whose frame :func:`setup_problems` decides (it reads the file's
sha256); a larger one is left to the pre-flight check."""


def setup_problems(data: dict[str, Any], pipelines: dict[str, Any]) -> list[str]:
    """The pre-flight checks that need no model and no big file, run on a config mapping that
    is invalid elsewhere, so that one report lists them with its other errors: unknown task
    names, unknown adapters and models in a slot of another role (:func:`adapter_problems`),
    the option keys and values of every model a pipeline uses (:func:`option_value_problems`),
    prompt variants that serve no task (:func:`pipeline_prompt_problems`),
    and, for an annotation file up to :data:`FRAME_CHECK_MAX_BYTES`, a missing
    ``benchmark.answer_frame`` (neither a published file nor a build stating its frame) or one
    that contradicts the file's known frame. Values still holding ``${VAR}`` are skipped."""
    from cot_ground.tasks import TASK_ORDER

    problems: list[str] = []
    bench = data.get("benchmark") if isinstance(data.get("benchmark"), dict) else {}
    tasks = bench.get("tasks")
    if isinstance(tasks, list):
        problems += [
            f"benchmark.tasks[{i}]: unknown task {task!r} (tasks: {', '.join(TASK_ORDER)})"
            for i, task in enumerate(tasks)
            if isinstance(task, str) and task not in TASK_ORDER
        ]
    models = data.get("models") if isinstance(data.get("models"), dict) else {}
    adapters = {k: m.get("adapter") for k, m in models.items() if isinstance(m, dict)}
    problems += adapter_problems(pipelines, adapters)
    problems += option_value_problems(models, pipelines)
    problems += pipeline_prompt_problems(pipelines, set())
    frame = _frame_problem(bench)
    return problems + ([frame] if frame else [])


def option_value_problems(models: dict[str, Any], pipelines: dict[str, Any]) -> list[str]:
    """The option checks (:func:`~cot_ground.models.options.adapter_option_problems`) of every
    model some pipeline uses, on the models as written (``models``: key → mapping; a field with
    its own error is left out), as the pre-flight words them: ``models.KEY (ADAPTER): ...``.
    Import strings, unknown adapters and options holding ``${VAR}`` are skipped; loads
    nothing."""
    from cot_ground.models import registry
    from cot_ground.models.options import adapter_option_problems

    used: set[str] = set()
    for pipe in pipelines.values():
        try:
            used.update(pipe.model_refs().values())
        except AttributeError:  # a required key is missing: reported as such
            continue
    problems: list[str] = []
    for key in sorted(k for k in used if isinstance(models.get(k), dict)):
        name = models[key].get("adapter")
        if not isinstance(name, str) or name not in registry.ADAPTERS:
            continue
        settings = _settings_as_written(models[key])
        if settings is None or any(_ENV_REF.search(str(v)) for v in settings.options.values()):
            continue
        try:
            found = adapter_option_problems(name, settings)
        except Exception as exc:  # a check must not stop the other checks
            found = [f"{type(exc).__name__}: {exc}"]
        problems += [f"models.{key} ({name}): {p}" for p in found]
    return problems


def _settings_as_written(model: dict[str, Any]) -> ModelSettings | None:
    """The :class:`ModelSettings` of a model mapping, leaving out every field with an error of
    its own (reported as such); None when ``options`` itself is not valid."""
    fields = {k: v for k, v in model.items() if k != "adapter"}
    for _ in range(len(fields) + 1):
        try:
            return ModelSettings.model_validate(fields)
        except ValidationError as exc:
            bad = {err["loc"][0] for err in exc.errors() if err["loc"]}
            if "options" in bad or not bad:
                return None
            fields = {k: v for k, v in fields.items() if k not in bad}
    return None


def _frame_problem(bench: dict[str, Any]) -> str | None:
    """``benchmark.answer_frame`` missing for a small annotation file of unknown frame, or
    contradicting the frame the file is known by
    (:func:`~cot_ground.bench.migbench.resolve_frame`)."""
    from cot_ground.bench.migbench import BenchmarkError, no_frame_reason, resolve_frame
    from cot_ground.records import file_sha256

    file, frame = bench.get("file"), bench.get("answer_frame")
    if not isinstance(file, str) or _ENV_REF.search(file):
        return None
    if frame is not None and not _is_frame(frame):
        return None  # a bad value has its own error
    path = Path(file)
    try:
        if not path.is_file() or path.stat().st_size > FRAME_CHECK_MAX_BYTES:
            return None
        sha = file_sha256(path)
    except OSError:
        return None  # the pre-flight check names the unreadable file
    try:
        resolve_frame(sha, path, frame)
    except BenchmarkError as exc:
        if frame is not None:
            return f"benchmark.answer_frame: {exc}"
        why = no_frame_reason(sha, path)
        detail = "" if why.startswith("no ") else f": {why}"
        return (
            f"benchmark.answer_frame: required for {path} (not a published MIG-Bench file, and"
            f" no build states its frame{detail}); give the frame of its boxes"
            " (docs/benchmark.md)"
        )
    return None


def expand_env(value: Any, where: str = "", unset: list[str] | None = None) -> Any:
    """``value`` with ``${VAR}`` / ``${VAR:-default}`` replaced in every string, recursively.

    An unset variable without a default raises :class:`ConfigError`; with an ``unset`` list the
    reference is kept as written and ``"key: environment variable VAR is not set ..."`` is
    appended to the list instead.
    """
    if isinstance(value, dict):
        return {
            k: expand_env(v, f"{where}.{k}" if where else str(k), unset) for k, v in value.items()
        }
    if isinstance(value, list):
        return [expand_env(v, f"{where}[{i}]", unset) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def _sub(match: re.Match[str]) -> str:
        var, default = match.group(1), match.group(2)
        if var in os.environ:
            return os.environ[var]
        if default is not None:
            return default
        problem = f"{where}: environment variable {var} is not set (used as ${{{var}}})"
        if unset is None:
            raise ConfigError(problem)
        unset.append(problem)
        return match.group(0)

    return _ENV_REF.sub(_sub, value)


def _format_loc(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for i, item in enumerate(loc):
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif i == 2 and loc[0] == "pipelines" and item in PIPELINE_KINDS:
            # the discriminated-union tag pydantic inserts after the pipeline name
            continue
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


def _format_errors(exc: ValidationError, source: str, prefix: str = "") -> str:
    lines = [f"invalid experiment config {source}:"]
    for err in exc.errors():
        key = ".".join(p for p in (prefix, _format_loc(tuple(err["loc"]))) if p)
        if not key:
            lines += ["  " + line for line in err["msg"].removeprefix("Value error, ").splitlines()]
        elif err["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key")
        elif err["type"] == "missing":
            lines.append(f"  {key}: required key is missing")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def parse_config(
    data: Any, source: str = "<config>", *, defer_unset_env: bool = False
) -> ExperimentConfig:
    """Validate a config mapping (env vars expanded first); raises :class:`ConfigError` listing
    every unset variable and every invalid key. With ``defer_unset_env`` unset variables are
    kept as ``${VAR}`` and listed in ``config.unset_env`` instead (for the pre-flight check)."""
    if not isinstance(data, dict):
        raise ConfigError(f"invalid experiment config {source}: expected a mapping at top level")
    unset: list[str] = []
    expanded = expand_env(data, unset=unset)
    if unset and not defer_unset_env:
        raise ConfigError("\n".join([f"invalid experiment config {source}:", *map(_indent, unset)]))
    problems: list[str] = []
    config: ExperimentConfig | None = None
    try:
        config = ExperimentConfig.model_validate(expanded)
        pipelines: dict[str, Any] = dict(config.pipelines)
    except ValidationError as exc:
        problems += _format_errors(exc, source).splitlines()[1:]
        # the checks that run only on a valid config, run on what can be read of it, so that
        # every problem is reported at once
        pipelines = _pipelines_as_written(expanded.get("pipelines"))
        models = expanded.get("models")
        if isinstance(models, dict) and isinstance(expanded.get("pipelines"), dict):
            problems += map(_indent, reference_problems(pipelines, set(models)))
        problems += map(_indent, setup_problems(expanded, pipelines))
    for name, pipe in pipelines.items():
        try:
            graph_config(name, pipe)
        except ValidationError as exc:
            problems.extend(_format_errors(exc, source, f"pipelines.{name}").splitlines()[1:])
        except (TypeError, ValueError) as exc:
            problems.extend(_indent(line) for line in str(exc).splitlines())
    if problems and config is not None:
        # a graph field is invalid: the checks of an invalid config join its report (a bad
        # prompt variant of that pipeline is named with its other errors)
        problems += map(_indent, setup_problems(expanded, pipelines))
    if problems or config is None:
        header = f"invalid experiment config {source}:"
        lines = list(dict.fromkeys(problems))  # a reference problem may be found twice
        raise ConfigError("\n".join([header, *map(_indent, unset), *lines]))
    config._unset_env = unset
    return config


def _pipelines_as_written(data: Any) -> dict[str, Any]:
    """The pipelines of an invalid config, each as its config class (validated when it is
    valid, else built without validation from its keys); entries without a known ``kind``
    are left out (their error says so)."""
    from pydantic import TypeAdapter

    classes: dict[str, type[BaseModel]] = {
        "cot": CoTPipelineConfig,
        "e2e": E2EPipelineConfig,
        **dict.fromkeys(("som", "perception-prompt", "verify"), ProposalPipelineConfig),
    }
    out: dict[str, Any] = {}
    for name, raw in (data or {}).items() if isinstance(data, dict) else ():
        if not isinstance(raw, dict) or raw.get("kind") not in classes:
            continue
        try:
            out[str(name)] = TypeAdapter(PipelineConfig).validate_python(raw)
        except ValidationError:
            fields = dict(raw)
            if not isinstance(fields.get("zoom", {}), dict):
                fields["zoom"] = None  # a zoom that is no mapping is reported as such
            out[str(name)] = classes[raw["kind"]].model_construct(**fields)
    return out


def _indent(line: str) -> str:
    return f"  {line}"


def pipeline_prompt_problems(pipelines: dict[str, Any], tasks: set[str]) -> list[str]:
    """Every pipeline's prompt files load for every task in ``tasks`` (``pipelines``: name →
    pipeline config). With no tasks (the selection could not be read, or the config is checked
    before any benchmark is), each prompt variant must serve at least one benchmark task: a
    variant that serves none (a misspelt name, a missing folder) is named all the same. A
    pipeline whose other graph fields are invalid is checked on its prompt keys as written
    (:func:`_prompt_fields`). For ``tasks``, a step 1 that must name the image but whose
    variant answers a description is named too (:func:`step1_image_problems`)."""
    from cot_ground.prompts import PromptError, load_prompts
    from cot_ground.runner.fingerprint import prompt_sets
    from cot_ground.tasks import TASK_ORDER

    problems: list[str] = []
    for name, pipe in pipelines.items():
        fields = _prompt_fields(name, pipe)
        if fields is None:
            continue
        seen: set[str] = set()
        for kind, variant in prompt_sets(fields):
            found: list[str] = []
            for task in sorted(tasks) or TASK_ORDER:
                try:
                    load_prompts(kind, variant, task, fields["prompts_dir"])
                except (PromptError, FileNotFoundError) as exc:
                    found.append(str(exc))
            if not tasks:  # only a variant that serves no task at all
                found = found[:1] if len(found) == len(TASK_ORDER) else []
            for problem in found:
                if problem not in seen:
                    seen.add(problem)
                    problems.append(f"pipelines.{name}: {problem}")
        problems += step1_image_problems(name, fields, tasks)
    return problems


PROMPT_KEYS = ("mode", "prompt_variant", "step1_variant", "prompts_dir")
"""Graph config fields that choose the prompt files a pipeline reads."""


def _prompt_fields(name: str, pipe: Any) -> dict[str, Any] | None:
    """``kind`` and the :data:`PROMPT_KEYS` of pipeline ``name``: its graph config's, or, when
    that config is invalid for another reason, the values as written over the graph class's
    defaults. None when a variant or ``prompts_dir`` as written is not a string (its own error
    names it)."""
    try:
        cfg = graph_config(name, pipe)
    except (ValidationError, TypeError, ValueError):
        declared = _graph_classes()[pipe.kind].model_fields
        fields = {
            k: f.default for k, f in declared.items() if k in PROMPT_KEYS and not f.is_required()
        }
        fields.update({k: v for k, v in pipe.graph_fields().items() if k in fields})
        variants = [fields.get(k) for k in ("prompt_variant", "step1_variant") if k in fields]
        dir_ok = isinstance(fields.get("prompts_dir"), str | None)
        if not dir_ok or not all(isinstance(v, str) for v in variants):
            return None
    else:
        fields = cfg.model_dump(mode="json", include=set(PROMPT_KEYS))
    return {"kind": pipe.kind, "prompts_dir": None, **fields}


def step1_image_problems(name: str, fields: dict[str, Any], tasks: set[str]) -> list[str]:
    """Pipeline ``name`` (``fields``: :func:`_prompt_fields`) needs its step-1 answer to name
    the step-2 image for a task of ``tasks`` (CoT mode ``agent``, or mode ``paper`` /
    ``multi-image`` for a task whose published rule is the reasoner's choice; a ``verify``
    pipeline's step 1, which runs in agent mode), but its step-1 prompt variant answers
    ``description`` for that task: the graph would record every such example as a config error
    (:meth:`cot_ground.graph.nodes.CoTNodes._step2_image`). A variant that does not load is
    left out (its own problem names it)."""
    from cot_ground.graph.nodes import PAPER_RULE_MODES
    from cot_ground.prompts import PromptError, load_prompts
    from cot_ground.tasks import get_task

    if fields["kind"] == "verify":
        mode, key = "agent", "step1_variant"
    elif fields["kind"] == "cot":
        mode, key = fields.get("mode"), "prompt_variant"
    else:
        return []
    if mode != "agent" and mode not in PAPER_RULE_MODES:
        return []
    variant = fields[key]
    bad: list[str] = []
    for task in sorted(tasks):
        rule = "reasoner" if mode == "agent" else get_task(task).paper_image
        if rule != "reasoner":  # the published rule names the image
            continue
        try:
            answer = load_prompts("cot", variant, task, fields["prompts_dir"]).fields.get("answer")
        except (PromptError, FileNotFoundError):
            continue
        if answer == "description":
            bad.append(task)
    if not bad:
        return []
    listed = ", ".join(map(repr, bad))
    if fields["kind"] == "verify":
        return [
            f"pipelines.{name}: step 1 of a verify pipeline must name the image, but"
            f" step1_variant {variant!r} answers 'description' for task(s) {listed}; choose a"
            " step1_variant whose answer names an image"
        ]
    return [
        f"pipelines.{name}: mode {mode!r} needs step 1 to name the image, but prompt variant"
        f" {variant!r} answers 'description' for task(s) {listed}; use mode 'paper' or"
        " 'oracle-image', or a variant whose answer names an image"
    ]


def _graph_classes() -> dict[str, type[BaseModel]]:
    """Pipeline kind → the graph's config class."""
    from cot_ground.graph.config import CoTConfig, E2EConfig
    from cot_ground.graph.selection_config import PerceptionConfig, SoMConfig, VerifyConfig

    return {
        "cot": CoTConfig,
        "e2e": E2EConfig,
        "som": SoMConfig,
        "perception-prompt": PerceptionConfig,
        "verify": VerifyConfig,
    }


def graph_config(
    name: str, pipe: CoTPipelineConfig | E2EPipelineConfig | ProposalPipelineConfig
) -> Any:
    """The graph's own config object (``CoTConfig``, ``E2EConfig``, ``SoMConfig``,
    ``PerceptionConfig`` or ``VerifyConfig``) for pipeline ``name``; a ``zoom`` mapping is
    checked too (:func:`zoom_config`)."""
    fields = pipe.graph_fields()
    if "pipeline" in fields:
        raise ValueError(f"pipelines.{name}.pipeline: not allowed (the pipeline key names it)")
    zoom_config(name, pipe)
    return _graph_classes()[pipe.kind](**fields, pipeline=name)


def zoom_config(name: str, pipe: Any) -> Any:
    """The pipeline's :class:`cot_ground.graph.ZoomConfig`, or None when it has no ``zoom``;
    raises ``ValueError`` naming ``pipelines.<name>.zoom.<key>``."""
    from cot_ground.graph.selection_config import ZoomConfig

    zoom = getattr(pipe, "zoom", None)
    if zoom is None:
        return None
    try:
        return ZoomConfig(**zoom)
    except ValidationError as exc:
        lines = _format_errors(exc, "", f"pipelines.{name}.zoom").splitlines()[1:]
        raise ValueError("\n".join(line.strip() for line in lines)) from None


def load_config(path: str | os.PathLike[str], *, defer_unset_env: bool = False) -> ExperimentConfig:
    """Read and validate ``path`` (YAML); raises :class:`ConfigError` naming the file and key
    (``defer_unset_env``: see :func:`parse_config`)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"experiment config not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"experiment config {p} is not valid YAML: {exc}") from None
    config = parse_config(data, str(p), defer_unset_env=defer_unset_env)
    config._source = str(p.resolve())
    return config
