"""Accuracy and speed of tanh's kernels: the erf expansion (the default) beside Gauss-Hermite.

``python benchmarks/tanh_kernel_accuracy.py`` prints, for pre-activation variances 0.5 .. 128 and
correlations 0.3, 0.9 and 1, the relative error of E[tanh(u) tanh(v)] (NNGP) and
E[tanh'(u) tanh'(v)] (the NTK's factor) against scipy's adaptive ``dblquad`` (to 1e-13), for
nnbias' default (tanh as 32 erfs, closed form term by term) and for 2-D Gauss-Hermite with 96 and
300 nodes; then the time of one 256 x 256 block by the expansion and by 96 nodes. tanh's poles
at +-i pi/2 make Gauss-Hermite converge only like exp(-c sqrt(nodes) / std), so its error grows
with the variance.
"""

from __future__ import annotations

import math
import time

import torch

from nnbias.engines.kernels import adaptive_expectation, dual_fn, tanh_as_erfs


def expansion_error() -> tuple[float, float]:
    """Largest |error| of the erf expansion of tanh and of tanh' on a grid 7x finer than the fit's
    (and offset from it), out to x = 3000 where every erf is 1."""
    import numpy as np
    from scipy.special import erf

    a, b = tanh_as_erfs()
    x = np.concatenate([np.linspace(0, 12, 200_003), np.linspace(12, 3000, 100_003)])
    phi = erf(np.outer(x, b)) @ a
    dphi = (2 / math.sqrt(math.pi)) * np.exp(-np.outer(x, b) ** 2) @ (a * b)
    return float(np.abs(phi - np.tanh(x)).max()), float(np.abs(dphi - (1 - np.tanh(x) ** 2)).max())


def main() -> None:
    phi_error, dphi_error = expansion_error()
    terms = len(tanh_as_erfs()[1])
    print(f"tanh as {terms} erfs: max |error| {phi_error:.1e} (tanh), {dphi_error:.1e} (tanh')\n")
    duals = {"erf expansion": dual_fn("tanh"),
             "Gauss-Hermite 96": dual_fn("tanh", "quadrature", 96),
             "Gauss-Hermite 300": dual_fn("tanh", "quadrature", 300)}
    print("relative error (NNGP / NTK factor) against dblquad")
    print("variance   rho  " + "".join(f"{name:>26}" for name in duals))
    for variance in (0.5, 2.0, 8.0, 32.0, 128.0):
        for rho in (0.3, 0.9, 1.0):
            value = adaptive_expectation(math.tanh, variance, rho)
            deriv = adaptive_expectation(lambda x: 1 - math.tanh(x) ** 2, variance, rho)
            k = torch.tensor([variance], dtype=torch.float64)
            cells = []
            for dual in duals.values():
                v, d = dual(k, k, k * rho, True)
                cells.append(f"{abs(float(v[0]) - value) / abs(value):.1e} / "
                             f"{abs(float(d[0]) - deriv) / abs(deriv):.1e}")
            print(f"{variance:8g}  {rho:4g}  " + "".join(f"{c:>26}" for c in cells))
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    k11 = 0.5 + torch.rand(256, 1, dtype=torch.float64, generator=generator)
    k22 = 0.5 + torch.rand(1, 256, dtype=torch.float64, generator=generator)
    k12 = (2 * torch.rand(256, 256, dtype=torch.float64, generator=generator) - 1) * (k11 * k22).sqrt()
    print("\none 256 x 256 block, NNGP and NTK factor, 1 thread")
    seconds = {}
    for name, dual in list(duals.items())[:2]:  # 300 nodes: ~10x the 96 nodes' minutes
        start = time.perf_counter()
        dual(k11, k22, k12, True)
        seconds[name] = time.perf_counter() - start
        print(f"{name:<20} {seconds[name] * 1e3:9.1f} ms  "
              f"({seconds[name] / seconds['erf expansion']:.1f}x the erf expansion)")


if __name__ == "__main__":
    main()
