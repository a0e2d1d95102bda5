"""Pre-flight names the annotation item (and task) of every missing image it quotes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import runner_fakes as rf

from cot_ground.runner.config import parse_config
from cot_ground.runner.preflight import PreflightError, preflight


def test_a_missing_image_names_its_item_and_task(tmp_path: Path, fakes: None) -> None:
    bench = rf.make_benchmark(tmp_path / "bench", n=4)
    items = json.loads(bench.read_text())
    items[2]["images"][1] = "./images/nope.jpg"
    items.append(dict(items[1]))  # item 4 repeats item 1 (the published files do this)
    bench.write_text(json.dumps(items))
    (tmp_path / "bench/images/item001_0.png").unlink()
    config = parse_config(rf.experiment(bench, tmp_path / "run", tmp_path / "cache"))

    with pytest.raises(PreflightError) as err:
        preflight(config)

    [problem] = err.value.problems
    # 8 distinct files: item 4 names the files of item 1
    assert problem.startswith("images: 2 of 8 image file(s) of the selected examples do not exist")
    images = tmp_path / "bench" / "images"
    assert f"in {bench}: " in problem
    assert f"item 1 (group_grounding) and 1 other item(s): {images / 'item001_0.png'}" in problem
    assert f"item 2 (common_object): {images / 'nope.jpg'}" in problem
