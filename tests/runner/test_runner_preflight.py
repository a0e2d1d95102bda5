"""Pre-flight: every setup problem is reported at once, before any model is built, exit 2; an
empty selection (empty file, filters that select nothing, an empty shard) is refused too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import runner_fakes as rf
import yaml
from typer.testing import CliRunner

from cot_ground.cli.app import _register_commands, app
from cot_ground.models import registry
from cot_ground.runner.config import parse_config
from cot_ground.runner.preflight import PreflightError, register_model_check
from cot_ground.runner.run import run_experiment

_register_commands()


pytestmark = pytest.mark.usefixtures("fakes")


def _incomplete_model(folder: Path) -> Path:
    """A model folder with weights but no config.json (a half-finished copy)."""
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"")
    return folder


def test_three_problems_are_reported_at_once_before_any_model_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = rf.make_benchmark(tmp_path / "bench", n=6)
    data = rf.experiment(bench, tmp_path / "run", tmp_path / "cache")
    # 1. an unset environment variable
    monkeypatch.delenv("H11_REASONER_DIR", raising=False)
    data["models"]["reasoner"]["path"] = "${H11_REASONER_DIR}"
    # 2. a model folder without its config file (a real adapter, checked without loading it)
    data["models"]["e2e"] = {
        "adapter": "qwen-vl-e2e",
        "path": str(_incomplete_model(tmp_path / "m")),
    }
    # 3. a wrong image root: the benchmark loads but none of its images exist there
    monkeypatch.setenv("H11_ROOT", str(tmp_path / "elsewhere"))
    (tmp_path / "elsewhere").mkdir()
    data["benchmark"]["root"] = "${H11_ROOT}"
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump(data))

    res = CliRunner().invoke(app, ["run", str(config)])

    assert res.exit_code == 2, res.output
    out = " ".join(res.output.split())  # rich wraps long lines
    assert "3 problem(s)" in out
    assert "models.reasoner.path: environment variable H11_REASONER_DIR is not set" in out
    assert "models.e2e (qwen-vl-e2e): model folder" in out and "config.json" in out
    assert "images: 12 of 12 image file(s)" in out and "MIGBENCH_ROOT" in out
    assert "Traceback" not in res.output
    assert rf.CALLS == [] and registry._CACHE == {}  # no adapter was built
    assert not (tmp_path / "run").exists()


def test_unset_variables_are_all_named_in_one_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cot_ground.runner.config import ConfigError

    bench = rf.make_benchmark(tmp_path / "bench", n=2)
    data = rf.experiment(bench, tmp_path / "run", tmp_path / "cache")
    for var in ("H11_A", "H11_B"):
        monkeypatch.delenv(var, raising=False)
    data["models"]["reasoner"]["path"] = "${H11_A}"
    data["models"]["grounder"]["path"] = "${H11_B}"
    with pytest.raises(ConfigError, match=r"(?s)H11_A.*H11_B"):
        parse_config(data)
    deferred = parse_config(data, defer_unset_env=True)
    assert len(deferred.unset_env) == 2 and deferred.models["reasoner"].path == "${H11_A}"


def test_bad_option_values_of_every_model_are_reported_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = rf.make_benchmark(tmp_path / "bench", n=2)
    data = rf.experiment(bench, tmp_path / "run", tmp_path / "cache")
    monkeypatch.setenv("H12_KEY", "k" * 8)
    data["models"]["reasoner"] = {
        "adapter": "qwen-vl-reasoner",
        "path": str(_incomplete_model(tmp_path / "q")),
        "options": {"max_batch_visual_tokens": 0, "static_cache": "no"},
    }
    data["models"]["e2e"] = {
        "adapter": "openai-e2e",
        "options": {"base_url": "http://127.0.0.1:9/v1", "api_key_env": "H12_KEY"},
    }
    with pytest.raises(PreflightError) as err:
        run_experiment(parse_config(data))
    message = str(err.value)
    assert "models.reasoner (qwen-vl-reasoner)" in message
    assert "max_batch_visual_tokens" in message and "static_cache" in message
    assert "config.json" in message  # the folder check still runs beside the option check
    assert "models.e2e (openai-e2e)" in message and "needs options.model" in message
    assert rf.CALLS == [] and registry._CACHE == {}  # nothing was built


def test_bad_options_of_detectors_chat_models_and_classical_grounders_are_listed_at_once(
    tmp_path: Path,
) -> None:
    bench = rf.make_benchmark(tmp_path / "bench", n=2)
    data = rf.experiment(bench, tmp_path / "run", tmp_path / "cache")
    data["models"]["reasoner"] = {
        "adapter": "hf-chat-reasoner",
        "path": str(_incomplete_model(tmp_path / "chat")),
        "options": {"batch_size": "4"},
    }
    data["models"]["grounder"] = {
        "adapter": "gdino-hf",
        "path": str(_incomplete_model(tmp_path / "gdino")),
        "options": {"box_treshold": 0.3, "pad_batches": "no"},
    }
    data["models"]["fallback"] = {
        "adapter": "classical-grounder",
        "options": {"template": {"top_k": 0}},
    }
    data["pipelines"]["cot"]["fallback_grounder"] = "fallback"
    with pytest.raises(PreflightError) as err:
        run_experiment(parse_config(data))
    message = str(err.value)
    assert "models.reasoner (hf-chat-reasoner): adapter 'hf-chat-reasoner': option batch_size" in (
        message
    )
    assert "unknown option(s) box_treshold" in message
    assert "option pad_batches must be true or false, got 'no' (str)" in message
    assert "models.fallback (classical-grounder)" in message and "top_k" in message
    # 4 option problems and the 2 folder checks, which still run beside them
    assert "6 problem(s)" in message and "config.json" in message
    assert rf.CALLS == [] and registry._CACHE == {}  # nothing was built


def test_a_check_supplied_per_adapter_runs_before_building(tmp_path: Path) -> None:
    seen = []

    def check(settings):
        seen.append(settings.options.get("image"))
        return ["endpoint unreachable (checked by the test)"]

    bench = rf.make_benchmark(tmp_path / "bench", n=2)
    register_model_check("fake-e2e", check)
    try:
        with pytest.raises(PreflightError, match=r"models\.e2e \(fake-e2e\): endpoint unreachable"):
            run_experiment(parse_config(rf.experiment(bench, tmp_path / "run", tmp_path / "c")))
    finally:
        from cot_ground.runner.preflight import MODEL_CHECKS

        MODEL_CHECKS.pop("fake-e2e", None)
    assert seen == [2] and rf.CALLS == []


@pytest.mark.parametrize(
    ("items", "args", "expected"),
    [
        (0, [], "the file holds no item"),
        (6, ["--tasks", "region"], "the filters (tasks=['region']) select no item"),
        (3, ["--shard", "4/4"], "shard 4/4 of the 3 selected example(s) is empty"),
    ],
)
def test_an_empty_selection_is_refused(
    tmp_path: Path, items: int, args: list[str], expected: str
) -> None:
    bench = rf.make_benchmark(tmp_path / "bench", n=max(items, 1))
    if items == 0:
        bench.write_text(json.dumps([]))
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump(rf.experiment(bench, tmp_path / "run", tmp_path / "cache")))
    res = CliRunner().invoke(app, ["run", str(config), *args])
    assert res.exit_code == 2, res.output
    assert expected in " ".join(res.output.split())
    assert rf.CALLS == [] and not (tmp_path / "run").exists()


def test_unknown_tasks_are_named_once_and_the_file_is_still_checked(tmp_path: Path) -> None:
    from cot_ground.runner.preflight import preflight
    from cot_ground.runner.resume import resolve_config

    bench = rf.make_benchmark(tmp_path / "bench", n=4)
    data = rf.experiment(bench, tmp_path / "run", tmp_path / "cache")
    config = resolve_config(parse_config(data), tasks=["regoin", "common_object"])
    (bench.parent / "images" / "item000_1.png").unlink()  # a common_object item's image
    with pytest.raises(PreflightError) as caught:
        preflight(config)
    problems = caught.value.problems
    assert problems[0].startswith("benchmark.tasks: unknown task(s) ['regoin']; known: diff,")
    assert sum("regoin" in p for p in problems) == 1
    assert any(p.startswith("images: 1 of ") and "item000_1.png" in p for p in problems)
    # only unknown tasks: no 'no examples to run' on top of the unknown names
    with pytest.raises(PreflightError) as caught:
        preflight(resolve_config(parse_config(data), tasks=["regoin"]))
    assert [p for p in caught.value.problems if p.startswith("benchmark")] == [problems[0]]
