"""Experiment configs: unknown keys and bad values named, env vars, the shipped experiments."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from repo_paths import EXPERIMENTS

from cot_ground.runner.config import ConfigError, expand_env, load_config, parse_config


def _config(**overrides):
    data = {
        "name": "t",
        "benchmark": {"file": "bench.json"},
        "models": {"r": {"adapter": "rule-reasoner"}, "g": {"adapter": "classical-grounder"}},
        "pipelines": {"cot": {"kind": "cot", "reasoner": "r", "grounder": "g"}},
    }
    data.update(overrides)
    return data


@pytest.mark.parametrize(
    ("mutate", "key"),
    [
        (lambda d: d.update(batchsize=4), "batchsize: unknown key"),
        (lambda d: d["benchmark"].update(limt=3), "benchmark.limt: unknown key"),
        (lambda d: d["models"]["r"].update(max_new_token=5), "models.r.max_new_token: unknown key"),
        (lambda d: d["pipelines"]["cot"].update(modee="agent"), "pipelines.cot.modee: unknown key"),
        (lambda d: d["pipelines"]["cot"].update(mode="oracle"), "pipelines.cot.mode:"),
        (lambda d: d["pipelines"]["cot"].update(fallbacks=["retry"]), "pipelines.cot.fallbacks[0]"),
        (
            lambda d: d["pipelines"]["cot"].update(grounder="nope"),
            "pipelines.cot.grounder: unknown",
        ),
        (lambda d: d["pipelines"]["cot"].update(kind="e3e"), "pipelines.cot"),
        (lambda d: d.update(batch_size=0), "batch_size:"),
        (lambda d: d["models"]["r"].update(dtype="fp8"), "models.r.dtype:"),
        (lambda d: d.pop("benchmark"), "benchmark: required key is missing"),
        (lambda d: d["pipelines"]["cot"].update(pipeline="x"), "pipelines.cot.pipeline"),
    ],
)
def test_bad_config_is_rejected_naming_the_key(mutate, key: str) -> None:
    data = _config()
    mutate(data)
    with pytest.raises(ConfigError) as info:
        parse_config(data, "exp.yaml")
    assert "exp.yaml" in str(info.value)
    assert key in str(info.value)


def test_unknown_key_in_a_file_names_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    data = _config()
    data["pipelines"]["cot"]["promt_variant"] = "paper"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"exp\.yaml(.|\n)*pipelines\.cot\.promt_variant"):
        load_config(path)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    path.write_text("name: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_every_config_error_is_reported_in_one_pass(tmp_path: Path) -> None:
    """Errors of the pipelines' graph fields and unknown models come with the errors of the
    rest of the file, not after they are fixed."""
    path = tmp_path / "exp.yaml"
    data = _config(bogus_top=1)
    data["models"]["r"]["max_new_token"] = 5
    data["pipelines"]["cot"]["modee"] = "agent"
    data["pipelines"]["e2e"] = {"kind": "e2e", "model": "nowhere", "prompt_variantt": "paper"}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    lines = str(info.value).splitlines()
    assert lines[0] == f"invalid experiment config {path}:"
    assert sorted(lines[1:]) == [
        "  bogus_top: unknown key",
        "  models.r.max_new_token: unknown key",
        "  pipelines.cot.modee: unknown key",
        "  pipelines.e2e.model: unknown model 'nowhere' (models: g, r)",
        "  pipelines.e2e.prompt_variantt: unknown key",
    ]
    # a valid file but for two unknown models: both named, each once, with the graph errors
    data = _config()
    data["pipelines"]["cot"].update(reasoner="a", grounder="b", modee="agent")
    with pytest.raises(ConfigError) as info:
        parse_config(data, "exp.yaml")
    assert sorted(str(info.value).splitlines()[1:]) == [
        "  pipelines.cot.grounder: unknown model 'b' (models: g, r)",
        "  pipelines.cot.modee: unknown key",
        "  pipelines.cot.reasoner: unknown model 'a' (models: g, r)",
    ]


def test_env_vars_expand_with_defaults_and_name_what_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("QWEN_DIR", "/models/qwen")
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    assert expand_env({"a": ["${QWEN_DIR}/7b", 3]}) == {"a": ["/models/qwen/7b", 3]}
    assert expand_env("${NOT_SET_ANYWHERE:-fallback}") == "fallback"
    data = _config()
    data["models"]["r"]["path"] = "${NOT_SET_ANYWHERE}"
    with pytest.raises(
        ConfigError, match=r"models\.r\.path: environment variable NOT_SET_ANYWHERE"
    ):
        parse_config(data)


def test_graph_fields_reach_the_graph_config() -> None:
    from cot_ground.runner.config import graph_config

    data = _config()
    data["pipelines"]["cot"].update(mode="oracle-image", prompt_variant="paper", max_retries=2)
    cfg = parse_config(data)
    graph_cfg = graph_config("cot", cfg.pipelines["cot"])
    assert (graph_cfg.mode, graph_cfg.prompt_variant, graph_cfg.max_retries) == (
        "oracle-image",
        "paper",
        2,
    )
    assert graph_cfg.pipeline_name == "cot"


@pytest.mark.parametrize("path", sorted(EXPERIMENTS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_experiments_are_valid(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (
        "MIGBENCH_FILE",
        "MIGBENCH_ROOT",
        "QWEN2VL_PATH",
        "MIGICIAN_PATH",
        "GDINO_PATH",
        "MIG_LITE_DIR",
        "COT_GROUND_TINY_DIR",
    ):
        monkeypatch.setenv(var, f"/env/{var}")
    cfg = load_config(path)
    assert cfg.name == path.stem
    from cot_ground.models.hf_loading import parse_hub_id

    for model in cfg.models.values():
        assert model.path is None or model.path.startswith("/env/") or parse_hub_id(model.path), (
            "paths come from env vars (or default to a Hugging Face Hub id)"
        )


def test_shipped_experiments_cover_the_paper_rows() -> None:
    names = {p.stem for p in EXPERIMENTS.glob("*.yaml")}
    assert {
        "paper_cot_qwen2vl",
        "cot_qwen2vl_gdino",
        "migician_e2e",
        "cot_vs_migician",
        "tiny_models",
        "lite_classical",
    } <= names
    combined = yaml.safe_load((EXPERIMENTS / "cot_vs_migician.yaml").read_text())["pipelines"]
    for part in ("paper_cot_qwen2vl", "cot_qwen2vl_gdino", "migician_e2e"):
        pipelines = yaml.safe_load((EXPERIMENTS / f"{part}.yaml").read_text())["pipelines"]
        for name, pipe in pipelines.items():
            assert combined[name] == pipe
