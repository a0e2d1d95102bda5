"""Migician: the end-to-end multi-image grounding fine-tune of Qwen2-VL-7B.

The checkpoint is a Qwen2-VL model (``model_type`` ``qwen2_vl``), so it answers in the
``[0, 1000)`` frame and loads through the same code as :mod:`cot_ground.models.qwen_vl`. The
multi-image grounding prompt comes with the request (the end-to-end prompt files). Option
``calibration``: ``"migician-y"`` applies the y-stretch of the public Migician evaluation
(:func:`cot_ground.scoring.apply_calibration`) to every box; default ``None``. The name is
recorded in ``settings["calibration"]``. Option ``unit_floats`` (``reject`` by default, or
``fraction``): see :mod:`cot_ground.models.qwen_vl`. Option values, ``calibration`` included,
are checked before the checkpoint loads, every problem at once (:func:`settings_problems`).
"""

from __future__ import annotations

from cot_ground.models import qwen_vl
from cot_ground.models.options import one_of, option_problems
from cot_ground.models.qwen_vl import ADAPTER_OPTIONS, QwenVLEndToEnd, QwenVLRunner
from cot_ground.models.settings import ModelSettings
from cot_ground.scoring import CALIBRATIONS

NAME = "migician"


def settings_problems(name: str, settings: ModelSettings) -> list[str]:
    """Problems of the options of ``migician`` (``name``): those of every Qwen-VL adapter
    (:func:`cot_ground.models.qwen_vl.settings_problems`) and an unknown ``calibration``, all
    at once, loading nothing; for the pre-flight check."""
    calibration = {"calibration": one_of(*CALIBRATIONS, optional=True)}
    given = {k: v for k, v in settings.options.items() if k in calibration}
    return [
        *qwen_vl.settings_problems(name, settings),
        *option_problems(name, given, ADAPTER_OPTIONS[name], calibration),
    ]


def build_migician(settings: ModelSettings) -> QwenVLEndToEnd:
    """Registry factory for ``migician``; raises one ``ValueError`` listing every problem of
    the options before the checkpoint loads."""
    problems = settings_problems(NAME, settings)
    if problems:
        raise ValueError("; ".join(problems))
    runner = QwenVLRunner(NAME, settings, ADAPTER_OPTIONS[NAME], families=("qwen2_vl",))
    model = QwenVLEndToEnd(runner, calibration=runner.options["calibration"])
    model.settings.setdefault("calibration", None)
    return model
