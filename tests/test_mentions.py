"""The image-mention reader: adversarial phrasings with their correct index, and properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cot_ground.mentions import (
    find_mentions,
    image_choice,
    question_images,
    read_image_choice,
)

MULTI_VIEW = (
    "These images share one object in common(the object marked with red bounding box in the "
    "first image(<|box_start|>(451,265),(519,388)<|box_end|>). Recognize and locate this object "
    "in the 2th image. Format:<|box_start|>(x1,y1),(x2,y2)<|box_end|>."
)
REFER = "Find and locate where does the object in image-1 locate in the image-2."
REASONING = (
    "At their time, what might the people in image-1 need for sailing? Find it in Image-2. "
    "Find it and locate it in the second image."
)
DIFF = "Compare these two images carefully and give me the coordinates of their difference."

CASES: list[tuple[str, str | None, int | None]] = [
    # plain choices
    ("It's in the second image.", None, 1),
    ("It's in the fifth image. (0,0),(999,629)", None, 4),
    ("Image-3", None, 2),
    ("Image2", None, 1),
    ("picture #3", None, 2),
    ("Image two.", None, 1),
    ("It is in picture three", None, 2),
    ("the 3rd input picture", None, 2),
    ("It is in the FIRST IMAGE", None, 0),
    ("2th", None, 1),
    ("second", None, 1),
    ("3", None, 2),
    # negation
    ("not in image 1, in image 2", None, 1),
    ("The target is not in the first image; it is in the third image.", None, 2),
    ("Rather than image 1, the object appears in image 2.", None, 1),
    ("Image 1 does not contain it; it is in image 2.", None, 1),
    ("Image 3 is wrong. The answer is image 1.", None, 0),
    ("The answer is Image 2 (not Image 3).", None, 1),
    ("Neither image 1 nor image 2; it is in image 3", None, 2),
    ("The cup appears in image 2 instead of image 1", None, 1),
    ("It is not in the second image but in the first one", None, 0),
    ("It isn't in image 4.", None, None),
    ("The object cannot be found in image 1; it is in image 2.", None, 1),
    ("The object is absent from image 1; it is in image 2.", None, 1),
    ("The object is missing from image 1, it is in image 2.", None, 1),
    ("The target cannot be found in image 1. Image 2 shows it.", None, 1),
    ("The cup is absent from image 1.", None, None),
    ("The target cannot be found in image 1.", None, None),
    ("The missing cup is in image 2.", None, 1),
    # correction: the last affirmed mention wins; several images without one name no choice
    ("It is in image 2... actually image 3", None, 2),
    ("Image 2, sorry, I mean image 4", None, 3),
    ("I think it's the first image. Wait, no, it's the second image.", None, 1),
    ("It is in image 2. It is clearly visible in image 2.", None, 1),
    ("In the second image, the flag is red, while in the first image, it is blue", None, None),
    ("Image 1: a cat. Image 2: a dog. The answer is image 2.", None, 1),
    ("Image 1: a cat. Image 2: a dog.", None, None),
    ("The laptop in the second image is not turned on.", None, 1),
    # Chinese ordinals and full-width digits
    ("第三张图片", None, 2),
    ("在第二张图片中", None, 1),
    ("图3", None, 2),
    ("图片２", None, 1),
    ("第３张图", None, 2),
    ("第二幅图", None, 1),
    ("第二个图像", None, 1),
    ("图像 2", None, 1),
    ("第十张图片", None, 9),
    ("第二张", None, 1),
    ("不在第一张图片，而是在第二张图片", None, 1),
    ("目标在图1，其实是图2", None, 1),
    # echoes of the question's reference image
    ("the object marked with red bounding box in the first image(814,246),(915,539)",
     MULTI_VIEW, None),
    ("the object in the first image can be found at (1,2),(3,4)", MULTI_VIEW, None),
    ("It is in the first image (1,2),(3,4)", MULTI_VIEW, 0),
    ("object in the 2th image(263,335),(403,649)", MULTI_VIEW, 1),
    ("the object in image-1(51,353),(966,866)", REFER, None),
    ("The object in image-1 is located in image-2 at (1,2),(3,4)", REFER, 1),
    ("The people in image-1 might need a map or compass", REASONING, None),
    ("The people in image-1 might need a map or compass", None, 0),
    ("The difference is in the cow's legs. In the second image, the legs are white.", DIFF, 1),
    # not mentions: never invented
    ("the first two images are similar", None, None),
    ("images 1 and 2 both show a dog", None, None),
    ("3th region picture(3,4),(999,989)", None, None),
    ("the red car on the left", None, None),
    ("the 3rd car from the left", None, None),
    ("image 1000x800", None, None),
    ("Image 0", None, None),
    ("", None, None),
    # a negative word that does not govern the mention negates nothing (mentions-3)
    ("The dog with no collar is in image 2.", None, 1),
    ("No doubt it is in the second image.", None, 1),
    ("Without doubt image 2.", None, 1),
    ("The cat that is not sleeping is in image 3.", None, 2),
    ("It isn't in the second image.", None, None),
    ("no image 2", None, None),
    ("The target does not appear in image 1.", None, None),
    ("而非第一张图片", None, None),
    ("There is no dog in image 1.", None, None),
    ("There are no red cars in the second image; the answer is image 3.", None, 2),
    ("There isn't a dog in image 1, it is in image 2.", None, 1),
    ("There is no doubt it is in image 2.", None, 1),
    ("The dog doesn't have a collar in image 2.", None, 1),
    # a negation ends at its clause: "and", dashes, 而 / 却, but, whereas, while
    ("The dog is missing from image 1 and present in image 2.", None, 1),
    ("不在第一张图片而在第二张图片", None, 1),
    ("It isn't in image 1 — it's in image 3", None, 2),
    ("It is not in image 1 but it shows up in image 2", None, 1),
    ("Image 1 lacks it whereas the dog is visible in image 2", None, 1),
    ("它在第二张图片，却不在第一张图片", None, 1),
    # a number after "the / this image" that counts a noun is no image
    ("In the image 3 birds are visible.", None, None),
    ("In this image 2 people are standing", None, None),
    ("In the image two large dogs sit.", None, None),
    ("In the image 2 red cars are parked.", None, None),
    ("The image 2 shows a dog.", None, 1),
    ("It is in the image 3.", None, 2),
    ("In the image 2 there are cats.", None, 1),
    ("In image 3, birds are visible.", None, 2),
]  # fmt: skip


@pytest.mark.parametrize(("text", "question", "index"), CASES)
def test_adversarial_phrasings(text: str, question: str | None, index: int | None) -> None:
    assert image_choice(text, question) == index


def test_the_table_is_large() -> None:
    assert len(CASES) >= 40


def test_reading_records_each_mention_and_its_role() -> None:
    reading = read_image_choice("not in image 1, actually the object in the first image", REFER)
    assert [(m.index, m.role) for m in reading.mentions] == [(0, "negated"), (0, "echo")]
    assert reading.index is None and reading.rule == "none_affirmed"
    assert read_image_choice("the red car").rule == "no_mention"
    assert read_image_choice("2th").rule == "bare"
    assert read_image_choice("It is in image 2").rule == "affirmed"
    assert read_image_choice("image 2, actually image 3").rule == "correction"
    assert read_image_choice("image 2 and image 3").rule == "several_images"
    assert read_image_choice("Image 1: a. Image 2: b. Answer: image 2").rule == "stated_answer"


def test_question_images_target_and_references() -> None:
    assert question_images(MULTI_VIEW).target == 1
    assert question_images(MULTI_VIEW).references == frozenset({0})
    assert question_images(REFER).target == 1 and question_images(REFER).references == {0}
    assert question_images(DIFF).target is None and question_images(DIFF).references == set()


# ----------------------------------------------------------------------------- properties
ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth"]
CHINESE = "一二三四五六七八"
FILLERS = ["", "The red car on the left. ", "Looking closely, ", "Answer: ", "OK. "]


def _spellings(n: int) -> list[str]:
    """Ways to name image ``n`` (1-based)."""
    wide = str(n).translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    return [
        f"the {ORDINALS[n - 1]} image",
        f"image {n}",
        f"Image-{n}",
        f"the {n}th picture",
        f"第{CHINESE[n - 1]}张图片",
        f"图{n}",
        f"图{wide}",
    ]


numbers = st.integers(min_value=1, max_value=8)
spelling = st.integers(min_value=0, max_value=6)


@settings(max_examples=200)
@given(text=st.text(max_size=200), question=st.one_of(st.none(), st.text(max_size=120)))
def test_never_raises_and_never_invents(text: str, question: str | None) -> None:
    reading = read_image_choice(text, question)
    if reading.index is not None:
        assert reading.index >= 0
        assert reading.index in {m.index for m in reading.mentions if m.role == "affirmed"}
    assert all(m.index >= 0 for m in find_mentions(text))


@settings(max_examples=150)
@given(n=numbers, how=spelling, filler=st.sampled_from(FILLERS))
def test_every_spelling_names_its_image(n: int, how: int, filler: str) -> None:
    assert image_choice(f"{filler}It is in {_spellings(n)[how]}.") == n - 1


@settings(max_examples=150)
@given(i=numbers, j=numbers, a=spelling, b=spelling)
def test_a_correction_wins(i: int, j: int, a: int, b: int) -> None:
    text = f"It is in {_spellings(i)[a]}. Actually, it is in {_spellings(j)[b]}."
    assert image_choice(text) == j - 1


@settings(max_examples=150)
@given(i=numbers, j=numbers, a=spelling, b=spelling)
def test_a_rejected_image_is_not_chosen(i: int, j: int, a: int, b: int) -> None:
    if i == j:
        return
    assert image_choice(f"It is not in {_spellings(i)[a]}, it is in {_spellings(j)[b]}.") == j - 1
    assert image_choice(f"It is in {_spellings(j)[b]}, not in {_spellings(i)[a]}.") == j - 1
    assert image_choice(f"It is not in {_spellings(i)[a]}.") is None


NEGATIVE_ELSEWHERE = [
    "The dog with no collar is in {}.",
    "No doubt it is in {}.",
    "Without doubt, it is in {}.",
    "The cup that is not broken is in {}.",
]
PLURALS = ["birds", "people", "cars", "red cars", "children", "small boats"]


@settings(max_examples=150)
@given(n=numbers, how=spelling, template=st.sampled_from(NEGATIVE_ELSEWHERE))
def test_a_negative_word_that_does_not_govern_the_mention_negates_nothing(
    n: int, how: int, template: str
) -> None:
    assert image_choice(template.format(_spellings(n)[how])) == n - 1


@settings(max_examples=100)
@given(count=numbers, noun=st.sampled_from(PLURALS), det=st.sampled_from(["the", "this"]))
def test_a_counted_noun_after_the_image_is_no_mention(count: int, noun: str, det: str) -> None:
    text = f"In {det} image {count} {noun} are visible."
    assert find_mentions(text) == [] and image_choice(text) is None


@settings(max_examples=100)
@given(ref=numbers, target=numbers)
def test_an_echoed_reference_is_not_a_choice(ref: int, target: int) -> None:
    if ref == target:
        return
    question = (
        f"For the object in the {ORDINALS[ref - 1]} image marked with red bounding box, "
        f"please locate it in the {target}th image."
    )
    assert question_images(question).target == target - 1
    echo = f"the object in the {ORDINALS[ref - 1]} image(100,200),(300,400)"
    assert image_choice(echo, question) is None
    assert image_choice(f"It is in the {ORDINALS[target - 1]} image", question) == target - 1
    assert image_choice(f"It is in the {ORDINALS[ref - 1]} image", question) == ref - 1


@pytest.mark.shared
@pytest.mark.slow
def test_released_answers_reader_changes_match_the_docs(migbench_dir) -> None:
    """The figures of docs/benchmark.md "Image choices in the released answers"."""
    import subprocess

    from benchmarks.mention_changes import OLD_COMMIT, PREVIOUS_COMMIT, ROOT, compare_readers

    for commit in (OLD_COMMIT, PREVIOUS_COMMIT):
        known = subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=ROOT)
        if known.returncode != 0:
            pytest.skip(f"git history without {commit} (shallow clone)")
    total = compare_readers(migbench_dir / "released_outputs")["total"]
    assert total["answers"] == 8552
    assert (total["stated_old"], total["stated_new"], total["changed"]) == (430, 288, 151)
    assert (total["echo"], total["several"], total["not_a_mention"]) == (128, 21, 1)
    assert total["negated"] == 1  # "The white cup(…) is missing in the second image."
    assert not total.get("correction")
    assert total["changed_previous"] == 0  # mentions-3 reads every released answer as mentions-2
