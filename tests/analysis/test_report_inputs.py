"""The report on records the real runner wrote for awkward inputs: an image Pillow refuses as a
decompression bomb, a corrupt image, and a reasoner that writes a very long description."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import pytest
import runner_fakes as rf
from PIL import Image

from cot_ground.analysis.html_report import MAX_TEXT_CHARS
from cot_ground.analysis.report import build_report
from cot_ground.runner.config import parse_config
from cot_ground.runner.run import run_experiment
from cot_ground.runner.store import read_jsonl

LONG = "a red square " * 20_000  # 260,000 characters of step-1 description


def _bomb(path: Path) -> None:
    """A real PNG whose header claims 40,000 × 40,000 pixels."""
    Image.new("RGB", (1, 1)).save(path, format="PNG")
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", 40_000, 40_000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))


@pytest.fixture
def run(tmp_path: Path, fakes: None) -> Path:
    bench = rf.make_benchmark(tmp_path / "bench", n=6, corrupt=3)
    _bomb(tmp_path / "bench/images/item001_1.png")
    config = rf.experiment(bench, tmp_path / "run", tmp_path / "cache")
    config["models"]["reasoner"]["options"]["description"] = LONG
    run_experiment(parse_config(config))
    return tmp_path / "run"


@pytest.mark.slow
def test_report_on_image_errors_and_long_model_text(run: Path):
    records = read_jsonl(run / "predictions/cot.jsonl")
    failed = [r["error"] for r in records if r["error"]]
    assert [e["category"] for e in failed] == ["image_error"] * 2
    messages = " ".join(e["message"] for e in failed)
    assert "item001_1.png" in messages and "DecompressionBomb" in messages
    assert "item003_1.png" in messages
    answered = [r for r in records if r["error"] is None]
    assert len(answered) == 4
    for record in answered:  # the JSONL keeps the whole model text
        assert json.loads(record["trace"][0]["raw_output"])["description"] == LONG

    result = build_report(run, sample_per_category=10, seed=0, n_boot=20)
    page = (result.out_dir / "report.html").read_text(encoding="utf-8")
    assert "image_error" in page and "item001_1.png" in page
    assert "more characters; the full text is in predictions/cot.jsonl" in page
    assert LONG[: MAX_TEXT_CHARS + 100] not in page
    assert len(page) < len(LONG)  # four examples carry the long text; the page holds none whole
