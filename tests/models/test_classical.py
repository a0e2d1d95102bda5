"""Classical baselines: rule reasoner on MIG-Bench wording, template and difference grounders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cot_ground.boxes import Box
from cot_ground.lite.sources import load_photo
from cot_ground.models.base import ChatRequest, Grounder, GroundRequest, Reasoner
from cot_ground.models.classical import ClassicalGrounder
from cot_ground.models.difference import DiffGrounder
from cot_ground.models.keypoints import KeypointGrounder
from cot_ground.models.registry import build
from cot_ground.models.rule_reasoner import RuleReasoner, question_of
from cot_ground.models.settings import ModelSettings
from cot_ground.models.template import TemplateGrounder
from cot_ground.records import ParseStatus
from cot_ground.scoring import iou


def _reason(question: str, n: int, prompt: str = "Task: {q}\nAnswer in JSON.") -> object:
    images = [f"/x/{i}.jpg" for i in range(n)]
    return RuleReasoner().reason([ChatRequest(images=images, prompt=prompt.format(q=question))])[0]


@pytest.mark.parametrize(
    ("question", "n", "image", "reference", "box"),
    [
        (
            "You are given a source image followed by its several regions. "
            "Please locate the 2th region picture in the source image. ",
            4, 0, 2, None,
        ),
        ("Find and locate where does the object in image-1 locate in the image-2.", 2, 1, 0, None),
        (
            "These are a sequence of images containing moving objects. For the object in the first "
            "image marked with red bounding box(<|box_start|>(139,305),(495,743)<|box_end|>), "
            "please locate it in the 4th image. ",
            6, 3, 0, [0.139, 0.305, 0.495, 0.743],
        ),
        (
            "These images share one object in common(the object marked with red bounding box in "
            "the first image(<|box_start|>(451,265),(519,388)<|box_end|>)). Recognize and locate "
            "this object in the 3th image. ",
            3, 2, 0, [0.451, 0.265, 0.519, 0.388],
        ),
        (
            "These images share one object in common. Recognize and locate this object in the "
            "1th image. ",
            4, 0, 1, None,
        ),
        (
            "These images share one object in common. Recognize and locate this object in the "
            "3th image. ",
            4, 2, 0, None,
        ),
        ("Compare these two images carefully and give me the coordinates of their difference. ",
         2, 1, 0, None),
    ],
)  # fmt: skip
def test_rule_reasoner_reads_mig_bench_questions(question, n, image, reference, box) -> None:
    result = _reason(question, n)
    assert result.status is ParseStatus.OK
    assert result.image_index == image
    assert result.reference_index == reference
    if box is None:
        assert result.reference_box is None
    else:
        assert result.reference_box.to_list() == pytest.approx(box)
    assert json.loads(result.raw_text)["image"] == image + 1


def test_rule_reasoner_reports_what_it_cannot_read() -> None:
    group = _reason(
        "Please find the bounding box coordinates for the area described by: "
        "<|object_ref_start|>the coffee cup<|object_ref_end|>.",
        3,
    )
    assert group.status is ParseStatus.MALFORMED and group.image_index is None
    assert group.description == "the coffee cup"
    unknown = _reason("What is the meaning of life?", 2)
    assert unknown.status is ParseStatus.MALFORMED and unknown.image_index is None


def test_question_is_read_from_the_task_line_or_the_whole_prompt() -> None:
    assert question_of("intro\nTask: Find it.\nReply in JSON") == "Find it."
    assert question_of("Find it in image 2.") == "Find it in image 2."


@pytest.fixture()
def scene_files(tmp_path: Path) -> dict[str, str]:
    photo = load_photo("astronaut.png").resize((320, 320))
    crop = photo.crop((100, 40, 200, 150)).resize((130, 143))
    changed = photo.copy()
    changed.paste((20, 200, 30), (220, 200, 270, 260))
    paths = {"photo": photo, "crop": crop, "changed": changed}
    out = {}
    for name, image in paths.items():
        out[name] = str(tmp_path / f"{name}.png")
        image.save(out[name])
    return out


def test_template_grounder_finds_a_rescaled_crop(scene_files) -> None:
    g = TemplateGrounder()
    req = GroundRequest(image=scene_files["photo"], phrase="", reference_image=scene_files["crop"])
    result = g.ground([req])[0]
    assert result.status is ParseStatus.OK
    assert iou(result.candidates[0].box, Box.from_pixels([100, 40, 200, 150], 320, 320)) > 0.8
    assert result.settings["backend"] in ("opencv", "skimage")


def test_template_grounder_cuts_the_reference_box(scene_files) -> None:
    box = Box.from_pixels([100, 40, 200, 150], 320, 320)
    req = GroundRequest(
        image=scene_files["changed"],
        phrase="",
        reference_image=scene_files["photo"],
        reference_box=box,
    )
    result = TemplateGrounder().ground([req])[0]
    assert iou(result.candidates[0].box, box) > 0.8


def test_correlation_backends_agree(scene_files) -> None:
    pytest.importorskip("cv2")
    req = GroundRequest(image=scene_files["photo"], phrase="", reference_image=scene_files["crop"])
    a = TemplateGrounder({"backend": "opencv"}).ground([req])[0].candidates[0].box
    b = TemplateGrounder({"backend": "skimage"}).ground([req])[0].candidates[0].box
    assert iou(a, b) > 0.95


def test_diff_grounder_boxes_the_change(scene_files) -> None:
    req = GroundRequest(
        image=scene_files["changed"], phrase="", task="diff", reference_image=scene_files["photo"]
    )
    result = DiffGrounder().ground([req])[0]
    assert iou(result.candidates[0].box, Box.from_pixels([220, 200, 270, 260], 320, 320)) > 0.7


def test_diff_grounder_aligns_a_shifted_pair(tmp_path: Path) -> None:
    photo = np.asarray(load_photo("coffee.png").resize((300, 200)))
    a = photo[5:185, 5:285].copy()
    b = photo[8:188, 3:283].copy()  # same view moved by (dx=-2, dy=+3)
    a[60:100, 150:200] = (0, 0, 255)
    Image.fromarray(a).save(tmp_path / "a.png")
    Image.fromarray(b).save(tmp_path / "b.png")
    req = GroundRequest(
        image=str(tmp_path / "a.png"), phrase="", reference_image=str(tmp_path / "b.png")
    )
    result = DiffGrounder().ground([req])[0]
    assert iou(result.candidates[0].box, Box.from_pixels([150, 60, 200, 100], 280, 180)) > 0.7
    assert json.loads(result.raw_text)["shift"] != [0.0, 0.0]


def test_no_reference_is_no_box(scene_files) -> None:
    req = GroundRequest(image=scene_files["photo"], phrase="the face")
    for grounder in (TemplateGrounder(), DiffGrounder()):
        result = grounder.ground([req])[0]
        assert result.status is ParseStatus.NO_BOX and result.candidates == []


def test_classical_grounder_dispatches_by_task(scene_files) -> None:
    g = ClassicalGrounder(TemplateGrounder(), DiffGrounder())
    diff = GroundRequest(
        image=scene_files["changed"], phrase="", task="diff", reference_image=scene_files["photo"]
    )
    region = GroundRequest(
        image=scene_files["photo"], phrase="", task="region", reference_image=scene_files["crop"]
    )
    d, r = g.ground([diff, region])
    assert d.settings["adapter"] == "diff-grounder"
    assert r.settings["adapter"] == "template-grounder"
    assert set(g.settings) >= {"template", "diff", "keypoint"}
    assert g._grounder("common_object") is g.keypoint


def test_registry_builds_every_classical_adapter() -> None:
    assert isinstance(build("rule-reasoner"), Reasoner)
    for name in ("template-grounder", "diff-grounder", "classical-grounder", "keypoint-grounder"):
        assert isinstance(build(name), Grounder)
    custom = build("template-grounder", ModelSettings(options={"scale_step": 1.2}))
    assert custom.settings["scale_step"] == 1.2
    with pytest.raises(ValueError, match="scale_stpe"):
        build("template-grounder", ModelSettings(options={"scale_stpe": 1.2}))
    with pytest.raises(ValueError, match="unknown option"):
        build("classical-grounder", ModelSettings(options={"templates": {}}))


@pytest.fixture()
def shared_object(tmp_path: Path) -> dict[str, object]:
    """The astronaut's face pasted into two different scenes, at two sizes."""
    face = load_photo("astronaut.png").crop((150, 20, 330, 220))
    out: dict[str, object] = {}
    for name, photo, size, at in (
        ("a", "coffee.png", (108, 120), (200, 40)),
        ("b", "rocket.jpg", (144, 160), (60, 150)),
    ):
        scene = load_photo(photo).resize((384, 320))
        scene.paste(face.resize(size), at)
        out[name] = str(tmp_path / f"{name}.png")
        scene.save(out[name])
        out[f"{name}_box"] = Box.from_pixels(
            [at[0], at[1], at[0] + size[0], at[1] + size[1]], 384, 320
        )
    flat = Image.new("RGB", (384, 320), (128, 128, 128))
    out["flat"] = str(tmp_path / "flat.png")
    flat.save(out["flat"])
    return out


def test_keypoint_grounder_boxes_the_shared_object(shared_object) -> None:
    req = GroundRequest(
        image=shared_object["b"],
        phrase="",
        task="common_object",
        reference_image=shared_object["a"],
    )
    g = KeypointGrounder()
    first, again = g.ground([req, req])
    assert first.status is ParseStatus.OK and first.candidates[0].label == "agreement"
    assert iou(first.candidates[0].box, shared_object["b_box"]) > 0.8
    assert first == again  # deterministic
    assert json.loads(first.raw_text)["inliers"] >= g.options["min_inliers"]


def test_keypoint_grounder_falls_back_without_matches(shared_object) -> None:
    req = GroundRequest(image=shared_object["flat"], phrase="", reference_image=shared_object["a"])
    alone = KeypointGrounder().ground([req])[0]
    assert alone.status is ParseStatus.NO_BOX and "too few matches" in alone.raw_text
    backed = KeypointGrounder(fallback=TemplateGrounder()).ground([req])[0]
    assert backed.settings["adapter"] == "template-grounder"
    assert "keypoints_failed" in json.loads(backed.raw_text)
