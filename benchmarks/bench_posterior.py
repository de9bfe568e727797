"""Benchmark of posterior sampling: ``python benchmarks/bench_posterior.py [width] [wanted] [loop_draws]``.

``engines.bayes.rejection_posterior`` draws and evaluates K prior networks at
once (stacked tensors, one batched pass per chunk) and keeps those that fit S.
The baseline is the same sampler one network at a time (chunk = 1: a draw,
a forward pass and a test per network, as a per-network loop would do), run
here on the same task, so the ratio is measured, not assumed. Also Langevin
posterior steps per second for K stacked chains against one chain.
"""

import sys
import time

import torch

from nnbias.engines.bayes import langevin_posterior, rejection_posterior
from nnbias.engines.ensemble import sample_ensemble
from nnbias.experiments.posterior import load_task
from nnbias.spec import NetworkSpec


def main(width: int = 64, wanted: int = 200, loop_draws: int = 3000) -> None:
    torch.set_num_threads(2)
    task = load_task("bool7-0011-s8", 0)
    x, y = task.x_train.float(), task.y_train.float()
    spec = NetworkSpec(task.dim, (width, width), "relu", parametrization="ntk")
    start = time.perf_counter()
    stacked = rejection_posterior(spec, x, y, wanted, seed=0, max_draws=10**8)
    stacked_s = time.perf_counter() - start
    start = time.perf_counter()
    loop = rejection_posterior(spec, x, y, 10**9, seed=0, max_draws=loop_draws, chunk=1)
    loop_s = time.perf_counter() - start
    fast, slow = stacked.draws / stacked_s, loop.draws / loop_s
    print(f"rejection posterior, {spec.describe()}, |S| = {len(y)}, acceptance {stacked.acceptance:.4f}")
    print(f"stacked (chunks of 4096)   {fast:12,.0f} prior draws/s  {fast * stacked.acceptance:10,.1f} "
          "posterior samples/s")
    print(f"one network at a time      {slow:12,.0f} prior draws/s  {slow * stacked.acceptance:10,.1f} "
          "posterior samples/s")
    print(f"ratio {fast / slow:.1f}x")
    chains, steps = 256, 50
    nets = sample_ensemble(spec, chains, torch.Generator().manual_seed(0))
    start = time.perf_counter()
    langevin_posterior(nets, x, y, 0.01, 0.05, steps)
    many_s = time.perf_counter() - start
    one = sample_ensemble(spec, 1, torch.Generator().manual_seed(0))
    start = time.perf_counter()
    for _ in range(8):
        langevin_posterior(one, x, y, 0.01, 0.05, steps)
    one_s = (time.perf_counter() - start) / 8
    print(f"Langevin, {steps} steps: {chains} stacked chains {chains * steps / many_s:10,.0f} chain-steps/s; "
          f"one chain {steps / one_s:10,.0f} chain-steps/s; ratio {chains * one_s / many_s:.1f}x")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
