"""The two-sample energy test (Székely & Rizzo 2004) by permutations, on the samples' device.

Why not ``dcor.homogeneity.energy_test``: dcor 0.7 with array-api-compat >= 1.5 takes its
broadcast path for NumPy input (``_can_be_numpy_double`` compares the compat namespace with
``numpy`` and is never true), which holds an (n + m) x (n + m) x d array: 131 GB for the
``posterior`` experiment's paper scale (4000 pooled networks, 1025 incoming weights), 2.3 GB
peak for 1000 x 257 (measured). Here the pooled distance matrix is the only quadratic buffer,
and every permutation's statistic comes from one matrix product with the group labels.
The statistic and the p-value convention are dcor's (tests/test_energy.py compares them).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from nnbias.engines.memory import check_gram_fits
from nnbias.errors import check_int, require

PERMUTATION_BLOCK = 256  # permutations whose labels are multiplied with the distances at once


class EnergyTest(NamedTuple):
    distance: float  # the energy distance 2 E|X - Y| - E|X - X'| - E|Y - Y'| (V-statistic)
    statistic: float  # n m / (n + m) times the distance: dcor's test statistic
    p_value: float  # (1 + #{permuted statistic > observed}) / (1 + permutations)


def _distances(labels: torch.Tensor, d: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Energy distance of each row of 0/1 ``labels`` (1: the first sample) under distances ``d``."""
    first = labels
    second = 1 - labels
    d_first, d_second = first @ d, second @ d
    within_first = (d_first * first).sum(1) / n**2
    within_second = (d_second * second).sum(1) / m**2
    between = (d_first * second).sum(1) / (n * m)
    return 2 * between - within_first - within_second


def energy_test(x: torch.Tensor, y: torch.Tensor, permutations: int, seed: int) -> EnergyTest:
    """Test "x and y (rows are observations) come from one distribution" with ``permutations``
    random relabellings of the pooled sample, drawn from ``seed`` (on the CPU, so a device gives the
    same test); distances and statistics are computed on the samples' device."""
    require(x.ndim == 2 and y.ndim == 2 and x.shape[1] == y.shape[1],
            f"samples of shapes {tuple(x.shape)} and {tuple(y.shape)} are not allowed; expected (n, d) "
            "and (m, d) with the same d")
    n, m = len(x), len(y)
    require(n >= 1 and m >= 1, f"samples of {n} and {m} observations are not allowed; expected >= 1 each")
    check_int("permutations", permutations, minimum=0)
    pooled = torch.cat([x, y]).double()
    check_gram_fits("pooled sample", n + m, n + m, torch.float64, pooled.device)
    d = torch.cdist(pooled, pooled, compute_mode="donot_use_mm_for_euclid_dist")  # exact near 0
    observed = torch.zeros(1, n + m, dtype=d.dtype, device=d.device)
    observed[0, :n] = 1
    energy = float(_distances(observed, d, n, m)[0])
    generator = torch.Generator().manual_seed(seed)  # on the CPU: the same test on every device
    exceed = 0
    for start in range(0, permutations, PERMUTATION_BLOCK):
        k = min(PERMUTATION_BLOCK, permutations - start)
        order = torch.rand(k, n + m, generator=generator, dtype=torch.float64).argsort(1)
        labels = (order < n).to(d)  # a uniform random choice of which n observations are "x"
        exceed += int((_distances(labels, d, n, m) > energy).sum())
    return EnergyTest(energy, n * m / (n + m) * energy, (exceed + 1) / (permutations + 1))
