"""Paired statistics against hand-computed values."""

from __future__ import annotations

from math import comb

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from cot_ground.analysis.paired import (
    OVERALL,
    bootstrap_diffs,
    mcnemar_exact,
    paired_comparison,
    paired_frame,
    percentile_interval,
)


def _frame(outcomes: dict[str, list[tuple[bool, bool]]]) -> pd.DataFrame:
    """A load_run-shaped frame of two pipelines from (A right, B right) pairs per task."""
    rows = []
    for task, pairs in outcomes.items():
        for i, (ra, rb) in enumerate(pairs):
            rows.append(
                {"example_id": f"{task}-{i}", "pipeline": "A", "task": task, "correct_50": ra}
            )
            rows.append(
                {"example_id": f"{task}-{i}", "pipeline": "B", "task": task, "correct_50": rb}
            )
    return pd.DataFrame(rows)


def _table(both: int, only_a: int, only_b: int, neither: int) -> list[tuple[bool, bool]]:
    return (
        [(True, True)] * both
        + [(True, False)] * only_a
        + [(False, True)] * only_b
        + [(False, False)] * neither
    )


def test_mcnemar_exact_by_hand():
    # b = 8 discordant pairs won by A, c = 2 won by B: n = 10,
    # p = 2 * sum_{i<=2} C(10, i) / 2^10 = 2 * (1 + 10 + 45) / 1024 = 0.109375
    by_hand = 2 * (comb(10, 0) + comb(10, 1) + comb(10, 2)) / 2**10
    assert by_hand == 0.109375
    assert mcnemar_exact(8, 2) == pytest.approx(by_hand, abs=1e-15)
    assert mcnemar_exact(2, 8) == pytest.approx(by_hand, abs=1e-15)
    assert mcnemar_exact(8, 2) == pytest.approx(binomtest(2, 10, 0.5).pvalue)


def test_mcnemar_edge_cases():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(3, 3) == 1.0  # capped at 1
    assert mcnemar_exact(5, 0) == pytest.approx(2 / 2**5)
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 2)


def test_two_by_two_table_and_accuracies():
    frame = _frame({"diff": _table(5, 8, 2, 5), "region": _table(1, 0, 1, 2)})
    results = {r.task: r for r in paired_comparison(frame, "A", "B", seed=1)}
    diff = results["diff"]
    assert (diff.both, diff.only_a, diff.only_b, diff.neither, diff.n) == (5, 8, 2, 5, 20)
    assert diff.acc_a == pytest.approx(100 * 13 / 20)
    assert diff.acc_b == pytest.approx(100 * 7 / 20)
    assert diff.diff == pytest.approx(30.0)
    assert diff.p_value == pytest.approx(0.109375)
    overall = results[OVERALL]
    assert (overall.both, overall.only_a, overall.only_b, overall.neither) == (6, 8, 3, 7)
    # overall accuracy = plain mean over tasks (the benchmark average)
    assert overall.acc_a == pytest.approx((65.0 + 25.0) / 2)
    assert overall.acc_b == pytest.approx((35.0 + 50.0) / 2)
    assert overall.p_value == pytest.approx(2 * sum(comb(11, i) for i in range(4)) / 2**11)


def test_bootstrap_interval_contains_observed_difference_and_is_seeded():
    rng = np.random.default_rng(7)
    pairs = [(bool(a), bool(b)) for a, b in rng.random((200, 2)) < [0.6, 0.45]]
    frame = _frame({"common_object": pairs[:120], "multi_view": pairs[120:]})
    first = paired_frame(paired_comparison(frame, "A", "B", seed=3))
    again = paired_frame(paired_comparison(frame, "A", "B", seed=3))
    other = paired_frame(paired_comparison(frame, "A", "B", seed=4))
    pd.testing.assert_frame_equal(first, again)
    assert not first[["ci_low", "ci_high"]].equals(other[["ci_low", "ci_high"]])
    for row in first.itertuples():
        assert row.ci_low <= row.diff <= row.ci_high
        assert row.ci_low < row.ci_high


def test_task_interval_does_not_depend_on_other_tasks():
    a = _table(10, 6, 2, 7)
    alone = paired_comparison(_frame({"diff": a}), "A", "B", seed=0)[0]
    together = paired_comparison(_frame({"diff": a, "region": _table(3, 1, 1, 3)}), "A", "B")[0]
    assert (alone.ci_low, alone.ci_high) == (together.ci_low, together.ci_high)


def test_bootstrap_degenerate_and_bad_input():
    same = np.ones(10)
    draws = bootstrap_diffs(same, same, np.random.default_rng(0), n_boot=100)
    assert draws.shape == (100,)
    assert percentile_interval(draws) == (0.0, 0.0)
    with pytest.raises(ValueError):
        bootstrap_diffs(np.ones(3), np.ones(4), np.random.default_rng(0))


def test_percentile_interval_by_hand():
    values = np.arange(1001, dtype=float)  # quantiles 2.5% and 97.5% are 25 and 975
    assert percentile_interval(values) == pytest.approx((25.0, 975.0))


def test_unknown_pipeline_or_no_shared_example():
    frame = _frame({"diff": _table(1, 1, 1, 1)})
    with pytest.raises(ValueError, match="'C'"):
        paired_comparison(frame, "A", "C")
    frame.loc[frame["pipeline"] == "B", "example_id"] += "-other"
    with pytest.raises(ValueError, match="share no example"):
        paired_comparison(frame, "A", "B")
