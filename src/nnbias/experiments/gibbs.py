"""Experiment ``gibbs``: Langevin against Boltzmann, and optimizers against tempered posteriors.

On a problem small enough to know the Gibbs posterior exp(-L/T) prior over
functions exactly (a 5-bit Boolean task, a network of width 4, the functions
it computes on a test set E of 4 inputs, so 16 cells): the reference is a
million prior draws reweighted by exp(-L/T) (``engines.bayes.gibbs_weights``;
its effective sample size is reported), and the T -> 0 limit of the 0-1 loss is
the rejection posterior P_B.

* Langevin at the same T (``engines.bayes.langevin_posterior``), one chain per
  network, across step sizes: the distribution of functions it ends on, against
  the exact one (chi-square goodness of fit and a 95 % upper bound on the total
  variation); the discretisation bias shows as the TV growing with the step.
* Tempered posteriors (T from 1e-3 to 10, and P_B) beside SGD trained to 100 %
  training accuracy at several learning rates and batch sizes: the TV of each
  optimizer setting's P(f|S) to each tempered posterior, and the temperature
  that matches it best, so "changing hyper-parameters acts like changing the
  temperature" is measured rather than assumed.

Each step size and each optimizer setting is a stored cell; a rerun skips it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from nnbias.engines.bayes import (
    boltzmann_weights,
    effective_sample_size,
    fit_mask,
    langevin_posterior,
    mean_losses,
)
from nnbias.engines.ensemble import Ensemble, sample_ensemble
from nnbias.engines.memory import check_fits, check_training_fits
from nnbias.engines.sampler import chunk_seed
from nnbias.engines.training import TrainConfig, train
from nnbias.errors import check_device, check_int, check_positive, check_seed, check_sweeps, require
from nnbias.estimators import verdicts as v
from nnbias.estimators.frequency import column_counts, count_columns, goodness_of_fit
from nnbias.executor import run_sweep
from nnbias.experiments.registry import scaled_settings
from nnbias.report import figures
from nnbias.spec import NetworkSpec
from nnbias.store import Store
from nnbias.tasks.boolean import sign_codes
from nnbias.tasks.datasets import Dataset, boolean_task

TV_MARGIN = 0.05  # "Langevin samples the Gibbs posterior": TV to the exact one at most this
ALPHA = 0.01
MIN_ESS = 1000  # a reweighted reference with fewer effective draws is not exact enough to judge against
REJECTION = 0.0  # the temperature label of P_B (the 0-1 loss's T -> 0 limit)
DECIDE = "more chains or a smaller step"


@dataclass(frozen=True)
class GibbsSettings:
    width: int = 4
    train: int = 6
    test: int = 4
    temperature: float = 0.2  # of the Langevin comparison; L is the mean cross-entropy on S
    draws: int = 1_000_000  # prior draws of the exact reference
    chains: int = 10_000  # Langevin chains and SGD runs per setting
    steps: int = 2000
    step_sizes: tuple[float, ...] = (0.01, 0.1, 0.3, 1.0)
    temperatures: tuple[float, ...] = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
    sgd_lrs: tuple[float, ...] = (0.01, 0.1, 1.0)
    sgd_batches: tuple[int, ...] = (1, 2, 6)
    sgd_epochs: int = 500
    device: str = "cpu"  # where the reference draws are evaluated and the chains and SGD runs train
    seed: int = 0

    def __post_init__(self) -> None:
        check_sweeps(self)
        for name in ("width", "train", "test", "draws", "chains", "steps", "sgd_epochs"):
            check_int(name, getattr(self, name), minimum=1)
        require(self.train + self.test <= 32, f"train + test = {self.train + self.test} is not allowed; "
                                              "the 5-bit cube has 32 inputs")
        check_positive("temperature", self.temperature)
        for name in ("step_sizes", "temperatures", "sgd_lrs"):
            for value in getattr(self, name):
                check_positive(name, value)
        for b in self.sgd_batches:
            check_int("sgd_batches", b, minimum=1, maximum=self.train)
        check_seed(self.seed)
        check_device(self.device)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


PAPER = {"draws": 10_000_000, "chains": 50_000, "steps": 10_000, "sgd_epochs": 2000,
         "step_sizes": (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)}


def settings_for(scale: str, **overrides: Any) -> GibbsSettings:
    """``small`` (what ``reproduce`` runs) or ``paper`` (10^7 reference draws, 50 000 chains)."""
    return scaled_settings(GibbsSettings, PAPER, scale, overrides)


def load_task(s: GibbsSettings) -> Dataset:
    return boolean_task(5, "0011" * 8, train=s.train, test=s.test, seed=s.seed)


def spec_for(task: Dataset, s: GibbsSettings) -> NetworkSpec:
    return NetworkSpec(task.dim, (s.width,), "relu", sigma_w=1.0, sigma_b=1.0, parametrization="ntk")


def function_codes(nets: Ensemble, x: torch.Tensor) -> np.ndarray:
    """(K,) the function of each network on x as a number (first input most significant)."""
    with torch.no_grad():
        return sign_codes(nets.forward(x))


def distribution(codes: np.ndarray, cells: int, weights: np.ndarray | None = None) -> np.ndarray:
    return np.bincount(codes, weights=weights, minlength=cells).astype(float)


def references(task: Dataset, s: GibbsSettings) -> pd.DataFrame:
    """Exact P(f on E) of the tempered posteriors (and P_B), from reweighted prior draws: one forward
    pass of the draws on S and E serves every temperature and the rejection posterior."""
    task = task.to(s.device)
    nets = sample_ensemble(spec_for(task, s), s.draws, torch.Generator().manual_seed(chunk_seed(s.seed, 0)),
                           device=s.device)
    m, y = len(task.y_train), task.y_train.float()
    with torch.no_grad():
        out = nets.forward(torch.cat([task.x_train, task.x_test]).float())
    codes, cells, losses = sign_codes(out[:, m:]), 2**s.test, mean_losses(out[:, :m], y)
    rows = []
    for t in sorted({*s.temperatures, s.temperature}):
        w = boltzmann_weights(losses, t)
        rows.append({"temperature": t, "ess": effective_sample_size(w),
                     **{f"p{c}": p for c, p in enumerate(distribution(codes, cells, w))}})
    fit = fit_mask(out[:, :m], y).cpu().numpy()
    p_b = distribution(codes[fit], cells) / max(fit.sum(), 1)
    rows.append({"temperature": REJECTION, "ess": float(fit.sum()),
                 **{f"p{c}": p for c, p in enumerate(p_b)}})
    return pd.DataFrame(rows)


def langevin_cell(task: Dataset, step: float, s: GibbsSettings) -> pd.DataFrame:
    """Function counts on E of ``chains`` Langevin chains run ``steps`` steps of size ``step``."""
    key = chunk_seed(s.seed, 1_000 + s.step_sizes.index(step))
    start = sample_ensemble(spec_for(task, s), s.chains, torch.Generator().manual_seed(key), device=s.device)
    nets = langevin_posterior(start, task.x_train.float(), task.y_train.float(), s.temperature, step, s.steps,
                              generator=torch.Generator().manual_seed(key + 1))
    counts = distribution(function_codes(nets, task.x_test), 2**s.test)
    return pd.DataFrame([{"method": "langevin", "lr": step, "batch": 0, "converged": s.chains,
                          **count_columns(counts)}])


def sgd_cell(task: Dataset, lr: float, batch: int, s: GibbsSettings) -> pd.DataFrame:
    """Function counts on E of networks trained by SGD from the prior to 100 % accuracy on S."""
    key = chunk_seed(s.seed, 2_000 + 100 * s.sgd_lrs.index(lr) + s.sgd_batches.index(batch))
    generator = torch.Generator().manual_seed(key)
    start = sample_ensemble(spec_for(task, s), s.chains, generator, device=s.device)
    fn, params = start.functional()
    result = train(fn, params, task.x_train.float(), task.y_train.float(),
                   TrainConfig("sgd", lr, batch, "ce", s.sgd_epochs, "accuracy"), generator)
    ok = result.converged
    codes = function_codes(start.from_params(result.params), task.x_test)[ok.cpu().numpy()]
    counts = distribution(codes, 2**s.test)
    return pd.DataFrame([{"method": "sgd", "lr": lr, "batch": batch, "converged": int(ok.sum()),
                          **count_columns(counts)}])


def dynamics_cell(task: Dataset, method: str, lr: float, batch: int, s: GibbsSettings) -> pd.DataFrame:
    """One Langevin step size or one SGD (lr, batch) setting."""
    task = task.to(s.device)
    return langevin_cell(task, lr, s) if method == "langevin" else sgd_cell(task, lr, batch, s)


def run_gibbs(store: Store, s: GibbsSettings, out: Path, quiet: bool = False,
              executor=None) -> dict[str, Any]:
    """Run (or resume) the reference, then every Langevin step size and SGD setting on ``executor``;
    judge the claims."""
    task = load_task(s)
    spec = spec_for(task, s)  # the reference's draws and each cell's chains must fit before anything is run
    check_fits(s.draws, spec.n_params, torch.float32, s.device, spec.describe())
    check_training_fits(spec, s.chains, s.train, torch.float32, s.device)
    run_id = store.start_run("gibbs", s.to_dict(), s.seed, executor)
    if not store.done_cells("gibbs_references", run_id, ["temperature"]):
        store.append_rows("gibbs_references", run_id, references(task, s))
    sweep = [("langevin", lr, 0) for lr in s.step_sizes] + [("sgd", lr, b) for lr in s.sgd_lrs
                                                             for b in s.sgd_batches]
    cells = run_sweep(store, run_id, "gibbs_cells", ["method", "lr", "batch"], sweep, executor, dynamics_cell,
                      "Langevin and SGD cells", quiet, before=(task,), after=(s,))
    store.finish_run(run_id)
    refs = store.table("gibbs_references", run_id).drop(columns="run_id")
    langevin, tempering = langevin_table(cells, refs, s), tempering_table(cells, refs)
    judged = gibbs_claims(langevin, tempering, refs, s)
    store.save_claims(run_id, judged)
    figs = {"langevin_boltzmann": figures.langevin_boltzmann(langevin, tempering,
                                                             out / "langevin_boltzmann.png", MIN_ESS)}
    return {"run_id": run_id, "langevin": langevin, "tempering": tempering, "references": refs,
            "figures": figs, "claims": judged}


def _probabilities(refs: pd.DataFrame, temperature: float) -> np.ndarray:
    row = refs[np.isclose(refs["temperature"], temperature)].iloc[0]
    return row[[c for c in refs.columns if c.startswith("p")]].to_numpy(float)


def langevin_table(cells: pd.DataFrame, refs: pd.DataFrame, s: GibbsSettings) -> pd.DataFrame:
    """Per step size: TV to the exact Gibbs posterior, its 95 % upper bound, the chi-square p-value."""
    exact = _probabilities(refs, s.temperature)
    rows = []
    for _, row in cells[cells["method"] == "langevin"].sort_values("lr").iterrows():
        counts = column_counts(row)
        tv, tv_hi = v.tv_upper_bound(counts, exact)
        _, _, p = goodness_of_fit(counts, exact)
        rows.append({"lr": row["lr"], "tv": tv, "tv_upper": tv_hi, "p_value": p})
    return pd.DataFrame(rows, columns=["lr", "tv", "tv_upper", "p_value"])


def tempering_table(cells: pd.DataFrame, refs: pd.DataFrame) -> pd.DataFrame:
    """TV of every SGD setting's P(f|S) to every tempered posterior (and P_B, temperature 0)."""
    rows = []
    for _, row in cells[cells["method"] == "sgd"].iterrows():
        counts = column_counts(row)
        for _, ref in refs.iterrows():
            p = _probabilities(refs, ref["temperature"])
            rows.append({"lr": row["lr"], "batch": int(row["batch"]), "converged": int(row["converged"]),
                         "temperature": ref["temperature"], "ess": ref["ess"],
                         "tv": 0.5 * float(np.abs(counts / max(counts.sum(), 1) - p).sum())})
    return pd.DataFrame(rows, columns=["lr", "batch", "converged", "temperature", "ess", "tv"])


def gibbs_claims(langevin: pd.DataFrame, tempering: pd.DataFrame, refs: pd.DataFrame,
                 s: GibbsSettings) -> list[dict[str, str]]:
    claims = []
    ess = float(refs[np.isclose(refs["temperature"], s.temperature)]["ess"].iloc[0])
    if len(langevin):
        small = langevin.iloc[0]
        verdict = (v.matches_distribution(small["p_value"], small["tv_upper"], TV_MARGIN, ALPHA, DECIDE)
                   if ess >= MIN_ESS else v.Verdict(v.INCONCLUSIVE, f"reference ESS >= {MIN_ESS}",
                                                    "more prior draws for the reference"))
        claims.append(v.claim_row(
            f"B5: Langevin at step {small['lr']:g} samples the Gibbs posterior exp(-L/T) prior over "
            "functions "
            f"(T = {s.temperature:g}; TV <= {TV_MARGIN:g})",
            f"TV {small['tv']:.3f} (95 % upper bound {small['tv_upper']:.3f}), chi-square p = "
            f"{small['p_value']:.2g}; reference ESS {ess:,.0f}", verdict))
        claims.append(v.measured_row(
            "B5: Langevin's discretisation bias against its step size",
            ", ".join(f"lr={r.lr:g}: TV {r.tv:.3f}" for r in langevin.itertuples())))
    if len(tempering):
        reliable = tempering[tempering["ess"] >= MIN_ESS]
        best = reliable.loc[reliable.groupby(["lr", "batch"])["tv"].idxmin()]
        matched = best[best["tv"] <= TV_MARGIN]
        claims.append(v.measured_row(
            "B5: SGD settings against tempered posteriors: the temperature whose P(f|S) is closest "
            "(T = 0: P_B)",
            "; ".join(f"lr={r.lr:g} b={r.batch}: T={r.temperature:g} (TV {r.tv:.3f})"
                      for r in best.itertuples())
            + f"; {len(matched)} of {len(best)} settings within TV {TV_MARGIN:g} of some T"))
    return claims

