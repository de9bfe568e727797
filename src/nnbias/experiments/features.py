"""Experiment ``features``: do hidden activations move, and how does that scale with width?

Two parts, for each abc-parametrization of the spec (standard, ntk, mup,
mean-field; Yang & Hu 2021):

1. Coordinate check (as microsoft/mup draws it): the typical coordinate of each
   layer's activations at initialisation, and of its change after a few SGD
   steps, against width. Theory: changes shrink like width^-1/2 under NTK (and
   standard at c = 1), stay Theta(1) under muP and mean-field.
2. Width sweep on tasks: K networks per (task, parametrization, width) trained by
   full-batch gradient descent with learning rate eta (n/base)^-c; measured on
   held-out inputs: relative change of each layer's activations and weights,
   kernel velocity (distance between the empirical NTKs at init and at the end),
   kernel-target alignment, CKA and principal angles between initial and trained
   representations, and the share of the activation change along the top
   output-gradient directions. Scaling exponents of feature movement with
   width are fitted with 95 % confidence intervals.

Each (task, parametrization, width) cell is stored when done; a rerun skips it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from nnbias.engines.empirical import structured_ntk
from nnbias.engines.ensemble import Ensemble, sample_ensemble
from nnbias.engines.memory import check_training_fits
from nnbias.engines.training import TrainConfig, train
from nnbias.errors import check_device, check_int, check_seed, check_sweeps, require
from nnbias.estimators import verdicts as v
from nnbias.estimators.scaling import power_law
from nnbias.executor import run_sweep
from nnbias.experiments.registry import check_task, named_task, scaled_settings
from nnbias.measures import features as fm
from nnbias.report import figures
from nnbias.spec import PARAMETRIZATIONS, NetworkSpec
from nnbias.store import Store
from nnbias.tasks.datasets import Dataset, digits, teacher_task

TASKS = {
    "single-index": lambda seed: teacher_task("single-index", d=16, train=256, test=256, link="he2",
                                              seed=seed),
    "linear": lambda seed: teacher_task("linear", d=16, train=256, test=256, seed=seed),
    "digits-3-5": lambda seed: digits((3, 5), train=200, seed=seed),
}
# base learning rate eta at the base width, per parametrization (tuned once at width 64)
ETA = {"standard": 0.05, "ntk": 0.5, "mup": 0.5, "mean-field": 0.5}


@dataclass(frozen=True)
class FeaturesSettings:
    parametrizations: tuple[str, ...] = ("standard", "ntk", "mup", "mean-field")
    tasks: tuple[str, ...] = ("single-index", "digits-3-5")
    widths: tuple[int, ...] = (64, 256, 1024)
    depth: int = 2
    networks: int = 3  # seeds per cell, trained as one ensemble
    steps: int = 100
    base_width: int = 64
    coord_widths: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048)
    coord_steps: int = 3
    device: str = "cpu"  # where the networks train and every measure is computed
    seed: int = 0

    def __post_init__(self) -> None:
        check_sweeps(self)
        for p in self.parametrizations:
            require(p in PARAMETRIZATIONS, f"parametrization={p!r} is not allowed; choose from "
                                           f"{list(PARAMETRIZATIONS)}")
        for t in self.tasks:  # names only: building the data sets here would be done twice
            check_task(TASKS, t)
        for name in ("depth", "networks", "steps", "base_width", "coord_steps"):
            check_int(name, getattr(self, name), minimum=1)
        check_seed(self.seed)
        check_device(self.device)
        for w in self.widths + self.coord_widths:
            check_int("width", w, minimum=1)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


PAPER = {"widths": (64, 128, 256, 512, 1024, 2048, 4096), "networks": 5, "steps": 500,
         "coord_widths": (64, 128, 256, 512, 1024, 2048, 4096, 8192),
         "tasks": ("single-index", "linear", "digits-3-5")}


def settings_for(scale: str, **overrides: Any) -> FeaturesSettings:
    """``small`` (about a minute and a half here) or ``paper`` (widths to 4096, 5 seeds, 500 steps)."""
    return scaled_settings(FeaturesSettings, PAPER, scale, overrides)


@functools.lru_cache(maxsize=8)
def load_task(name: str, seed: int) -> Dataset:
    """A task, built once per process (cells in threads or on Dask workers load their own)."""
    return named_task(TASKS, name, seed)


def make_spec(dim: int, parametrization: str, width: int, depth: int) -> NetworkSpec:
    """ReLU MLP of the given width; mean-field is defined for one hidden layer only."""
    depth = 1 if parametrization == "mean-field" else depth
    return NetworkSpec(dim, (width,) * depth, "relu", sigma_w=math.sqrt(2), sigma_b=0.1,
                       parametrization=parametrization)


def _train(spec: NetworkSpec, task: Dataset, s: FeaturesSettings, steps: int, width: int
           ) -> tuple[Ensemble, list[torch.Tensor], Any]:
    nets = sample_ensemble(spec, s.networks, torch.Generator().manual_seed(s.seed + width),
                           dtype=torch.float64, device=s.device)
    fn, params = nets.functional()
    lr = ETA[spec.parametrization] * spec.lr_scale(s.base_width)
    result = train(fn, params, task.x_train, task.signed_targets(task.y_train),
                   TrainConfig("sgd", lr, None, "mse", steps, "none"))
    return nets, params, result


def coordinate_check(s: FeaturesSettings) -> pd.DataFrame:
    """Typical coordinate of each layer at init and of its change after a few steps, per width."""
    task = load_task("single-index", s.seed).to(s.device)
    rows = []
    for parametrization in s.parametrizations:
        for width in s.coord_widths:
            spec = make_spec(task.dim, parametrization, width, s.depth)
            nets, _, result = _train(spec, task, s, s.coord_steps, width)
            before, after = [], []
            out0 = nets.forward(task.x_test, hidden=before)
            out1 = nets.from_params(result.params).forward(task.x_test, hidden=after)
            layers = [*zip(before, after, strict=True), (out0.unsqueeze(1), out1.unsqueeze(1))]
            for layer, (h0, h1) in enumerate(layers):
                rows.append({"parametrization": parametrization, "width": width,
                             "layer": "output" if layer == len(before) else f"hidden {layer + 1}",
                             "size": float(fm.coordinate_size(h0).mean()),
                             "change": float(fm.coordinate_size(h1 - h0).mean()),
                             "diverged": int(result.diverged.sum())})
    return pd.DataFrame(rows)


def feature_cell(task_name: str, task: Dataset, parametrization: str, width: int,
                 s: FeaturesSettings) -> pd.DataFrame:
    """All feature-movement measures for K networks of one width, one parametrization, one task."""
    spec = make_spec(task.dim, parametrization, width, s.depth)
    nets, params, result = _train(spec, task, s, s.steps, width)
    trained = nets.from_params(result.params)
    x = task.x_test
    before, after = [], []
    with torch.no_grad():
        out0 = nets.forward(x, hidden=before)
        out1 = trained.forward(x, hidden=after)
    grads = fm.output_gradients(nets, x)
    probe = x[:64]
    k0, k1 = structured_ntk(nets, probe), structured_ntk(trained, probe)
    y = task.signed_targets(task.y_test[:64])
    score = task.test_score(out1)
    base = {"task": task_name, "parametrization": parametrization, "width": width,
            "lr": ETA[parametrization] * spec.lr_scale(s.base_width),
            "metric": "accuracy" if task.classes else "mse"}
    rows = []
    for k in range(s.networks):
        row = {**base, "seed": k, "diverged": bool(result.diverged[k]), "train_loss": float(result.losses[k]),
               "test_score": float(score[k]), "output_change": float(fm.relative_change(out0, out1)[k]),
               "kernel_distance": float(fm.kernel_distance(k0, k1)[k]),
               "alignment_init": float(fm.kernel_alignment(k0, y)[k]),
               "alignment_end": float(fm.kernel_alignment(k1, y)[k])}
        for layer, (h0, h1, g) in enumerate(zip(before, after, grads, strict=True), start=1):
            row[f"act_change_{layer}"] = float(fm.relative_change(h0[k:k + 1], h1[k:k + 1])[0])
            row[f"cka_{layer}"] = float(fm.linear_cka(h0[k:k + 1], h1[k:k + 1])[0])
            row[f"max_angle_{layer}"] = float(fm.principal_angles(h0[k:k + 1], h1[k:k + 1])[0, 0])
            row[f"grad_fraction_{layer}"] = float(fm.gradient_fraction((h1 - h0)[k:k + 1], g[k:k + 1])[0])
        w0 = [p[k] for p in params]
        w1 = [p[k] for p in result.params]
        for i, (p0, p1) in enumerate(zip(w0, w1, strict=True)):
            if p0.ndim == 2:  # weights only
                row[f"weight_change_{i // (2 if spec.bias else 1) + 1}"] = float((p1 - p0).norm() / p0.norm())
        rows.append(row)
    return pd.DataFrame(rows)


def fit_exponents(cells: pd.DataFrame, column: str = "act_change_1") -> pd.DataFrame:
    """Slope of log(column) against log(width) per (task, parametrization), with a 95 % CI."""
    rows = []
    for (task, param), g in cells[~cells["diverged"]].groupby(["task", "parametrization"], sort=False):
        g = g[np.isfinite(g[column]) & (g[column] > 0)]
        if g["width"].nunique() < 2:
            continue
        slope, half = power_law(g["width"], g[column])
        rows.append({"task": task, "parametrization": param, "measure": column, "exponent": slope,
                     "ci95": half, "points": len(g)})
    return pd.DataFrame(rows)


def theory(parametrization: str, layer: int) -> float:
    """Predicted exponent of a hidden layer's feature change with width (Yang & Hu 2021).

    Standard at c = 1: the first layer's preactivations move by lr * df/dh ~
    n^-1 n^-1/2 = n^-3/2, deeper ones by n^-1/2; NTK n^-1/2 everywhere; muP and
    mean-field n^0.
    """
    if parametrization == "standard":
        return -1.5 if layer == 1 else -0.5
    return -0.5 if parametrization == "ntk" else 0.0


def _judge(exponent: float, ci95: float, predicted: float) -> v.Verdict:
    return v.equals(v.Interval.around(exponent, ci95), predicted, v.EXPONENT_MARGIN, "more widths or seeds")


def _feature_work(task_name: str, parametrization: str, width: int, s: FeaturesSettings) -> pd.DataFrame:
    return feature_cell(task_name, load_task(task_name, s.seed).to(s.device), parametrization, width, s)


def run_features(store: Store, s: FeaturesSettings, out: Path, quiet: bool = False,
                 executor=None) -> dict[str, Any]:
    """Run (or resume) the coordinate check and the width sweep (cells on ``executor``); return tables,
    figures, claims."""
    for name in s.tasks:  # the widest networks must fit before anything is run
        task = load_task(name, s.seed)
        for p in s.parametrizations:
            check_training_fits(make_spec(task.dim, p, max(s.widths), s.depth), s.networks, len(task.y_train),
                                torch.float64, s.device)
    run_id = store.start_run("features", s.to_dict(), s.seed, executor)
    if not len(store.table("features_coord", run_id)):
        store.append_rows("features_coord", run_id, coordinate_check(s))
    cells = run_sweep(store, run_id, "features_cells", ["task", "parametrization", "width"],
                      [(t, p, w) for t in s.tasks for p in s.parametrizations for w in s.widths], executor,
                      _feature_work, "feature-movement cells", quiet, after=(s,))
    store.finish_run(run_id)
    coord = store.table("features_coord", run_id).drop(columns="run_id")
    measures = dict.fromkeys(("act_change_1", f"act_change_{s.depth}", "kernel_distance"))  # depth 1: once
    exponents = pd.concat([fit_exponents(cells, c) for c in measures if c in cells], ignore_index=True)
    coord_fit = coordinate_exponents(coord)
    figs = {"coordinate_check": figures.coordinate_check(coord, out / "coordinate_check.png"),
            "feature_movement": figures.feature_movement(cells, out / "feature_movement.png")}
    judged = feature_claims(coord_fit, exponents)
    store.save_claims(run_id, judged)
    return {"run_id": run_id, "coord": coord, "coord_exponents": coord_fit, "cells": cells,
            "exponents": exponents, "figures": figs, "claims": judged}


def coordinate_exponents(coord: pd.DataFrame) -> pd.DataFrame:
    """Slope of log(change) against log(width) per parametrization and layer (coordinate check)."""
    rows = []
    for (param, layer), g in coord.groupby(["parametrization", "layer"], sort=False):
        slope, half = power_law(g["width"], g["change"])
        rows.append({"parametrization": param, "layer": layer, "exponent": slope, "ci95": half})
    return pd.DataFrame(rows)


def feature_claims(coord_fit: pd.DataFrame, exponents: pd.DataFrame) -> list[dict[str, str]]:
    """One row per parametrization (coordinate check) and per (task, parametrization) (width sweep),
    each the aggregate of its hidden layers' equivalence tests against the predicted exponent."""
    claims = []
    margin = f"+- {v.EXPONENT_MARGIN:g}"
    for param, g in coord_fit[coord_fit["layer"] != "output"].groupby("parametrization", sort=False):
        layers = [(int(r.layer.split()[-1]), r) for r in g.itertuples()]
        claims.append(v.claim_row(
            f"B1: coordinate check, {param}: hidden-layer change after a few SGD steps ~ width^r, r = "
            + ", ".join(f"{theory(param, i):g}" for i, _ in layers) + f" ({margin})",
            "; ".join(f"{r.layer}: {r.exponent:.2f} +- {r.ci95:.2f}" for _, r in layers),
            v.all_of([_judge(r.exponent, r.ci95, theory(param, i)) for i, r in layers], "hidden layers")))
    moved = exponents[exponents["measure"].str.startswith("act_change")] if len(exponents) else exponents
    for (task, param), g in moved.groupby(["task", "parametrization"], sort=False):
        layers = [(int(r.measure.rsplit("_", 1)[1]), r) for r in g.itertuples()]
        claims.append(v.claim_row(
            f"B1: on {task}, {param}: relative movement of hidden activations after training ~ width^r, r = "
            + ", ".join(f"{theory(param, i):g}" for i, _ in layers) + f" ({margin})",
            "; ".join(f"layer {i}: {r.exponent:.2f} +- {r.ci95:.2f}" for i, r in layers),
            v.all_of([_judge(r.exponent, r.ci95, theory(param, i)) for i, r in layers], "hidden layers")))
    return claims
