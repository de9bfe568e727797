"""Experiment ``transfer``: does a kernel-regime model transfer only through its starting point?

Pretrain on task A, adapt on task B with n_B examples (``tasks.pairs``), for
learners all built from one spec (a one-hidden-layer ReLU MLP) and the same
initialisations, each also trained on B from scratch so that its transfer gain
= error(scratch) - error(after pretraining) is measured per seed:

* ``ntk-net`` and ``mup-net``: the full network in NTK parametrization and in
  muP (feature learning), pretrained on A and fine-tuned on B (all layers);
* ``tangent-init``: the linearised network around its initialisation, with the
  initial function subtracted, pretrained on A in the tangent space and then
  trained on B in the same tangent space: its kernel never changes, so A can only
  move its starting point; ``tangent-init-f0`` the same with its random initial
  function f0 kept (where the sign-flip identity no longer holds exactly);
* ``tangent-pretrained``: the linearisation around the pretrained NTK-
  parametrized network (Maddox et al. 2021), against the linearisation around
  the initialisation from scratch;
* ``readout``: a linear probe on the pretrained network's hidden layer against
  random features (the same network at initialisation) with a trained readout;
* NNGP and NTK predictors on B from scratch (no transfer possible: the floor).

Everything is trained by full-batch gradient descent on the summed squared
error for the same number of steps with lr = 1/lambda_max of the analytic NTK
on A (muP: a base rate scaled by its parametrization), and scored by the
normalised test MSE. For the centred tangent model the gains on B = A and on
B = -A then obey an identity: both adapted functions are the scratch function
(of each target) plus one residual r(x), the part of the pretraining
displacement f_A that B's training points cannot see, so gain(A) + gain(-A) =
-2 E[r^2] / Var(y): both cannot be positive. Each (pair, n_B) cell is stored
when done; a rerun skips it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from nnbias.engines.ensemble import Ensemble, sample_ensemble
from nnbias.engines.kernels import KernelFn
from nnbias.engines.memory import check_gram_fits, check_training_fits
from nnbias.engines.training import centre, linearised_gd, mup_gd, train_gd
from nnbias.errors import check_device, check_int, check_positive, check_seed, check_sweeps, require
from nnbias.estimators import verdicts as v
from nnbias.estimators.limits import kernel_predictors, stable_lr
from nnbias.executor import run_cells, run_sweep
from nnbias.experiments.registry import scaled_settings
from nnbias.report import figures
from nnbias.spec import NetworkSpec
from nnbias.store import Store
from nnbias.tasks.datasets import Dataset
from nnbias.tasks.pairs import PAIRS, TaskPair, normalised_mse, task_pair

LEARNERS = ("ntk-net", "mup-net", "tangent-init", "tangent-init-f0", "tangent-pretrained", "readout")
KERNELS = ("NNGP", "NTK")
IDENTITY_TOLERANCE = 1e-8  # the sign-flip identity is exact up to float64 rounding
UNRELATED_MARGIN = 0.05  # a gain within +- this (normalised MSE) is "indistinguishable from 0"
DECIDE = "more seeds (networks)"


@dataclass(frozen=True)
class TransferSettings:
    pairs: tuple[str, ...] = ("single-index-same", "single-index-flip", "single-index-shared",
                              "single-index-unrelated", "digits-halves-parity")
    sizes: tuple[int, ...] = (16, 64, 256)  # n_B of the learning curves
    claim_size: int = 64  # the n_B at which the claims are judged
    width: int = 512
    networks: int = 4  # seeds per cell, trained as one ensemble
    steps: int = 500  # gradient-descent steps on A and on B
    mup_eta: float = 1.0  # muP base learning rate at the base width
    base_width: int = 64
    sigma_w: float = math.sqrt(2)
    sigma_b: float = 0.1
    device: str = "cpu"  # where networks train and Gram matrices are computed
    seed: int = 0

    def __post_init__(self) -> None:
        check_sweeps(self)
        for p in self.pairs:
            require(p in PAIRS, f"pair={p!r} is not allowed; choose one of {sorted(PAIRS)}")
        for n in self.sizes:
            check_int("n_B", n, minimum=1)
            check_gram_fits("n_B", n, n, torch.float64, "cpu")  # the kernel-regime models' Gram on B
        require(self.claim_size in self.sizes, f"claim_size={self.claim_size} is not allowed; choose one "
                                               f"of the sizes {list(self.sizes)}")
        for name in ("width", "networks", "steps", "base_width"):
            check_int(name, getattr(self, name), minimum=1)
        check_seed(self.seed)
        check_device(self.device)
        check_positive("mup_eta", self.mup_eta)
        check_positive("sigma_w", self.sigma_w)
        check_positive("sigma_b", self.sigma_b, allow_zero=True)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


PAPER = {"pairs": tuple(PAIRS), "sizes": (8, 16, 32, 64, 128, 256, 512), "width": 2048, "networks": 10,
         "steps": 2000}


def settings_for(scale: str, **overrides: Any) -> TransferSettings:
    """``small`` (what ``reproduce`` runs) or ``paper`` (every pair, n_B to 512, width 2048, 10 seeds)."""
    return scaled_settings(TransferSettings, PAPER, scale, overrides)


def _spec(dim: int, parametrization: str, s: TransferSettings) -> NetworkSpec:
    return NetworkSpec(dim, (s.width,), "relu", sigma_w=s.sigma_w, sigma_b=s.sigma_b,
                       parametrization=parametrization)


def _ensemble(dim: int, parametrization: str, s: TransferSettings) -> Ensemble:
    return sample_ensemble(_spec(dim, parametrization, s), s.networks,
                           torch.Generator().manual_seed(s.seed * 100_003 + s.width), dtype=torch.float64,
                           device=s.device)


@dataclass
class Pretrained:
    """Each learner's state after pretraining on A (parameters of K networks), and the shared lr."""

    ntk: Ensemble  # NTK-parametrized networks at initialisation
    mup: Ensemble  # muP networks at initialisation
    lr: float
    ntk_params: list[torch.Tensor]  # full NTK-parametrized networks trained on A
    mup_params: list[torch.Tensor]
    tangent_params: list[torch.Tensor]  # centred tangent model trained on A
    tangent_f0_params: list[torch.Tensor]  # the tangent model with f0 kept, trained on A

    def to(self, device: str) -> Pretrained:
        """The same state on ``device`` (it travels between cells on the CPU)."""
        return Pretrained(self.ntk.to(device), self.mup.to(device), self.lr,
                          *([p.to(device) for p in ps] for ps in (self.ntk_params, self.mup_params,
                                                                  self.tangent_params,
                                                                  self.tangent_f0_params)))


def _mup_train(nets: Ensemble, params: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor,
               s: TransferSettings) -> list[torch.Tensor]:
    """muP networks (centred at their initialisation) trained by full-batch GD on the mean squared error."""
    return mup_gd(nets, x, y, s.mup_eta, s.steps, s.base_width, start=params,
                  origin=nets.functional()[1]).params


def pretrain(a: Dataset, s: TransferSettings) -> Pretrained:
    """Train every learner on A (the same initialisations for all pairs that share A), on the
    settings' device; the state comes back on the CPU."""
    a = a.to(s.device)
    ntk, mup = _ensemble(a.dim, "ntk", s), _ensemble(a.dim, "mup", s)
    lr = stable_lr(KernelFn(ntk.spec)(a.x_train, kind="ntk", device=s.device))
    y, p0 = a.y_train.double(), ntk.functional()[1]
    return Pretrained(ntk, mup, lr, train_gd(ntk, a.x_train, y, lr, s.steps, origin=p0).params,
                      _mup_train(mup, mup.functional()[1], a.x_train, y, s),
                      linearised_gd(ntk, a.x_train, y, lr, s.steps, origin=p0).params,
                      linearised_gd(ntk, a.x_train, y, lr, s.steps).params).to("cpu")


def _readout_only(nets: Ensemble) -> list[bool]:
    """Trainable mask of the readout layer's tensors (weights and bias)."""
    n = len(nets.tensors())
    last = 2 if nets.spec.bias else 1
    return [i >= n - last for i in range(n)]


def adapt(pre: Pretrained, b: Dataset, s: TransferSettings) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per learner, (K, N_test) test predictions on B from scratch and after pretraining on A.

    Every model but ``tangent-init-f0`` is centred at the initialisation p0 (its initial function
    subtracted), so that no learner's error carries the random initial function, which pretraining
    would otherwise seem to "transfer" away."""
    x, y, xt, lr, steps = b.x_train, b.y_train.double(), b.x_test, pre.lr, s.steps
    mup_fn, mup0 = pre.mup.functional()
    p0 = pre.ntk.functional()[1]
    pretrained = pre.ntk.from_params(pre.ntk_params)
    mask = _readout_only(pre.ntk)

    def tangent(start):
        return linearised_gd(pre.ntk, x, y, lr, steps, start=start, origin=p0).predict(xt)

    def mup(start):
        params = _mup_train(pre.mup, start, x, y, s)
        with torch.no_grad():
            return centre(mup_fn, mup0)(params, xt)

    return {
        "ntk-net": (train_gd(pre.ntk, x, y, lr, steps, origin=p0).predict(xt),
                    train_gd(pretrained, x, y, lr, steps, origin=p0).predict(xt)),
        "mup-net": (mup(mup0), mup(pre.mup_params)),
        "tangent-init": (tangent(None), tangent(pre.tangent_params)),
        "tangent-init-f0": (linearised_gd(pre.ntk, x, y, lr, steps).predict(xt),
                            linearised_gd(pre.ntk, x, y, lr, steps, start=pre.tangent_f0_params).predict(xt)),
        "tangent-pretrained": (tangent(None),
                               linearised_gd(pretrained, x, y, lr, steps, origin=p0).predict(xt)),
        "readout": (train_gd(pre.ntk, x, y, lr, steps, trainable=mask, origin=p0).predict(xt),
                    train_gd(pretrained, x, y, lr, steps, trainable=mask, origin=p0).predict(xt)),
    }


def transfer_cell(pair: TaskPair, n: int, pre: Pretrained, s: TransferSettings) -> pd.DataFrame:
    """Errors of every learner on B with n examples, from scratch and after pretraining, per seed."""
    b = pair.adapt(n).to(s.device)
    base = {"pair": pair.name, "relation": pair.relation, "n": n}
    rows = []
    for learner, (scratch, moved) in adapt(pre, b, s).items():
        err0, err1 = normalised_mse(scratch, b.y_test), normalised_mse(moved, b.y_test)
        # the tangent model's adapted function minus its scratch function: the residual r of the identity
        residual = normalised_mse(moved - scratch + b.y_test, b.y_test) if learner == "tangent-init" else None
        for k in range(s.networks):
            rows.append({**base, "learner": learner, "seed": k, "error_scratch": float(err0[k]),
                         "error_transfer": float(err1[k]), "gain": float(err0[k] - err1[k]),
                         "residual_sq": math.nan if residual is None else float(residual[k])})
    limits = kernel_predictors(pre.ntk.spec, b, s.steps).means
    for kernel, mean in zip(KERNELS, (limits["NNGP"], limits["NTK t=inf"]), strict=True):
        rows.append({**base, "learner": kernel, "seed": 0,
                     "error_scratch": float(normalised_mse(mean, b.y_test)),
                     "error_transfer": math.nan, "gain": math.nan, "residual_sq": math.nan})
    return pd.DataFrame(rows)


def pair_cell(pairs: dict[str, TaskPair], pretrained: dict[str, Pretrained], name: str, n: int,
              s: TransferSettings) -> pd.DataFrame:
    """One (pair, n_B) cell from the pretraining on the pair's A."""
    return transfer_cell(pairs[name], n, pretrained[pairs[name].a.name].to(s.device), s)


def run_transfer(store: Store, s: TransferSettings, out: Path, quiet: bool = False,
                 executor=None) -> dict[str, Any]:
    """Run (or resume) every (pair, n_B) cell on ``executor``, after pretraining each distinct A once
    (pairs that share A share its pretraining); return tables, figures and claims."""
    pairs = {name: task_pair(name, s.seed, max(s.sizes)) for name in s.pairs}  # bad sizes fail here
    for pair in pairs.values():  # the networks must fit before anything is run
        for task in (pair.a, pair.b):
            check_training_fits(_spec(task.dim, "ntk", s), s.networks, len(task.y_train), torch.float64,
                                s.device)
    run_id = store.start_run("transfer", s.to_dict(), s.seed, executor)
    sweep = [(name, n) for name in s.pairs for n in s.sizes]
    done = store.done_cells("transfer_cells", run_id, ["pair", "n"])  # A is pretrained for these only
    tasks_a = {pairs[name].a.name: (pairs[name].a,) for name, n in sweep if (name, n) not in done}
    pretrained: dict[str, Pretrained] = {}  # by A's name
    run_cells(executor, pretrain, list(tasks_a.values()),
              lambda cell, result: pretrained.__setitem__(cell[0].name, result), "pretraining on A", quiet,
              after=(s,))
    cells = run_sweep(store, run_id, "transfer_cells", ["pair", "n"], sweep, executor, pair_cell,
                      "transfer cells", quiet, before=(pairs, pretrained), after=(s,))
    store.finish_run(run_id)
    gains = gain_table(cells)
    judged = transfer_claims(cells, s.claim_size)
    store.save_claims(run_id, judged)
    at = gains[gains["n"] == s.claim_size]
    figs = {"transfer_curves": figures.transfer_curves(cells, out / "transfer_curves.png"),
            "transfer_gains": figures.transfer_gains(at, s.claim_size, out / "transfer_gains.png")}
    if {"same", "flip"} <= set(at["relation"]):
        figs["transfer_sign_flip"] = figures.transfer_sign_flip(at, s.claim_size,
                                                                out / "transfer_sign_flip.png")
    return {"run_id": run_id, "cells": cells, "gains": gains, "figures": figs, "claims": judged}


def gain_table(cells: pd.DataFrame) -> pd.DataFrame:
    """Mean transfer gain per (pair, n, learner) with its 95 % interval over seeds."""
    rows = []
    trained = cells[cells["learner"].isin(LEARNERS)]
    for (pair, n, learner), g in trained.groupby(["pair", "n", "learner"], sort=False):
        ci = v.mean_interval(g["gain"])
        rows.append({"pair": pair, "relation": g["relation"].iloc[0], "n": n, "learner": learner,
                     "gain": ci.estimate, "gain_lo": ci.lo, "gain_hi": ci.hi,
                     "error_scratch": g["error_scratch"].mean(),
                     "error_transfer": g["error_transfer"].mean()})
    return pd.DataFrame(rows)


def _gains(cells: pd.DataFrame, pair: str, learner: str, n: int) -> np.ndarray:
    g = cells[(cells["pair"] == pair) & (cells["learner"] == learner) & (cells["n"] == n)]
    return g.sort_values("seed")["gain"].to_numpy()


def transfer_claims(cells: pd.DataFrame, n: int) -> list[dict[str, str]]:
    """The sign flip (tangent and muP), shared features, an unrelated pair and the pretrained
    linearisation, judged at n_B = n; each row's rule from ``estimators.verdicts``."""
    pairs = dict(zip(cells["pair"], cells["relation"], strict=False))
    by_relation: dict[str, list[str]] = {}
    for pair, relation in pairs.items():
        by_relation.setdefault(relation, []).append(pair)
    claims = []
    same, flip = next(iter(by_relation.get("same", [])), None), next(iter(by_relation.get("flip", [])), None)
    if same and flip:
        claims += _sign_flip_claims(cells, same, flip, n)
    for pair in by_relation.get("shared", []):
        diff = v.mean_interval(_gains(cells, pair, "mup-net", n) - _gains(cells, pair, "tangent-init", n))
        claims.append(v.claim_row(
            f"B4: on {pair} (shared features, another readout) the muP network's transfer gain exceeds the "
            f"tangent model's (n_B = {n})",
            f"gain difference muP - tangent = {diff} (paired over seeds, normalised MSE)",
            v.at_least(diff, 0.0, DECIDE)))
    for pair in by_relation.get("unrelated", []):
        gain = v.mean_interval(_gains(cells, pair, "tangent-init", n))
        claims.append(v.claim_row(
            f"B4: on {pair} the tangent model's transfer gain is indistinguishable from 0 "
            f"(within +- {UNRELATED_MARGIN})", f"gain = {gain} (n_B = {n})",
            v.equals(gain, 0.0, UNRELATED_MARGIN, DECIDE)))
    for pair in by_relation.get("same", []) + by_relation.get("shared", []):
        full, lin = _gains(cells, pair, "ntk-net", n), _gains(cells, pair, "tangent-pretrained", n)
        rest = v.mean_interval(lin - 0.5 * full)
        claims.append(v.claim_row(
            f"B4: on {pair} the linearisation around the pretrained network recovers most (more than half) "
            "of the full network's transfer gain (Maddox et al. 2021)",
            f"gain: full NTK-param net {v.mean_interval(full)}, pretrained linearisation "
            f"{v.mean_interval(lin)}; linearisation - half the full gain = {rest} (n_B = {n})",
            v.at_least(rest, 0.0, DECIDE)))
    return claims


def _sign_flip_claims(cells: pd.DataFrame, same: str, flip: str, n: int) -> list[dict[str, str]]:
    """The tangent model's gains on B = A and B = -A (and their identity), and the muP network's."""
    tangent = {p: _gains(cells, p, "tangent-init", n) for p in (same, flip)}
    rows = cells[(cells["pair"] == same) & (cells["learner"] == "tangent-init") & (cells["n"] == n)]
    residual = rows.sort_values("seed")["residual_sq"].to_numpy()
    deviation = float(np.abs(tangent[same] + tangent[flip] + 2 * residual).max())
    ci = {p: v.mean_interval(g) for p, g in tangent.items()}
    with_f0 = {p: v.mean_interval(_gains(cells, p, "tangent-init-f0", n)) for p in (same, flip)}
    mup = {p: v.mean_interval(_gains(cells, p, "mup-net", n)) for p in (same, flip)}
    return [
        v.claim_row(f"B4: tangent model (centred), MSE: gain(B = A) + gain(B = -A) = -2 E[r^2] / Var(y) "
                    f"exactly ({same} / {flip})",
                    f"largest deviation over seeds at n_B = {n}: {deviation:.1e}",
                    v.Verdict(v.SUPPORTED if deviation <= IDENTITY_TOLERANCE else v.CONTRADICTED,
                              f"|deviation| <= {IDENTITY_TOLERANCE:g}: supported; larger: contradicted")),
        v.claim_row(f"B4: the tangent model's transfer flips sign with the target: helps on B = A, hurts on "
                    f"B = -A (n_B = {n})",
                    f"gain on {same} {ci[same]}, on {flip} {ci[flip]} (normalised MSE)",
                    v.all_of([v.at_least(ci[same], 0.0, DECIDE), v.at_most(ci[flip], 0.0, DECIDE)],
                             "B = A (gain > 0) and B = -A (gain <= 0)")),
        v.claim_row(f"B4: with its random initial function f0 kept (no identity then), the tangent model's "
                    f"transfer still flips sign: helps on B = A, hurts on B = -A (n_B = {n})",
                    f"gain on {same} {with_f0[same]}, on {flip} {with_f0[flip]} (normalised MSE)",
                    v.all_of([v.at_least(with_f0[same], 0.0, DECIDE), v.at_most(with_f0[flip], 0.0, DECIDE)],
                             "B = A (gain > 0) and B = -A (gain <= 0)")),
        v.claim_row(f"B4: the muP network's transfer has the same sign on B = A and B = -A (both help; "
                    f"n_B = {n})",
                    f"gain on {same} {mup[same]}, on {flip} {mup[flip]} (normalised MSE)",
                    v.all_of([v.at_least(mup[same], 0.0, DECIDE), v.at_least(mup[flip], 0.0, DECIDE)],
                             "B = A and B = -A (gain > 0 on each)")),
    ]
