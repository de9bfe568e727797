"""Benchmark of the two-sample energy test: ``python benchmarks/bench_energy.py [n] [d] [permutations]``.

``estimators.energy.energy_test`` (the ``posterior`` experiment's weight-space test) against
``dcor.homogeneity.energy_test`` on the same samples, each in a fresh process so that its peak
resident memory is its own: seconds and peak RSS of both, their ratios, and the two statistics.
Defaults: the small scale's widest cell (400 posterior and 400 prior networks, 257 incoming weights).
"""

import multiprocessing
import resource
import sys
import time


def _measure(which: str, n: int, d: int, permutations: int, answer) -> None:
    import torch

    torch.set_num_threads(2)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randn(n, d, generator=g, dtype=torch.float64) + 0.05
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    if which == "nnbias":
        from nnbias.estimators.energy import energy_test

        result = energy_test(x, y, permutations, seed=0)
        statistic, p_value = result.statistic, result.p_value
    else:
        from dcor.homogeneity import energy_test

        energy_test(x[:4].numpy(), y[:4].numpy())  # numba compiles at first call: not timed
        start = time.perf_counter()
        result = energy_test(x.numpy(), y.numpy(), num_resamples=permutations, random_state=0)
        statistic, p_value = float(result.statistic), float(result.pvalue)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base  # KiB on Linux
    answer.put((seconds, peak / 2**20, statistic, p_value))


def measure(which: str, n: int, d: int, permutations: int) -> tuple[float, float, float, float]:
    context = multiprocessing.get_context("spawn")
    answer = context.Queue()
    child = context.Process(target=_measure, args=(which, n, d, permutations, answer))
    child.start()
    result = answer.get()
    child.join()
    return result


def main(n: int = 400, d: int = 257, permutations: int = 200) -> None:
    ours = measure("nnbias", n, d, permutations)
    theirs = measure("dcor", n, d, permutations)
    print(f"energy test, {n} + {n} observations in {d} dimensions, {permutations} permutations")
    for name, (seconds, gib, statistic, p_value) in (("nnbias", ours), ("dcor", theirs)):
        print(f"{name:7s} {seconds:8.2f} s  peak RSS +{gib:6.2f} GiB  statistic {statistic:.10g}  "
              f"p {p_value:.3f}")
    memory = theirs[1] / max(ours[1], 1e-3)
    print(f"ratio (dcor / nnbias): time {theirs[0] / ours[0]:.1f}x, memory {memory:.1f}x; "
          f"statistics differ by {abs(ours[2] - theirs[2]) / abs(theirs[2]):.1e} (relative)")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
