"""Migician: the end-to-end multi-image grounding fine-tune of Qwen2-VL-7B.

The checkpoint is a Qwen2-VL model (``model_type`` ``qwen2_vl``), so it answers in the
``[0, 1000)`` frame and loads through the same code as :mod:`cot_ground.models.qwen_vl`. The
multi-image grounding prompt comes with the request (the end-to-end prompt files). Option
``calibration``: ``"migician-y"`` applies the y-stretch of the public Migician evaluation
(:func:`cot_ground.scoring.apply_calibration`) to every box; default ``None``. The name is
recorded in ``settings["calibration"]``. Option ``unit_floats`` (``reject`` by default, or
``fraction``): see :mod:`cot_ground.models.qwen_vl`.
"""

from __future__ import annotations

from cot_ground.models.qwen_vl import ADAPTER_OPTIONS, QwenVLEndToEnd, QwenVLRunner
from cot_ground.models.settings import ModelSettings


def build_migician(settings: ModelSettings) -> QwenVLEndToEnd:
    """Registry factory for ``migician``."""
    runner = QwenVLRunner("migician", settings, ADAPTER_OPTIONS["migician"], families=("qwen2_vl",))
    model = QwenVLEndToEnd(runner, calibration=runner.options["calibration"])
    model.settings.setdefault("calibration", None)
    return model
