"""Experiment ``kernels``: do finite networks behave like their infinite-width kernels?

Wires the spec's faces together on one task:

* kernel predictors: NNGP posterior mean and NTK gradient flow at t = inf and at
  the finite networks' training time (analytic kernels, ``estimators.gp``);
* finite networks of growing width trained by full-batch gradient descent with
  the same learning rate (``engines.training``), K networks per width at once;
* the empirical NTK approaching the analytic NTK as width grows (error fitted
  against width^-1/2), and NTK fluctuations at initialisation against
  beta = depth/width (Hanin & Nica 2019: E[Theta^2]/E[Theta]^2 ~ exp(5 beta) up to
  constant factors), beside the forward pass on the same networks, whose
  fluctuation has the closed form (1 + 5/width)^depth.

Each (task, width) cell is stored as soon as it is done; a rerun skips it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats

from nnbias.engines.empirical import spec_empirical_ntk, structured_ntk
from nnbias.engines.ensemble import sample_ensemble
from nnbias.engines.kernels import KernelFn
from nnbias.engines.memory import check_training_fits
from nnbias.engines.training import train_gd
from nnbias.errors import check_device, check_int, check_seed, check_sweeps, require
from nnbias.estimators import verdicts as v
from nnbias.estimators.limits import kernel_predictors
from nnbias.estimators.scaling import power_law, proportional
from nnbias.executor import run_cells
from nnbias.experiments.registry import check_task, named_task, scaled_settings
from nnbias.report import figures
from nnbias.spec import NetworkSpec
from nnbias.store import Store
from nnbias.tasks.datasets import Dataset, digits, sparse_parity, teacher_task

HANIN_NICA_RATE = 5.0  # E[Theta^2]/E[Theta]^2 ~ exp(5 beta) for deep ReLU nets (Hanin & Nica 2019)
RATE_MARGIN = 1.0  # the fitted rate "equals" 5 within +- 1 (20 %)
FORWARD_MARGIN = 0.2  # the forward pass's log-ratio "equals" its closed form's within the same 20 %


@dataclass(frozen=True)
class KernelsSettings:
    tasks: tuple[str, ...] = ("digits-3-5", "parity-d10-k2", "single-index")
    widths: tuple[int, ...] = (64, 256, 1024)
    depth: int = 1
    networks: int = 4
    steps: int = 1000
    sigma_w: float = math.sqrt(2)
    sigma_b: float = 0.1
    seed: int = 0
    convergence_widths: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048)
    convergence_seeds: int = 16  # the error exponent is fitted over (width, seed) points: 4 left it undecided
    fluctuation_depths: tuple[int, ...] = (1, 2, 4, 8)
    fluctuation_widths: tuple[int, ...] = (16, 32, 64, 128)
    fluctuation_networks: int = 400
    device: str = "cpu"  # where Gram matrices, empirical NTKs and the networks' training are computed
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_sweeps(self)
        for t in self.tasks:  # names only: building the data sets here would be done twice
            check_task(TASKS, t)
        for name in ("depth", "networks", "steps", "convergence_seeds", "fluctuation_networks"):
            check_int(name, getattr(self, name), minimum=1)
        check_seed(self.seed)
        check_device(self.device)
        for w in self.widths + self.convergence_widths + self.fluctuation_widths:
            check_int("width", w, minimum=1)
        for d in self.fluctuation_depths:
            check_int("fluctuation_depth", d, minimum=1)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "extra"}


PAPER = {"widths": (64, 256, 1024, 4096), "networks": 8,
         "convergence_widths": (64, 128, 256, 512, 1024, 2048, 4096), "convergence_seeds": 32,
         "fluctuation_depths": (1, 2, 4, 8, 16), "fluctuation_widths": (32, 64, 128, 256),
         "fluctuation_networks": 2000}


def settings_for(scale: str, **overrides: Any) -> KernelsSettings:
    """``small`` (what ``reproduce`` runs) or ``paper`` (widths to 4096, 32 convergence seeds, 2000 networks
    per fluctuation cell, depths to 16)."""
    return scaled_settings(KernelsSettings, PAPER, scale, overrides)


TASKS = {
    "digits-3-5": lambda seed: digits((3, 5), train=200, seed=seed),
    "digits-0-1": lambda seed: digits((0, 1), train=200, seed=seed),
    "parity-d10-k2": lambda seed: sparse_parity(10, 2, train=400, test=1000, seed=seed),
    "parity-d10-k3": lambda seed: sparse_parity(10, 3, train=400, test=1000, seed=seed),
    "linear": lambda seed: teacher_task("linear", d=16, train=200, test=1000, seed=seed),
    "single-index": lambda seed: teacher_task("single-index", d=16, train=200, test=1000,
                                              link="he2", seed=seed),
}


def load_task(name: str, seed: int) -> Dataset:
    task = named_task(TASKS, name, seed)
    require(task.classes in (0, 2), f"task={name!r} has {task.classes} classes; the kernels "
                                    "experiment needs a two-class or regression task (scalar output)")
    return task


def task_cells(task_name: str, task: Dataset, s: KernelsSettings, widths: list[int]) -> pd.DataFrame:
    """Kernel predictors and trained networks of each width, on one task."""
    spec = NetworkSpec(task.dim, (widths[0],) * s.depth, "relu", sigma_w=s.sigma_w, sigma_b=s.sigma_b,
                       parametrization="ntk")
    y = task.signed_targets(task.y_train)
    limits = kernel_predictors(spec, task, s.steps)
    lr = limits.lr
    rows = [{"task": task_name, "model": m, "width": None, "score": score, "score_sd": 0.0, "diverged": 0}
            for m, score in limits.scores(task).items()]
    for width in widths:
        wide = replace(spec, hidden=(width,) * s.depth)
        nets = sample_ensemble(wide, s.networks, torch.Generator().manual_seed(s.seed + width),
                               dtype=torch.float64, device=s.device)
        result = train_gd(nets, task.x_train, y, lr, s.steps)
        scores = task.test_score(result.predict(task.x_test))[~result.diverged]
        rows.append({"task": task_name, "model": "network", "width": width,
                     "score": float(scores.mean()) if len(scores) else float("nan"),
                     "score_sd": float(scores.std()) if len(scores) > 1 else 0.0,
                     "diverged": int(result.diverged.sum())})
    return pd.DataFrame(rows).assign(metric="accuracy" if task.classes else "mse", lr=lr)


def ntk_convergence(s: KernelsSettings, points: int = 8) -> pd.DataFrame:
    """Relative Frobenius error of empirical vs analytic NTK for each width and seed."""
    x = torch.randn(points, 8, generator=torch.Generator().manual_seed(s.seed), dtype=torch.float64)
    rows = []
    for width in s.convergence_widths:
        spec = NetworkSpec(8, (width, width), "relu", sigma_w=s.sigma_w, sigma_b=s.sigma_b,
                           parametrization="ntk")
        exact = KernelFn(spec)(x, kind="ntk", device=s.device)
        for seed in range(s.convergence_seeds):
            emp = spec_empirical_ntk(spec, x, seed=seed, device=s.device).cpu()
            rows.append({"width": width, "seed": seed,
                         "rel_error": float((emp - exact).norm() / exact.norm())})
    return pd.DataFrame(rows)


def forward_fluctuation(depth: int, width: int) -> float:
    """E[q^2]/E[q]^2 at initialisation of q = ||h_L||^2, the squared last hidden layer of a bias-free
    ReLU network with Gaussian weights (the network's own NNGP diagonal, up to the readout's scale):
    each layer multiplies it by an independent (2/n) sum of n squared ReLU(N(0, 1)), whose second
    moment is (n * 3/2 + n (n - 1) / 4) / (n/2)^2 = 1 + 5/n of its squared mean; so
    (1 + 5/width)^depth, exp(5 beta) at large width."""
    return (1 + 5 / width) ** depth


def init_fluctuations(s: KernelsSettings) -> pd.DataFrame:
    """E[Theta(x,x)^2] / E[Theta(x,x)]^2 over networks at initialisation, against beta = depth/width,
    and on the same networks E[q^2]/E[q]^2 of the forward pass, against its closed form."""
    x = torch.ones(1, 8, dtype=torch.float64, device=s.device)
    rows = []
    for depth in s.fluctuation_depths:
        for width in s.fluctuation_widths:
            spec = NetworkSpec(8, (width,) * depth, "relu", sigma_w=math.sqrt(2), sigma_b=0.0,
                               bias=False, parametrization="ntk")
            nets = sample_ensemble(spec, s.fluctuation_networks,
                                   torch.Generator().manual_seed(s.seed + 1000 * depth + width),
                                   dtype=torch.float64, device=s.device)
            theta = structured_ntk(nets, x)[:, 0, 0].cpu()
            hidden: list[torch.Tensor] = []
            with torch.no_grad():
                nets.forward(x, inplace=False, hidden=hidden)
            q = (hidden[-1][:, :, 0] ** 2).sum(1).cpu()
            rows.append({"depth": depth, "width": width, "beta": depth / width,
                         "ntk_ratio": float((theta**2).mean() / theta.mean() ** 2),
                         "forward_ratio": float((q**2).mean() / q.mean() ** 2),
                         "forward_exact": forward_fluctuation(depth, width),
                         "hanin_nica": math.exp(5 * depth / width)})
    return pd.DataFrame(rows)


def _kernels_work(table: str, name: str, s: KernelsSettings) -> pd.DataFrame:
    """One unit of the experiment: a task's predictors and networks, or the convergence or fluctuation
    sweep (``name`` empty)."""
    if table == "kernels_results":
        return task_cells(name, load_task(name, s.seed).to(s.device), s, list(s.widths))
    return (ntk_convergence if table == "kernels_convergence" else init_fluctuations)(s)


def run_kernels(store: Store, s: KernelsSettings, out: Path, quiet: bool = False,
                executor=None) -> dict[str, Any]:
    """Run (or resume) the experiment's units on ``executor``; return tables, figures and claims."""
    for name in s.tasks:  # the widest networks must fit before anything is run
        task = load_task(name, s.seed)
        widest = NetworkSpec(task.dim, (max(s.widths),) * s.depth, "relu", sigma_w=s.sigma_w,
                             sigma_b=s.sigma_b, parametrization="ntk")
        check_training_fits(widest, s.networks, len(task.y_train), torch.float64, s.device)
    run_id = store.start_run("kernels", s.to_dict(), s.seed, executor)
    done = store.done_cells("kernels_results", run_id, ["task"])
    todo = [("kernels_results", n) for n in s.tasks if (n,) not in done]
    todo += [(t, "") for t in ("kernels_convergence", "kernels_init_fluctuations")
             if not len(store.table(t, run_id))]
    run_cells(executor, _kernels_work, todo, lambda cell, rows: store.append_rows(cell[0], run_id, rows),
              "kernel cells", quiet, after=(s,))
    store.finish_run(run_id)
    results = store.sweep_table("kernels_results", run_id, ["task"], [(n,) for n in s.tasks])
    conv = store.table("kernels_convergence", run_id).drop(columns="run_id")
    fluct = store.table("kernels_init_fluctuations", run_id).drop(columns="run_id")
    slope, half = power_law(conv["width"], conv["rel_error"])
    fit = stats.linregress(np.log(conv["width"]), np.log(conv["rel_error"]))
    figs = {
        "kernel_gap": figures.kernel_gap(results, out / "kernel_gap.png"),
        "ntk_convergence": figures.ntk_convergence(conv, fit.slope, fit.intercept,
                                                   out / "ntk_convergence.png"),
        "ntk_fluctuations": figures.ntk_fluctuations(fluct, out / "ntk_fluctuations.png"),
    }
    judged = kernel_claims(results, v.Interval.around(slope, half), conv, fluct)
    store.save_claims(run_id, judged)
    return {"run_id": run_id, "results": results, "convergence": conv, "fluctuations": fluct,
            "exponent": (slope, half), "figures": figs, "claims": judged}


def kernel_claims(results: pd.DataFrame, exponent: v.Interval, conv: pd.DataFrame,
                  fluct: pd.DataFrame) -> list[dict[str, str]]:
    rate = v.Interval.around(*proportional(fluct["beta"], np.log(fluct["ntk_ratio"])))
    forward = v.Interval.around(*proportional(np.log(fluct["forward_exact"]), np.log(fluct["forward_ratio"])))
    widest = fluct.loc[fluct["beta"].idxmax()]
    fluct_text = (f"log(E[T^2]/E[T]^2) = c beta fitted through the origin over {len(fluct)} (depth, width) "
                  f"cells: c = {rate}; at beta = {widest.beta:.3g}: {widest.ntk_ratio:.2f} vs exp(5 beta) = "
                  f"{widest.hanin_nica:.2f}")
    forward_text = (f"log(E[q^2]/E[q]^2) = k log((1 + 5/width)^depth) through the origin over {len(fluct)} "
                    f"cells: k = {forward}; at beta = {widest.beta:.3g}: {widest.forward_ratio:.2f} against "
                    f"{widest.forward_exact:.2f} (the NTK on the same networks: {widest.ntk_ratio:.2f})")
    decide = "more depths, widths or networks per cell"
    claims = [
        v.claim_row("B2: the empirical NTK converges to the analytic NTK, relative error ~ width^-1/2",
                    f"fitted exponent {exponent} (depth 2, widths {conv['width'].min()}.."
                    f"{conv['width'].max()}, {conv['seed'].nunique()} seeds)",
                    v.equals(exponent, -0.5, v.EXPONENT_MARGIN, "more widths or seeds")),
        v.claim_row("B2: NTK fluctuations at init grow with beta = depth/width (c > 0)", fluct_text,
                    v.at_least(rate, 0.0, decide)),
        v.claim_row(f"B2: NTK fluctuations at init are exp(5 beta) at the betas measured: c = "
                    f"{HANIN_NICA_RATE:g} +- {RATE_MARGIN:g} (stricter than Hanin & Nica 2019, who prove "
                    "exp(5 beta) up to constant factors)", fluct_text,
                    v.equals(rate, HANIN_NICA_RATE, RATE_MARGIN, decide)),
        v.claim_row("B2: the forward pass's fluctuation at init is its closed form (1 + 5/width)^depth, "
                    "exp(5 beta) at large width (q = ||h_L||^2, ReLU without bias): k = 1 +- "
                    f"{FORWARD_MARGIN:g}", forward_text, v.equals(forward, 1.0, FORWARD_MARGIN, decide)),
    ]
    for task, rows in results.groupby("task", sort=False):
        nets = rows[rows["model"] == "network"].sort_values("width")
        kernel = rows.set_index("model")
        metric = rows["metric"].iloc[0]
        claims.append(v.measured_row(
            f"B3: on {task}, do trained nets match their kernels?",
            f"{metric}: NNGP {kernel.loc['NNGP', 'score']:.3f}, NTK(t=inf) "
            f"{kernel.loc['NTK t=inf', 'score']:.3f}, NTK(t=train) {kernel.loc['NTK t=train', 'score']:.3f}, "
            f"expected of a wide net from random init {kernel.loc['NTK net t=train', 'score']:.3f}; nets of "
            "width " + ", ".join(f"{int(r.width)}: {r.score:.3f}+-{r.score_sd:.3f}"
                                 for r in nets.itertuples())))
    return claims
