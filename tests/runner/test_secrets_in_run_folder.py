"""A password in an OpenAI-compatible base_url never reaches the run folder: not the error
messages, the trace settings, run.json, nor any other file a failing run writes."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import runner_fakes as rf

from cot_ground.redaction import REDACTED, redact, redact_data
from cot_ground.runner.config import parse_config
from cot_ground.runner.run import run_experiment

PASSWORD = "hunter2pass"


def test_url_user_information_is_redacted() -> None:
    assert redact("GET http://alice:pw-1234@host:8000/v1 failed") == (
        f"GET http://{REDACTED}@host:8000/v1 failed"
    )
    assert redact("https://token1234@h.example/v1") == f"https://{REDACTED}@h.example/v1"
    assert redact("write to user@example.com or http://h/v1") == (
        "write to user@example.com or http://h/v1"
    )
    assert redact_data({"u": ["http://a:b9@h/"], "n": 3}) == {
        "u": [f"http://{REDACTED}@h/"],
        "n": 3,
    }


def test_a_failing_run_stores_no_password(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    rf.register_fakes()
    rf.reset()
    try:
        bench = rf.make_benchmark(tmp_path / "bench", n=2)
        config = rf.experiment(bench, tmp_path / "run", tmp_path / "cache")
        config["models"]["reasoner"] = {
            "adapter": "openai-reasoner",
            "options": {
                "base_url": f"http://alice:{PASSWORD}@127.0.0.1:{port}/v1",
                "model": "m",
                "timeout_s": 2,
                "max_retries": 0,
            },
        }
        summary = run_experiment(parse_config(config))
    finally:
        rf.reset()
        rf.unregister_fakes()
    assert summary.pipelines["cot"].failed == 2
    files = [p for p in (tmp_path / "run").rglob("*") if p.is_file()]
    predictions = (tmp_path / "run/predictions/cot.jsonl").read_text(encoding="utf-8")
    assert f"127.0.0.1:{port}" in predictions and REDACTED in predictions  # the endpoint named
    assert f"http://{REDACTED}@127.0.0.1:{port}/v1" in (tmp_path / "run/run.json").read_text()
    leaks = [str(p) for p in files if PASSWORD.encode() in p.read_bytes()]
    assert leaks == []


def test_trace_steps_and_the_step_cache_hold_no_password(tmp_path: Path) -> None:
    from cot_ground.models.base import ReasonerResult
    from cot_ground.models.registry import build
    from cot_ground.models.settings import ModelSettings
    from cot_ground.records import TraceStep
    from cot_ground.runner.cache import StepCache

    url = f"http://alice:{PASSWORD}@127.0.0.1:9/v1"
    adapter = build("openai-reasoner", ModelSettings(options={"base_url": url, "model": "m"}))
    step = TraceStep(node="select_and_describe", settings=adapter.settings).model_dump_json()
    assert PASSWORD not in step and f"{REDACTED}@127.0.0.1:9/v1" in step
    result = ReasonerResult(raw_text="x", settings=adapter.settings)
    cache = StepCache(tmp_path / "cache")
    cache.put_many({"k": result.model_dump(mode="json")})
    assert PASSWORD not in json.dumps(cache.get_many(["k"]))
    cache.close()
    assert not any(PASSWORD.encode() in p.read_bytes() for p in (tmp_path / "cache").rglob("*"))
