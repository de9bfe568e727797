"""Samples from the posterior over a network's parameters, K networks at once.

Two samplers of one spec's posterior given a training set S:

* ``rejection_posterior``: the prior conditioned on fitting S exactly (P_B of
  Valle-Pérez et al. and Mingard et al.): K prior draws evaluated in one batched
  pass, those whose signs agree with S kept. Exact, and affordable while the
  acceptance rate P(S) is not tiny (Boolean tasks with |S| of order 10).
* ``langevin_posterior``: the Gibbs posterior exp(-L/T) prior with L the mean
  loss over S, by unadjusted Langevin dynamics started at prior draws (the
  engine's ``langevin`` optimizer). With the NTK parametrization the trained
  parameters are the unit Gaussian draws themselves, so a weight decay of T
  makes the engine's stationary density exp(-(L + T |p|^2 / 2) / T) exactly
  exp(-L/T) N(0, I); other parametrizations or priors would need per-tensor
  decays and are refused.

``gibbs_weights`` gives the same Gibbs posterior by reweighting prior draws
(self-normalised importance sampling), the exact reference Langevin's
discretisation bias is measured against.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from nnbias.engines.ensemble import Ensemble, prior_scales, sample_ensemble
from nnbias.engines.memory import check_fits
from nnbias.engines.sampler import chunk_seed
from nnbias.engines.training import TrainConfig, per_network_loss, train
from nnbias.errors import check_int, check_positive, check_seed, require
from nnbias.spec import NetworkSpec

DRAW_CHUNK = 4096  # prior networks drawn and tried against S at once


def select(nets: Ensemble, keep: torch.Tensor) -> Ensemble:
    """The networks of ``nets`` where ``keep`` (a (K,) bool mask or index tensor) says."""
    return Ensemble(nets.spec, [w[keep] for w in nets.weights],
                    [None if b is None else b[keep] for b in nets.biases], nets.scales, nets.bias_scales)


def gather(parts: Iterable[Ensemble], capacity: int, spec: NetworkSpec, dtype: torch.dtype = torch.float32,
           device: str | torch.device = "cpu") -> Ensemble:
    """The networks of ``parts`` (of ``spec``; at most ``capacity`` in all) in order, in tensors allocated
    once: each part is copied in as it comes and can then be freed, where joining a list of parts holds
    every part and the result at once (25 GB for the paper's 2000 posterior networks of width 1024,
    against 8.5 GB)."""
    check_fits(capacity, spec.n_params, dtype, device, f"{spec.describe()} gathered")
    weights = [torch.empty(capacity, fan_out, fan_in, dtype=dtype, device=device)
               for fan_in, fan_out in spec.layer_sizes]
    biases = [torch.empty(capacity, fan_out, dtype=dtype, device=device) if spec.bias else None
              for _, fan_out in spec.layer_sizes]
    filled = 0
    for part in parts:
        k = min(part.size, capacity - filled)
        for dest, src in zip([*weights, *biases], [*part.weights, *part.biases], strict=True):
            if dest is not None:
                dest[filled:filled + k] = src[:k]
        filled += k
        del part, src  # freed before the next part is made
    return Ensemble(spec, [w[:filled] for w in weights], [None if b is None else b[:filled] for b in biases],
                    *prior_scales(spec))


def fit_mask(outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(...,) bool: which rows of outputs (..., N) have the signs of the 0/1 labels y (N,)."""
    return ((outputs > 0) == (y.reshape(-1) > 0.5)).all(-1)


def fits(nets: Ensemble, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(K,) bool: the networks whose outputs have the signs of the 0/1 labels y on x."""
    with torch.no_grad():
        return fit_mask(nets.forward(x), y)


@dataclass
class RejectionSample:
    """Accepted networks (the first ``wanted`` in draw order) and how many prior draws it took."""

    nets: Ensemble
    draws: int

    @property
    def acceptance(self) -> float:
        return self.nets.size / self.draws


def prior_chunks(spec: NetworkSpec, draws: int, seed: int, chunk: int = DRAW_CHUNK,
                 dtype: torch.dtype = torch.float32, device: str = "cpu") -> Iterator[Ensemble]:
    """``draws`` prior networks in chunks of ``chunk``, chunk c from ``device``'s generator seeded by
    (seed, c): the networks depend on the seed and the kind of device alone, however many chunks a
    caller consumes. On the device, as rejection evaluates each draw once: drawn on the CPU and copied,
    a GPU would wait on the CPU's generator for every parameter it evaluates."""
    draws = check_int("draws", draws, minimum=1)
    chunk, seed = check_int("chunk", chunk, minimum=1), check_seed(seed)
    for index, start in enumerate(range(0, draws, chunk)):
        generator = torch.Generator(device=device).manual_seed(chunk_seed(seed, index))
        yield sample_ensemble(spec, min(chunk, draws - start), generator, dtype, device)


def rejection_posterior(spec: NetworkSpec, x: torch.Tensor, y: torch.Tensor, wanted: int, seed: int,
                        max_draws: int, chunk: int = DRAW_CHUNK, dtype: torch.dtype = torch.float32,
                        device: str = "cpu") -> RejectionSample:
    """Prior draws conditioned on fitting (x, y): chunks of ``chunk`` networks, chunk c drawn from the
    generator seeded by (seed, c) (see :func:`prior_chunks`), until ``wanted`` fit or ``max_draws`` were
    drawn; the kept networks depend on the seed and the kind of device alone (bit-identical reruns).
    Fewer than ``wanted`` come back when the budget runs out, so a caller can say that the acceptance
    rate was too low. The draws are drawn and evaluated on ``device``."""
    wanted = check_int("wanted", wanted, minimum=1)
    max_draws = check_int("max_draws", max_draws, minimum=1)
    x, y = x.to(device), y.to(device)
    draws = 0

    def accepted() -> Iterator[Ensemble]:
        nonlocal draws
        found = 0
        for nets in prior_chunks(spec, max_draws, seed, chunk, dtype, device):
            draws += nets.size
            ok = torch.nonzero(fits(nets, x, y))[:wanted - found, 0]
            found += len(ok)
            yield select(nets, ok)
            if found >= wanted:
                return

    nets = gather(accepted(), min(wanted, max_draws), spec, dtype, device)  # no more can fit than are drawn
    return RejectionSample(nets, draws)


def fit_count(spec: NetworkSpec, x: torch.Tensor, y: torch.Tensor, draws: int, seed: int,
              chunk: int = DRAW_CHUNK, device: str = "cpu") -> int:
    """How many of ``draws`` prior networks fit (x, y): P(S) = count / draws by rejection, from the
    same chunks :func:`rejection_posterior` draws, so the two agree on the same seed."""
    x, y = x.to(device), y.to(device)
    return sum(int(fits(nets, x, y).sum())
               for nets in prior_chunks(spec, draws, seed, chunk, device=device))


def check_unit_gaussian(spec: NetworkSpec) -> None:
    """Langevin's prior term assumes trained parameters ~ N(0, 1): the NTK parametrization's raw draws."""
    require(spec.prior == "gaussian" and spec.parametrization == "ntk",
            f"the Gibbs posterior samplers need prior='gaussian' and parametrization='ntk' (trained "
            f"parameters ~ N(0, 1)), not prior={spec.prior!r}, parametrization={spec.parametrization!r}")


def langevin_posterior(nets: Ensemble, x: torch.Tensor, y: torch.Tensor, temperature: float, lr: float,
                       steps: int, loss: str = "ce", generator: torch.Generator | None = None) -> Ensemble:
    """The networks ``nets`` (prior draws) after ``steps`` full-batch Langevin steps on
    exp(-L/T) N(0, I), L the mean ``loss`` over (x, y)."""
    check_unit_gaussian(nets.spec)
    temperature = check_positive("temperature", temperature)
    config = TrainConfig("langevin", lr, None, loss, check_int("steps", steps, minimum=1), "none",
                         weight_decay=temperature, temperature=temperature)
    fn, params = nets.functional()
    return nets.from_params(train(fn, params, x, y, config, generator).params)


def mean_losses(outputs: torch.Tensor, y: torch.Tensor, loss: str = "ce") -> np.ndarray:
    """(K,) each network's mean ``loss`` over (x, y) from its outputs (K, N) on x, as ``train`` reads
    the labels (0/1 labels are classes under mse too)."""
    y = y.reshape(1, -1).to(outputs.device, torch.float64)
    classes = bool(((y == 0) | (y == 1)).all())
    return per_network_loss(outputs.double(), y.expand_as(outputs), loss, classes).cpu().numpy()


def boltzmann_weights(losses: np.ndarray, temperature: float) -> np.ndarray:
    """Normalised weights exp(-L_k/T) / sum of prior draws k with mean losses L_k: reweighted, the
    draws sample the Gibbs posterior exp(-L/T) prior exactly in the limit of many draws."""
    log_w = -np.asarray(losses, float) / check_positive("temperature", temperature)
    w = np.exp(log_w - log_w.max())
    return w / w.sum()


def gibbs_weights(nets: Ensemble, x: torch.Tensor, y: torch.Tensor, temperature: float,
                  loss: str = "ce") -> np.ndarray:
    """``boltzmann_weights`` of prior draws ``nets`` on (x, y): the reference Langevin is judged by."""
    with torch.no_grad():
        return boltzmann_weights(mean_losses(nets.forward(x), y, loss), temperature)


def effective_sample_size(weights: np.ndarray) -> float:
    """Kish's effective sample size (sum w)^2 / sum w^2 of importance weights."""
    w = np.asarray(weights, float)
    return float(w.sum() ** 2 / (w**2).sum())
