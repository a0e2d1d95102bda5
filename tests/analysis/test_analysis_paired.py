"""Paired statistics against hand-computed values, statsmodels and scipy."""

from __future__ import annotations

from math import comb

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest, bootstrap
from statsmodels.stats.contingency_tables import mcnemar

from cot_ground.analysis.paired import (
    POOLED,
    TASK_MEAN,
    bootstrap_diffs,
    format_p_value,
    mcnemar_exact,
    paired_comparison,
    paired_display,
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
    pooled, task_mean = results[POOLED], results[TASK_MEAN]
    assert (pooled.both, pooled.only_a, pooled.only_b, pooled.neither) == (6, 8, 3, 7)
    # the task mean is not a 2x2 table: (only_a - only_b) / n would not give its difference
    assert (task_mean.both, task_mean.only_a, task_mean.only_b, task_mean.neither) == (None,) * 4
    assert pooled.n == task_mean.n == 24
    # pooled: every example weighs the same; McNemar on the pooled table
    assert pooled.acc_a == pytest.approx(100 * 14 / 24)
    assert pooled.acc_b == pytest.approx(100 * 9 / 24)
    assert pooled.diff == pytest.approx(100 * (8 - 3) / 24)
    assert pooled.p_value == pytest.approx(2 * sum(comb(11, i) for i in range(4)) / 2**11)
    # task mean: plain mean over tasks (the benchmark average); no test
    assert task_mean.acc_a == pytest.approx((65.0 + 25.0) / 2)
    assert task_mean.acc_b == pytest.approx((35.0 + 50.0) / 2)
    assert task_mean.diff == pytest.approx((30.0 - 25.0) / 2)
    assert task_mean.p_value is None


def test_bootstrap_interval_contains_observed_difference_and_is_seeded():
    rng = np.random.default_rng(7)
    pairs = [(bool(a), bool(b)) for a, b in rng.random((200, 2)) < [0.6, 0.45]]
    frame = _frame({"common_object": pairs[:120], "multi_view": pairs[120:]})
    first = paired_frame(paired_comparison(frame, "A", "B", seed=3))
    again = paired_frame(paired_comparison(frame, "A", "B", seed=3))
    other = paired_frame(paired_comparison(frame, "A", "B", seed=4))
    pd.testing.assert_frame_equal(first, again)
    assert not first[["ci_low", "ci_high"]].equals(other[["ci_low", "ci_high"]])
    assert list(first["task"]) == ["common_object", "multi_view", POOLED, TASK_MEAN]
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


FIXED_TABLES = [(30, 12, 4, 20), (5, 0, 7, 1), (100, 25, 25, 50), (0, 3, 0, 0), (9, 1, 2, 8)]


@pytest.mark.parametrize(("both", "only_a", "only_b", "neither"), FIXED_TABLES)
def test_mcnemar_equals_statsmodels_exact(both, only_a, only_b, neither):
    expected = mcnemar([[both, only_a], [only_b, neither]], exact=True).pvalue
    assert mcnemar_exact(only_a, only_b) == pytest.approx(expected, rel=1e-12)
    frame = _frame({"diff": _table(both, only_a, only_b, neither)})
    pooled = {r.task: r for r in paired_comparison(frame, "A", "B", n_boot=50)}[POOLED]
    assert pooled.p_value == pytest.approx(expected, rel=1e-12)


def _scipy_interval(samples: list[np.ndarray], seed: int) -> tuple[float, float]:
    """scipy's percentile bootstrap of the mean over ``samples`` of each sample's mean; each
    sample is resampled on its own (one sample: a plain paired bootstrap; one per task: a
    task-stratified one)."""
    res = bootstrap(
        [100 * d for d in samples],
        lambda *ds, axis: np.mean([d.mean(axis=axis) for d in ds], axis=0),
        n_resamples=20000,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return res.confidence_interval.low, res.confidence_interval.high


def test_intervals_agree_with_scipy_bootstrap_on_fixed_tables():
    tasks = {"diff": _table(30, 12, 4, 20), "region": _table(40, 5, 15, 60)}
    frame = _frame(tasks)
    results = {r.task: r for r in paired_comparison(frame, "A", "B", seed=0, n_boot=20000)}
    diffs = {t: np.array([float(ra) - float(rb) for ra, rb in pairs]) for t, pairs in tasks.items()}
    # tolerance: one step of the bootstrap lattice (100/n points; the two libraries may pick
    # neighbouring values) plus the Monte-Carlo error of 20,000 draws (well under 0.5 point)
    for task, d in diffs.items():
        low, high = _scipy_interval([d], seed=1)
        tol = 100 / len(d) + 0.5
        assert results[task].ci_low == pytest.approx(low, abs=tol)
        assert results[task].ci_high == pytest.approx(high, abs=tol)
    pooled = np.concatenate(list(diffs.values()))
    low, high = _scipy_interval([pooled], seed=2)
    tol = 100 / len(pooled) + 0.5
    assert (results[POOLED].ci_low, results[POOLED].ci_high) == pytest.approx((low, high), abs=tol)
    low, high = _scipy_interval(list(diffs.values()), seed=3)
    task_mean = results[TASK_MEAN]
    assert (task_mean.ci_low, task_mean.ci_high) == pytest.approx((low, high), abs=tol)
    # the two overall estimates differ here (tasks of 66 and 120 examples)
    assert results[POOLED].diff != pytest.approx(task_mean.diff)


def test_only_examples_both_pipelines_ran_are_paired():
    frame = _frame({"diff": _table(3, 2, 1, 4)})
    extra = pd.DataFrame(
        [
            {"example_id": f"diff-x{i}", "pipeline": "A", "task": "diff", "correct_50": True}
            for i in range(5)
        ]
    )
    results = {r.task: r for r in paired_comparison(pd.concat([frame, extra]), "A", "B")}
    assert results["diff"].n == 10 and results[POOLED].n == 10
    assert results["diff"].acc_a == pytest.approx(50.0)


def test_small_p_values_keep_their_size_in_tables_and_every_digit_in_csv():
    # 80 pairs only A got right: p = 2 / 2**80, which "%.4f" printed as 0.0000
    frame = _frame({"diff": _table(0, 80, 0, 0), "region": _table(3, 2, 1, 4)})
    results = paired_frame(paired_comparison(frame, "A", "B", seed=0, n_boot=50))
    p = results.set_index("task").loc["diff", "p_value"]
    assert p == pytest.approx(2 / 2**80)
    shown = paired_display(results).set_index("task")
    assert shown.loc["diff", "p_value"] == "1.7e-24"
    assert shown.loc["region", "p_value"] == f"{binomtest(1, 3, 0.5).pvalue:.4f}"
    assert shown.loc[TASK_MEAN, "p_value"] == "" and shown.loc[POOLED, "p_holm"] == ""
    full = paired_display(results, full_precision=True).set_index("task")
    assert float(full.loc["diff", "p_value"]) == p  # every digit round-trips
    assert format_p_value(0.05) == "0.0500" and format_p_value(None) == ""


def test_holm_adjusts_the_per_task_p_values_of_a_pair():
    frame = _frame(
        {"diff": _table(2, 9, 1, 2), "region": _table(4, 5, 2, 1), "reasoning": _table(1, 3, 3, 1)}
    )
    rows = {r.task: r for r in paired_comparison(frame, "A", "B", seed=0, n_boot=50)}
    p = {t: rows[t].p_value for t in ("diff", "region", "reasoning")}
    # Holm by hand: sorted p1 <= p2 <= p3 -> 3 p1, max(3 p1, 2 p2), max(.., p3), capped at 1
    order = sorted(p, key=p.get)
    expected, running = {}, 0.0
    for k, task in enumerate(order):
        running = max(running, min(1.0, (3 - k) * p[task]))
        expected[task] = running
    for task in p:
        assert rows[task].p_holm == pytest.approx(expected[task])
        assert rows[task].p_holm >= rows[task].p_value
    assert rows[POOLED].p_holm is None and rows[TASK_MEAN].p_holm is None
