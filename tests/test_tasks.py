"""The per-task table: benchmark order, paper groups, derived task sets and question wording."""

from __future__ import annotations

import pytest

from cot_ground.lite import LITE_TASKS
from cot_ground.tasks import (
    ALL_FORM_TASKS,
    DIFF_TASKS,
    KEYPOINT_TASKS,
    RECOGNITION_ORDER,
    SHARED_CONTENT_TASKS,
    TASK_GROUPS,
    TASK_ORDER,
    TASKS,
    get_task,
    ordered_tasks,
    question_designates_target,
    task_of,
    tasks_with,
)


def test_table_is_in_the_published_column_order_with_the_papers_groups() -> None:
    assert TASK_ORDER == (
        "diff",
        "view_diff",
        "common_object",
        "object_tracking",
        "multi_view",
        "region",
        "refer_grounding",
        "group_grounding",
        "reasoning",
        "correspondence",
    )
    assert {"spontaneous": TASK_ORDER[:3], "referential": TASK_ORDER[3:]} == TASK_GROUPS
    assert all(name == row.name for name, row in TASKS.items())


def test_derived_task_sets() -> None:
    assert {"diff", "view_diff"} == DIFF_TASKS
    assert {"common_object", "correspondence"} == SHARED_CONTENT_TASKS
    assert {"common_object"} == KEYPOINT_TASKS
    assert {"common_object", "multi_view", "object_tracking"} == ALL_FORM_TASKS
    assert tasks_with(default_target=None, target_from_answer=False) == {
        "common_object",
        "object_tracking",
        "multi_view",
    }
    with pytest.raises(TypeError, match="colour"):
        tasks_with(colour="red")


def test_unknown_task_gets_the_defaults_and_sorts_last() -> None:
    row = get_task("counting")
    assert row.paper_image == "reasoner" and row.reference is None and row.group is None
    assert ordered_tasks(["zeta", "region", "counting", "diff", "region"]) == [
        "diff",
        "region",
        "counting",
        "zeta",
    ]


def test_every_pattern_is_tried_and_the_more_specific_wording_wins() -> None:
    with_pattern = {name for name, row in TASKS.items() if row.question_pattern is not None}
    assert set(RECOGNITION_ORDER) == with_pattern
    assert task_of("What is their real difference? Find it in the 2th image.") == "view_diff"
    assert task_of("What is their difference?") == "diff"
    shared = "These images share one object in common"
    assert task_of(f"{shared} (<|box_start|>(1,2),(3,4)<|box_end|>) ...") == "multi_view"
    assert task_of(f"{shared}. Locate it in the 1th image.") == "common_object"
    assert task_of("Describe the weather.") is None


def test_question_designates_target() -> None:
    assert question_designates_target("question_ordinal")
    assert question_designates_target("default_second_image")
    assert not question_designates_target("additional_info")
    assert not question_designates_target(None)


def test_mig_lite_builds_only_benchmark_tasks() -> None:
    assert set(LITE_TASKS) <= set(TASKS)
