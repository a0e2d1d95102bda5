"""The report folder: tables, PNG charts and a self-contained, escaped HTML page."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from analysis_fixtures import standard_run
from PIL import Image

from cot_ground.analysis.html_report import sample_examples
from cot_ground.analysis.load import load_run
from cot_ground.analysis.report import build_report


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[dict[str, str | None]] = []
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.imgs.append(dict(attrs))
        if tag == "script":
            self.scripts += 1


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    run = standard_run(tmp_path_factory.mktemp("analysis"))
    return run, build_report(run, sample_per_category=2, seed=5, n_boot=200)


def test_all_files_written(report):
    run, result = report
    assert result.out_dir == run / "report"
    for name in (
        "scores.md",
        "scores.csv",
        "scores.json",
        "attribution.csv",
        "oracle_gain.csv",
        "paired.csv",
        "paired.json",
        "report.html",
    ):
        assert (result.out_dir / name).is_file(), name
    scores = pd.read_csv(result.out_dir / "scores.csv")
    avg = scores[(scores["task"] == "AVERAGE") & (scores["mode"] == "official")]
    assert avg.set_index("pipeline")["acc@0.5"].to_dict() == {
        "cot-agent": 50.0,
        "cot-oracle": 75.0,
        "migician": 50.0,
    }
    tables = json.loads((result.out_dir / "scores.json").read_text())
    assert set(tables) == {"official", "strict", "warnings"}
    assert tables["warnings"] == [] and result.warnings == []  # every pipeline ran all 8
    assert tables["strict"]["cot-agent"]["average"]["acc@0.5"] == 25.0
    # common_object is spontaneous, group_grounding referential: each group mean is one task
    assert tables["official"]["cot-oracle"]["groups"]["spontaneous"]["acc@0.5"] == 75.0
    markdown = (result.out_dir / "scores.md").read_text()
    assert "| cot-oracle | acc@0.5 | 75.00 | 75.00 | 75.00 | 75.00 | 75.00 |" in markdown
    assert "| cot-oracle | n | 4 | 4 | 4 | 4 | 8 |" in markdown
    # the strict overview shows the share of answers naming an image, and why strict differs
    assert "| migician | image_stated | 0.00 | 0.00 | 0.00 | 0.00 | 0.00 |" in markdown
    assert "Strict Acc@0.5 is below official only where" in markdown
    assert "cot-agent common_object (1 naming a wrong image)" in markdown
    assert "migician group_grounding (2 naming no image)" in markdown
    paired = json.loads((result.out_dir / "paired.json").read_text())
    assert {(r["a"], r["b"]) for r in paired} == {
        ("cot-agent", "cot-oracle"),
        ("cot-agent", "migician"),
        ("cot-oracle", "migician"),
    }


def test_charts_are_pngs(report):
    _, result = report
    charts = [p for k, p in result.files.items() if k.startswith("charts/")]
    assert len(charts) == 2
    for path in charts:
        with Image.open(path) as im:
            assert im.format == "PNG"
            im.verify()


def test_html_has_one_img_per_example_image_shown(report):
    run, result = report
    page = (result.out_dir / "report.html").read_text(encoding="utf-8")
    parser = _Tags()
    parser.feed(page)
    sample = sample_examples(load_run(run), per_category=2, seed=5)
    shown = sum(len(row.images) for rows in sample.values() for row in rows.itertuples())
    example_imgs = [i for i in parser.imgs if i.get("class") == "example"]
    chart_imgs = [i for i in parser.imgs if i.get("class") == "chart"]
    assert len(chart_imgs) == 2
    assert len(example_imgs) == shown > 0
    assert len(parser.imgs) == shown + 2
    # self-contained: every picture is a data URI
    assert all(i["src"].startswith("data:image/") for i in parser.imgs)
    # the sample covers every CoT category of the run
    assert {c for _, c in sample} == {
        "success",
        "wrong_image",
        "no_box",
        "low_iou",
        "step1_format",
    }


def test_model_text_is_escaped(report):
    _, result = report
    page = (result.out_dir / "report.html").read_text(encoding="utf-8")
    parser = _Tags()
    parser.feed(page)
    assert parser.scripts == 0
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert ">nan<" not in page and "nan: nan" not in page  # missing values stay blank


def test_same_seed_same_report(report, tmp_path):
    run, result = report
    again = build_report(run, tmp_path / "again", sample_per_category=2, seed=5, n_boot=200)
    first = (result.out_dir / "report.html").read_text(encoding="utf-8")
    assert (again.out_dir / "report.html").read_text(encoding="utf-8") == first
    assert (again.out_dir / "paired.csv").read_text() == (result.out_dir / "paired.csv").read_text()


def test_missing_image_is_a_placeholder_not_an_img(tmp_path):
    run = standard_run(tmp_path)
    frame = load_run(run)
    missing = frame.loc[0, "images"][0]
    Path(missing).unlink()
    result = build_report(run, sample_per_category=10, seed=0, n_boot=50)
    page = (result.out_dir / "report.html").read_text(encoding="utf-8")
    parser = _Tags()
    parser.feed(page)
    sample = sample_examples(frame, per_category=10, seed=0)
    shown = [p for rows in sample.values() for row in rows.itertuples() for p in row.images]
    assert missing in shown
    n_missing = shown.count(missing)
    assert len([i for i in parser.imgs if i.get("class") == "example"]) == len(shown) - n_missing
    assert page.count('class="missing"') == n_missing


def test_empty_run_is_an_error(tmp_path):
    (tmp_path / "run" / "predictions").mkdir(parents=True)
    (tmp_path / "run" / "examples.jsonl").write_text("")
    with pytest.raises(ValueError, match="no predictions"):
        build_report(tmp_path / "run")
