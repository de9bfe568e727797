"""Posterior samplers against independent references: a closed-form Gibbs posterior, exact volumes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from nnbias.engines.bayes import (
    effective_sample_size,
    fits,
    gather,
    gibbs_weights,
    langevin_posterior,
    prior_chunks,
    rejection_posterior,
    select,
)
from nnbias.engines.ensemble import sample_ensemble
from nnbias.engines.volumes import exact_volumes
from nnbias.errors import NNBiasError
from nnbias.spec import NetworkSpec
from nnbias.tasks.boolean import hypercube


def _linear_posterior(spec: NetworkSpec, x: torch.Tensor, y: torch.Tensor, temperature: float):
    """Closed form of exp(-L/T) N(0, I) for f = sigma_w/sqrt(d) w.x + sigma_b b, L = mean 1/2 (f - y)^2:
    Gaussian with precision I + Phi^T Phi / (n T) and mean (its inverse) Phi^T y / (n T)."""
    n, d = x.shape
    phi = torch.cat([spec.sigma_w / math.sqrt(d) * x, torch.full((n, 1), spec.sigma_b)], 1).double()
    precision = torch.eye(d + 1, dtype=torch.float64) + phi.T @ phi / (n * temperature)
    cov = torch.linalg.inv(precision)
    return cov @ phi.T @ y.double() / (n * temperature), cov


def test_langevin_samples_the_closed_form_gibbs_posterior():
    spec = NetworkSpec(3, (), "linear", sigma_w=1.5, sigma_b=0.5, parametrization="ntk")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, generator=g, dtype=torch.float64)
    y = torch.randn(6, generator=g, dtype=torch.float64)
    temperature = 0.2
    mean, cov = _linear_posterior(spec, x, y, temperature)
    nets = sample_ensemble(spec, 4000, torch.Generator().manual_seed(1), torch.float64)
    # the slowest direction relaxes at rate T (the prior's precision): t = steps * lr = 40 is 8 of its
    # time constants; unadjusted Langevin's bias is O(lr lambda_max) ~ 1 % at lr = 0.005
    post = langevin_posterior(nets, x, y, temperature, lr=0.005, steps=8000, loss="mse",
                              generator=torch.Generator().manual_seed(2))
    samples = torch.cat([post.weights[0][:, 0, :], post.biases[0]], 1)
    assert torch.all((samples.mean(0) - mean).abs() < 4 * torch.sqrt(torch.diagonal(cov) / len(samples)))
    assert _covariance_agrees(samples, cov)


def _covariance_agrees(samples: torch.Tensor, cov: torch.Tensor) -> bool:
    """Every sample covariance entry within 4 Monte-Carlo standard errors (Gaussian: Var(C_ij) =
    (C_ii C_jj + C_ij^2) / n) plus 3 % of the entry for the discretisation."""
    d = torch.diagonal(cov)
    se = torch.sqrt((d[:, None] * d[None, :] + cov**2) / len(samples))
    return bool(((torch.cov(samples.T) - cov).abs() < 4 * se + 0.03 * cov.abs()).all())


def test_langevin_with_a_large_step_is_measurably_off():
    """The same check must fail when the discretisation bias is large: the test above can say no."""
    spec = NetworkSpec(3, (), "linear", sigma_w=1.5, sigma_b=0.5, parametrization="ntk")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, generator=g, dtype=torch.float64)
    y = torch.randn(6, generator=g, dtype=torch.float64)
    _, cov = _linear_posterior(spec, x, y, 0.2)
    nets = sample_ensemble(spec, 4000, torch.Generator().manual_seed(1), torch.float64)
    post = langevin_posterior(nets, x, y, 0.2, lr=0.5, steps=400, loss="mse",
                              generator=torch.Generator().manual_seed(2))
    samples = torch.cat([post.weights[0][:, 0, :], post.biases[0]], 1)
    assert not _covariance_agrees(samples, cov)


def test_gibbs_weights_reproduce_the_closed_form_mean():
    spec = NetworkSpec(2, (), "linear", sigma_w=1.0, sigma_b=1.0, parametrization="ntk")
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
    y = torch.tensor([0.5, -0.3, 0.2], dtype=torch.float64)
    mean, cov = _linear_posterior(spec, x, y, 0.5)
    nets = sample_ensemble(spec, 200_000, torch.Generator().manual_seed(3), torch.float64)
    w = gibbs_weights(nets, x, y, 0.5, loss="mse")
    samples = torch.cat([nets.weights[0][:, 0, :], nets.biases[0]], 1).numpy()
    ess = effective_sample_size(w)
    assert ess > 10_000
    est = w @ samples
    assert np.all(np.abs(est - mean.numpy()) < 5 * np.sqrt(np.diagonal(cov.numpy()) / ess))


def test_rejection_posterior_matches_exact_perceptron_volumes():
    """P(f | S) = P(f) / P(S) on the functions that fit S: the accepted networks' truth tables against
    the exact volumes (chi-square)."""
    spec = NetworkSpec(3, (), "relu", sigma_w=1.0, sigma_b=1.0)
    cube = hypercube(3)
    s_idx = torch.tensor([0, 3, 5])
    table_s = "110"
    y = torch.tensor([float(c) for c in table_s])
    sample = rejection_posterior(spec, cube[s_idx], y, wanted=20_000, seed=4, max_draws=10**6)
    assert sample.nets.size == 20_000
    with torch.no_grad():
        bits = (sample.nets.forward(cube) > 0).numpy().astype(int)
    tables = ["".join(map(str, row)) for row in bits]
    fit = [v for v in exact_volumes(spec)
           if all(v.truth_table[i] == c for i, c in zip(s_idx.tolist(), table_s, strict=True))]
    p_s = sum(v.probability for v in fit)
    observed = np.array([tables.count(v.truth_table) for v in fit])
    expected = np.array([v.probability / p_s for v in fit]) * len(tables)
    assert observed.sum() == len(tables)  # nothing accepted that does not fit S
    keep = expected > 5
    stat = ((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum()
    assert stats.chi2.sf(stat, keep.sum() - 1) > 1e-3
    # the acceptance rate is P(S), within its binomial error
    assert abs(sample.acceptance - p_s) < 4 * math.sqrt(p_s * (1 - p_s) / sample.draws)


def test_rejection_posterior_is_reproducible_and_stops_at_its_budget():
    spec = NetworkSpec(3, (4,), "relu")
    cube = hypercube(3)
    y = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0])
    a = rejection_posterior(spec, cube, y, wanted=50, seed=1, max_draws=10**6, chunk=1000)
    b = rejection_posterior(spec, cube, y, wanted=50, seed=1, max_draws=10**6, chunk=1000)
    assert all(torch.equal(p, q) for p, q in zip(a.nets.tensors(), b.nets.tensors(), strict=True))
    short = rejection_posterior(spec, cube, y, wanted=10**6, seed=1, max_draws=3000, chunk=1000)
    assert short.draws == 3000 and short.nets.size < 10**6


def test_rejection_keeps_the_first_draws_that_fit_in_draw_order():
    """The accepted networks, gathered chunk by chunk into one buffer, are the prior draws of the same
    chunks that fit S, filtered here one network at a time, the first ``wanted`` of them."""
    spec = NetworkSpec(3, (4,), "relu")
    cube = hypercube(3)
    y = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0])
    sample = rejection_posterior(spec, cube, y, wanted=70, seed=2, max_draws=10**5, chunk=256)
    fitting = [[t[i] for t in nets.tensors()] for nets in prior_chunks(spec, sample.draws, 2, 256)
               for i in range(nets.size) if fits(nets, cube, y)[i]]
    assert sample.nets.size == 70 and len(fitting) >= 70 and sample.draws % 256 == 0
    for k, net in enumerate(fitting[:70]):
        assert all(torch.equal(t[k], p) for t, p in zip(sample.nets.tensors(), net, strict=True))


def test_gather_copies_parts_in_order_up_to_its_capacity():
    spec = NetworkSpec(3, (4,), "relu")
    parts = [sample_ensemble(spec, k, torch.Generator().manual_seed(k)) for k in (5, 1, 7)]
    parts[1] = select(parts[1], torch.zeros(1, dtype=torch.bool))  # a chunk where none fitted
    got = gather(iter(parts), 10, spec)
    joined = [torch.cat(ts) for ts in zip(*(p.tensors() for p in parts), strict=True)]
    assert got.size == 10 and all(torch.equal(g, j[:10]) for g, j in zip(got.tensors(), joined, strict=True))
    assert got.scales == parts[0].scales and got.bias_scales == parts[0].bias_scales
    empty = gather(iter([]), 4, spec)
    assert empty.size == 0 and [w.shape[1:] for w in empty.weights] == [w.shape[1:] for w in parts[0].weights]
    assert empty.scales == parts[0].scales


def test_langevin_refuses_a_prior_it_cannot_write_as_a_weight_decay():
    spec = NetworkSpec(3, (4,), "relu", parametrization="standard")
    nets = sample_ensemble(spec, 2, torch.Generator().manual_seed(0))
    with pytest.raises(NNBiasError, match="parametrization='ntk'"):
        langevin_posterior(nets, torch.zeros(2, 3), torch.zeros(2), 1.0, 0.01, 5)
