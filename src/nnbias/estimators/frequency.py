"""Probabilities from counts, with exact binomial confidence intervals, and fits on them."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
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


class BoundFit(NamedTuple):
    """Levin-style upper bound log2 P(f) <= -a K(f) - b, with the 95 % CI half-width of the slope a."""

    a: float
    b: float
    a_ci95: float


def upper_bound_fit(complexity: np.ndarray, log2_p: np.ndarray, counts: np.ndarray,
                    min_count: int = 10) -> BoundFit | None:
    """Levin-style upper bound log2 P(f) <= -a K(f) - b fitted to the best-resolved maxima.

    For each distinct complexity value, the largest log2 P among functions seen
    at least ``min_count`` times; a least-squares line through those maxima
    (its slope's Student-t 95 % half-width from the fit), shifted up until it
    bounds all of them. None with fewer than three resolved complexity values.
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
    fit = stats.linregress(ks, tops)
    half = stats.t.ppf(0.975, len(ks) - 2) * fit.stderr
    intercept = fit.intercept + float((tops - (fit.slope * ks + fit.intercept)).max())
    return BoundFit(float(-fit.slope), float(-intercept), float(half))


def log_frequencies(counts: np.ndarray, min_count: int = 1) -> np.ndarray:
    """log(count / total) for each function seen at least ``min_count`` times, NaN for the rest
    (rarer functions' frequencies are too noisy to plot or correlate)."""
    c = np.asarray(counts)
    return np.where(c >= min_count, np.log(np.maximum(c, 1) / max(c.sum(), 1)), np.nan)


def compare_distributions(counts_a: np.ndarray, counts_b: np.ndarray, permutations: int = 500,
                          seed: int = 0) -> dict[str, float]:
    """Two samples of functions (counts aligned over the union of their supports) compared.

    ``tv``: total variation between the empirical distributions; ``p_value``:
    permutation test of "both samples come from one distribution" with TV as
    the statistic (the pooled counts split at random into samples of the same
    sizes), which accounts for TV's bias at finite sample sizes; ``tv_upper``:
    the 97.5th percentile of TV over bootstrap resamples of both samples (an
    upper 95 % bound, conservative: finite samples bias TV upwards); ``kl``:
    KL(a || b) over the functions both saw, renormalised, with ``mass_outside``
    the share of a's sample that b never produced (where KL would be infinite).
    """
    a, b = np.asarray(counts_a, np.int64), np.asarray(counts_b, np.int64)
    na, nb = int(a.sum()), int(b.sum())
    if na == 0 or nb == 0:
        return {"tv": float("nan"), "p_value": float("nan"), "tv_upper": float("nan"), "kl": float("nan"),
                "mass_outside": float("nan")}

    def tv(x: np.ndarray, y: np.ndarray) -> float:
        return 0.5 * float(np.abs(x / na - y / nb).sum())

    observed = tv(a, b)
    rng = np.random.default_rng(seed)
    pooled = a + b
    null = np.array([tv(split := rng.multivariate_hypergeometric(pooled, na), pooled - split)
                     for _ in range(permutations)])
    boot = np.array([tv(rng.multinomial(na, a / na), rng.multinomial(nb, b / nb))
                     for _ in range(permutations)])
    both = (a > 0) & (b > 0)
    pa, pb = a[both] / a[both].sum(), b[both] / b[both].sum()
    return {"tv": observed, "p_value": float((1 + (null >= observed - 1e-12).sum()) / (1 + permutations)),
            "tv_upper": float(np.quantile(boot, 0.975)),
            "kl": float((pa * np.log(pa / pb)).sum()) if both.any() else float("nan"),
            "mass_outside": float(a[~both].sum() / na)}


def count_columns(counts: np.ndarray) -> dict[str, int]:
    """A distribution over numbered functions as stored cell columns n0, n1, ... (one per function)."""
    return {f"n{c}": int(n) for c, n in enumerate(counts)}


def column_counts(row: pd.Series) -> np.ndarray:
    """The counts ``count_columns`` wrote, back from a stored row, in function order."""
    return row[[c for c in row.index if c.startswith("n") and c[1:].isdigit()]].to_numpy(np.int64)
