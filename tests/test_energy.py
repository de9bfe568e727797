"""The two-sample energy test against dcor (a second implementation) and against the exact permutation
p-value of samples small enough to enumerate every relabelling."""

import itertools
import math

import numpy as np
import pytest
import torch

from nnbias.errors import NNBiasError
from nnbias.estimators.energy import energy_test


def _samples(n: int, m: int, d: int, shift: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=g, dtype=torch.float64),
            torch.randn(m, d, generator=g, dtype=torch.float64) + shift)


@pytest.mark.parametrize(("n", "m", "d", "shift"), [(30, 30, 1, 0.0), (40, 25, 8, 0.3), (12, 50, 129, 1.0)])
def test_statistic_is_dcors(n, m, d, shift):
    """Imported here, not at module level: dcor compiles numba gufuncs at import, and test processes that
    compile them at once race on numba's cache (numba issue 10128); one module runs on one process."""
    from dcor.homogeneity import energy_test as dcor_energy_test

    x, y = _samples(n, m, d, shift, seed=n + d)
    ours = energy_test(x, y, 0, seed=0)
    reference = dcor_energy_test(x.numpy(), y.numpy(), num_resamples=0)
    assert ours.statistic == pytest.approx(float(reference.statistic), rel=1e-10)
    assert ours.distance == pytest.approx(ours.statistic * (n + m) / (n * m), rel=1e-12)
    assert ours.p_value == 1.0  # no permutations: (0 + 1) / (0 + 1), dcor's convention
    assert float(reference.pvalue) == 1.0


def _exact_p_value(x: np.ndarray, y: np.ndarray) -> float:
    """P(permuted energy distance > observed) over every split of the pooled sample, by loops."""
    pooled = np.concatenate([x, y])
    n, m = len(x), len(y)
    dist = np.array([[math.dist(a, b) for b in pooled] for a in pooled])

    def energy(first: tuple[int, ...]) -> float:
        second = [i for i in range(n + m) if i not in first]
        return (2 * dist[np.ix_(first, second)].mean() - dist[np.ix_(first, first)].mean()
                - dist[np.ix_(second, second)].mean())

    observed = energy(tuple(range(n)))
    splits = list(itertools.combinations(range(n + m), n))
    return sum(energy(s) > observed + 1e-12 for s in splits) / len(splits)


@pytest.mark.parametrize("shift", [0.0, 0.8])
def test_p_value_converges_to_the_exact_permutation_p_value(shift):
    x, y = _samples(5, 4, 2, shift, seed=3)
    exact = _exact_p_value(x.numpy(), y.numpy())  # 126 splits
    permutations = 20_000
    test = energy_test(x, y, permutations, seed=1)
    sd = math.sqrt(max(exact * (1 - exact), 1e-4) / permutations)
    assert abs(test.p_value - exact) < 5 * sd + 1 / permutations


def test_null_p_values_are_uniform_and_a_shift_is_seen():
    from scipy import stats

    p_null = [energy_test(*_samples(40, 40, 3, 0.0, seed), 199, seed).p_value for seed in range(60)]
    assert stats.kstest(p_null, "uniform").pvalue > 1e-3
    assert energy_test(*_samples(200, 200, 3, 0.5, seed=7), 199, seed=0).p_value == 1 / 200


def test_the_same_seed_gives_the_same_test_and_another_a_different_p_value():
    x, y = _samples(30, 30, 4, 0.1, seed=5)
    assert energy_test(x, y, 500, seed=2) == energy_test(x, y, 500, seed=2)
    assert energy_test(x, y, 500, seed=2).p_value != energy_test(x, y, 500, seed=3).p_value


def test_bad_samples_are_refused_in_one_line():
    x, y = _samples(5, 5, 3, 0.0, seed=0)
    for a, b, match in [(x, y[:, :2], "same d"), (x[0], y, r"\(n, d\)"), (x[:0], y, ">= 1 each")]:
        with pytest.raises(NNBiasError, match=match):
            energy_test(a, b, 10, seed=0)
    with pytest.raises(NNBiasError, match="permutations=-1"):
        energy_test(x, y, -1, seed=0)
    big = torch.zeros(2_000_000, 1, dtype=torch.float64)  # a 32 TB distance matrix
    with pytest.raises(NNBiasError, match="pooled sample=4000000 is not allowed"):
        energy_test(big, big, 10, seed=0)
