"""Distributions over functions on a test set E, given a training set S.

Three faces of one question (Mingard et al., JMLR 2021): which labelling of E
does a network that fits S produce?

* ``trained_functions``: P_SGD(f|S): K networks drawn from the prior and trained
  at once to 100 % training accuracy (``engines.training``); optionally only the
  last layer is trained, the cheap stand-in for the Bayesian posterior.
* ``Store.consistent_functions``: P_B(f|S) by rejection: the stored
  parameter-function map of the same spec on the whole hypercube, filtered to
  the functions that agree with S (so the sampler's runs are reused as they are).
* ``ep_log_posterior``: P_B(f|S) from the architecture's NNGP: the ratio of
  Gaussian orthant probabilities P(f on S and E) / P(labels on S), each by
  expectation propagation.

Functions on E are bit strings of length |E| (output > 0 for each test input
in order), counted by the same ``FunctionCounts`` as the parameter-function map.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from nnbias.engines.ensemble import sample_ensemble
from nnbias.engines.kernels import KernelFn
from nnbias.engines.sampler import FunctionCounts, chunk_seed
from nnbias.engines.training import TrainConfig, train
from nnbias.errors import require
from nnbias.estimators.ep import ep_log_probabilities, ep_log_probability
from nnbias.spec import NetworkSpec
from nnbias.tasks.boolean import sign_codes, strings_to_bits


@dataclass
class TrainedChunk:
    """Functions on E of the networks that fit S, and what happened to the others."""

    functions: FunctionCounts
    trained: int
    converged: int
    diverged: int
    epochs: int  # summed over the chunk's networks

    def stats(self) -> dict[str, int]:
        return {"trained": self.trained, "converged": self.converged, "diverged": self.diverged,
                "epochs": self.epochs}


def last_layer_mask(spec: NetworkSpec) -> list[bool]:
    """``trainable`` mask of the functional parameters (w0, b0, w1, b1, ...) for the readout only."""
    per_layer = 2 if spec.bias else 1
    n_params = per_layer * (spec.depth + 1)
    return [i >= n_params - per_layer for i in range(n_params)]


def trained_functions(spec: NetworkSpec, x_train: torch.Tensor, y_train: torch.Tensor,
                      x_test: torch.Tensor, config: TrainConfig, seed: int, chunk: int, size: int,
                      last_layer: bool = False, device: str = "cpu") -> TrainedChunk:
    """Chunk ``chunk`` of a P_SGD run: ``size`` networks from the prior, trained at once.

    The chunk's generator (seeded by (seed, chunk) alone) draws the initial
    parameters and then every network's minibatch order, so a chunk's result
    does not depend on which worker ran it or whether the run was resumed. The networks train on
    ``device``; the generator stays on the CPU, so every device draws the same networks (a GPU draws
    the minibatches from its own generator, seeded from this one: ``training.on_device``).
    """
    generator = torch.Generator().manual_seed(chunk_seed(seed, chunk))
    nets = sample_ensemble(spec, size, generator, device=device)
    fn, params = nets.functional()
    mask = last_layer_mask(spec) if last_layer else None
    result = train(fn, params, x_train, y_train, config, generator, trainable=mask)
    bits = (result.predict(x_test.to(params[0].dtype)) > 0)[result.converged].cpu().numpy()
    return TrainedChunk(FunctionCounts.from_packed(np.packbits(bits, axis=1)), size,
                        int(result.converged.sum()), int(result.diverged.sum()), int(result.epochs.sum()))


def ep_log_posterior(spec: NetworkSpec, x_train: torch.Tensor, y_train: torch.Tensor,
                     x_test: torch.Tensor, functions: list[str], device: str = "cpu") -> np.ndarray:
    """log P_B(f|S) under the spec's NNGP for each function f on E (a bit string of length |E|).

    log P(f|S) = log P(labels on S and f on E) - log P(labels on S), both Gaussian
    orthant probabilities of the NNGP's latent function, approximated by EP (all functions in one
    batch, on ``device``, as is the NNGP).
    """
    require(len(functions) > 0, "no functions given to score")
    m = x_train.shape[0]
    x = torch.cat([x_train, x_test]).double()
    kernel = KernelFn(spec)(x, kind="nngp", device=device).numpy()
    y_s = 2.0 * np.asarray(y_train, dtype=np.float64) - 1.0
    bits = strings_to_bits(functions)
    require(bits.shape[1] == x_test.shape[0],
            f"functions have {bits.shape[1]} bits but E has {x_test.shape[0]} inputs")
    log_s = ep_log_probability(kernel[:m, :m], y_s, device=device)
    labels = np.concatenate([np.broadcast_to(y_s, (len(bits), m)), 2.0 * bits - 1.0], axis=1)
    return ep_log_probabilities(kernel, labels, device=device) - log_s


def cube_indices(x: torch.Tensor, encoding: str = "01") -> np.ndarray:
    """Hypercube input numbers (first coordinate most significant) of rows of x."""
    bits = (x > 0).long() if encoding == "pm1" else x.round().long()
    require(bool(((bits == 0) | (bits == 1)).all()) and (encoding == "pm1" or bool((x == bits).all())),
            f"inputs are not points of the {encoding} hypercube")
    return sign_codes(bits)  # 0/1 coordinates read as the signs of a function's outputs
