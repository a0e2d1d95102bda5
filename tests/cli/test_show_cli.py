"""`cot-ground show` on a run made by the real CoT graph: long texts are cut as in the HTML
report, and every image number is 1-based or labelled 0-based."""

from __future__ import annotations

import json
import re
from pathlib import Path

from analysis_fixtures import GOOD, cot_prediction, make_example, write_run
from typer.testing import CliRunner

from cot_ground.analysis.html_report import MAX_TEXT_CHARS
from cot_ground.cli.app import _register_commands, app

_register_commands()


def test_show_cuts_long_texts_and_numbers_images_from_one(tmp_path: Path) -> None:
    ex = make_example(tmp_path, "common_object", 0, n_images=3, target=1)
    answer = {"image": 2, "description": "a red cup"}
    long_text = "x" * (MAX_TEXT_CHARS + 1000) + " " + json.dumps(answer)
    pred = cot_prediction(ex, "cot", image_index=1, box=GOOD, step1_text=long_text)
    run = write_run(tmp_path / "run", [ex], {"cot": [pred]}, {"cot": {"kind": "cot"}})

    shown = CliRunner().invoke(app, ["show", str(run), ex.id], env={"COLUMNS": "200"})

    assert shown.exit_code == 0, shown.output
    text = shown.output
    assert "x" * 50 in text and "x" * (MAX_TEXT_CHARS + 1) not in text.replace("\n", "")
    flat = re.sub(r"[\s│]+", " ", text)
    assert "[... cut: 1," in flat and "the full text is in predictions/cot.jsonl]" in flat
    # the chosen image (0-based 1 in the record) is shown as "image 2"; recorded indices say so
    assert "chosen image 2" in flat
    assert '"image_index (0-based)": 1' in flat
    assert '"image_index": 1' not in flat
    # a step's inputs are named by their number among the example's images
    assert f"input image 2 ({Path(ex.images[1]).name})" in flat

    raw = CliRunner().invoke(app, ["show", str(run), ex.id, "--json"])
    assert raw.exit_code == 0 and "x" * (MAX_TEXT_CHARS + 1000) in raw.output  # --json is uncut


def test_show_prints_control_characters_as_escapes(tmp_path: Path) -> None:
    """A model's text holding terminal escape sequences reaches the screen as visible escapes,
    in the panels and in --json (newline and tab stay as they are)."""
    ex = make_example(tmp_path, "common_object", 0, n_images=3, target=1)
    answer = {"image": 2, "description": "a \x1b[31mred\x1b[0m cup\x9b2J"}
    step1_text = "look\x1b]0;pwned\x07 here\ttab\n" + json.dumps(answer)
    pred = cot_prediction(ex, "cot", image_index=1, box=GOOD, step1_text=step1_text)
    run = write_run(tmp_path / "run", [ex], {"cot": [pred]}, {"cot": {"kind": "cot"}})

    shown = CliRunner().invoke(app, ["show", str(run), ex.id], env={"COLUMNS": "200"})

    assert shown.exit_code == 0, shown.output
    text = shown.output
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", text)  # no raw control character
    flat = re.sub(r"[\s│]+", " ", text)
    assert r"look\x1b]0;pwned\x07 here" in flat  # the raw output, escapes written out
    assert r'"description": "a \u001b[31mred\u001b[0m cup\x9b2J"' in flat  # parsed (JSON)
    assert r"a \x1b[31mred\x1b[0m cup\x9b2J" in flat  # the description grounded in step 2
    assert "here tab" in flat  # a tab is no control to escape

    raw = CliRunner().invoke(app, ["show", str(run), ex.id, "--json"])
    assert raw.exit_code == 0, raw.output
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", raw.output)
    assert r"cup\u009b2J" in raw.output and r"\u001b[31mred" in raw.output
    step1 = json.loads(raw.output)["predictions"]["cot"]["trace"][0]
    assert step1["raw_output"] == step1_text  # --json stays exact JSON of the record
