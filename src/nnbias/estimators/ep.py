"""Expectation propagation for GP classification: log P(labels) under a GP prior.

Mingard et al. compute P_B(f|S) = P(f on S and E) / P(labels on S) where each
P(U) is the probability, under the architecture's NNGP, that the latent
function has the signs U: a Gaussian orthant probability. EP (Minka 2001;
Rasmussen & Williams 2006, Alg. 3.5 and eq. 3.65) approximates its log with
the likelihood Phi(y f / s); s = 0 is the Heaviside likelihood [y f > 0] of the
papers. Exact for one point; for small dimensions the tests compare it with
closed-form orthant probabilities and with Genz's algorithm.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.linalg import cholesky
from scipy.special import log_ndtr

from nnbias.errors import NNBiasError, require


def _moments(y, mu, var, s):
    """Log normaliser and moments of Phi(y f / s) N(f; mu, var)."""
    denom = np.sqrt(s * s + var)
    z = y * mu / denom
    log_z = log_ndtr(z)
    ratio = np.exp(-0.5 * z * z - 0.5 * math.log(2 * math.pi) - log_z)  # N(z) / Phi(z)
    mean = mu + y * var * ratio / denom
    variance = var - var * var * ratio * (z + ratio) / (denom * denom)
    return log_z, mean, variance


def ep_log_probability(kernel: np.ndarray, labels: np.ndarray, s: float = 0.0, max_sweeps: int = 200,
                       tol: float = 1e-9) -> float:
    """EP approximation of log P(sign f(x_i) = y_i for all i), f ~ GP(0, kernel); labels in {-1, +1}."""
    k = np.asarray(kernel, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    n = len(y)
    require(k.shape == (n, n), f"kernel of shape {k.shape} does not match {n} labels")
    require(bool(np.isin(y, (-1.0, 1.0)).all()), "labels must be -1 or +1")
    require(bool(np.isfinite(k).all()), "kernel contains NaN or inf")
    k = (k + k.T) / 2 + 1e-10 * np.mean(np.diag(k)) * np.eye(n)
    tau = np.zeros(n)
    nu = np.zeros(n)
    sigma = k.copy()
    mu = np.zeros(n)
    previous = -np.inf
    for _ in range(max_sweeps):
        for i in range(n):
            tau_cav = 1 / sigma[i, i] - tau[i]
            nu_cav = mu[i] / sigma[i, i] - nu[i]
            _, mean, var = _moments(y[i], nu_cav / tau_cav, 1 / tau_cav, s)
            new_tau = max(1 / var - tau_cav, 1e-300)
            delta = new_tau - tau[i]
            tau[i] = new_tau
            nu[i] = mean / var - nu_cav
            col = sigma[:, i].copy()
            sigma -= (delta / (1 + delta * col[i])) * np.outer(col, col)
            mu = sigma @ nu
        # recompute from scratch for stability, then the log marginal (R&W eq. 3.65)
        root = np.sqrt(tau)
        chol = cholesky(np.eye(n) + root[:, None] * k * root[None, :], lower=True)
        v = np.linalg.solve(chol, root[:, None] * k)
        sigma = k - v.T @ v
        mu = sigma @ nu
        current = _log_z(k, chol, tau, nu, sigma, mu, y, s)
        if abs(current - previous) < tol:
            return current
        previous = current
    if not math.isfinite(previous):
        raise NNBiasError("expectation propagation did not converge to a finite log probability")
    return previous


def _log_z(k, chol, tau, nu, sigma, mu, y, s) -> float:
    """log Z_EP in the form used by GPML's infEP (zero prior mean)."""
    tau_cav = 1 / np.diag(sigma) - tau
    nu_cav = mu / np.diag(sigma) - nu
    log_z_sites, _, _ = _moments(y, nu_cav / tau_cav, 1 / tau_cav, s)
    neg = (np.log(np.diag(chol)).sum() - log_z_sites.sum() - nu @ sigma @ nu / 2
           - nu_cav @ ((tau / tau_cav * nu_cav - 2 * nu) / (tau + tau_cav)) / 2
           + (nu**2 / (tau_cav + tau)).sum() / 2 - np.log1p(tau / tau_cav).sum() / 2)
    return float(-neg)
