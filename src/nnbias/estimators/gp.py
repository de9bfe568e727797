"""Kernel inference: GP posterior, NTK gradient-flow prediction, kernel ridge regression.

Linear algebra is done once, carefully: a Cholesky factorisation with jitter
that grows until it succeeds, falling back to an eigendecomposition; a kernel
whose smallest eigenvalue is negative beyond tolerance is an error that says
so, never a silent NaN.

NTK dynamics (Lee et al. 2019): gradient flow on L = 1/2 sum_i (f(x_i) - y_i)^2
with learning rate eta, from an initialisation drawn from the prior, gives a
Gaussian f_t(x) with

  mean  mu_t(x)  = Theta(x, X) Theta^-1 (I - e^{-eta Theta t}) Y
  cov   Sigma_t  = K(x, x') + A K(X, X) A^T - A K(X, x') - K(x, X) A^T,
        A        = Theta(x, X) Theta^-1 (I - e^{-eta Theta t}),

with Theta = Theta(X, X) and t = inf giving I in place of (I - e^{...}).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from nnbias.errors import NNBiasError, check_positive, require

PSD_TOLERANCE = 1e-8  # relative to the largest eigenvalue


@dataclass
class Factor:
    """A factorised symmetric PSD matrix: solves and functions of it."""

    eigvals: torch.Tensor
    eigvecs: torch.Tensor

    @staticmethod
    def of(matrix: torch.Tensor, name: str = "kernel") -> Factor:
        require(bool(torch.isfinite(matrix).all()), f"{name} matrix contains NaN or inf")
        require(matrix.shape[0] == matrix.shape[1],
                f"{name} matrix must be square, got {tuple(matrix.shape)}")
        sym = (matrix + matrix.T) / 2
        vals, vecs = torch.linalg.eigh(sym)
        top = float(vals.abs().max()) if vals.numel() else 0.0
        if vals.numel() and float(vals.min()) < -PSD_TOLERANCE * max(top, 1e-300) * matrix.shape[0]:
            raise NNBiasError(f"{name} matrix is not positive semi-definite: smallest eigenvalue "
                              f"{float(vals.min()):.3e} against largest {top:.3e}")
        jitter = 0.0
        floor = PSD_TOLERANCE * top
        if float(vals.min()) <= floor:  # singular: add the smallest jitter that makes it definite
            jitter = floor - float(vals.min()) + floor
        return Factor(vals.clamp_min(0) + jitter, vecs)

    def apply(self, fn, rhs: torch.Tensor) -> torch.Tensor:
        """fn(M) @ rhs for a scalar function fn of the eigenvalues."""
        return self.eigvecs @ (fn(self.eigvals).unsqueeze(-1) * (self.eigvecs.T @ rhs))

    def solve(self, rhs: torch.Tensor) -> torch.Tensor:
        return self.apply(torch.reciprocal, rhs)


def cholesky_solve(matrix: torch.Tensor, rhs: torch.Tensor, name: str = "kernel") -> torch.Tensor:
    """Solve matrix @ X = rhs for PSD ``matrix``: Cholesky with growing jitter, else eigh."""
    require(bool(torch.isfinite(matrix).all()), f"{name} matrix contains NaN or inf")
    scale = float(matrix.diagonal().abs().mean()) or 1.0
    for jitter in (0.0, *(scale * 10.0**e for e in range(-12, -5))):
        eye = torch.eye(matrix.shape[0], dtype=matrix.dtype, device=matrix.device)
        chol, info = torch.linalg.cholesky_ex(matrix + jitter * eye)
        if int(info) == 0:
            return torch.cholesky_solve(rhs, chol)
    return Factor.of(matrix, name).solve(rhs)


def check_blocks(k_train: torch.Tensor, y: torch.Tensor, k_cross: torch.Tensor, kind: str) -> None:
    """The kernel blocks and targets of N training and M test inputs: (N, N), (N[, O]), (M, N)."""
    n = k_train.shape[0] if k_train.ndim == 2 else -1
    require(k_train.ndim == 2 and k_train.shape[1] == n and y.ndim >= 1 and y.shape[0] == n
            and k_cross.ndim == 2 and k_cross.shape[1] == n,
            f"{kind} blocks of shapes {tuple(k_train.shape)} (train), {tuple(k_cross.shape)} (test x train) "
            f"and targets {tuple(y.shape)} do not fit together; expected (N, N), (M, N) and (N,) or (N, O)")


def gp_posterior(k_train: torch.Tensor, y: torch.Tensor, k_cross: torch.Tensor,
                 k_test: torch.Tensor | None = None,
                 noise: float = 0.0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Posterior mean (N*, O) and covariance (N*, N*) of a GP with observation noise variance ``noise``."""
    check_positive("noise", noise, allow_zero=True)
    check_blocks(k_train, y, k_cross, "kernel")
    y = y.reshape(y.shape[0], -1).to(k_train.dtype)
    eye = torch.eye(k_train.shape[0], dtype=k_train.dtype, device=k_train.device)
    rhs = torch.cat([y, k_cross.T], dim=1)
    sol = cholesky_solve(k_train + noise * eye, rhs, "training kernel")
    mean = k_cross @ sol[:, : y.shape[1]]
    cov = None if k_test is None else k_test - k_cross @ sol[:, y.shape[1]:]
    return mean, cov


def kernel_ridge(k_train: torch.Tensor, y: torch.Tensor, k_cross: torch.Tensor,
                 ridge: float = 1e-6) -> torch.Tensor:
    """Kernel ridge regression prediction; the GP posterior mean with noise = ridge."""
    return gp_posterior(k_train, y, k_cross, noise=ridge)[0]


def ntk_predict(ntk_train: torch.Tensor, y: torch.Tensor, ntk_cross: torch.Tensor,
                t: float = math.inf, lr: float = 1.0, nngp_train: torch.Tensor | None = None,
                nngp_cross: torch.Tensor | None = None, nngp_test: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mean (and, given the NNGP blocks, covariance over initialisations) of f_t for MSE gradient flow."""
    require(t >= 0, f"t={t} is not allowed; expected a training time >= 0 (or inf)")
    check_positive("lr", lr)
    check_blocks(ntk_train, y, ntk_cross, "NTK")
    y = y.reshape(y.shape[0], -1).to(ntk_train.dtype)
    factor = Factor.of(ntk_train, "training NTK")
    if math.isinf(t):
        def g(lam):
            return 1.0 / lam
    else:
        def g(lam):
            return -torch.expm1(-lr * t * lam) / lam
    mean = ntk_cross @ factor.apply(g, y)
    if nngp_train is None:
        return mean, None
    a = factor.apply(g, ntk_cross.T).T  # (N*, N)
    cov = nngp_test + a @ nngp_train @ a.T - a @ nngp_cross.T - nngp_cross @ a.T
    return mean, cov


def one_hot(labels: torch.Tensor, classes: int) -> torch.Tensor:
    """Targets for classification as regression: one-hot rows, centred to mean zero."""
    return torch.nn.functional.one_hot(labels.long(), classes).double() - 1.0 / classes


RIDGE = 1e-4  # kernel classifiers' ridge, relative to the mean of the training kernel's diagonal


def kernel_classify(k_train: torch.Tensor, labels: torch.Tensor, k_cross: torch.Tensor, classes: int,
                    ridge: float = RIDGE) -> torch.Tensor:
    """Predicted classes of k-output kernel regression on centred one-hot targets (argmax of the GP
    posterior mean; the NTK's t = inf gradient-flow mean for an NTK): one solve for all k outputs."""
    k_train = k_train.double()
    noise = ridge * float(k_train.diagonal().mean())
    mean = kernel_ridge(k_train, one_hot(labels, classes), k_cross.double(), noise)
    return mean.argmax(1)
