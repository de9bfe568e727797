"""Experiment ``bound``: the PAC-Bayes marginal-likelihood bound against measured test error.

Valle-Pérez, Camargo & Louis (ICLR 2019) and Valle-Pérez & Louis (2020): for a
learner that samples the posterior of a prior P conditioned on fitting S (m
examples), with probability 1 - delta over S the generalisation error obeys

    eps <= 1 - exp(-(ln(1/P(S)) + 2 ln m + 1 - ln delta) / m),

where P(S) is the prior probability that a function fits S: the marginal
likelihood of the 0-1 likelihood, here from the architecture's NNGP by EP
(``estimators.ep.ep_log_probability``). The bound is set beside the test error
of networks of the same spec trained by SGD to 100 % training accuracy, across
training-set sizes m and label corruption (a fraction of the training labels
replaced by fair coin flips; 1.0 is random labels), so one can see whether the
bound holds, whether it tracks the error across settings (rank correlation with
a CI), and whether it is non-vacuous where the papers say (clean labels).

Each (task, m, corruption) cell is stored when done; a rerun skips it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats

from nnbias.engines.bayes import fit_count
from nnbias.engines.ensemble import sample_ensemble
from nnbias.engines.kernels import KernelFn
from nnbias.engines.memory import check_training_fits
from nnbias.engines.sampler import chunk_seed
from nnbias.engines.training import TrainConfig, train
from nnbias.errors import check_device, check_int, check_seed, check_sweeps, require
from nnbias.estimators import verdicts as v
from nnbias.estimators.ep import ep_log_probability
from nnbias.estimators.frequency import clopper_pearson
from nnbias.executor import run_sweep
from nnbias.experiments.registry import check_task, scaled_settings
from nnbias.report import figures
from nnbias.spec import NetworkSpec
from nnbias.store import Store
from nnbias.tasks.datasets import Dataset, boolean_task, digits, mnist1d

TASKS = {
    "bool7-0011": lambda m, seed: boolean_task(7, "0011" * 32, train=m, seed=seed),
    "digits-3-5": lambda m, seed: digits((3, 5), train=m, seed=seed),
    "mnist1d-0-1": lambda m, seed: mnist1d(train=m, seed=seed, classes=(0, 1)),
}
SIZES = {"bool7-0011": (16, 32, 64), "digits-3-5": (50, 100, 200), "mnist1d-0-1": (100, 200, 400)}
DELTA = 0.05
TRACKS = 0.5  # "the bound tracks the error": Spearman rho over settings at least this
CHANCE = 0.5  # a bound at or above chance error says nothing about a binary task
DECIDE = "more settings or networks"
REJECTION_TASKS = ("bool7-0011",)
EP_FACTOR = 2.0  # "EP's P(S) agrees with rejection's": |ln P_EP - ln P_rejection| <= 2 (a factor e^2)
MIN_FITS = 10  # rejection estimates from fewer fits are reported, not judged
OPTIMIZER = "adam"  # the networks are trained to zero training error on S


def pac_bayes_bound(log_p_s: float, m: int, delta: float = DELTA) -> float:
    """1 - exp(-(ln(1/P(S)) + 2 ln m + 1 - ln delta) / m), ``log_p_s`` the natural log of P(S)."""
    require(log_p_s <= 0, f"log P(S) = {log_p_s} is not allowed; a probability's log is <= 0")
    require(m >= 1 and 0 < delta < 1, f"m={m}, delta={delta} are not allowed; need m >= 1, 0 < delta < 1")
    return 1.0 - math.exp(-(-log_p_s + 2 * math.log(m) + 1 - math.log(delta)) / m)


def corrupt(y: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """0/1 labels with round(fraction * m) of them (chosen at random) replaced by fair coin flips."""
    require(0 <= fraction <= 1, f"corruption={fraction} is not allowed; expected 0 <= c <= 1")
    rng = np.random.default_rng(seed)
    out = y.clone()
    chosen = rng.permutation(len(y))[:round(fraction * len(y))]
    out[torch.from_numpy(chosen)] = torch.from_numpy(rng.integers(0, 2, len(chosen))).to(y.dtype)
    return out


@dataclass(frozen=True)
class BoundSettings:
    tasks: tuple[str, ...] = ("bool7-0011", "digits-3-5")
    corruptions: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0)
    hidden: tuple[int, ...] = (40, 40)
    networks: int = 8  # SGD-trained networks per cell
    lr: float = 0.003  # Adam, minibatches of 16 (or the whole S when smaller)
    max_epochs: int = 1000
    rejection_draws: int = 200_000  # prior draws counting fits to S (Boolean task): P(S) by rejection
    device: str = "cpu"  # where the NNGP, EP, the rejection draws and the networks' training run
    seed: int = 0

    def __post_init__(self) -> None:
        check_sweeps(self)
        for t in self.tasks:
            check_task(TASKS, t)
        check_int("rejection_draws", self.rejection_draws, minimum=1, maximum=10**11)
        for c in self.corruptions:
            require(0 <= c <= 1, f"corruption={c} is not allowed; expected 0 <= c <= 1")
        for w in self.hidden:
            check_int("width", w, minimum=1)
        check_int("networks", self.networks, minimum=1)
        check_int("max_epochs", self.max_epochs, minimum=1)
        check_seed(self.seed)
        check_device(self.device)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


PAPER = {"tasks": tuple(TASKS), "networks": 32, "max_epochs": 3000, "rejection_draws": 20_000_000}


def settings_for(scale: str, **overrides: Any) -> BoundSettings:
    """``small`` (what ``reproduce`` runs) or ``paper`` (MNIST-1D too, 32 networks per cell)."""
    return scaled_settings(BoundSettings, PAPER, scale, overrides)


def bound_cell(task_name: str, m: int, corruption: float, s: BoundSettings) -> pd.DataFrame:
    """EP's log P(S) and the bound for one (task, m, corruption), beside the SGD networks' test error."""
    task: Dataset = TASKS[task_name](m, s.seed)
    key = chunk_seed(s.seed, 10_000 * list(TASKS).index(task_name) + m + round(1000 * corruption))
    y = corrupt(task.y_train, corruption, key)
    spec = NetworkSpec(task.dim, s.hidden, "relu", sigma_w=1.0, sigma_b=1.0)
    kernel = KernelFn(spec)(task.x_train, kind="nngp", device=s.device).numpy()
    log_p = ep_log_probability(kernel, 2.0 * y.double().numpy() - 1.0, device=s.device)
    rejection = {"rejection_draws": 0, "fitted": 0, "log_p_rejection": math.nan,
                 "log_p_rejection_lo": math.nan, "log_p_rejection_hi": math.nan}
    if task_name in REJECTION_TASKS:  # P(S) is large enough to count fits only on the Boolean task
        fitted = fit_count(spec, task.x_train.float(), y.float(), s.rejection_draws, key, device=s.device)
        lo, hi = clopper_pearson(np.array([fitted]), s.rejection_draws)
        with np.errstate(divide="ignore"):
            rejection = {"rejection_draws": s.rejection_draws, "fitted": fitted,
                         "log_p_rejection": math.log(fitted / s.rejection_draws) if fitted else -math.inf,
                         "log_p_rejection_lo": float(np.log(lo[0])),
                         "log_p_rejection_hi": float(np.log(hi[0]))}
    generator = torch.Generator().manual_seed(key)
    nets = sample_ensemble(spec, s.networks, generator, torch.float64, s.device)
    fn, params = nets.functional()
    config = TrainConfig(OPTIMIZER, s.lr, min(16, m), "ce", s.max_epochs, "accuracy")
    result = train(fn, params, task.x_train, y.double(), config, generator)
    errors = task.test_error(result.predict(task.x_test).cpu()).numpy()
    return pd.DataFrame([{"task": task_name, "m": m, "corruption": corruption, "log_p_s": log_p,
                          "bound": pac_bayes_bound(log_p, m), "error": float(errors.mean()),
                          "error_sd": float(errors.std(ddof=1)) if len(errors) > 1 else math.nan,
                          "networks": len(errors), "converged": int(result.converged.sum()), **rejection}])


def run_bound(store: Store, s: BoundSettings, out: Path, quiet: bool = False,
              executor=None) -> dict[str, Any]:
    """Run (or resume) every (task, m, corruption) cell on ``executor``; return the table, figure and
    claims."""
    for t in s.tasks:  # each task's largest S must fit its networks before anything is run
        m = max(SIZES[t])
        check_training_fits(NetworkSpec(TASKS[t](m, s.seed).dim, s.hidden), s.networks, m, torch.float64,
                            s.device, OPTIMIZER)
    run_id = store.start_run("bound", s.to_dict(), s.seed, executor)
    cells = run_sweep(store, run_id, "bound_cells", ["task", "m", "corruption"],
                      [(t, m, c) for t in s.tasks for m in SIZES[t] for c in s.corruptions], executor,
                      bound_cell, "PAC-Bayes bound cells", quiet, after=(s,))
    store.finish_run(run_id)
    judged = bound_claims(cells)
    store.save_claims(run_id, judged)
    figs = {"pac_bayes_bound": figures.pac_bayes_bound(cells, out / "pac_bayes_bound.png")}
    return {"run_id": run_id, "cells": cells, "figures": figs, "claims": judged}


def ep_against_rejection(cells: pd.DataFrame) -> list[dict[str, str]]:
    """EP's log P(S) against the rejection count's (Clopper-Pearson interval), where the Boolean task's
    prior draws fitted S at least MIN_FITS times; the others are listed, not judged."""
    counted = cells[cells["rejection_draws"] > 0] if "rejection_draws" in cells else cells.iloc[:0]
    if not len(counted):
        return []
    judged = counted[counted["fitted"] >= MIN_FITS]
    verdicts = [v.equals(v.Interval(r.log_p_rejection - r.log_p_s, r.log_p_rejection_lo - r.log_p_s,
                                    r.log_p_rejection_hi - r.log_p_s), 0.0, EP_FACTOR, "more rejection draws")
                for r in judged.itertuples()]
    texts = [f"m={int(r.m)} c={r.corruption:g}: ln P_rej - ln P_EP = {r.log_p_rejection - r.log_p_s:.2f} "
             f"({int(r.fitted)} fits)" for r in judged.itertuples()]
    rare = len(counted) - len(judged)
    return [v.claim_row(
        f"A6: EP's marginal likelihood P(S) agrees with rejection sampling's within a factor "
        f"e^{EP_FACTOR:g} (settings with >= {MIN_FITS} fits among the prior draws)",
        "; ".join(texts) + (f"; {rare} settings with fewer fits not judged" if rare else ""),
        v.all_of(verdicts, "settings") if verdicts else
        v.Verdict(v.INCONCLUSIVE, f"needs >= {MIN_FITS} fits", "more rejection draws"))]


def _slack(row: Any) -> v.Interval:
    """bound - error, with the error's Student-t interval over networks (the bound is a number)."""
    return v.Interval.around(row.bound - row.error, v.mean_half_width(row.error_sd, int(row.networks)))


def bound_claims(cells: pd.DataFrame) -> list[dict[str, str]]:
    """The bound holds in every setting; it tracks the error (rank correlation); it is below chance at
    clean labels and the largest m of each task."""
    claims = []
    held = [v.at_least(_slack(r), 0.0, DECIDE) for r in cells.itertuples()]
    worst = cells.assign(slack=cells["bound"] - cells["error"]).sort_values("slack").iloc[0]
    claims.append(v.claim_row(
        f"A6: the PAC-Bayes marginal-likelihood bound (delta = {DELTA:g}) holds for SGD-trained networks "
        "in every setting (bound - error > 0)",
        f"{len(cells)} settings; tightest: {worst['task']} m={int(worst['m'])} corruption "
        f"{worst['corruption']:g}: error {worst['error']:.3f} against bound {worst['bound']:.3f}",
        v.all_of(held, "settings")))
    rho = float(stats.spearmanr(cells["bound"], cells["error"]).statistic) if len(cells) > 2 else math.nan
    ci = v.correlation_interval(rho, len(cells), rank=True)
    claims.append(v.claim_row(
        f"A6: the bound tracks the measured error across sizes and corruption (Spearman rho >= {TRACKS:g})",
        f"rho {ci} over {len(cells)} settings", v.at_least(ci, TRACKS, DECIDE)))
    claims += ep_against_rejection(cells)
    for task, g in cells[cells["corruption"] == 0].groupby("task", sort=False):
        top = g.sort_values("m").iloc[-1]
        exact = v.Interval(top["bound"], top["bound"], top["bound"])
        claims.append(v.claim_row(
            f"A6: {task}: the bound is non-vacuous (below chance, {CHANCE:g}) at clean labels, "
            f"m = {int(top['m'])}",
            f"bound {top['bound']:.3f} (log P(S) = {top['log_p_s']:.1f}); SGD error {top['error']:.3f}",
            v.at_most(exact, CHANCE, DECIDE)))
    return claims
