"""MIG-Lite: an offline multi-image grounding benchmark made from scikit-image's photographs."""

from cot_ground.lite.builders import LITE_TASKS
from cot_ground.lite.generate import DEFAULT_PER_TASK, LiteBuild, generate_lite
from cot_ground.lite.perturb import DEFAULT_DIFFICULTY, Perturbation

__all__ = [
    "DEFAULT_DIFFICULTY",
    "DEFAULT_PER_TASK",
    "LITE_TASKS",
    "LiteBuild",
    "Perturbation",
    "generate_lite",
]
