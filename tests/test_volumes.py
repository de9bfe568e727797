import math
from collections import defaultdict
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from nnbias.engines.volumes import exact_volumes, orthant_probability
from nnbias.errors import NNBiasError
from nnbias.spec import NetworkSpec


def cube(n, bias=True, encoding="01"):
    return NetworkSpec(n, (), prior="uniform", sigma_w=1.0, sigma_b=1 / math.sqrt(n),
                       bias=bias, encoding=encoding)


def test_two_input_cube_matches_published_values():
    vols = {v.truth_table: v.exact for v in exact_volumes(cube(2))}
    assert vols["0001"] == Fraction(1, 48)  # AND
    assert vols["0111"] == Fraction(2, 48)  # OR
    assert vols["0000"] == vols["1111"] == Fraction(13, 48)
    assert vols["0110"] == vols["1001"] == 0  # XOR, XNOR


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("encoding", ["01", "pm1"])
def test_exact_volumes_sum_to_one(n, bias, encoding):
    vols = exact_volumes(cube(n, bias, encoding))
    assert sum(v.exact for v in vols) == 1
    gauss = exact_volumes(NetworkSpec(n, (), bias=bias, encoding=encoding, sigma_b=0.8))
    assert sum(v.probability for v in gauss) == pytest.approx(1, abs=1e-9)


def test_three_inputs_have_104_threshold_functions():
    assert sum(v.exact > 0 for v in exact_volumes(cube(3))) == 104


@pytest.mark.parametrize("prior", ["uniform", "gaussian"])
def test_theorem_4_1_exactly(prior):
    """No bias, symmetric prior, {0,1}^3: T is exactly uniform on {0..7}."""
    spec = cube(3, bias=False) if prior == "uniform" else NetworkSpec(3, (), bias=False)
    by_t = defaultdict(int)  # int + Fraction stays exact
    for v in exact_volumes(spec):
        by_t[v.truth_table.count("1")] += v.exact if prior == "uniform" else v.probability
    for t in range(8):
        assert by_t[t] == pytest.approx(1 / 8, abs=1e-9)
        if prior == "uniform":
            assert by_t[t] == Fraction(1, 8)
    assert by_t[8] == 0


def test_orthant_probability_against_genz_and_closed_forms():
    rng = np.random.default_rng(3)
    for _ in range(5):
        a = rng.normal(size=(4, 4))
        cov = a @ a.T + 0.3 * np.eye(4)
        sd = np.sqrt(np.diag(cov))
        corr = cov / np.outer(sd, sd)
        mine = orthant_probability(corr)
        genz = stats.multivariate_normal.cdf(np.zeros(4), np.zeros(4), corr, abseps=1e-7,
                                             releps=1e-7, maxpts=10**7)
        assert mine == pytest.approx(genz, abs=2e-6)
    # equicorrelated rho = 1/2: P = 1/(d+1)
    for d in (2, 3, 4):
        corr = np.full((d, d), 0.5) + 0.5 * np.eye(d)
        assert orthant_probability(corr) == pytest.approx(1 / (d + 1), abs=1e-10)


def test_gaussian_volumes_against_monte_carlo():
    spec = NetworkSpec(3, (), sigma_w=1.0, sigma_b=0.6)
    vols = {v.truth_table: v.probability for v in exact_volumes(spec)}
    rng = np.random.default_rng(0)
    m = 400_000
    w = rng.normal(size=(m, 3)) / math.sqrt(3)
    b = rng.normal(size=(m, 1)) * 0.6
    x = np.array([[(i >> (2 - j)) & 1 for j in range(3)] for i in range(8)])
    out = (w @ x.T + b > 0).astype(int)
    codes = out @ (1 << np.arange(7, -1, -1))
    counts = np.bincount(codes, minlength=256)
    for code in range(256):
        p = vols[format(code, "08b")]
        se = math.sqrt(max(p * (1 - p), 1e-12) / m)
        assert abs(counts[code] / m - p) < 5 * se + 1e-6


def test_volume_errors():
    with pytest.raises(NNBiasError, match="inputs=4"):
        exact_volumes(cube(4))
    with pytest.raises(NNBiasError, match="perceptron"):
        exact_volumes(NetworkSpec(2, (3,)))
