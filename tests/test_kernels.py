import math

import numpy as np
import pytest
import torch
from scipy import stats

from nnbias.engines.empirical import (
    empirical_ntk,
    monte_carlo_kernels,
    spec_empirical_ntk,
    structured_ntk,
)
from nnbias.engines.ensemble import sample_ensemble
from nnbias.engines.kernels import KernelFn, adaptive_expectation, default_block, dual_fn
from nnbias.errors import NNBiasError
from nnbias.estimators.scaling import proportional
from nnbias.experiments import kernels
from nnbias.spec import NetworkSpec

X = torch.randn(6, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


@pytest.mark.parametrize("activation", ["relu", "erf", "tanh", "gelu", "linear", "step", "sign"])
def test_analytic_nngp_matches_monte_carlo_within_sampling_error(activation):
    """One hidden layer: the prior covariance of the output is the NNGP at any width (no bias)."""
    spec = NetworkSpec(5, (64,), activation, sigma_w=1.3, sigma_b=0.4)
    nets = sample_ensemble(spec, 20_000, torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        out = nets.forward(X, inplace=False)  # (K, N)
    prods = out[:, :, None] * out[:, None, :]
    z = (prods.mean(0) - KernelFn(spec)(X)) / (prods.std(0) / math.sqrt(prods.shape[0]))
    assert z.abs().max() < 5


@pytest.mark.parametrize("activation", ["relu", "erf", "tanh"])
@pytest.mark.parametrize("parametrization", ["ntk", "standard"])
def test_analytic_ntk_matches_monte_carlo_within_sampling_error(activation, parametrization):
    spec = NetworkSpec(5, (32,), activation, sigma_w=1.2, sigma_b=0.3, parametrization=parametrization)
    nets = sample_ensemble(spec, 4000, torch.Generator().manual_seed(2), dtype=torch.float64)
    theta = structured_ntk(nets, X).diagonal(dim1=1, dim2=2)  # (K, N)
    exact = KernelFn(spec)(X, kind="ntk").diagonal()
    z = (theta.mean(0) - exact) / (theta.std(0) / math.sqrt(theta.shape[0]))
    assert z.abs().max() < 5
    # the one-pass Monte-Carlo NTK is the mean of the per-network NTKs
    _, mc = monte_carlo_kernels(spec, X, networks=4000, seed=2)
    assert torch.allclose(mc.diagonal(), theta.mean(0), rtol=1e-10)


def test_deep_wide_monte_carlo_kernels_close_to_analytic():
    spec = NetworkSpec(5, (512, 512), "relu", sigma_w=1.4, sigma_b=0.2, parametrization="ntk")
    nngp, ntk = KernelFn(spec)(X, kind="both")
    mc_nngp, mc_ntk = monte_carlo_kernels(spec, X, networks=300, seed=0)
    assert (mc_ntk - ntk).norm() / ntk.norm() < 0.03  # O(1/width) bias + MC error
    assert (mc_nngp - nngp).norm() / nngp.norm() < 0.25  # product of two Gaussians: noisy


def test_quadrature_agrees_with_closed_forms():
    for activation in ("erf", "gelu", "linear"):
        spec = NetworkSpec(5, (8, 8, 8), activation, sigma_w=1.1, sigma_b=0.5, parametrization="ntk")
        closed = KernelFn(spec)(X, kind="both")
        quad = KernelFn(spec, method="quadrature")(X, kind="both")
        for a, b in zip(closed, quad, strict=True):
            assert torch.allclose(a, b, atol=1e-6, rtol=1e-6)


@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")  # dblquad at 1e-13: "roundoff"
@pytest.mark.parametrize("variance", [0.5, 8.0, 128.0])
def test_tanh_kernels_are_exact_at_any_variance(variance):
    """tanh's NNGP and NTK factor (a sum of erfs, closed form term by term) against scipy's adaptive
    dblquad, from small to large pre-activation variance and up to rho = 1 (a point with itself),
    where 96-node Gauss-Hermite was 1e-2 (variance 8) to 94 % (128) off
    (``benchmarks/tanh_kernel_accuracy.py``)."""
    k = torch.tensor([variance], dtype=torch.float64)
    for rho in (-0.6, 0.3, 1.0):
        value, deriv = dual_fn("tanh")(k, k, k * rho, True)
        assert abs(float(value[0]) / adaptive_expectation(math.tanh, variance, rho) - 1) < 1e-11
        reference = adaptive_expectation(lambda u: 1 - math.tanh(u) ** 2, variance, rho)
        assert abs(float(deriv[0]) / reference - 1) < 1e-11


@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")
def test_the_adaptive_reference_catches_gauss_hermite_at_large_variance():
    """The reference can say no: 96-node Gauss-Hermite, tanh's default before the erf expansion,
    is off by more than 10 % on the NTK factor's diagonal at variance 128."""
    k = torch.tensor([128.0], dtype=torch.float64)
    _, deriv = dual_fn("tanh", "quadrature", 96)(k, k, k, True)
    reference = adaptive_expectation(lambda u: 1 - math.tanh(u) ** 2, 128.0, 1.0)
    assert abs(float(deriv[0]) / reference - 1) > 0.1


def test_blocked_equals_unblocked_and_float32():
    spec = NetworkSpec(5, (8, 8), "relu", parametrization="ntk", sigma_b=0.1)
    x = torch.randn(50, 5, dtype=torch.float64)
    full = KernelFn(spec)(x, kind="ntk", block=1000)
    blocked = KernelFn(spec)(x, kind="ntk", block=7)
    assert torch.allclose(full, blocked, atol=1e-12)
    single = KernelFn(spec)(x, kind="ntk", dtype=torch.float32)
    assert single.dtype == torch.float32 and torch.allclose(single.double(), full, rtol=1e-5)


def test_duals_with_many_terms_per_pair_take_smaller_blocks_and_the_same_values():
    """tanh (32 erfs) and quadrature (96 nodes) hold (block, block, terms) temporaries: their default
    blocks are smaller, so 80 inputs span several of them, and the Gram matrix is the one-block one."""
    x = torch.randn(80, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for activation, method in (("tanh", "auto"), ("gelu", "quadrature")):
        kernel = KernelFn(NetworkSpec(5, (8, 8), activation, sigma_b=0.1), method=method)
        assert default_block(x.device, x.dtype, kernel.terms) < 80 <= default_block(x.device, x.dtype)
        one_block = kernel(x, kind="ntk", block=80)
        # blocks change the order of the input products' sums (rounding) and mirror the lower triangle,
        # where one block computes K(b, a) too: quadrature's K(a, b) - K(b, a) is 6e-14 of max |K|
        rounding = 1e-14 * float(one_block.abs().max())
        asymmetry = float((one_block - one_block.T).abs().max())
        assert float((kernel(x, kind="ntk") - one_block).abs().max()) <= asymmetry + rounding


def test_kernel_errors():
    with pytest.raises(NNBiasError, match="block=0"):
        KernelFn(NetworkSpec(5, (8,)))(X, block=0)
    with pytest.raises(NNBiasError, match="does not exist"):
        KernelFn(NetworkSpec(5, (8,), "step"))(X, kind="ntk")
    with pytest.raises(NNBiasError, match="no closed-form"):
        KernelFn(NetworkSpec(5, (8,), "tanh"), method="closed_form")
    with pytest.raises(NNBiasError, match="input_dim=5"):
        KernelFn(NetworkSpec(5, (8,)))(torch.randn(3, 4))
    with pytest.raises(NNBiasError, match="NaN"):
        KernelFn(NetworkSpec(2, (8,)))(torch.tensor([[0.0, float("nan")]]))


def test_empirical_ntk_converges_to_analytic_as_width_to_the_minus_half():
    x = X[:4]
    widths, errors = [], []
    for width in (64, 128, 256, 512, 1024):
        spec = NetworkSpec(5, (width, width), "relu", sigma_w=1.4, sigma_b=0.1, parametrization="ntk")
        exact = KernelFn(spec)(x, kind="ntk")
        for seed in range(4):
            emp = spec_empirical_ntk(spec, x, seed=seed)
            widths.append(width)
            errors.append(float((emp - exact).norm() / exact.norm()))
    slope = stats.linregress(np.log(widths), np.log(errors)).slope
    assert -0.8 < slope < -0.25


def test_ntk_fluctuations_grow_with_depth_over_width():
    ratios, betas = [], []
    x = torch.ones(1, 4, dtype=torch.float64)
    for depth in (1, 3, 6):
        for width in (16, 64):
            spec = NetworkSpec(4, (width,) * depth, "relu", bias=False, sigma_w=math.sqrt(2),
                               parametrization="ntk")
            nets = sample_ensemble(spec, 300, torch.Generator().manual_seed(depth * width),
                                   dtype=torch.float64)
            theta = structured_ntk(nets, x)[:, 0, 0]
            ratios.append(float((theta**2).mean() / theta.mean() ** 2))
            betas.append(depth / width)
    assert stats.spearmanr(betas, ratios)[0] > 0.8
    assert max(ratios) > 1.5 and min(ratios) < 1.2


def test_the_forward_pass_fluctuates_as_its_closed_form_and_a_wrong_law_is_rejected():
    """E[q^2]/E[q]^2 of ||h_L||^2 over sampled networks against (1 + 5/width)^depth; the same fit
    against (1 + 3/width)^depth (one hidden layer's NTK rate, below) is far from 1."""
    s = kernels.KernelsSettings(fluctuation_depths=(1, 4), fluctuation_widths=(8, 32),
                                fluctuation_networks=4000)
    table = kernels.init_fluctuations(s)
    k, half = proportional(np.log(table["forward_exact"]), np.log(table["forward_ratio"]))
    assert abs(k - 1) < 0.1 and half < 0.15
    wrong_law = (1 + 3 / table["width"]) ** table["depth"]
    wrong, _ = proportional(np.log(wrong_law), np.log(table["forward_ratio"]))
    assert wrong > 1.4
    one_layer = table[table["depth"] == 1]  # the NTK of one hidden layer sums two equal-mean layers: 1 + 3/n
    assert np.allclose(one_layer["ntk_ratio"], 1 + 3 / one_layer["width"], rtol=0.05)


def test_empirical_ntk_strategies_and_a_per_sample_loop_agree():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)).double()
    jac = empirical_ntk(model, X, mode="full", strategy="jacobian")
    ntvp = empirical_ntk(model, X, mode="full", strategy="ntvp", block=4)
    rows = []
    for xi in X:
        per_output = []
        for o in range(2):
            grads = torch.autograd.grad(model(xi.unsqueeze(0))[0, o], list(model.parameters()))
            per_output.append(torch.cat([g.flatten() for g in grads]))
        rows.append(torch.stack(per_output))
    j = torch.stack(rows)  # (N, O, P)
    loop = torch.einsum("iop,jqp->ijoq", j, j)
    assert jac.shape == (6, 6, 2, 2)
    assert torch.allclose(jac, loop, atol=1e-10) and torch.allclose(ntvp, loop, atol=1e-10)
    trace = empirical_ntk(model, X, X[:3])
    assert torch.allclose(trace, loop[:, :3].diagonal(dim1=2, dim2=3).sum(-1), atol=1e-10)


@pytest.mark.parametrize("parametrization", ["ntk", "standard"])
@pytest.mark.parametrize("activation, bias", [("relu", True), ("tanh", False), ("gelu", True)])
def test_structured_ntk_equals_jacobian_contraction(parametrization, activation, bias):
    spec = NetworkSpec(5, (12, 9), activation, bias=bias, sigma_b=0.4, parametrization=parametrization)
    nets = sample_ensemble(spec, 3, torch.Generator().manual_seed(5), dtype=torch.float64)
    fast = structured_ntk(nets, X, X[:4])
    fn, params = nets.functional()
    from nnbias.engines.empirical import ntk_of_function
    for k in range(3):
        def one(p, x, k=k):
            return fn(p, x)[k].unsqueeze(1)
        assert torch.allclose(fast[k], ntk_of_function(one, params, X, X[:4], strategy="jacobian"),
                              atol=1e-10)


def test_symmetric_gram_matrix_from_the_upper_triangle():
    """Without a second input set only the blocks on and above the diagonal are computed: the result
    is exactly symmetric and equals computing every block (up to the pinned diagonal's rounding)."""
    import torch

    from nnbias.engines.kernels import KernelFn
    from nnbias.spec import NetworkSpec

    spec = NetworkSpec(5, (64, 64), "relu", sigma_w=1.3, sigma_b=0.2, parametrization="ntk")
    x = torch.randn(10, 5, dtype=torch.float64)
    for kind in ("nngp", "ntk"):
        tri = KernelFn(spec)(x, kind=kind, block=3)
        assert torch.equal(tri, tri.T)
        assert torch.allclose(tri, KernelFn(spec)(x, x.clone(), kind=kind, block=3), rtol=1e-7, atol=0)
        one_block = KernelFn(spec)(x, kind=kind, block=64)
        assert torch.allclose(tri, one_block, rtol=1e-12, atol=0)
