import math
import re

import pytest
import torch

from nnbias.engines.empirical import spec_empirical_ntk
from nnbias.engines.ensemble import sample_ensemble
from nnbias.engines.kernels import KernelFn
from nnbias.engines.training import train_gd
from nnbias.errors import NNBiasError
from nnbias.estimators.gp import Factor, cholesky_solve, gp_posterior, kernel_ridge, ntk_predict
from nnbias.spec import NetworkSpec

torch.manual_seed(0)
X = torch.randn(40, 6, dtype=torch.float64)
XS = torch.randn(9, 6, dtype=torch.float64)
Y = torch.randn(40, 1, dtype=torch.float64)


def test_gp_with_linear_kernel_is_ridge_regression():
    lam = 0.7
    mean, cov = gp_posterior(X @ X.T, Y, XS @ X.T, XS @ XS.T, noise=lam)
    w = torch.linalg.solve(X.T @ X + lam * torch.eye(6, dtype=torch.float64), X.T @ Y)
    assert torch.allclose(mean, XS @ w, atol=1e-10)
    # posterior covariance of Bayesian linear regression: XS (X^T X / lam + I)^-1 XS^T
    post = XS @ torch.linalg.inv(X.T @ X / lam + torch.eye(6, dtype=torch.float64)) @ XS.T
    assert torch.allclose(cov, post, atol=1e-10)
    assert torch.allclose(kernel_ridge(X @ X.T, Y, XS @ X.T, ridge=lam), mean)


def test_ntk_prediction_limits():
    spec = NetworkSpec(6, (64,), "relu", parametrization="ntk", sigma_b=0.2)
    k, t = KernelFn(spec)(X, kind="both")
    ks, ts = KernelFn(spec)(XS, X, kind="both")
    kss = KernelFn(spec)(XS)
    m0, c0 = ntk_predict(t, Y, ts, t=0.0, nngp_train=k, nngp_cross=ks, nngp_test=kss)
    assert torch.allclose(m0, torch.zeros_like(m0)) and torch.allclose(c0, kss)  # t=0: the prior
    m_inf, _ = ntk_predict(t, Y, ts)
    m_big, _ = ntk_predict(t, Y, ts, t=1e8)
    assert torch.allclose(m_inf, m_big, atol=1e-6)
    train_fit, _ = ntk_predict(t, Y, t)  # t = inf interpolates the training data
    assert torch.allclose(train_fit, Y, atol=1e-6)


def test_training_approaches_linearised_dynamics_as_width_grows():
    """GD on a net vs the linear dynamics of its own empirical NTK at init: the gap shrinks with width."""
    gaps = {}
    for width in (256, 4096):
        spec = NetworkSpec(6, (width,), "relu", parametrization="ntk", sigma_w=1.4, sigma_b=0.1)
        devs = []
        for seed in range(3):
            nets = sample_ensemble(spec, 1, torch.Generator().manual_seed(seed), dtype=torch.float64)
            theta = spec_empirical_ntk(spec, X, seed=seed)
            lr = 1.0 / float(torch.linalg.eigvalsh(theta).max())
            with torch.no_grad():
                f0 = nets.forward(X, inplace=False)
            result = train_gd(nets, X, Y, lr, 300)
            vals, vecs = torch.linalg.eigh(theta)
            decay = vecs @ torch.diag((1 - lr * vals) ** 300) @ vecs.T  # discrete GD, not flow
            expected = Y.T + (f0 - Y.T) @ decay.T
            devs.append(float((result.predict(X) - expected).abs().max()))
            assert float(result.losses[0]) < 0.5 * float(((f0 - Y.T) ** 2).sum())
        gaps[width] = sum(devs) / len(devs)
    assert gaps[4096] < 0.7 * gaps[256]


def test_divergence_is_reported_not_raised():
    spec = NetworkSpec(6, (16,), "relu", parametrization="ntk")
    nets = sample_ensemble(spec, 3, torch.Generator().manual_seed(0), dtype=torch.float64)
    result = train_gd(nets, X, Y * 1e3, lr=10.0, steps=50)
    assert result.diverged.all()


def test_linear_algebra_is_careful():
    low_rank = X[:, :2] @ X[:, :2].T  # rank 2, 40 x 40
    sol = cholesky_solve(low_rank, low_rank[:, :1])
    assert torch.isfinite(sol).all()
    assert torch.allclose(low_rank @ sol, low_rank[:, :1], atol=1e-6)
    with pytest.raises(NNBiasError, match="not positive semi-definite"):
        Factor.of(-torch.eye(4, dtype=torch.float64))
    with pytest.raises(NNBiasError, match="NaN"):
        gp_posterior(torch.full((2, 2), math.nan), torch.zeros(2, 1), torch.zeros(1, 2))
    with pytest.raises(NNBiasError, match="t=-1"):
        ntk_predict(torch.eye(2), torch.zeros(2, 1), torch.zeros(1, 2), t=-1)


@pytest.mark.parametrize("predict", [gp_posterior, ntk_predict])
def test_kernel_blocks_that_do_not_fit_together_are_named(predict):
    predict(torch.eye(3), torch.ones(3), torch.ones(2, 3))  # (N, N), (N,), (M, N)
    for k_train, y, k_cross in ((torch.eye(3), torch.ones(4), torch.ones(2, 3)),
                                (torch.eye(3), torch.ones(3), torch.ones(2, 4)),
                                (torch.ones(3, 2), torch.ones(3), torch.ones(2, 3))):
        with pytest.raises(NNBiasError, match=re.escape(f"blocks of shapes {tuple(k_train.shape)} (train), "
                                                        f"{tuple(k_cross.shape)} (test x train) and targets "
                                                        f"{tuple(y.shape)} do not fit together")):
            predict(k_train, y, k_cross)


def test_inputs_that_do_not_fit_the_networks_are_named():
    spec = NetworkSpec(4, (16,))
    nets = sample_ensemble(spec, 2, torch.Generator().manual_seed(0))
    assert nets.forward(torch.zeros(2, 3, 4)).shape == (2, 3)  # one input set per network
    for x in (torch.zeros(3, 5), torch.zeros(3, 2, 4), torch.zeros(4)):
        message = f"inputs of shape {tuple(x.shape)} do not fit 2 networks"
        with pytest.raises(NNBiasError, match=re.escape(message)):
            nets.forward(x)
    with pytest.raises(NNBiasError, match=r"inputs of shape \(5, 3\) do not fit 1 networks of input_dim=4"):
        spec_empirical_ntk(spec, torch.zeros(5, 3))
    with pytest.raises(NNBiasError, match=r"k \(networks\)=0 is not allowed"):
        sample_ensemble(spec, 0, torch.Generator())


def test_ten_class_digits_as_regression_on_one_hot_targets():
    from nnbias.estimators.gp import one_hot
    from nnbias.tasks.datasets import digits

    task = digits(None, train=500)
    spec = NetworkSpec(64, (512,), "relu", sigma_w=1.4, sigma_b=0.1)
    mean, _ = gp_posterior(KernelFn(spec)(task.x_train), one_hot(task.y_train, 10),
                           KernelFn(spec)(task.x_test, task.x_train), noise=1e-3)
    accuracy = float((mean.argmax(1) == task.y_test).double().mean())
    assert accuracy > 0.93  # a kernel method on 8x8 digits with 500 examples
