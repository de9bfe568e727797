"""Benchmark of linearised training: ``python benchmarks/bench_linearised.py [width] [steps]``.

The gap experiment trains each network's linearisation f0 + J (p - p0) by
full-batch gradient descent. ``train_gd(..., linearised=True)`` does it in
function space (T residual updates with the empirical NTK, one vjp); the
straightforward way is T optimizer steps on ``linearise(fn, p0)`` (a jvp and a
backward pass per step). Both run here on the same networks, same lr and
steps; the script prints both times, the ratio, and how far apart the
resulting parameters are (they are the same iterates up to rounding).
"""

import sys
import time

import torch

from nnbias.engines.ensemble import sample_ensemble
from nnbias.engines.training import TrainConfig, linearise, train, train_gd
from nnbias.estimators.limits import kernel_predictors
from nnbias.experiments.gap import LADDER
from nnbias.spec import NetworkSpec


def main(width: int = 1024, steps: int = 200, networks: int = 3) -> None:
    task = LADDER["parity-k2"](0)
    y = task.signed_targets(task.y_train)
    spec = NetworkSpec(task.dim, (width,), "relu", sigma_w=2**0.5, sigma_b=0.1, parametrization="ntk")
    nets = sample_ensemble(spec, networks, torch.Generator().manual_seed(0), dtype=torch.float64)
    lr = kernel_predictors(spec, task, steps).lr  # 1 / lambda_max of the NTK, as the gap experiment uses
    start = time.perf_counter()
    fast = train_gd(nets, task.x_train, y, lr, steps, linearised=True)
    fast_s = time.perf_counter() - start
    fn, params = nets.functional()
    start = time.perf_counter()
    slow = train(linearise(fn, params), params, task.x_train, y,
                 TrainConfig("sgd", lr * len(y), None, "mse", steps, "none"))
    slow_s = time.perf_counter() - start
    gap = max(float((a - b).abs().max()) for a, b in zip(fast.params, slow.params, strict=True))
    print(f"{networks} networks {task.dim}-{width}-1, |S| = {len(y)}, {steps} full-batch GD steps")
    print(f"function-space linearised GD   {fast_s:8.2f} s")
    print(f"jvp-linearised network + GD    {slow_s:8.2f} s")
    print(f"ratio {slow_s / fast_s:.1f}x; largest parameter difference {gap:.2e}; "
          f"final losses {fast.losses.tolist()} vs {slow.losses.tolist()}")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
