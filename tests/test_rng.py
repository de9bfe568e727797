"""The counter-based generator against independent references: SplitMix64's published outputs,
numpy's libm Box-Muller on the same bits, and the distributions it must sample."""

import numpy as np
import pytest
from scipy import stats

from nnbias.engines.rng import fill_counter

GAMMA, MIX1, MIX2 = (np.uint64(c) for c in (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB))


def splitmix64(key: int, counters: np.ndarray) -> np.ndarray:
    """SplitMix64 (Steele et al. 2014) in numpy: output number counter + 1 of the stream seeded by key."""
    with np.errstate(over="ignore"):
        z = np.uint64(key) + (counters.astype(np.uint64) + np.uint64(1)) * GAMMA
        z = (z ^ (z >> np.uint64(30))) * MIX1
        z = (z ^ (z >> np.uint64(27))) * MIX2
    return z ^ (z >> np.uint64(31))


def test_reference_hash_is_splitmix64():
    # first outputs of Vigna's splitmix64.c seeded with 0
    first = [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]
    assert splitmix64(0, np.arange(3)).tolist() == first


def reference_pairs(kind: str, key: int, pairs: int) -> tuple[np.ndarray, np.ndarray]:
    """The documented transform in float64 with numpy's libm: radius from the high 32 bits, angle in
    [0, pi/4) from 29 low bits, a swap bit and two sign bits; uniforms from each half's top 24 bits."""
    z = splitmix64(key, np.arange(pairs))
    high, low = (z >> np.uint64(32)).astype(np.float64), (z & np.uint64(0xFFFFFFFF))
    if kind == "uniform":  # midpoints of 2^24 cells from the top 24 bits
        return tuple((2 * (half // 256) - 2**24 + 1) * 2.0**-24 for half in (high, low.astype(np.float64)))
    r = np.sqrt(-2 * np.log((high + 0.5) * 2.0**-32))
    angle = (low & np.uint64(0x1FFFFFFF)).astype(np.float64) * 2.0**-29 * np.pi / 4
    swap = (low >> np.uint64(31)).astype(bool)
    a = np.where(swap, np.sin(angle), np.cos(angle))
    b = np.where(swap, np.cos(angle), np.sin(angle))
    sign_a = np.where((low >> np.uint64(30)) & np.uint64(1), -1.0, 1.0)
    sign_b = np.where((low >> np.uint64(29)) & np.uint64(1), -1.0, 1.0)
    return r * a * sign_a, r * b * sign_b


@pytest.mark.parametrize("kind", ["gaussian", "uniform"])
def test_numbers_match_libm_on_the_same_bits(kind):
    """Float32 kernels, relative error < 1e-6 (~8 ulp) everywhere: near 0 and in the tails too."""
    n = 200_000  # an odd row: its last number is the first of one more pair
    out = fill_counter(np.empty((1, 2 * n + 1), np.float32), kind, 42, 0, n + 1)[0].astype(np.float64)
    first, second = reference_pairs(kind, 42, n + 1)
    for got, ref in ((out[:n], first[:n]), (out[n:2 * n], second[:n]), (out[2 * n:], first[n:])):
        assert np.all(np.abs(got - ref) <= 1e-6 * np.abs(ref))


def test_rows_take_their_own_block_of_the_stream():
    """Row j of a fill is the stream from pair first + j*stride: batch splits change nothing."""
    whole = fill_counter(np.empty((5, 7), np.float32), "gaussian", 3, 10, 4)
    for j in range(5):
        alone = fill_counter(np.empty((1, 7), np.float32), "gaussian", 3, 10 + 4 * j, 4)
        assert np.array_equal(whole[j], alone[0])
    scaled = fill_counter(np.empty((5, 7), np.float32), "gaussian", 3, 10, 4, np.arange(7.0))
    assert np.allclose(scaled, whole * np.arange(7.0), rtol=1e-6)


def test_distributions():
    n = 1_000_000
    z = fill_counter(np.empty((1, n), np.float32), "gaussian", 7, 0, n)[0].astype(np.float64)
    assert stats.kstest(z, "norm").pvalue > 1e-3
    tail = np.mean(np.abs(z) > 3)  # 0.0027: the polynomials must not thin the tails
    assert abs(tail - 0.0026998) < 4 * np.sqrt(0.0027 / n)
    half = n // 2  # the two numbers of a pair are independent
    assert abs(np.corrcoef(z[:half] ** 2, z[half:] ** 2)[0, 1]) < 4 / np.sqrt(half)
    u = fill_counter(np.empty((1, n), np.float32), "uniform", 7, 0, n)[0]
    assert stats.kstest(u, "uniform", args=(-1, 2)).pvalue > 1e-3 and np.abs(u).max() < 1
    other = fill_counter(np.empty((1, n), np.float32), "gaussian", 8, 0, n)[0]
    assert abs(np.corrcoef(z, other)[0, 1]) < 4 / np.sqrt(n)


def test_extreme_bits():
    """The cells at both ends: uniforms stay inside (-1, 1); ln u keeps its relative accuracy where u
    is tiny (the Gaussian's tail, radius 6.8) and where u is within 2^-33 of 1 (radius ~ 1e-5)."""
    from nnbias.engines.rng import _centred, _log_unit

    edges = [0, 1, 255, 256, 2**31 - 1, 2**31, 2**32 - 2, 2**32 - 1]
    assert all(-1 < _centred(np.uint32(b)) < 1 for b in edges)
    assert _centred(np.uint32(0)) == -_centred(np.uint32(2**32 - 1))
    for b in edges:
        exact = np.log((b + 0.5) * 2.0**-32)
        assert abs(_log_unit(np.uint32(b)) - exact) <= 1e-6 * abs(exact)
