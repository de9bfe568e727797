"""Scaling laws fitted in log-log, with confidence intervals (exponents of width sweeps)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats


def power_law(x: Sequence[float], values: Sequence[float]) -> tuple[float, float]:
    """(exponent, 95 % CI half-width) of values ~ x^exponent, by least squares in log-log
    (Student t on n - 2 degrees of freedom; an infinite half-width with only two points)."""
    fit = stats.linregress(np.log(np.asarray(x, float)), np.log(np.asarray(values, float)))
    return fit.slope, stats.t.ppf(0.975, len(x) - 2) * fit.stderr if len(x) > 2 else math.inf


def proportional(x: Sequence[float], values: Sequence[float]) -> tuple[float, float]:
    """(c, 95 % CI half-width) of values = c x, least squares through the origin (Student t on n - 1
    degrees of freedom): e.g. log(E[K^2]/E[K]^2) = c beta."""
    x, y = np.asarray(x, float), np.asarray(values, float)
    c = float(x @ y / (x @ x))
    if len(x) < 2:
        return c, math.inf
    se = math.sqrt(float(((y - c * x) ** 2).sum()) / (len(x) - 1) / float(x @ x))
    return c, float(stats.t.ppf(0.975, len(x) - 1) * se)
