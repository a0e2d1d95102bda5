"""Pre-flight findings of the last fresh-user review: a misspelt prompt variant met while an
existing run folder is checked is a reported problem (no traceback); a pipeline's bad prompt
variant is named whatever else that pipeline gets wrong; a step 1 that must name the image with
a variant that answers a description is refused before any model loads; a contradicting
answer_frame does not hide missing image files. The real runner on scripted adapters
(tests/runner_fakes.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import runner_fakes as rf
import yaml
from typer.testing import CliRunner

from cot_ground.bench import migbench
from cot_ground.boxes import Frame
from cot_ground.cli.app import _register_commands, app
from cot_ground.models import registry
from cot_ground.runner.config import ConfigError, parse_config
from cot_ground.runner.preflight import PreflightError
from cot_ground.runner.run import run_experiment

_register_commands()

pytestmark = pytest.mark.usefixtures("fakes")


def _config(tmp: Path, n: int = 2, **overrides) -> dict:
    bench = rf.make_benchmark(tmp / "bench", n=n)
    return rf.experiment(bench, tmp / "run", tmp / "cache", **overrides)


def _cot(**fields) -> dict:
    return {"kind": "cot", "reasoner": "reasoner", "grounder": "grounder", **fields}


def test_a_misspelt_variant_resuming_into_a_run_folder_is_reported_not_raised(
    tmp_path: Path,
) -> None:
    data = _config(tmp_path)
    data["pipelines"] = {"cot": _cot(max_retries=0)}
    run_experiment(parse_config(data))
    data["pipelines"]["cot"]["prompt_variant"] = "nosuch2"
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))

    res = CliRunner().invoke(app, ["run", str(path)])

    assert res.exit_code == 2, res.output
    out = " ".join(res.output.split())
    assert "pipelines.cot: prompt variant 'nosuch2' not found" in out
    assert "Traceback" not in res.output and "PromptError" not in res.output


def test_a_bad_variant_is_named_beside_the_other_errors_of_its_pipeline(tmp_path: Path) -> None:
    data = _config(tmp_path)
    data["pipelines"] = {
        "p1": _cot(prompt_variant="nosuch", max_retries=9),
        "v1": {
            "kind": "verify",
            "reasoner": "reasoner",
            "grounder": "grounder",
            "step1_variant": "nosuch1",
            "top_k": 0,
        },
    }

    with pytest.raises(ConfigError) as err:
        parse_config(data)

    text = str(err.value)
    assert "pipelines.p1.max_retries" in text and "pipelines.v1.top_k" in text
    assert "pipelines.p1: prompt variant 'nosuch' not found" in text
    assert "pipelines.v1: prompt variant 'nosuch1' not found" in text


@pytest.mark.parametrize(
    ("pipeline", "expected"),
    [
        (
            _cot(prompt_variant="paper-appendix", mode="agent"),
            "pipelines.p: mode 'agent' needs step 1 to name the image, but prompt variant"
            " 'paper-appendix' answers 'description' for task(s) 'common_object'",
        ),
        (
            {
                "kind": "verify",
                "reasoner": "reasoner",
                "grounder": "grounder",
                "step1_variant": "paper-appendix",
            },
            "pipelines.p: step 1 of a verify pipeline must name the image, but step1_variant"
            " 'paper-appendix' answers 'description' for task(s) 'common_object'",
        ),
    ],
    ids=["cot-agent", "verify"],
)
def test_a_step1_variant_answering_a_description_is_refused_when_step1_must_name_the_image(
    tmp_path: Path, pipeline: dict, expected: str
) -> None:
    data = _config(tmp_path)
    data["pipelines"] = {"p": pipeline}

    with pytest.raises(PreflightError) as err:
        run_experiment(parse_config(data))

    assert expected in " ".join(err.value.problems)
    assert "'group_grounding'" not in " ".join(err.value.problems)  # its variant names an image
    assert rf.CALLS == [] and registry._CACHE == {}
    assert not (tmp_path / "run").exists()


def test_paper_mode_with_a_description_variant_still_runs(tmp_path: Path) -> None:
    data = _config(tmp_path)
    data["pipelines"] = {"p": _cot(prompt_variant="paper-appendix", mode="paper")}

    run_experiment(parse_config(data))

    assert (tmp_path / "run" / "run.json").is_file()


def test_a_contradicting_frame_does_not_hide_missing_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _config(tmp_path, n=3)
    # the file's build states the unit frame; the config says qwen1000
    monkeypatch.setattr(migbench, "stated_frame", lambda sha256, path: Frame.UNIT)
    data["benchmark"]["answer_frame"] = "qwen1000"
    (tmp_path / "elsewhere").mkdir()
    data["benchmark"]["root"] = str(tmp_path / "elsewhere")

    with pytest.raises(PreflightError) as err:
        run_experiment(parse_config(data))

    problems = " ".join(err.value.problems)
    assert "answer_frame 'qwen1000' contradicts the frame of this file, 'unit'" in problems
    assert "images: 6 of 6 image file(s) of the selected examples do not exist" in problems
    assert rf.CALLS == []
