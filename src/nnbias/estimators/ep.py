"""Expectation propagation for GP classification: log P(labels) under a GP prior.

Mingard et al. compute P_B(f|S) = P(f on S and E) / P(labels on S) where each
P(U) is the probability, under the architecture's NNGP, that the latent
function has the signs U: a Gaussian orthant probability. EP (Minka 2001;
Rasmussen & Williams 2006, Alg. 3.5 and eq. 3.65) approximates its log with
the likelihood Phi(y f / s); s = 0 is the Heaviside likelihood [y f > 0] of the
papers. Exact for one point; for small dimensions the tests compare it with
closed-form orthant probabilities and with Genz's algorithm.

Many labellings of the same inputs (every function on E a P_SGD run found) share
one kernel, so EP runs on a batch of label vectors at once, in torch, on any
device: the site updates are sequential within a labelling but batched across
them, and a labelling leaves the batch as soon as it has converged (so each
result is what it would be alone).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from nnbias.errors import NNBiasError, require


def _moments(y: torch.Tensor, mu: torch.Tensor, var: torch.Tensor, s: float):
    """Log normaliser and moments of Phi(y f / s) N(f; mu, var)."""
    denom = torch.sqrt(s * s + var)
    z = y * mu / denom
    log_z = torch.special.log_ndtr(z)
    ratio = torch.exp(-0.5 * z * z - 0.5 * math.log(2 * math.pi) - log_z)  # N(z) / Phi(z)
    mean = mu + y * var * ratio / denom
    variance = var - var * var * ratio * (z + ratio) / (denom * denom)
    return log_z, mean, variance


def ep_log_probabilities(kernel: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor,
                         s: float = 0.0, max_sweeps: int = 200, tol: float = 1e-9,
                         device: str = "cpu", memory: int = 2**28) -> np.ndarray:
    """EP approximations of log P(sign f(x_i) = y_i for all i), f ~ GP(0, kernel), for each row of
    ``labels`` (B, n) in {-1, +1}, computed in float64 on ``device`` in batches whose (n, n)
    posterior covariances fit in about ``memory`` bytes; (B,) on the CPU."""
    k = torch.as_tensor(kernel, dtype=torch.float64).to(device)
    y = torch.as_tensor(labels, dtype=torch.float64).to(device)
    y = y.reshape(1, -1) if y.ndim == 1 else y
    n = y.shape[1]
    require(k.shape == (n, n), f"kernel of shape {tuple(k.shape)} does not match {n} labels")
    require(bool(((y == -1) | (y == 1)).all()), "labels must be -1 or +1")
    require(bool(torch.isfinite(k).all()), "kernel contains NaN or inf")
    eye = torch.eye(n, dtype=torch.float64, device=k.device)
    k = (k + k.T) / 2 + 1e-10 * k.diagonal().mean() * eye
    rows = max(1, memory // (4 * 8 * n * n))  # sigma, its update and two temporaries per labelling
    return np.concatenate([_ep_batch(k, eye, y[i:i + rows], s, max_sweeps, tol)
                           for i in range(0, len(y), rows)])


def _ep_batch(k: torch.Tensor, eye: torch.Tensor, y: torch.Tensor, s: float, max_sweeps: int,
              tol: float) -> np.ndarray:
    """EP for the labellings y (B, n) at once (R&W Alg. 3.5, sites updated in order)."""
    b, n = y.shape
    results = torch.full((b,), math.nan, dtype=torch.float64)
    rows = torch.arange(b)  # which labellings are still iterating
    tau = torch.zeros(b, n, dtype=torch.float64, device=k.device)
    nu = torch.zeros_like(tau)
    sigma = k.expand(b, n, n).clone()
    mu = torch.zeros_like(tau)
    previous = torch.full((b,), -math.inf, dtype=torch.float64, device=k.device)
    for _ in range(max_sweeps):
        for i in range(n):
            tau_cav = 1 / sigma[:, i, i] - tau[:, i]
            nu_cav = mu[:, i] / sigma[:, i, i] - nu[:, i]
            _, mean, var = _moments(y[:, i], nu_cav / tau_cav, 1 / tau_cav, s)
            new_tau = (1 / var - tau_cav).clamp_min(1e-300)
            delta = new_tau - tau[:, i]
            tau[:, i] = new_tau
            nu[:, i] = mean / var - nu_cav
            col = sigma[:, :, i].clone()
            scaled = col * (delta / (1 + delta * col[:, i]))[:, None]
            sigma.baddbmm_(scaled.unsqueeze(2), col.unsqueeze(1), alpha=-1.0)  # rank one, in place
            mu = torch.bmm(sigma, nu.unsqueeze(2)).squeeze(2)
        # recompute from scratch for stability, then the log marginal (R&W eq. 3.65)
        root = torch.sqrt(tau)
        chol = torch.linalg.cholesky(eye + root[:, :, None] * k * root[:, None, :])
        v = torch.linalg.solve_triangular(chol, root[:, :, None] * k, upper=False)
        sigma = k - v.transpose(1, 2) @ v
        mu = torch.bmm(sigma, nu.unsqueeze(2)).squeeze(2)
        current = _log_z(chol, tau, nu, sigma, mu, y, s)
        done = (current - previous).abs() < tol
        results[rows[done.cpu()]] = current[done].cpu()
        keep = ~done
        if not keep.any():
            return results.numpy()
        rows, previous = rows[keep.cpu()], current[keep]
        tau, nu, sigma, mu, y = tau[keep], nu[keep], sigma[keep], mu[keep], y[keep]
    if not bool(torch.isfinite(previous).all()):
        raise NNBiasError("expectation propagation did not converge to a finite log probability")
    results[rows] = previous.cpu()
    return results.numpy()


def ep_log_probability(kernel: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor,
                       s: float = 0.0, max_sweeps: int = 200, tol: float = 1e-9,
                       device: str = "cpu") -> float:
    """EP approximation of log P(sign f(x_i) = y_i for all i), f ~ GP(0, kernel); labels (n,) in {-1, +1}."""
    require(np.ndim(labels) == 1, f"labels of shape {np.shape(labels)} are not allowed; give one (n,) vector")
    return float(ep_log_probabilities(kernel, labels, s, max_sweeps, tol, device)[0])


def _log_z(chol, tau, nu, sigma, mu, y, s: float) -> torch.Tensor:
    """(B,) log Z_EP in the form used by GPML's infEP (zero prior mean)."""
    diag = sigma.diagonal(dim1=1, dim2=2)
    tau_cav = 1 / diag - tau
    nu_cav = mu / diag - nu
    log_z_sites, _, _ = _moments(y, nu_cav / tau_cav, 1 / tau_cav, s)
    quad = (nu * torch.bmm(sigma, nu.unsqueeze(2)).squeeze(2)).sum(1)
    neg = (torch.log(chol.diagonal(dim1=1, dim2=2)).sum(1) - log_z_sites.sum(1) - quad / 2
           - (nu_cav * ((tau / tau_cav * nu_cav - 2 * nu) / (tau + tau_cav))).sum(1) / 2
           + (nu**2 / (tau_cav + tau)).sum(1) / 2 - torch.log1p(tau / tau_cav).sum(1) / 2)
    return -neg
