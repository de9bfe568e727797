"""Probabilities from counts, with exact binomial confidence intervals, and fits on them."""

from __future__ import annotations

import numpy as np
from scipy import stats


def clopper_pearson(counts: np.ndarray, total: int, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Exact (Clopper-Pearson) confidence interval for each binomial proportion counts/total."""
    k = np.asarray(counts, dtype=float)
    alpha = 1 - level
    lo = np.where(k > 0, stats.beta.ppf(alpha / 2, k, total - k + 1), 0.0)
    hi = np.where(k < total, stats.beta.ppf(1 - alpha / 2, k + 1, total - k), 1.0)
    return lo, hi


def goodness_of_fit(observed: np.ndarray, expected_p: np.ndarray) -> tuple[float, int, float]:
    """Pearson chi-square test of counts against probabilities; zero-probability cells must be empty.

    Returns (statistic, degrees of freedom, p-value). Cells with expected count
    < 5 are pooled into one, the usual validity condition of the test.
    """
    observed = np.asarray(observed, dtype=float)
    expected = np.asarray(expected_p, dtype=float) * observed.sum()
    if observed[expected == 0].sum() > 0:
        return float("inf"), 0, 0.0
    keep = expected >= 5
    obs = np.append(observed[keep], observed[~keep & (expected > 0)].sum())
    exp = np.append(expected[keep], expected[~keep & (expected > 0)].sum())
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    stat = float(((obs - exp) ** 2 / exp).sum())
    dof = len(obs) - 1
    return stat, dof, float(stats.chi2.sf(stat, dof))


def upper_bound_fit(complexity: np.ndarray, log2_p: np.ndarray, counts: np.ndarray,
                    min_count: int = 10) -> tuple[float, float] | None:
    """Levin-style upper bound log2 P(f) <= -a K(f) - b fitted to the best-resolved maxima.

    For each distinct complexity value, the largest log2 P among functions seen
    at least ``min_count`` times; a least-squares line through those maxima,
    shifted up until it bounds all of them. Returns (a, b), or None with fewer
    than three resolved complexity values.
    """
    resolved = counts >= min_count
    ks, tops = [], []
    for k in np.unique(complexity[resolved]):
        sel = resolved & (complexity == k)
        ks.append(k)
        tops.append(log2_p[sel].max())
    if len(ks) < 3:
        return None
    ks, tops = np.array(ks), np.array(tops)
    slope, intercept = np.polyfit(ks, tops, 1)
    intercept += float((tops - (slope * ks + intercept)).max())
    return float(-slope), float(-intercept)
