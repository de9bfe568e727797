"""abc-parametrizations, feature-movement measures and the features experiment."""

import math

import numpy as np
import pytest
import torch

from nnbias.engines.empirical import spec_empirical_ntk, structured_ntk
from nnbias.engines.ensemble import sample_ensemble
from nnbias.engines.kernels import KernelFn
from nnbias.errors import NNBiasError
from nnbias.experiments.features import FeaturesSettings, coordinate_check, coordinate_exponents, run_features
from nnbias.measures import features as fm
from nnbias.spec import NetworkSpec
from nnbias.store import Store


def test_mup_forward_matches_its_abc_definition_and_ntk_of_its_parameters():
    # effective weights: input sqrt(n) * w, w ~ N(0, 1/n) * sigma^2/d; hidden w ~ N(0, sigma^2/n);
    # readout n^-1/2 * w, w ~ N(0, sigma^2/n): output variance ~ 1/n at init
    spec = NetworkSpec(5, (64, 64), "relu", sigma_w=1.3, sigma_b=0.2, parametrization="mup")
    nets = sample_ensemble(spec, 3, torch.Generator().manual_seed(0), dtype=torch.float64)
    fn, params = nets.functional()
    assert [round(float(p[0].std()) * math.sqrt(64), 1) for p in params[:4:2]] == [1.0, 1.0]
    x = torch.randn(7, 5, dtype=torch.float64)
    h = x.T
    for layer, w in enumerate(params[::2]):
        mult = {0: math.sqrt(64) * 1.3 / math.sqrt(5), 1: 1.3, 2: 1.3 / math.sqrt(64)}[layer]
        bias = params[2 * layer + 1][0].unsqueeze(1) * (0.2 * math.sqrt(64) if layer < 2 else 0.2)
        z = mult * w[0] @ h + bias
        h = torch.relu(z) if layer < 2 else z
    assert torch.allclose(fn(params, x)[0], h[0], atol=1e-12)
    # the structured empirical NTK uses the same parameter factors as autograd does
    jac = spec_empirical_ntk(spec, x, seed=4, strategy="jacobian")
    fast = spec_empirical_ntk(spec, x, seed=4)
    assert torch.allclose(fast, jac, rtol=1e-9, atol=1e-12)
    assert structured_ntk(nets, x).shape == (3, 7, 7)


def test_readout_scale_and_learning_rate_per_parametrization():
    for param, readout_var, c in (("standard", 1 / 256, 1), ("ntk", 1 / 256, 0), ("mup", 1 / 256**2, 0)):
        spec = NetworkSpec(4, (256, 256), parametrization=param)
        assert spec.weight_scale(256, readout=True) ** 2 == pytest.approx(readout_var)
        assert spec.lr_scale(base_width=64) == pytest.approx(4.0**-c)
    assert NetworkSpec(4, (256,), parametrization="mean-field").lr_scale(64) == pytest.approx(4.0)
    with pytest.raises(NNBiasError, match="mean-field' is defined for one hidden layer, not 2"):
        NetworkSpec(4, (8, 8), parametrization="mean-field")
    with pytest.raises(NNBiasError, match="parametrization='mup' has a degenerate"):
        KernelFn(NetworkSpec(4, (8,), parametrization="mup"))


def test_measures_against_closed_forms():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(2, 30, 50, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(30, 30, generator=g, dtype=torch.float64))
    rotated = torch.einsum("ij,kjn->kin", q, h) * 3.0
    assert torch.allclose(fm.linear_cka(h, rotated), torch.ones(2, dtype=torch.float64))  # invariances
    assert float(fm.linear_cka(h, torch.randn(2, 30, 50, generator=g, dtype=torch.float64)).max()) < 0.9
    assert torch.allclose(fm.relative_change(h, 1.5 * h), torch.full((2,), 0.5, dtype=torch.float64))
    k = h.transpose(1, 2) @ h
    assert torch.allclose(fm.kernel_distance(k, 2 * k), torch.zeros(2, dtype=torch.float64), atol=1e-12)
    y = torch.randn(50, generator=g, dtype=torch.float64)
    assert torch.allclose(fm.kernel_alignment(torch.outer(y, y).expand(2, 50, 50), y),
                          torch.ones(2, dtype=torch.float64))
    assert float(fm.principal_angles(h, rotated @ torch.eye(50, dtype=torch.float64)).abs().max()) > 0.01
    assert float(fm.principal_angles(h, 2 * h).max()) < 1e-6
    grads = torch.randn(2, 30, 50, generator=g, dtype=torch.float64)
    basis = torch.linalg.svd(grads[0].T, full_matrices=False)[2][:3].T  # top-3 directions
    inside = (basis @ torch.randn(3, 50, generator=g, dtype=torch.float64)).expand(2, 30, 50)
    assert float(fm.gradient_fraction(inside[:1], grads[:1], k=3)[0]) == pytest.approx(1.0)
    frac = fm.gradient_fraction(torch.randn(1, 30, 50, generator=g, dtype=torch.float64), grads[:1], k=3)
    assert 0.02 < float(frac[0]) < 0.3  # a random change: about 3 of 30 dimensions


def test_coordinate_check_ntk_shrinks_and_mup_does_not():
    s = FeaturesSettings(parametrizations=("ntk", "mup"), coord_widths=(64, 128, 256, 512, 1024), networks=2)
    fit = coordinate_exponents(coordinate_check(s)).set_index(["parametrization", "layer"])["exponent"]
    for layer in ("hidden 1", "hidden 2"):
        assert fit["ntk", layer] < -0.3
        assert abs(fit["mup", layer]) < 0.15


def test_features_experiment_resumes_and_fits_exponents(tmp_path):
    s = FeaturesSettings(parametrizations=("ntk", "mup"), tasks=("single-index",), widths=(64, 256),
                         networks=2, steps=20, coord_widths=(64, 256))
    with Store(tmp_path / "s.duckdb") as st:
        first = run_features(st, s, tmp_path / "out")
        again = run_features(st, s, tmp_path / "out")
    assert len(first["cells"]) == 2 * 2 * 2 and len(again["cells"]) == len(first["cells"])
    exps = first["exponents"].set_index(["parametrization", "measure"])["exponent"]
    assert exps["ntk", "act_change_1"] < exps["mup", "act_change_1"]
    assert np.isfinite(first["cells"]["kernel_distance"]).all()
    assert all(p.exists() for p in first["figures"].values())
    with pytest.raises(NNBiasError, match="parametrization='sp'"):
        FeaturesSettings(parametrizations=("sp",))


def test_moved_variance_against_a_direct_computation():
    """A rank-one change along u: with k = 1 the share is the trained layer's variance along u (numpy,
    written out), and a change that is the whole representation explains all of it."""
    from nnbias.measures.features import moved_variance

    rng = np.random.default_rng(0)
    h0 = rng.normal(size=(12, 40))
    u = np.linalg.qr(rng.normal(size=(12, 1)))[0][:, 0]
    h1 = h0 + 3 * np.outer(u, rng.normal(size=40))
    centred = h1 - h1.mean(1, keepdims=True)
    expected = float((u @ centred) @ (u @ centred) / (centred**2).sum())
    got = moved_variance(torch.from_numpy(h0)[None], torch.from_numpy(h1)[None], k=1)
    assert float(got[0]) == pytest.approx(expected, rel=1e-9)
    whole = moved_variance(torch.zeros(1, 12, 40, dtype=torch.float64), torch.from_numpy(h1)[None], k=12)
    assert float(whole[0]) == pytest.approx(1.0)
