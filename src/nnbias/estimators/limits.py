"""What a spec's infinite-width limits predict on a task: the kernel predictors every experiment compares
finite networks with (NNGP posterior mean, NTK gradient flow at t = inf and at the networks' training
time, and the expected score of an infinitely wide network from a random initialisation)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nnbias.engines.kernels import KernelFn
from nnbias.estimators.gp import gp_posterior, ntk_predict
from nnbias.spec import NetworkSpec
from nnbias.tasks.datasets import Dataset


@dataclass
class KernelPredictions:
    """What the infinite-width limits predict on a task's test inputs."""

    means: dict[str, torch.Tensor]  # model -> (N_test,) predictor
    variance: torch.Tensor  # (N_test,) variance over initialisations of a network trained for t = train
    lr: float  # the learning rate of the finite networks (and of t = train)

    def scores(self, task: Dataset) -> dict[str, float]:
        """test_score of each mean predictor, and ``NTK net t=train``: the expected test score of an
        infinitely wide network drawn from the prior and trained for the same time, whose leftover
        initial function adds the variance (Lee et al. 2019) the mean predictor leaves out."""
        out = {m: float(task.test_score(p)[0]) for m, p in self.means.items()}
        out["NTK net t=train"] = float(task.expected_test_score(self.means["NTK t=train"], self.variance)[0])
        return out


def kernel_predictors(spec: NetworkSpec, task: Dataset, steps: int) -> KernelPredictions:
    """The spec's infinite-width predictions on the test inputs, and the learning rate.

    NNGP posterior mean, NTK gradient flow at t = inf, and NTK gradient flow
    after ``steps`` steps of sum-loss gradient descent with lr = 1 / lambda_max
    of the training NTK (the largest step that is stable for every width),
    which is the lr the finite networks are then trained with. Everything is computed where the
    task's tensors are (see ``Dataset.to``).
    """
    device = task.x_train.device

    def kfn(*inputs: torch.Tensor, kind: str):
        out = KernelFn(spec)(*inputs, kind=kind, device=device)
        return tuple(k.to(device) for k in out) if kind == "both" else out.to(device)

    y = task.signed_targets(task.y_train)
    k_tr, t_tr = kfn(task.x_train, kind="both")
    k_te, t_te = kfn(task.x_test, task.x_train, kind="both")
    lr = stable_lr(t_tr)
    nngp, _ = gp_posterior(k_tr, y, k_te, noise=1e-8 * float(k_tr.diagonal().mean()))
    ntk_inf, _ = ntk_predict(t_tr, y, t_te)
    ntk_t, cov = ntk_predict(t_tr, y, t_te, t=steps * lr, lr=1.0, nngp_train=k_tr, nngp_cross=k_te,
                             nngp_test=kfn(task.x_test, kind="nngp"))
    return KernelPredictions({"NNGP": nngp[:, 0], "NTK t=inf": ntk_inf[:, 0], "NTK t=train": ntk_t[:, 0]},
                             cov.diagonal(), lr)


def stable_lr(ntk_train: torch.Tensor) -> float:
    """1 / lambda_max of a training NTK: the largest sum-loss gradient-descent step that is stable at
    every width (the infinite-width NTK bounds the finite ones' spectra in expectation)."""
    return 1.0 / float(torch.linalg.eigvalsh(ntk_train).max())
