"""Settings that change a figure are explicit and recorded: generation lengths (128 new tokens
as in the public MIG-Bench evaluation) and the unit-floats option, from config to adapter to
each prediction."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from repo_paths import EXPERIMENTS
from scripted_models import ScriptedEndToEnd, make_example

from cot_ground.boxes import Box
from cot_ground.graph import E2EConfig, build_e2e_graph, run_example
from cot_ground.models.base import EndToEndResult
from cot_ground.models.registry import build
from cot_ground.models.settings import ModelSettings
from cot_ground.records import ParseStatus
from cot_ground.runner.config import UNIT_FLOATS_ADAPTERS, parse_config

PUBLIC_MAX_NEW_TOKENS = 128  # MIG-Bench evaluation scripts: step 1, step 2 and end to end


def test_default_generation_length_is_the_public_evaluations() -> None:
    assert ModelSettings().max_new_tokens == PUBLIC_MAX_NEW_TOKENS


@pytest.mark.parametrize(
    "path",
    [p for p in sorted(EXPERIMENTS.glob("*.yaml")) if p.stem != "tiny_models"],
    ids=lambda p: p.name,
)
def test_shipped_configs_generate_as_the_public_evaluation(path: Path) -> None:
    models = yaml.safe_load(path.read_text(encoding="utf-8"))["models"]
    for key, model in models.items():
        if model["adapter"].startswith(("qwen-vl", "migician")):
            assert model.get("max_new_tokens") == PUBLIC_MAX_NEW_TOKENS, f"{path.name}: {key}"


def _config(**extra: object) -> dict:
    return {
        "name": "uf",
        "benchmark": {"file": "/b.json"},
        "models": {
            "reasoner": {"adapter": "qwen-vl-reasoner", "path": "/m"},
            "grounder": {"adapter": "qwen-vl-grounder", "path": "/m"},
            "e2e": {"adapter": "migician", "path": "/m", "options": {"unit_floats": "fraction"}},
            "gdino": {"adapter": "gdino-hf", "path": "/g"},
        },
        "pipelines": {
            "cot": {"kind": "cot", "reasoner": "reasoner", "grounder": "grounder"},
            "mig": {"kind": "e2e", "model": "e2e"},
        },
        **extra,
    }


def test_config_states_unit_floats_for_every_box_reading_model() -> None:
    cfg = parse_config(_config())
    options = {k: m.options.get("unit_floats") for k, m in cfg.models.items()}
    # the experiment default fills the models that read box text; a model's own value stays
    assert options == {"reasoner": None, "grounder": "reject", "e2e": "fraction", "gdino": None}
    assert {m.adapter for m in cfg.models.values()} & UNIT_FLOATS_ADAPTERS
    assert cfg.model_dump(mode="json")["models"]["grounder"]["options"]["unit_floats"] == "reject"

    cfg = parse_config(_config(unit_floats="migician"))
    assert cfg.models["grounder"].options["unit_floats"] == "migician"

    # `cot-ground run --unit-floats` overrides every box-reading model
    override = parse_config(_config()).with_unit_floats("fraction")
    assert override.unit_floats == "fraction"
    assert override.models["grounder"].options["unit_floats"] == "fraction"
    assert "unit_floats" not in override.models["gdino"].options
    with pytest.raises(ValueError, match="unit_floats"):
        parse_config(_config()).with_unit_floats("guess")


@pytest.mark.slow
def test_qwen2_vl_adapters_apply_and_record_unit_floats(tiny_qwen_paths) -> None:
    path = str(tiny_qwen_paths["qwen2_vl"])
    text = "[0.28, 0.5, 0.52, 0.7]"
    for option, status in (("reject", ParseStatus.FRAME_MISMATCH), ("fraction", ParseStatus.OK)):
        settings = ModelSettings(path=path, max_new_tokens=4, options={"unit_floats": option})
        grounder = build("qwen-vl-grounder", settings)
        e2e = build("qwen-vl-e2e", settings)
        migician = build("migician", settings)
        for adapter in (grounder, e2e, migician):
            assert adapter.settings["unit_floats"] == option
            assert adapter.settings["max_new_tokens"] == 4
        assert grounder.result_from_text(text, (28, 28)).status is status
        for model in (e2e, migician):
            result = model.result_from_text(text, [(28, 28)])
            assert result.status is status and (result.box is None) == (option == "reject")
    with pytest.raises(ValueError, match="unit_floats"):
        build("qwen-vl-e2e", ModelSettings(path=path, options={"unit_floats": "guess"}))


@pytest.mark.slow
def test_e2e_adapter_reads_the_image_with_the_question(tiny_qwen_paths) -> None:
    e2e = build("qwen-vl-e2e", ModelSettings(path=str(tiny_qwen_paths["qwen2_vl"])))
    question = "For the object in the first image, please locate it in the 2th image."
    echo = "the object in the first image(100,200),(300,400)"
    assert e2e.result_from_text(echo, [(28, 28)] * 2, question).image_index is None
    assert e2e.result_from_text(echo, [(28, 28)] * 2).image_index == 0
    named = "It is in the second image: (100,200),(300,400)"
    assert e2e.result_from_text(named, [(28, 28)] * 2, question).image_index == 1


def test_every_prediction_records_its_figure_settings() -> None:
    model = ScriptedEndToEnd(Box.from_unit([0.1, 0.1, 0.5, 0.5]), "(100,100),(500,500)")
    model.settings = {"max_new_tokens": 128, "unit_floats": "reject", "calibration": None}
    pred = run_example(build_e2e_graph(model, config=E2EConfig()), make_example("diff", 2))
    assert pred.settings == {
        "image_reader": "mentions-3",
        "e2e": {"max_new_tokens": 128, "unit_floats": "reject"},
    }
    assert pred.prompt_variant == "migician" and pred.prompt_hash


@pytest.mark.shared
@pytest.mark.slow
def test_rescore_cli_unit_floats(migbench_dir: Path) -> None:
    import json

    import typer
    from typer.testing import CliRunner

    from cot_ground.cli import bench_cmds

    app = typer.Typer()
    bench_cmds.register(app)
    files = sorted(str(p) for p in (migbench_dir / "released_outputs" / "qwen2_vl").glob("*.json"))
    figures = {}
    for option in ("reject", "fraction", "migician"):
        out = CliRunner().invoke(app, ["rescore", *files, "--unit-floats", option, "--json"])
        assert out.exit_code == 0, out.output
        data = json.loads(out.output)
        assert data["unit_floats"] == option and data["image_reader"] == "mentions-3"
        figures[option] = data["tasks"]["group_grounding"]["acc@0.5"]
    expected = {"reject": 63.92, "fraction": 70.52, "migician": 69.07}
    assert figures == pytest.approx(expected, abs=0.01)
    table = CliRunner().invoke(app, ["rescore", *files], env={"COLUMNS": "140"})
    assert "unit floats reject" in table.output
    bad = CliRunner().invoke(app, ["rescore", *files, "--unit-floats", "guess"])
    assert bad.exit_code != 0 and "unit_floats" in bad.output


def test_a_frame_mismatch_stays_visible_in_the_prediction() -> None:
    from scripted_models import ScriptedGrounder, ScriptedReasoner

    from cot_ground.graph import CoTConfig, build_cot_graph
    from cot_ground.models.base import GroundResult
    from cot_ground.records import ErrorCategory

    class UnitFloatGrounder(ScriptedGrounder):
        def ground(self, requests):
            return [GroundResult(raw_text="[0.1, 0.2, 0.5, 0.6]",
                                 status=ParseStatus.FRAME_MISMATCH) for _ in requests]  # fmt: skip

    ex = make_example("diff", 2, target=1)
    graph = build_cot_graph(
        ScriptedReasoner(["a red car"]),
        UnitFloatGrounder({}),
        config=CoTConfig(mode="paper", prompt_variant="paper"),
    )
    pred = run_example(graph, ex)
    assert pred.status is ParseStatus.FRAME_MISMATCH and pred.box is None

    model = ScriptedEndToEnd(None, "[0.1, 0.2, 0.5, 0.6]")
    model.predict = lambda requests: [  # type: ignore[method-assign]
        EndToEndResult(raw_text="[0.1, 0.2, 0.5, 0.6]", status=ParseStatus.FRAME_MISMATCH)
        for _ in requests
    ]
    pred = run_example(build_e2e_graph(model, config=E2EConfig()), ex)
    assert pred.status is ParseStatus.FRAME_MISMATCH and pred.box is None
    assert pred.error.category is ErrorCategory.FORMAT
