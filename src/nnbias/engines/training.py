"""Train K networks of one spec at once (stacked weights, one batched computation).

Full-batch gradient descent on L_k = 1/2 sum_i (f_k(x_i) - y_i)^2 for each
network k, in the spec's parametrization, i.e. the discrete version of the
gradient flow whose infinite-width limit is the NTK predictor of
``nnbias.estimators.gp.ntk_predict`` (with the same learning rate and
t = steps * lr). A network whose loss becomes NaN/inf is frozen and reported
as diverged instead of crashing the run.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nnbias.engines.ensemble import Ensemble
from nnbias.errors import check_int, check_positive


@dataclass
class TrainResult:
    params: list[torch.Tensor]
    fn: object
    losses: torch.Tensor  # (K,) final training loss per network
    diverged: torch.Tensor  # (K,) bool

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """(K, N) outputs of the trained networks."""
        with torch.no_grad():
            return self.fn(self.params, x)


def train_gd(nets: Ensemble, x: torch.Tensor, y: torch.Tensor, lr: float, steps: int) -> TrainResult:
    """Full-batch gradient descent of all K networks for ``steps`` steps with learning rate ``lr``."""
    lr = check_positive("lr", lr)
    steps = check_int("steps", steps, minimum=0)
    fn, params = nets.functional()
    params = [p.detach().clone().requires_grad_(True) for p in params]
    x = x.to(params[0].dtype)
    y = y.to(params[0].dtype).reshape(1, -1)
    alive = torch.ones(nets.size, dtype=torch.bool)
    for _ in range(steps):
        residual = fn(params, x) - y
        loss = 0.5 * (residual**2).sum(1)  # (K,)
        bad = ~torch.isfinite(loss)
        if bad.any():
            alive &= ~bad
        grads = torch.autograd.grad(torch.where(alive, loss, 0.0).sum(), params)
        with torch.no_grad():
            for p, g in zip(params, grads, strict=True):
                mask = alive.view(-1, *([1] * (p.ndim - 1))).to(p.dtype)
                p -= lr * torch.nan_to_num(g) * mask
    with torch.no_grad():
        final = 0.5 * ((fn(params, x) - y) ** 2).sum(1)
    return TrainResult([p.detach() for p in params], fn, final, ~alive | ~torch.isfinite(final))
