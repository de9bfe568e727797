"""Experiment ``posterior``: do the hidden layers of a Bayesian network leave their prior?

The source discussion's second half: one side holds that in the infinite-width
limit the posterior of every hidden layer equals its prior (no Bayesian feature
learning; the readout alone adapts), so sampling and SGD must differ in
feature learning. Measured on a Boolean task small enough for exact posterior
samples, across widths, for K networks of one spec at a time:

* ``rejection``: the exact posterior P(theta | S), the prior conditioned on
  fitting S (``engines.bayes.rejection_posterior``);
* ``langevin``: the Gibbs posterior exp(-L_ce/T) prior by Langevin dynamics
  started at prior draws (a soft likelihood, for larger S);
* ``sgd-ntk`` / ``sgd-mup``: networks drawn from the prior and trained by
  full-batch gradient descent to fit S, in NTK parametrization and muP.

For each layer (hidden layers and the readout's output) the measure is the
centred kernel-target alignment of the layer's representation of all 2^n
inputs with the target function y (linear CKA between h and y,
``measures.features.linear_cka``; centring removes the constant mode that
dominates ReLU Gram matrices, which raised the signal to noise 1.6-2x over the
uncentred y^T K y / (||K|| ||y||^2) in a trial): its *gain* over the prior's
(posterior mean minus prior mean, Welch CI) says how much the layer moved
towards the task; for the readout the representation is the function itself.
Weight space: the incoming weights (and bias) of one neuron
per network, posterior against prior, by the energy distance with a
permutation test (``estimators.energy``; neurons are exchangeable, so neuron 0 is a
random one). The gain's width exponent is fitted to the raw gains with their errors
(``estimators.scaling.weighted_power_law``): a gain that has reached the noise
floor at large widths is a measurement, not a missing point.

Each (width, method) cell is stored when done; a rerun skips it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from nnbias.engines.bayes import (
    DRAW_CHUNK,
    fits,
    gather,
    langevin_posterior,
    rejection_posterior,
    select,
)
from nnbias.engines.ensemble import Ensemble, sample_ensemble
from nnbias.engines.memory import check_fits, training_numbers
from nnbias.engines.sampler import chunk_seed
from nnbias.engines.training import TrainConfig, train
from nnbias.errors import check_choice, check_device, check_int, check_positive, check_seed, check_sweeps
from nnbias.estimators import verdicts as v
from nnbias.estimators.energy import energy_test
from nnbias.estimators.scaling import weighted_power_law
from nnbias.executor import run_sweep
from nnbias.experiments.registry import check_task, named_task, scaled_settings
from nnbias.measures.features import kernel_distance, linear_cka
from nnbias.report import figures
from nnbias.spec import NetworkSpec
from nnbias.store import Store
from nnbias.tasks.boolean import hypercube
from nnbias.tasks.datasets import Dataset, boolean_task

TARGET = "0011" * 32  # f(x) = x_6 on 7 bits: a simple function, so P(S) allows rejection at |S| ~ 10
TASKS = {
    "bool7-0011-s8": lambda seed: boolean_task(7, TARGET, train=8, seed=seed),
    "bool7-0011-s10": lambda seed: boolean_task(7, TARGET, train=10, seed=seed),
}
METHODS = ("rejection", "langevin", "sgd-ntk", "sgd-mup")
READOUT = "readout"
DECIDE = "more samples per width or larger widths"
# stream offsets of one cell's generators: the reference prior and the starting draws of trained methods
PRIOR_STREAM, START_STREAM = 1, 2
# a cell draws, trains and measures its networks a chunk at a time, so that the paper's 2000 trained and
# 8000 prior networks of 7-1024-1024-1 fit in 24 GiB: a chunk holds at most CHUNK_BYTES and a multiple of
# 16 networks (drawn a chunk at a time from one generator, they are the networks of one draw: torch
# fills normals 16 at a time); a function of the spec alone, so the numbers do not depend on the machine.
# At the small scale every draw, training and measurement of a cell is one chunk.
CHUNK_BYTES = 4 << 30
PRODUCTS_AT_ONCE = 16  # networks whose width x width products (CKA, W^T W) are formed at once


@dataclass(frozen=True)
class PosteriorSettings:
    task: str = "bool7-0011-s8"
    widths: tuple[int, ...] = (8, 16, 32, 64, 128, 256)
    depth: int = 2
    methods: tuple[str, ...] = ("rejection", "sgd-ntk", "sgd-mup")  # langevin: ~1 min per width >= 128
    samples: int = 400  # posterior networks per (width, method)
    prior_samples: int = 1600  # the reference prior's networks (cheap: no conditioning)
    max_draws: int = 2_000_000  # prior draws rejection may spend per width
    temperature: float = 0.01  # Langevin's Gibbs posterior exp(-L/T), L the mean cross-entropy on S
    langevin_lr: float = 0.05
    langevin_steps: int = 400
    sgd_lr: float = 1.0  # full-batch gradient descent on the mean cross-entropy
    sgd_epochs: int = 2000
    permutations: int = 200  # energy test resamples
    sigma_w: float = 1.0
    sigma_b: float = 1.0
    device: str = "cpu"  # where networks are drawn into, conditioned, trained and measured
    seed: int = 0

    def __post_init__(self) -> None:
        check_sweeps(self)
        check_task(TASKS, self.task)
        for m in self.methods:
            check_choice("method", m, METHODS)
        for w in self.widths:
            check_int("width", w, minimum=1)
        for name in ("depth", "samples", "prior_samples", "max_draws", "langevin_steps", "sgd_epochs",
                     "permutations"):
            check_int(name, getattr(self, name), minimum=1)
        for name in ("temperature", "langevin_lr", "sgd_lr", "sigma_w"):
            check_positive(name, getattr(self, name))
        check_positive("sigma_b", self.sigma_b, allow_zero=True)
        check_seed(self.seed)
        check_device(self.device)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


PAPER = {"widths": (8, 16, 32, 64, 128, 256, 512, 1024), "samples": 2000, "prior_samples": 8000,
         "max_draws": 50_000_000,
         "permutations": 500, "methods": METHODS}


def settings_for(scale: str, **overrides: Any) -> PosteriorSettings:
    """``small`` (what ``reproduce`` runs) or ``paper`` (widths to 1024, 2000 posterior samples)."""
    return scaled_settings(PosteriorSettings, PAPER, scale, overrides)


def load_task(name: str, seed: int) -> Dataset:
    return named_task(TASKS, name, seed)


def cell_spec(task: Dataset, width: int, method: str, s: PosteriorSettings) -> NetworkSpec:
    return NetworkSpec(task.dim, (width,) * s.depth, "relu", sigma_w=s.sigma_w, sigma_b=s.sigma_b,
                       parametrization="mup" if method == "sgd-mup" else "ntk")


def chunk_size(per_network: int, most: int | None = None) -> int:
    """Networks in a chunk of CHUNK_BYTES at ``per_network`` bytes each: a multiple of 16, at least 16,
    at most ``most``."""
    k = CHUNK_BYTES // per_network if most is None else min(most, CHUNK_BYTES // per_network)
    return max(16, k // 16 * 16)


def measured_numbers(spec: NetworkSpec, inputs: int) -> int:
    """Numbers (of float32 size) a network holds while it is measured: its parameters, its hidden layers'
    activations on the inputs, their float64 copies and the output's, and a centred copy of the widest."""
    hidden = sum(spec.hidden)
    return spec.n_params + inputs * (hidden + 2 * (hidden + 1) + 2 * max(spec.hidden))


def _draws(spec: NetworkSpec, k: int, s: PosteriorSettings, width: int, stream: int,
           chunk: int) -> Iterator[Ensemble]:
    """The ``k`` networks of one of a cell's streams, ``chunk`` (a multiple of 16) at a time from one
    generator: the networks one draw of all ``k`` gives."""
    generator = torch.Generator().manual_seed(chunk_seed(s.seed, stream * 1_000_003 + width))
    for start in range(0, k, chunk):
        yield sample_ensemble(spec, min(chunk, k - start), generator, device=s.device)


def posterior_networks(task: Dataset, width: int, method: str, s: PosteriorSettings
                       ) -> tuple[Ensemble, dict[str, float]]:
    """The cell's networks that (are meant to) fit S, and how they were obtained; trained methods train a
    chunk of their networks at a time (each network's training does not depend on the others)."""
    spec = cell_spec(task, width, method, s)
    x, y = task.x_train.float(), task.y_train.float()
    if method == "rejection":
        sample = rejection_posterior(spec, x, y, s.samples, chunk_seed(s.seed, width), s.max_draws,
                                     chunk_size(4 * spec.n_params, DRAW_CHUNK), device=s.device)
        return sample.nets, {"draws": sample.draws, "acceptance": sample.acceptance}
    starts = _draws(spec, s.samples, s, width, START_STREAM, chunk_size(4 * training_numbers(spec, len(y))))
    if method == "langevin":
        generator = torch.Generator().manual_seed(chunk_seed(s.seed, width))
        nets = gather((langevin_posterior(start, x, y, s.temperature, s.langevin_lr, s.langevin_steps,
                                          generator=generator) for start in starts), s.samples, spec,
                      device=s.device)
        return nets, {"draws": s.samples, "acceptance": math.nan}
    config = TrainConfig("sgd", s.sgd_lr, None, "ce", s.sgd_epochs, "accuracy")
    converged: list[torch.Tensor] = []

    def trained() -> Iterator[Ensemble]:
        for start in starts:
            fn, params = start.functional()
            result = train(fn, params, x, y, config)
            converged.append(result.converged)
            part = select(start.from_params(result.params), result.converged)
            del start, fn, params, result  # before the next chunk is drawn: one chunk at a time, not two
            yield part

    nets = gather(trained(), s.samples, spec, device=s.device)
    return nets, {"draws": s.samples, "acceptance": float(torch.cat(converged).float().mean())}


def representations(nets: Ensemble, x: torch.Tensor) -> list[torch.Tensor]:
    """Each hidden layer's (K, width, N) representation of x, then the output's (K, 1, N)."""
    hidden: list[torch.Tensor] = []
    with torch.no_grad():
        out = nets.forward(x, hidden=hidden)
    return [h.double() for h in [*hidden, out.unsqueeze(1)]]


def in_batches(fn: Callable[..., torch.Tensor], *tensors: torch.Tensor) -> torch.Tensor:
    """``fn(*tensors)`` of per-network values, PRODUCTS_AT_ONCE networks (the leading index) at a time:
    its width x width temporaries (8 MiB a network at width 1024) would not fit for a whole chunk."""
    if not len(tensors[0]):
        return fn(*tensors)
    return torch.cat([fn(*(t[i:i + PRODUCTS_AT_ONCE] for t in tensors))
                      for i in range(0, len(tensors[0]), PRODUCTS_AT_ONCE)])


def top_eigenvalue(weights: torch.Tensor) -> torch.Tensor:
    """(K,) largest eigenvalue of W^T W / fan_out of each of K raw weight matrices (K, fan_out, fan_in):
    for N(0, 1) entries it converges to the Marchenko-Pastur edge (1 + sqrt(fan_in / fan_out))^2."""
    w = weights.double()
    return torch.linalg.eigvalsh(w.transpose(1, 2) @ w / w.shape[1])[:, -1]


def mp_edge(nets: Ensemble, layer: int) -> float:
    fan_out, fan_in = nets.weights[layer].shape[1:]
    return (1 + math.sqrt(fan_in / fan_out)) ** 2


def incoming(nets: Ensemble, layer: int) -> torch.Tensor:
    """(K, fan_in + 1) raw incoming weights and bias of neuron 0 of ``layer`` in each network."""
    w, b = nets.weights[layer][:, 0, :], nets.biases[layer]
    return (w if b is None else torch.cat([w, b[:, :1]], 1)).double()


@dataclass
class Measured:
    """Per layer (hidden layers, then the output) of one side's networks, measured chunk by chunk: each
    network's CKA with the target, the summed Gram matrices h^T h of groups of networks (``counts``
    each), the CKA of paired networks with their partners, and of the first networks the incoming
    weights, the top eigenvalue of W^T W (hidden layers) and, where kept, the representations (a list
    of chunks: one tensor of all would be a second copy, 4.2 GB at the paper's width 1024)."""

    align: list[torch.Tensor]
    grams: list[list[torch.Tensor]]
    counts: list[int]
    widths: list[int]
    pairs: list[torch.Tensor]
    incoming: list[torch.Tensor]
    eig: list[torch.Tensor]
    kept: list[list[torch.Tensor]]

    def gram(self, layer: int, group: int) -> torch.Tensor:
        """The group's empirical NNGP of the layer: h^T h / width averaged over its networks."""
        return self.grams[layer][group] / (self.counts[group] * self.widths[layer])


def rows_of(chunks: list[torch.Tensor], lo: int, hi: int) -> torch.Tensor:
    """Rows [lo, hi) of the chunks one after another, without joining them all."""
    out, offset = [], 0
    for part in chunks:
        a, b = max(lo - offset, 0), min(hi - offset, len(part))
        if b > a:
            out.append(part[a:b])
        offset += len(part)
    return torch.cat(out)


def measure(chunks: Iterable[Ensemble], cube: torch.Tensor, y: torch.Tensor, groups: list[tuple[int, int]],
            first: int, keep: bool, pair_from: int, partners: list[list[torch.Tensor]] | None) -> Measured:
    """``Measured`` of the networks ``chunks`` yields in turn, their first ``first`` networks' incoming
    weights and eigenvalues (and representations if ``keep``); networks [pair_from, pair_from + n) are
    paired with ``partners`` (per layer, the chunks of n representations) or, if None and ``keep``,
    with the first n of this side's kept ones."""
    layers: list[dict[str, list]] = []
    counts, widths, start = [0] * len(groups), [], 0
    for nets in chunks:
        stop, reps = start + nets.size, representations(nets, cube)
        if not layers:
            layers = [{"align": [], "grams": [[] for _ in groups], "pairs": [], "incoming": [], "eig": [],
                       "kept": []} for _ in reps]
            widths = [h.shape[1] for h in reps]
        head = slice(0, max(min(first, stop) - start, 0))
        for g, (lo, hi) in enumerate(groups):
            counts[g] += max(min(hi, stop) - max(lo, start), 0)
        for layer, (h, acc) in enumerate(zip(reps, layers, strict=True)):
            target = y.reshape(1, 1, -1).expand(len(h), 1, -1)
            acc["align"].append(in_batches(linear_cka, h, target))
            for g, (lo, hi) in enumerate(groups):
                part = h[max(lo - start, 0):max(min(hi, stop) - start, 0)]
                acc["grams"][g].append(torch.einsum("kwn,kwm->nm", part, part))
            if head.stop:  # (a view, even an empty one, would keep the whole chunk's tensor alive)
                acc["incoming"].append(incoming(nets, layer)[head].clone())
                if layer < len(reps) - 1:
                    acc["eig"].append(in_batches(top_eigenvalue, nets.weights[layer][head]))
                if keep:
                    acc["kept"].append(h if head.stop == len(h) else h[head].clone())
            partner = partners[layer] if partners is not None else acc["kept"]
            lo, hi = max(pair_from, start), min(pair_from + sum(map(len, partner)), stop)
            if hi > lo:
                acc["pairs"].append(in_batches(linear_cka, h[lo - start:hi - start],
                                               rows_of(partner, lo - pair_from, hi - pair_from)))
        start = stop
        del nets, reps, h  # before the next chunk is drawn: one chunk at a time, not two

    def joined(items: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(items) if items else torch.zeros(0, dtype=torch.float64)

    return Measured([joined(a["align"]) for a in layers],
                    [[functools.reduce(torch.add, g) for g in a["grams"]] for a in layers], counts, widths,
                    [joined(a["pairs"]) for a in layers], [joined(a["incoming"]) for a in layers],
                    [joined(a["eig"]) for a in layers], [a["kept"] for a in layers])


def cell_numbers(task: Dataset, width: int, s: PosteriorSettings) -> int:
    """Numbers (of float32 size) a cell surely holds at once: its posterior networks, the float64
    representations of as many prior networks kept to pair with them, and its largest chunk (prior
    networks drawn and tried against S, networks trained, or networks measured)."""
    spec, inputs, points = cell_spec(task, width, "sgd-ntk", s), 2**task.dim, len(task.y_train)
    measured = measured_numbers(spec, inputs)
    chunks = [min(chunk_size(4 * measured), s.prior_samples) * measured]
    if "rejection" in s.methods:
        chunks.append(min(chunk_size(4 * spec.n_params, DRAW_CHUNK), s.max_draws) * spec.n_params)
    if any(m != "rejection" for m in s.methods):
        trained = training_numbers(spec, points)
        chunks.append(min(chunk_size(4 * trained), s.samples) * trained)
    return s.samples * (spec.n_params + 2 * inputs * (sum(spec.hidden) + 1)) + max(chunks)


def posterior_cell(task: Dataset, width: int, method: str, s: PosteriorSettings) -> pd.DataFrame:
    """One row per layer: the alignment of posterior and prior networks with the target, the distance of
    the posterior's empirical NNGP from the prior's (beside the distance between two halves of the
    prior, the estimator's floor), the energy test, and the top eigenvalue of W^T W against the
    prior's and the Marchenko-Pastur edge. Networks are drawn, trained and measured a chunk at a time."""
    task = task.to(s.device)
    nets, how = posterior_networks(task, width, method, s)
    spec = cell_spec(task, width, method, s)
    cube = hypercube(task.dim).to(s.device)
    y = task.signed_targets(torch.tensor([float(c) for c in TARGET], device=s.device)).double()
    fit = float(fits(nets, task.x_train.float(), task.y_train.float()).float().mean()) if nets.size else 0.0
    with torch.no_grad():  # each network's error on the inputs outside S: what the posterior predicts
        errors = ((nets.forward(task.x_test.float()) > 0).double() != task.y_test.double()).double().mean(1)
    n, chunk = max(nets.size, 1), chunk_size(4 * measured_numbers(spec, len(cube)))
    # the prior's NNGP from two disjoint groups of the posterior's size: the posterior is compared with
    # the first, and the second with the first is the floor a posterior that were the prior would show;
    # the first n prior networks' representations are kept, to pair with the posterior's and the second's
    paired = 2 * n <= s.prior_samples
    prior = measure(_draws(spec, s.prior_samples, s, width, PRIOR_STREAM, chunk), cube, y,
                    [(0, n), (n, 2 * n)], n, paired, n, None)
    post = (measure((select(nets, torch.arange(i, min(i + chunk, nets.size), device=s.device))
                     for i in range(0, nets.size, chunk)), cube, y, [(0, nets.size)], nets.size, False, 0,
                    prior.kept if paired else [[]] * (s.depth + 1))
            if nets.size >= 2 else None)
    rows = []
    for layer in range(s.depth + 1):
        a, a0 = (post.align[layer] if post else torch.zeros(0)), prior.align[layer]
        distance = (float(kernel_distance(post.gram(layer, 0)[None], prior.gram(layer, 0)[None])[0])
                    if post else math.nan)
        floor = (float(kernel_distance(prior.gram(layer, 1)[None], prior.gram(layer, 0)[None])[0])
                 if paired else math.nan)
        # CKA of each posterior network's representation with an independent prior network's, beside the
        # CKA between two independent prior networks (the same in distribution if nothing moved)
        pair = float(post.pairs[layer].mean()) if post and paired else math.nan
        pair_prior = float(prior.pairs[layer].mean()) if paired else math.nan
        eig = ((float(top_eigenvalue(nets.weights[layer]).mean()) if post is None
                else float(post.eig[layer].mean()), float(prior.eig[layer].mean()), mp_edge(nets, layer))
               if layer < s.depth and nets.size else (math.nan,) * 3)
        if post:
            # against as many prior networks as there are posterior ones: the permutation test's cost
            # grows as the square of the pooled sample
            test = energy_test(post.incoming[layer], prior.incoming[layer][:nets.size], s.permutations,
                               chunk_seed(s.seed, width + layer))
            energy, p_value = test.distance, test.p_value
        else:
            energy = p_value = math.nan
        rows.append({"width": width, "method": method,
                     "layer": READOUT if layer == s.depth else f"layer {layer + 1}",
                     "networks": nets.size, "draws": int(how["draws"]), "acceptance": how["acceptance"],
                     "fit_share": fit, "test_error": float(errors.mean()) if nets.size else math.nan,
                     "test_error_sd": float(errors.std()) if nets.size > 1 else math.nan,
                     "align": float(a.mean()) if len(a) else math.nan,
                     "align_sd": float(a.std()) if len(a) > 1 else math.nan,
                     "prior_align": float(a0.mean()), "prior_align_sd": float(a0.std()),
                     "prior_networks": s.prior_samples, "energy": energy, "energy_p": p_value,
                     "kernel_distance": distance, "kernel_distance_floor": floor,
                     "cka_with_prior": pair, "cka_prior_pairs": pair_prior,
                     "top_eig": eig[0], "prior_top_eig": eig[1], "mp_edge": eig[2]})
    return pd.DataFrame(rows)


def with_gains(cells: pd.DataFrame) -> pd.DataFrame:
    """Each row's alignment gain over the prior with its Welch 95 % interval."""
    out = cells.copy()
    cis = [v.difference_interval(r.align, r.align_sd, r.networks, r.prior_align, r.prior_align_sd,
                                 r.prior_networks) for r in cells.itertuples()]
    out["gain"] = [c.estimate for c in cis]
    out["gain_lo"], out["gain_hi"] = [c.lo for c in cis], [c.hi for c in cis]
    return out


def fit_exponents(gains: pd.DataFrame) -> pd.DataFrame:
    """gain = a width^b per (method, layer), fitted to the raw gains with their standard errors."""
    rows = []
    for (method, layer), g in gains.groupby(["method", "layer"], sort=False):
        g = g[np.isfinite(g["gain_hi"] - g["gain_lo"])]
        if g["width"].nunique() < 3:
            continue
        se = (g["gain_hi"] - g["gain_lo"]) / (2 * 1.96)
        amplitude, exponent, half = weighted_power_law(g["width"], g["gain"], se)
        rows.append({"method": method, "layer": layer, "amplitude": amplitude, "exponent": exponent,
                     "ci95": half})
    return pd.DataFrame(rows, columns=["method", "layer", "amplitude", "exponent", "ci95"])


def run_posterior(store: Store, s: PosteriorSettings, out: Path, quiet: bool = False,
                  executor=None) -> dict[str, Any]:
    """Run (or resume) every (width, method) cell on ``executor``; return tables, figures and claims."""
    task = load_task(s.task, s.seed)
    # before anything is run: what the widest cell holds at once
    spec = cell_spec(task, max(s.widths), "sgd-ntk", s)
    check_fits(s.samples, -(-cell_numbers(task, max(s.widths), s) // s.samples), torch.float32, s.device,
               f"{spec.describe()} in one posterior cell (with the prior's representations kept to pair with "
               "them, and its largest chunk of networks drawn, trained or measured at once)")
    run_id = store.start_run("posterior", s.to_dict(), s.seed, executor)
    cells = run_sweep(store, run_id, "posterior_cells", ["width", "method"],
                      [(w, m) for w in s.widths for m in s.methods], executor, posterior_cell,
                      "posterior cells", quiet, before=(task,), after=(s,))
    store.finish_run(run_id)
    gains = with_gains(cells)
    exponents = fit_exponents(gains)
    judged = posterior_claims(gains, exponents)
    store.save_claims(run_id, judged)
    figs = {"posterior_layers": figures.posterior_layers(gains, out / "posterior_layers.png")}
    return {"run_id": run_id, "cells": gains, "exponents": exponents, "figures": figs, "claims": judged}


def _exponent(exponents: pd.DataFrame, method: str, layer: str) -> v.Interval | None:
    row = exponents[(exponents["method"] == method) & (exponents["layer"] == layer)]
    return None if not len(row) else v.Interval.around(row["exponent"].iloc[0], row["ci95"].iloc[0])


def _gain(gains: pd.DataFrame, method: str, layer: str, width: int) -> pd.Series | None:
    row = gains[(gains["method"] == method) & (gains["layer"] == layer) & (gains["width"] == width)]
    return None if not len(row) else row.iloc[0]


def posterior_claims(gains: pd.DataFrame, exponents: pd.DataFrame) -> list[dict[str, str]]:
    """The three claims of the issue, each judged on the exact (rejection) posterior."""
    claims: list[dict[str, str]] = []
    layers = list(dict.fromkeys(gains["layer"]))
    hidden = [lay for lay in layers if lay != READOUT]
    widest = int(gains["width"].max())
    exact = gains[gains["method"] == "rejection"]
    if len(exact):
        fitted = {lay: _exponent(exponents, "rejection", lay) for lay in layers}
        judged = [v.at_most(fitted[lay], 0.0, DECIDE) if fitted[lay] else
                  v.Verdict(v.INCONCLUSIVE, "", DECIDE) for lay in hidden]
        claims.append(v.claim_row(
            "B5: the posterior's hidden layers approach their prior as width grows (alignment gain over "
            "the prior ~ width^b with b < 0)",
            "; ".join(f"{lay}: b = {fitted[lay]}" for lay in hidden)
            + f" (finite-width theory: b = -1); acceptance P(S) = {exact['acceptance'].mean():.2g}",
            v.all_of(judged, "hidden layers")))
        readout = fitted.get(READOUT)
        at = _gain(gains, "rejection", READOUT, widest)
        claims.append(v.claim_row(
            f"B5: the readout's posterior does not approach its prior (its gain's exponent b >= "
            f"-{v.EXPONENT_MARGIN:g})",
            f"b = {readout}; gain at width {widest}: {_interval(at)}",
            v.at_least(readout, -v.EXPONENT_MARGIN, DECIDE) if readout else
            v.Verdict(v.INCONCLUSIVE, "", DECIDE)))
        energy = exact[exact["layer"] == "layer 1"].sort_values("width")
        claims.append(v.measured_row(
            "B5: first-layer weights of the exact posterior against the prior (energy test, one neuron "
            "per network)",
            ", ".join(f"w={int(r.width)}: p={r.energy_p:.2g}" for r in energy.itertuples())))
    if len(exact) and (gains["method"] == "sgd-mup").any():
        verdicts, texts = [], []
        for lay in hidden:
            mup, bayes = _gain(gains, "sgd-mup", lay, widest), _gain(gains, "rejection", lay, widest)
            if mup is None or bayes is None:
                continue
            diff = _difference(mup, bayes)
            verdicts.append(v.at_least(diff, 0.0, DECIDE))
            texts.append(f"{lay}: muP {mup.gain:.3g} - posterior {bayes.gain:.3g} = {diff}")
        if verdicts:
            claims.append(v.claim_row(
                f"B5: SGD under muP moves hidden layers more than the posterior does (at width {widest})",
                "; ".join(texts), v.all_of(verdicts, "hidden layers")))
    claims += langevin_check(gains)
    for method in ("sgd-ntk", "langevin"):
        rows = gains[(gains["method"] == method) & (gains["width"] == widest)]
        if len(rows):
            claims.append(v.measured_row(
                f"B5: {method}: alignment gain over the prior at width {widest}",
                "; ".join(f"{r.layer}: {_interval(r)}" for r in rows.itertuples())
                + f"; networks that fit S: {rows['fit_share'].iloc[0]:.2f}"))
    return claims


LANGEVIN_MARGIN = 0.02  # "Langevin generalises like the exact posterior": mean test error within 2 points


def langevin_check(gains: pd.DataFrame) -> list[dict[str, str]]:
    """Where Langevin and rejection ran at the same width on the same S: Langevin's posterior (the Gibbs
    posterior exp(-L/T) N(0, I), sharp at small T) against the exact one, by the mean test error of
    their networks on the inputs outside S (Welch interval of the difference)."""
    readout = gains[gains["layer"] == READOUT]
    both = sorted(set(readout[readout["method"] == "langevin"]["width"])
                  & set(readout[readout["method"] == "rejection"]["width"]))
    if not both:
        return []
    verdicts, texts = [], []
    for width in both:
        lan, rej = (readout[(readout["method"] == m) & (readout["width"] == width)].iloc[0]
                    for m in ("langevin", "rejection"))
        ci = v.difference_interval(lan.test_error, lan.test_error_sd, int(lan.networks), rej.test_error,
                                   rej.test_error_sd, int(rej.networks))
        verdicts.append(v.equals(ci, 0.0, LANGEVIN_MARGIN, DECIDE))
        texts.append(f"w={width}: {lan.test_error:.3f} - {rej.test_error:.3f} = {ci}")
    return [v.claim_row(
        f"B5: Langevin at small T samples a posterior that generalises like the exact (rejection) one: "
        f"mean test error within {LANGEVIN_MARGIN:g}, at every width where both ran",
        "; ".join(texts), v.all_of(verdicts, "widths"))]


def _interval(row: Any) -> str:
    return "n/a" if row is None else str(v.Interval(row.gain, row.gain_lo, row.gain_hi))


def _difference(a: pd.Series, b: pd.Series) -> v.Interval:
    """gain_a - gain_b, the two gains' (independent) Welch intervals combined in quadrature."""
    half = math.hypot((a.gain_hi - a.gain_lo) / 2, (b.gain_hi - b.gain_lo) / 2)
    return v.Interval.around(a.gain - b.gain, half)
