"""Experiment ``inside``: a look inside the kernel-regime solution.

The experiment the source discussion proposes: take the empirical NTK of a
finite network at initialisation, solve the linear system (the linearised
network trained to convergence, the minimum-norm solution
p* = p0 + J^T (J J^T)^-1 (y - f0)), put p* back into the *nonlinear* network
and look inside it, beside the network trained by full-batch gradient descent
from the same initialisation, across widths, in NTK parametrization and muP:

* how well the nonlinear network at p* predicts (train and test) against the
  linear model at p*, and how that difference shrinks with width (the
  test-output gap ||f(p*) - f_lin(p*)|| / ||f_lin(p*) - f0||, fitted exponent);
* how far its hidden activations moved from initialisation; the largest
  principal angle between the top-k PCA subspaces before and after; the share
  of the activation change inside the span of the top-k output-gradient
  directions df/dh (the combinations the discussion expects to move); the share
  of the moved representation's variance along the top-k directions of its change;
* the same measures for the trained network.

Each (parametrization, width) cell is stored when done; a rerun skips it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.func import vjp

from nnbias.engines.empirical import structured_ntk
from nnbias.engines.ensemble import Ensemble, sample_ensemble
from nnbias.engines.kernels import KernelFn
from nnbias.engines.memory import check_training_fits
from nnbias.engines.training import linearise, mup_gd, train_gd
from nnbias.errors import check_choice, check_device, check_int, check_positive, check_seed, check_sweeps
from nnbias.estimators import verdicts as v
from nnbias.estimators.gp import cholesky_solve
from nnbias.estimators.limits import stable_lr
from nnbias.estimators.scaling import power_law
from nnbias.executor import run_sweep
from nnbias.experiments.registry import check_task, named_task, scaled_settings
from nnbias.measures import features as fm
from nnbias.report import figures
from nnbias.spec import NetworkSpec
from nnbias.store import Store
from nnbias.tasks.datasets import Dataset, digits, teacher_task
from nnbias.tasks.pairs import normalised_mse

TASKS = {
    "single-index": lambda seed: teacher_task("single-index", d=16, train=200, test=500, link="he2",
                                              seed=seed),
    "digits-3-5": lambda seed: digits((3, 5), train=200, seed=seed),
}
PARAMETRIZATIONS = ("ntk", "mup")
SOLUTION, TRAINED = "kernel solution", "trained"
GRADIENT_SHARE = 0.5  # "mostly in the span of the output gradients": more than half of ||delta h||^2
DECIDE = "more widths or seeds"


@dataclass(frozen=True)
class InsideSettings:
    task: str = "single-index"
    widths: tuple[int, ...] = (64, 256, 1024)
    parametrizations: tuple[str, ...] = PARAMETRIZATIONS
    networks: int = 3
    steps: int = 500  # gradient-descent steps of the trained network
    mup_eta: float = 1.0  # muP base learning rate (mean loss) at the base width
    base_width: int = 64
    top_k: int = 5  # PCA subspace and output-gradient span dimension
    sigma_w: float = math.sqrt(2)
    sigma_b: float = 0.1
    device: str = "cpu"  # where networks train and their kernels and features are computed
    seed: int = 0

    def __post_init__(self) -> None:
        check_sweeps(self)
        check_task(TASKS, self.task)
        for p in self.parametrizations:
            check_choice("parametrization", p, PARAMETRIZATIONS)
        for w in self.widths:
            check_int("width", w, minimum=1)
        for name in ("networks", "steps", "base_width", "top_k"):
            check_int(name, getattr(self, name), minimum=1)
        check_seed(self.seed)
        check_device(self.device)
        check_positive("mup_eta", self.mup_eta)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


PAPER = {"widths": (64, 128, 256, 512, 1024, 2048, 4096), "networks": 8, "steps": 2000}


def settings_for(scale: str, **overrides: Any) -> InsideSettings:
    """``small`` (what ``reproduce`` runs) or ``paper`` (widths to 4096, 8 seeds, 2000 steps)."""
    return scaled_settings(InsideSettings, PAPER, scale, overrides)


def load_task(name: str, seed: int) -> Dataset:
    return named_task(TASKS, name, seed)


def _ensemble(task: Dataset, parametrization: str, width: int, s: InsideSettings) -> Ensemble:
    spec = NetworkSpec(task.dim, (width,), "relu", sigma_w=s.sigma_w, sigma_b=s.sigma_b,
                       parametrization=parametrization)
    return sample_ensemble(spec, s.networks, torch.Generator().manual_seed(s.seed * 100_003 + width),
                           dtype=torch.float64, device=s.device)


def kernel_solution(nets: Ensemble, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """p* = p0 + J^T (J J^T)^-1 (y - f0): where the linearised network trained to convergence on (x, y)
    ends (the minimum-norm solution), for each of the K networks; J J^T is the empirical NTK.

    One Cholesky solve per network, not a batched LU: in a process whose sampler has called MKL's
    sgemm from numba threads, batched ``torch.linalg.solve`` was seen to deadlock inside MKL's dgetrf.
    """
    fn, p0 = nets.functional()
    with torch.no_grad():
        theta = structured_ntk(nets, x)
        residual = y.to(theta.dtype) - fn(p0, x)
        alpha = torch.stack([cholesky_solve(t, r[:, None], "empirical NTK")[:, 0]
                             for t, r in zip(theta, residual, strict=True)])
    _, pull = vjp(lambda q: fn(q, x), p0)
    (step,) = pull(alpha)
    return [p + d for p, d in zip(p0, step, strict=True)]


def _train(nets: Ensemble, task: Dataset, y: torch.Tensor, s: InsideSettings) -> list[torch.Tensor]:
    """Full-batch gradient descent from the same initialisation: lr = 1/lambda_max of the analytic NTK for
    NTK parametrization; muP a base rate scaled by its parametrization (mean loss, so / n as a sum loss)."""
    if nets.spec.parametrization == "ntk":
        lr = stable_lr(KernelFn(nets.spec)(task.x_train, kind="ntk", device=s.device))
        return train_gd(nets, task.x_train, y, lr, s.steps).params
    return mup_gd(nets, task.x_train, y, s.mup_eta, s.steps, s.base_width).params


def solution_cell(task_name: str, task: Dataset, parametrization: str, width: int,
                  s: InsideSettings) -> pd.DataFrame:
    """The kernel solution and the trained network of K networks of one width: predictions and features."""
    task = task.to(s.device)
    nets = _ensemble(task, parametrization, width, s)
    fn, p0 = nets.functional()
    y = task.signed_targets(task.y_train)
    p_star, p_trained = kernel_solution(nets, task.x_train, y), _train(nets, task, y, s)
    lin = linearise(fn, p0)
    x = task.x_test
    grads = fm.output_gradients(nets, x)
    with torch.no_grad():
        f0, lin_test, lin_train = fn(p0, x), lin(p_star, x), lin(p_star, task.x_train)
        before: list[torch.Tensor] = []
        nets.forward(x, hidden=before)
        lin_errors = {"test_error_linear": task.test_error(lin_test),
                      "train_error_linear": normalised_mse(lin_train, y)}
        rows = []
        for solution, params in ((SOLUTION, p_star), (TRAINED, p_trained)):
            after: list[torch.Tensor] = []
            moved = nets.from_params(params)
            out, out_train = moved.forward(x, hidden=after), moved.forward(task.x_train)
            h0, h1 = before[0], after[0]
            linear = {**lin_errors, "output_gap": (out - lin_test).norm(dim=1) / (lin_test - f0).norm(dim=1)}
            measures = {"test_error": task.test_error(out), "train_error": normalised_mse(out_train, y),
                        "act_change": fm.relative_change(h0, h1),
                        "max_angle": fm.principal_angles(h0, h1, s.top_k)[:, 0],
                        "grad_fraction": fm.gradient_fraction(h1 - h0, grads[0], s.top_k),
                        "moved_variance": fm.moved_variance(h0, h1, s.top_k)}
            for k in range(s.networks):
                rows.append({"task": task_name, "parametrization": parametrization, "width": width,
                             "solution": solution, "seed": k,
                             **{m: float(v[k]) for m, v in measures.items()},
                             # the linear model's numbers belong to p*
                             **{m: float(v[k]) if solution == SOLUTION else math.nan
                                for m, v in linear.items()}})
    return pd.DataFrame(rows)


def run_inside(store: Store, s: InsideSettings, out: Path, quiet: bool = False,
               executor=None) -> dict[str, Any]:
    """Run (or resume) every (parametrization, width) cell on ``executor``; return tables, figures and
    claims."""
    task = load_task(s.task, s.seed)  # the widest networks must fit before anything is run
    widest = NetworkSpec(task.dim, (max(s.widths),), "relu", sigma_w=s.sigma_w, sigma_b=s.sigma_b)
    check_training_fits(widest, s.networks, len(task.y_train), torch.float64, s.device)
    run_id = store.start_run("inside", s.to_dict(), s.seed, executor)
    cells = run_sweep(store, run_id, "inside_cells", ["parametrization", "width"],
                      [(p, w) for p in s.parametrizations for w in s.widths], executor, solution_cell,
                      "kernel-solution cells", quiet, before=(s.task, task), after=(s,))
    store.finish_run(run_id)
    exponents = fit_exponents(cells)
    judged = inside_claims(cells, exponents)
    store.save_claims(run_id, judged)
    figs = {"kernel_solution": figures.kernel_solution(cells, out / "kernel_solution.png")}
    return {"run_id": run_id, "cells": cells, "exponents": exponents, "figures": figs, "claims": judged}


def fit_exponents(cells: pd.DataFrame) -> pd.DataFrame:
    """Slope of log(measure) against log(width) per (parametrization, solution), with 95 % CIs."""
    rows = []
    for (param, solution), g in cells.groupby(["parametrization", "solution"], sort=False):
        if g["width"].nunique() < 2:
            continue
        for measure in ("output_gap", "act_change"):
            values = g[measure]
            if values.notna().all() and (values > 0).all():
                slope, half = power_law(g["width"], values)
                rows.append({"parametrization": param, "solution": solution, "measure": measure,
                             "exponent": slope, "ci95": half})
    return pd.DataFrame(rows, columns=["parametrization", "solution", "measure", "exponent", "ci95"])


def _exponent(exponents: pd.DataFrame, param: str, solution: str, measure: str) -> v.Interval | None:
    row = exponents[(exponents["parametrization"] == param) & (exponents["solution"] == solution)
                    & (exponents["measure"] == measure)]
    return None if not len(row) else v.Interval.around(row["exponent"].iloc[0], row["ci95"].iloc[0])


def inside_claims(cells: pd.DataFrame, exponents: pd.DataFrame) -> list[dict[str, str]]:
    """NTK parametrization: the nonlinear network at p* approaches its linear model and its features
    move as width^-1/2, mostly along output gradients; the rest is reported as measured."""
    claims = []
    widest = cells[cells["width"] == cells["width"].max()]
    for param in dict.fromkeys(cells["parametrization"]):
        gap, moved = (_exponent(exponents, param, SOLUTION, m) for m in ("output_gap", "act_change"))
        at = widest[(widest["parametrization"] == param) & (widest["solution"] == SOLUTION)]
        trained = widest[(widest["parametrization"] == param) & (widest["solution"] == TRAINED)]
        width = int(cells["width"].max())
        text = (f"at width {width}: test error of the network at p* {at['test_error'].mean():.3f} against "
                f"the linear model's {at['test_error_linear'].mean():.3f}; trained network "
                f"{trained['test_error'].mean():.3f}")
        if param == "ntk" and gap is not None and moved is not None:
            claims.append(v.claim_row(
                "B6: NTK param.: the nonlinear network at the kernel solution p* predicts like the linear "
                f"model: ||f(p*) - f_lin(p*)|| / ||f_lin(p*) - f0|| ~ width^-1/2 (+- {v.EXPONENT_MARGIN:g})",
                f"exponent {gap}; {text}", v.equals(gap, -0.5, v.EXPONENT_MARGIN, DECIDE)))
            claims.append(v.claim_row(
                "B6: NTK param.: hidden activations at p* move by width^-1/2 "
                f"(+- {v.EXPONENT_MARGIN:g}) from initialisation",
                f"relative change exponent {moved}; at width {width}: {at['act_change'].mean():.3g}",
                v.equals(moved, -0.5, v.EXPONENT_MARGIN, DECIDE)))
            share = v.mean_interval(at["grad_fraction"])
            claims.append(v.claim_row(
                f"B6: NTK param.: at p* the activation change lies mostly (> {GRADIENT_SHARE}) in the "
                "span of the top output-gradient directions df/dh",
                f"share at width {width}: {share} (trained network: {trained['grad_fraction'].mean():.3f})",
                v.at_least(share, GRADIENT_SHARE, DECIDE)))
        else:
            claims.append(v.measured_row(
                f"B6: {param}: inside the kernel solution p* against the trained network",
                f"{text}; output-gap exponent {gap}; activation change at p* {at['act_change'].mean():.3g} "
                f"(trained {trained['act_change'].mean():.3g}), share along output gradients "
                f"{at['grad_fraction'].mean():.3f} (trained {trained['grad_fraction'].mean():.3f})"))
    return claims
