"""A served model that echoes its API key: the key reaches no file of the run folder, the step-1
cache or the report, and not `cot-ground show` (`cot-ground run` through the real typer app,
against a real HTTP server on 127.0.0.1)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import runner_fakes as rf
import yaml
from chat_server import JsonHandler, QuietServer, completion, serving
from typer.testing import CliRunner

from cot_ground.cli.app import _register_commands, app
from cot_ground.redaction import REDACTED

_register_commands()

KEY = "sk-SUPERSECRET-abc123xyz"


class EchoServer:
    """``/v1/chat/completions`` answering with the request's ``Authorization`` header and the
    bare key in it: in the step-1 description, in the free text and in the end-to-end answer."""

    def __init__(self) -> None:
        self.echoed = 0
        server = self

        class Handler(JsonHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                auth = self.headers.get("Authorization", "")
                key = auth.split()[-1]
                server.echoed += 1
                prompt = body["messages"][0]["content"][-1]["text"]
                if "JSON" in prompt:  # the reasoner's structured step-1 prompt
                    answer = json.dumps({"image": 2, "description": f"the square {key}"})
                    text = f"You sent {auth}; key={key}.\n{answer}"
                else:
                    text = f"key {key} ({auth}): image 2 [250, 250, 500, 500]"
                self.reply(200, completion(text, body["model"]))

        self.httpd = QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"


@pytest.fixture
def echo_server() -> Iterator[EchoServer]:
    server = EchoServer()
    with serving(server.httpd):
        yield server


def _served(adapter: str, url: str, **options: Any) -> dict[str, Any]:
    opts = {"base_url": url, "model": "echo", "api_key_env": "MY_API_KEY", "max_retries": 0}
    return {"adapter": adapter, "max_new_tokens": 64, "options": {**opts, **options}}


@pytest.mark.slow
def test_an_echoed_key_reaches_no_stored_file_and_not_show(
    tmp_path: Path, echo_server: EchoServer, fakes: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_API_KEY", KEY)
    bench = rf.make_benchmark(tmp_path / "bench", n=2)
    config = rf.experiment(bench, tmp_path / "unused", tmp_path / "cache")
    config["models"]["reasoner"] = _served("openai-reasoner", echo_server.url)
    config["models"]["e2e"] = _served("openai-e2e", echo_server.url, frame="qwen1000")
    config["pipelines"]["cot"]["prompt_variant"] = "structured"
    path = tmp_path / "served.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    run_dir = tmp_path / "runs" / "s2"

    ran = CliRunner().invoke(app, ["run", str(path), "--out", str(run_dir)])
    assert ran.exit_code == 0, ran.output
    reported = CliRunner().invoke(app, ["report", str(run_dir)])
    assert reported.exit_code == 0, reported.output
    example_id = json.loads((run_dir / "examples.jsonl").read_text().splitlines()[0])["id"]
    shown = CliRunner().invoke(app, ["show", str(run_dir), example_id], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output

    assert echo_server.echoed >= 4  # both pipelines asked the server for both examples
    predictions = {
        name: [json.loads(line) for line in (run_dir / "predictions" / f"{name}.jsonl").open()]
        for name in ("cot", "e2e")
    }
    e2e_text = predictions["e2e"][0]["raw_text"]
    assert e2e_text == f"key {REDACTED} (Bearer {REDACTED}): image 2 [250, 250, 500, 500]"
    step1 = predictions["cot"][0]["trace"][0]
    assert step1["node"] == "select_and_describe" and REDACTED in step1["raw_output"]
    # the description read from the answer, and the step-2 request built from it
    assert f"the square {REDACTED}" in json.dumps(predictions["cot"][0]["trace"])
    assert REDACTED in shown.output and KEY not in shown.output
    assert KEY not in ran.output + reported.output  # nor the logs of run and report
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p != path]
    assert any(p.name == "step1.sqlite" for p in files)  # the cache was written
    assert any(p.name == "report.html" for p in files)
    leaks = [str(p.relative_to(tmp_path)) for p in files if KEY.encode() in p.read_bytes()]
    assert leaks == []


def test_every_model_text_of_a_record_is_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    from cot_ground.boxes import Box
    from cot_ground.records import Candidate, Prediction, TraceStep
    from cot_ground.redaction import redact, register_secret_env

    monkeypatch.setenv("MY_API_KEY", KEY)
    register_secret_env("MY_API_KEY")
    step = TraceStep(
        node="ground",
        prompt=f"find the square {KEY}",
        raw_output=f"said {KEY}",
        parsed={"description": f"the square {KEY}", "request": {"phrase": [KEY]}},
        candidates=[Candidate(box=Box.from_unit([0, 0, 1, 1]), label=f"square {KEY}")],
    )
    pred = Prediction(example_id="e", pipeline="p", task="diff", raw_text=KEY, trace=[step])
    dumped = pred.model_dump_json()
    assert KEY not in dumped and dumped.count(REDACTED) == 6
    assert Prediction.model_validate_json(dumped) == pred  # redacting twice changes nothing
    # a Bearer token in any case; the text after a redacted token is kept
    assert redact("bEaReR tok.en-1 and (Bearer [redacted]): x") == (
        f"bEaReR {REDACTED} and (Bearer {REDACTED}): x"
    )
    # model text loses only the registered values: the patterns would rewrite ordinary words
    said = "the Bearer of the flag, mail a@b.c or http://u:p@host/x"
    step = TraceStep(node="reason", raw_output=said, parsed={"description": said})
    assert (step.raw_output, step.parsed["description"]) == (said, said)
    assert "Bearer [redacted]" in redact(said)  # error messages still get the patterns
