"""Experiment runner: configs, the run folder store, resume, step cache, batching, sharding."""

from __future__ import annotations

from cot_ground.runner.config import ConfigError, ExperimentConfig, load_config, parse_config
from cot_ground.runner.pipelines import SetupError
from cot_ground.runner.run import RunSummary, run_experiment
from cot_ground.runner.shard import merge_runs, parse_shard
from cot_ground.runner.store import RunFolder, RunFolderError, read_jsonl

__all__ = [
    "ConfigError",
    "ExperimentConfig",
    "RunFolder",
    "RunFolderError",
    "RunSummary",
    "SetupError",
    "load_config",
    "merge_runs",
    "parse_config",
    "parse_shard",
    "read_jsonl",
    "run_experiment",
]
