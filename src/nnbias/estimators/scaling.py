"""Scaling laws fitted in log-log, with confidence intervals (exponents of width sweeps)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import optimize, stats


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


def weighted_power_law(x: Sequence[float], values: Sequence[float],
                       errors: Sequence[float]) -> tuple[float, float, float]:
    """(amplitude, exponent, 95 % CI half-width of the exponent) of values = a x^exponent, fitted to the
    raw values with their standard errors (``scipy.optimize.curve_fit``, absolute sigma): unlike a
    log-log fit it takes measurements that are zero or negative within their noise (a distance that
    has shrunk to the estimator's floor), which a vanishing effect produces at large widths."""
    x, y, e = (np.asarray(a, float) for a in (x, values, errors))
    e = np.maximum(e, 1e-12)
    sign = 1.0 if y.sum() >= 0 else -1.0  # start from the side most points lie on
    start = power_law(x[sign * y > 0], sign * y[sign * y > 0]) if (sign * y > 0).sum() >= 2 else (0.0, 0.0)
    top = int(np.argmax(np.abs(y)))
    a0 = (float(y[top]) or 1e-12) / x[top] ** start[0]
    (a, b), cov = optimize.curve_fit(lambda t, a, b: a * t**b, x, y, p0=(a0, start[0]), sigma=e,
                                     absolute_sigma=True, maxfev=20_000)
    dof = max(len(x) - 2, 1)
    half = float(stats.t.ppf(0.975, dof) * math.sqrt(cov[1, 1])) if np.isfinite(cov[1, 1]) else math.inf
    return float(a), float(b), half
