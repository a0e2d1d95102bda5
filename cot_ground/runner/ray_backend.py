"""Running an experiment on Ray: one model replica per GPU (or per CPU worker) as a Ray actor.

The driver (the ``cot-ground run --ray`` process) does what :func:`run_experiment` does up to
the examples: resolve the config, load the benchmark, take the shard. It alone owns the run
folder and writes it with the runner's own store, so the format, the fsync per line and the
resume rules are the plain runner's. Each actor builds every adapter of the config once (a setup
error stops the run before anything is written) and runs the examples it is handed exactly as the
plain runner does: ``batch_size`` examples at a time, each through its own graph, their model
calls batched across them. Examples go out in chunks of ``batch_size`` to whichever actor has a
free slot (two per actor, so an actor never waits for the driver); each chunk's records are
appended as soon as it comes back, so a killed run loses at most the chunks in flight.

Before any replica starts, the driver runs the same pre-flight check as the plain runner
(:mod:`cot_ground.runner.preflight`). When a replica dies (its process killed, out of memory),
the chunks it held go to the replicas still alive, and a dead replica gets no more work; when
every replica has died, the driver stops with :class:`ReplicasLost`: what was written is kept,
``run.json`` records the session and its error, and re-running the command resumes. Any other
error that stops the driver (a replica's task raised, a record could not be written) ends the
session ``"failed"`` with that error too, as in the plain runner.

``address=None`` (or ``"local"``) starts a local Ray instance limited to ``workers`` CPUs (the
local one sees this machine's GPUs); any other address joins an existing cluster, whose nodes
must have cot-ground and the model folders installed at the same paths.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cot_ground.models import registry
from cot_ground.records import Example
from cot_ground.runner.cache import StepCache
from cot_ground.runner.config import ExperimentConfig
from cot_ground.runner.execute import (
    Interrupt,
    PipelineSummary,
    run_pipeline_examples,
    write_record,
)
from cot_ground.runner.pipelines import SetupError, build_adapters, build_pipeline
from cot_ground.runner.progress import LogProgress, Progress
from cot_ground.runner.run import (
    RunSummary,
    checked_setup,
    end_session,
    new_session,
    write_error,
)
from cot_ground.runner.session import open_manifest, pipeline_session
from cot_ground.runner.store import JsonlAppender, RunFolder, RunFolderError

log = logging.getLogger("cot_ground.run")

SLOTS_PER_REPLICA = 2
DEFAULT_CPU_WORKERS = 2


class ReplicasLost(RunFolderError):
    """Every Ray replica died; the run folder is consistent and the command resumes it."""

    exit_code = 1  # a run that stopped, not a setup problem (status 2)


class _Collect:
    """A store stand-in for :func:`run_pipeline_examples` inside an actor: keeps the records."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def append(self, record: dict[str, Any]) -> bool:
        self.records.append(record)
        return True


class _Quiet:
    """Progress inside an actor: the driver reports progress."""

    def start(self, pipeline: str, total: int, done: int) -> None: ...

    def advance(self, pipeline: str, failed: bool = False) -> None: ...

    def finish(self, pipeline: str) -> None: ...

    def close(self) -> None: ...


class Replica:
    """One copy of every model of the config and the compiled graphs over them (a Ray actor)."""

    def __init__(
        self,
        config: dict[str, Any],
        adapters: dict[str, tuple[str, str]],
        cwd: str,
        batch_size: int,
        use_cache: bool,
        artifacts_dir: str,
    ) -> None:
        if os.path.isdir(cwd):  # relative model paths mean the same as on the driver
            os.chdir(cwd)
        registry.install(adapters)  # adapters registered at run time
        self.config = ExperimentConfig.model_validate(config)
        self.batch_size = batch_size
        built = build_adapters(self.config)
        enabled = use_cache and self.config.cache.enabled
        cache_cfg = self.config.cache
        self.cache = StepCache(cache_cfg.dir, timeout_s=cache_cfg.timeout_s) if enabled else None
        self.pipes = {
            name: build_pipeline(
                name,
                pipe,
                built,
                batch_size=batch_size,
                cache=self.cache,
                artifacts_dir=artifacts_dir,
            )
            for name, pipe in self.config.pipelines.items()
        }

    def describe(self) -> dict[str, Any]:
        """Where this replica runs: host, process id and the GPUs Ray gave it."""
        import ray

        return {"host": socket.gethostname(), "pid": os.getpid(), "gpus": ray.get_gpu_ids()}

    def run_chunk(self, pipeline: str, examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Prediction records of ``examples`` (same failures-as-records rule as the runner)."""
        todo = [Example.model_validate(e) for e in examples]
        out = _Collect()
        summary = PipelineSummary(total=len(todo), done_before=0)
        run_pipeline_examples(
            self.pipes[pipeline], todo, out, self.batch_size, _Quiet(), Interrupt(), summary
        )
        return out.records

    def stats(self) -> dict[str, Any]:
        """Batch sizes sent per pipeline and queue, and step-cache hits and misses."""
        return {
            "batch_sizes": {n: p.coordinator.batch_sizes() for n, p in self.pipes.items()},
            "oom_splits": {n: p.coordinator.oom_splits() for n, p in self.pipes.items()},
            "cache_hits": self.cache.hits if self.cache else 0,
            "cache_misses": self.cache.misses if self.cache else 0,
        }

    def close(self) -> None:
        """Close the step cache."""
        if self.cache is not None:
            self.cache.close()


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise SetupError(
            "--ray needs Ray: pip install 'cot-ground[ray]' (on every node of the cluster)"
        ) from None
    return ray


def connect(address: str | None, num_cpus: int | None) -> bool:
    """Join the cluster at ``address`` (or ``$RAY_ADDRESS``), else start a local instance with
    ``num_cpus`` CPUs (all when None). Returns True when this call started Ray (the caller then
    shuts it down). An already initialized Ray is used as it is."""
    ray = _import_ray()
    if ray.is_initialized():
        return False
    common: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    if address == "local":
        # local workers import what the driver can import (tests, benchmarks, plugins)
        path = os.pathsep.join(os.path.abspath(p or os.curdir) for p in sys.path)
        env = {"env_vars": {"PYTHONPATH": path}}
        ray.init(address="local", num_cpus=num_cpus, runtime_env=env, **common)
        return True
    try:
        ray.init(address=address, **common)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise SetupError(f"cannot join the Ray cluster at {address}: {exc}") from exc
    return True


def start_replicas(
    config: ExperimentConfig,
    workers: int | None,
    batch_size: int,
    use_cache: bool,
    artifacts_dir: str,
) -> tuple[list[Any], list[dict[str, Any]]]:
    """Start the replicas (one GPU each when the cluster has GPUs, else one CPU each) and wait
    until every one has built its models. ``artifacts_dir``: where proposal graphs save the
    pictures they showed their models (the run folder's ``artifacts/``; on a cluster of several
    machines it must be on a file system they share). Raises :class:`SetupError` with the first
    failure."""
    ray = _import_ray()
    gpus = int(ray.cluster_resources().get("GPU", 0))
    n = workers or gpus or DEFAULT_CPU_WORKERS
    resources = {"num_gpus": 1, "num_cpus": 1} if gpus else {"num_cpus": 1}
    actor_cls = ray.remote(max_concurrency=SLOTS_PER_REPLICA, **resources)(Replica)
    args = (
        config.model_dump(mode="json"),
        dict(registry.ADAPTERS),
        os.getcwd(),
        batch_size,
        use_cache,
        artifacts_dir,
    )
    actors = [actor_cls.remote(*args) for _ in range(n)]
    try:
        infos = ray.get([a.describe.remote() for a in actors])
    except ray.exceptions.RayError as exc:
        for a in actors:
            ray.kill(a)
        cause = getattr(exc, "cause", None) or exc
        message = str(cause).strip().splitlines()[-1] if str(cause).strip() else repr(cause)
        raise SetupError(f"a Ray replica could not start: {message}") from exc
    return actors, infos


def _stream(
    actors: list[Any],
    alive: set[int],
    pipeline: str,
    todo: list[Example],
    chunk: int,
    store: JsonlAppender,
    progress: Progress,
    interrupt: Interrupt,
    summary: PipelineSummary,
) -> None:
    """Hand ``todo`` to the live actors (indices in ``alive``) in chunks; append every record as
    its chunk comes back.

    A chunk whose actor died goes back to the queue for the others, and the actor leaves
    ``alive``; when no actor is left, raises :class:`ReplicasLost` (what is written is kept)."""
    ray = _import_ray()
    chunks = deque(todo[i : i + chunk] for i in range(0, len(todo), chunk))
    free = deque(a for i, a in enumerate(actors) if i in alive for _ in range(SLOTS_PER_REPLICA))
    index = {id(a): i for i, a in enumerate(actors)}
    pending: dict[Any, tuple[Any, list[Example]]] = {}
    last_death = ""
    while pending or (chunks and not interrupt.stop.is_set()):
        while free and chunks and not interrupt.stop.is_set():
            actor, part = free.popleft(), chunks.popleft()
            ref = actor.run_chunk.remote(pipeline, [ex.model_dump(mode="json") for ex in part])
            pending[ref] = (actor, part)
        if not pending:
            left = sum(len(c) for c in chunks)
            raise ReplicasLost(
                f"every Ray replica has died (last: {last_death}); {left} example(s) of pipeline"
                f" {pipeline!r} were not run. Every record written is kept and run.json is"
                " consistent: re-run the same command to resume"
            )
        done, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
        for ref in done:
            actor, part = pending.pop(ref)
            try:
                records = ray.get(ref)
            except ray.exceptions.RayActorError as exc:
                last_death = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                if index[id(actor)] in alive:
                    alive.discard(index[id(actor)])
                    log.warning(
                        "a Ray replica died (%d left); its examples go to the others: %s",
                        len(alive),
                        last_death,
                    )
                free = deque(a for a in free if index[id(a)] in alive)
                chunks.appendleft(part)
                continue
            if index[id(actor)] in alive:
                free.append(actor)
            for record in records:
                write_record(record, pipeline, store, summary, progress)


def run_experiment_ray(
    config: ExperimentConfig,
    *,
    address: str | None = None,
    workers: int | None = None,
    limit: int | None = None,
    tasks: list[str] | None = None,
    shard: tuple[int, int] | None = None,
    batch_size: int | None = None,
    out: str | Path | None = None,
    use_cache: bool = True,
    progress: Progress | None = None,
    retry_failed: Collection[str] = (),
    allow_changed: bool = False,
) -> RunSummary:
    """:func:`~cot_ground.runner.run.run_experiment` with the models in Ray actors.

    ``workers``: number of replicas (default: one per GPU of the cluster, else 2). Writes the
    same run folder (plus a ``ray`` entry in ``run.json``) and resumes the same way, from either
    backend. Raises :class:`SetupError` (the pre-flight check, or a replica that cannot build
    its models) / ``RunFolderError`` before any example runs when the setup is wrong, and
    :class:`ReplicasLost` when every replica died during the run."""
    if workers is not None and workers < 1:
        raise SetupError(f"--ray-workers must be at least 1, got {workers}")
    resolved, folder, bench, examples = checked_setup(
        config, limit, tasks, shard, batch_size, out, use_cache, allow_changed
    )
    ray = _import_ray()
    started = connect(address, workers)
    actors: list[Any] = []
    try:
        artifacts = str(folder.path.resolve() / "artifacts")
        actors, infos = start_replicas(resolved, workers, resolved.batch_size, use_cache, artifacts)
        session = _Session(shard, address, progress, retry_failed, allow_changed, use_cache)
        return _drive(resolved, folder, bench, examples, actors, infos, session)
    finally:
        for a in actors:
            ray.kill(a)
        if started:
            ray.shutdown()


@dataclass
class _Session:
    """The options of one :func:`run_experiment_ray` call that :func:`_drive` needs."""

    shard: tuple[int, int] | None
    address: str | None
    progress: Progress | None
    retry_failed: Collection[str]
    allow_changed: bool
    use_cache: bool


def _drive(
    resolved: ExperimentConfig,
    folder: RunFolder,
    bench: Any,
    examples: list[Example],
    actors: list[Any],
    infos: list[dict[str, Any]],
    opts: _Session,
) -> RunSummary:
    """The run-folder side of :func:`run_experiment_ray` (the replicas are up)."""
    ray = _import_ray()
    address = opts.address or os.environ.get("RAY_ADDRESS") or "local"
    ray_info = {"address": address, "replicas": infos}
    session = new_session(examples, opts.retry_failed, opts.use_cache, ray=ray_info)
    summaries: dict[str, PipelineSummary] = {}
    interrupt = Interrupt()
    progress = opts.progress or LogProgress()
    alive = set(range(len(actors)))
    stats: list[dict[str, Any]] = []
    try:
        with folder.locked(), interrupt.installed():
            manifest = open_manifest(
                folder,
                resolved,
                bench,
                examples,
                opts.shard,
                {"ray": ray_info},
                allow_changed=opts.allow_changed,
                session=session,
            )
            error: BaseException | None = None
            try:
                for name in resolved.pipelines:
                    writing = pipeline_session(
                        folder,
                        name,
                        examples,
                        summaries,
                        progress,
                        opts.retry_failed,
                        manifest,
                        session,
                    )
                    with writing as (store, todo, summary):
                        _stream(
                            actors,
                            alive,
                            name,
                            todo,
                            resolved.batch_size,
                            store,
                            progress,
                            interrupt,
                            summary,
                        )
                    if interrupt.stop.is_set():
                        break
                live = [actors[i] for i in sorted(alive)]
                stats = ray.get([a.stats.remote() for a in live])
                ray.get([a.close.remote() for a in live])
            except Exception as exc:  # recorded as the session's error (as the plain runner)
                error = exc
                raise
            finally:
                progress.close()
                session["replicas_lost"] = len(actors) - len(alive)
                for name, s in summaries.items():
                    for st in stats:
                        for queue, sizes in st["batch_sizes"].get(name, {}).items():
                            s.batch_sizes.setdefault(queue, []).extend(sizes)
                        for queue, sizes in st["oom_splits"].get(name, {}).items():
                            s.oom_splits.setdefault(queue, []).extend(sizes)
                hits = sum(st["cache_hits"] for st in stats)
                misses = sum(st["cache_misses"] for st in stats)
                cache_info = {"hits": hits, "misses": misses} if stats else None
                end_session(
                    folder, manifest, session, summaries, resolved, interrupt, cache_info, error
                )
    except OSError as exc:  # disk full, read-only folder: one line, as the plain runner
        raise write_error(folder, exc, session) from None
    return RunSummary(
        out=folder.path,
        n_examples=len(examples),
        pipelines=summaries,
        interrupted=interrupt.stop.is_set(),
        cache_hits=hits,
        cache_misses=misses,
    )
