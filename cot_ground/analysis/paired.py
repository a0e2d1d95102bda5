"""Paired comparison of two pipelines on the same examples: 2×2 table, McNemar, bootstrap CI.

Only examples both pipelines finished (both have a prediction) are compared. Rows: one per
task, then two labelled overall rows that estimate different quantities:

``POOLED``
    every shared example weighs the same: accuracies and their difference over the pooled
    examples, a percentile bootstrap interval that resamples the pooled pairs, and the exact
    McNemar test of the pooled 2×2 table.
``TASK_MEAN``
    every task weighs the same (the benchmark's average): accuracies and difference are plain
    means over tasks, the interval is that of the mean over tasks of the per-task bootstrap
    draws (a task-stratified bootstrap: examples are resampled within their task); no test,
    and no 2×2 counts (the pooled counts do not give a mean over tasks: see ``POOLED``).

Per-task p-values are unadjusted: with ten tasks, one of them below 0.05 by chance alone is
likely. ``p_holm`` holds them Holm-adjusted over the per-task tests of the pair
(``statsmodels.stats.multitest.multipletests``, ``method="holm"``); ``POOLED`` is one test
and is not adjusted. :func:`format_p_value` writes p-values so that small ones stay readable.

Per task the interval resamples the task's pairs. Each draw uses
``numpy.random.default_rng([seed, crc32(label)])`` (label = the task or ``POOLED``), so a
task's interval does not depend on which other tasks are in the run.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from cot_ground.tasks import ordered_tasks

POOLED = "POOLED"
TASK_MEAN = "TASK_MEAN"


@dataclass(frozen=True)
class PairedResult:
    """One row of a paired comparison; accuracies and differences are percentages."""

    a: str
    b: str
    task: str
    n: int
    both: int | None
    """Examples both got right (None on ``TASK_MEAN``; likewise the three counts below)."""
    only_a: int | None
    only_b: int | None
    neither: int | None
    acc_a: float
    acc_b: float
    diff: float
    ci_low: float
    ci_high: float
    p_value: float | None
    """Exact McNemar p-value, unadjusted (None on the ``TASK_MEAN`` row, which has no test)."""
    p_holm: float | None = None
    """Per task: ``p_value`` Holm-adjusted over the pair's per-task tests; None on ``POOLED``
    and ``TASK_MEAN``."""


def format_p_value(p: float | None) -> str:
    """A p-value for tables: 4 decimals from 0.001 up, else 2 significant digits in
    scientific notation (``1.4e-20``), so that small values never print as ``0.0000``; empty
    for None (or NaN)."""
    if p is None or p != p:
        return ""
    return f"{p:.4f}" if p >= 1e-3 else f"{p:.1e}"


def holm_adjusted(p_values: list[float]) -> list[float]:
    """Holm step-down adjusted p-values, in input order (``statsmodels``' ``multipletests``)."""
    if not p_values:
        return []
    from statsmodels.stats.multitest import multipletests

    return [float(p) for p in multipletests(p_values, method="holm")[1]]


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: a binomial test (``scipy.stats.binomtest``) of the
    discordant pairs at 1/2; 1 when there are none. Raises ValueError on a negative count."""
    if only_a < 0 or only_b < 0:
        raise ValueError(f"discordant counts must be non-negative, got {only_a}, {only_b}")
    n = only_a + only_b
    if n == 0:
        return 1.0
    return float(binomtest(min(only_a, only_b), n, 0.5).pvalue)


def bootstrap_diffs(
    a: np.ndarray, b: np.ndarray, rng: np.random.Generator, n_boot: int = 2000
) -> np.ndarray:
    """``n_boot`` bootstrap values of ``mean(a) - mean(b)`` in percent points.

    ``a`` and ``b`` are equally long 0/1 outcomes on the same examples; examples (pairs) are
    resampled with replacement.
    """
    if len(a) == 0 or len(a) != len(b):
        raise ValueError(
            f"bootstrap needs paired outcomes of equal, non-zero length: {len(a)}, {len(b)}"
        )
    paired = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    idx = rng.integers(0, len(paired), size=(n_boot, len(paired)))
    return 100.0 * paired[idx].mean(axis=1)


def percentile_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` percentile interval of bootstrap ``values``."""
    alpha = (1.0 - level) / 2
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return float(low), float(high)


def paired_comparison(
    df: pd.DataFrame,
    a: str,
    b: str,
    column: str = "correct_50",
    seed: int = 0,
    n_boot: int = 2000,
) -> list[PairedResult]:
    """Compare pipelines ``a`` and ``b`` on the examples both ran: one result per task, then
    ``POOLED`` and ``TASK_MEAN`` (see the module docstring). ``column`` is a 0/1 outcome
    column of a :func:`~cot_ground.analysis.load.load_run` DataFrame. Raises ValueError for an
    unknown pipeline or when the two share no example."""
    for name in (a, b):
        if name not in set(df["pipeline"]):
            known = ", ".join(dict.fromkeys(df["pipeline"])) or "none"
            raise ValueError(f"pipeline {name!r} is not in the run (have: {known})")
    left = df.loc[df["pipeline"] == a, ["example_id", "task", column]]
    right = df.loc[df["pipeline"] == b, ["example_id", column]]
    joined = left.merge(right, on="example_id", suffixes=("_a", "_b"))
    if joined.empty:
        raise ValueError(f"pipelines {a!r} and {b!r} share no example")
    groups: list[tuple[np.ndarray, np.ndarray]] = []
    draws: list[np.ndarray] = []
    results = []
    for task in ordered_tasks(joined["task"]):
        sub = joined[joined["task"] == task]
        pair = (sub[f"{column}_a"].to_numpy(dtype=float), sub[f"{column}_b"].to_numpy(dtype=float))
        draws.append(bootstrap_diffs(*pair, _rng(seed, task), n_boot))
        groups.append(pair)
        results.append(_result(a, b, task, [pair], percentile_interval(draws[-1])))
    adjusted = holm_adjusted([r.p_value for r in results if r.p_value is not None])
    results = [replace(r, p_holm=p) for r, p in zip(results, adjusted, strict=True)]
    pooled = (np.concatenate([g[0] for g in groups]), np.concatenate([g[1] for g in groups]))
    pooled_ci = percentile_interval(bootstrap_diffs(*pooled, _rng(seed, POOLED), n_boot))
    results.append(_result(a, b, POOLED, [pooled], pooled_ci))
    task_mean_ci = percentile_interval(np.mean(draws, axis=0))
    results.append(_result(a, b, TASK_MEAN, groups, task_mean_ci, test=False))
    return results


COUNT_COLUMNS: tuple[str, ...] = ("both", "only_a", "only_b", "neither")
P_COLUMNS: tuple[str, ...] = ("p_value", "p_holm")


def paired_frame(results: list[PairedResult]) -> pd.DataFrame:
    """Paired results as a DataFrame (one row per result); the 2×2 counts are nullable
    integers (empty on ``TASK_MEAN``)."""
    columns = list(PairedResult.__dataclass_fields__)
    frame = pd.DataFrame([asdict(r) for r in results], columns=columns)
    return frame.astype({c: "Int64" for c in COUNT_COLUMNS})


def paired_display(frame: pd.DataFrame, full_precision: bool = False) -> pd.DataFrame:
    """``frame`` (:func:`paired_frame`) with its p-value columns as text: :func:`format_p_value`
    for tables to read, or with ``full_precision`` every digit of the float (``repr``, for
    CSV files); empty where there is no test."""
    out = frame.copy()
    for column in P_COLUMNS:
        out[column] = [
            ("" if p is None or p != p else repr(float(p))) if full_precision else format_p_value(p)
            for p in frame[column]
        ]
    return out


def _rng(seed: int, label: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(label.encode("utf-8"))])


def _result(
    a: str,
    b: str,
    task: str,
    groups: list[tuple[np.ndarray, np.ndarray]],
    interval: tuple[float, float],
    test: bool = True,
) -> PairedResult:
    """One row; accuracies are the plain mean over ``groups`` of each group's mean."""
    ya = np.concatenate([g[0] for g in groups]).astype(bool)
    yb = np.concatenate([g[1] for g in groups]).astype(bool)
    only_a = int((ya & ~yb).sum())
    only_b = int((~ya & yb).sum())
    counts = {
        "both": int((ya & yb).sum()),
        "only_a": only_a,
        "only_b": only_b,
        "neither": int((~ya & ~yb).sum()),
    }
    acc_a = 100.0 * float(np.mean([g[0].mean() for g in groups]))
    acc_b = 100.0 * float(np.mean([g[1].mean() for g in groups]))
    return PairedResult(
        a=a,
        b=b,
        task=task,
        n=len(ya),
        **(counts if test else dict.fromkeys(counts)),
        acc_a=acc_a,
        acc_b=acc_b,
        diff=acc_a - acc_b,
        ci_low=interval[0],
        ci_high=interval[1],
        p_value=mcnemar_exact(only_a, only_b) if test else None,
    )
