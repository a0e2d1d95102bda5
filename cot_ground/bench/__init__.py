"""MIG-Bench: loader, target-image rules, data validation and rescoring of released logs."""

from cot_ground.bench.migbench import (
    KNOWN_FILES,
    TASKS,
    Benchmark,
    BenchmarkError,
    load_benchmark,
)
from cot_ground.bench.targets import TargetRuleError, target_image

__all__ = [
    "KNOWN_FILES",
    "TASKS",
    "Benchmark",
    "BenchmarkError",
    "TargetRuleError",
    "load_benchmark",
    "target_image",
]
