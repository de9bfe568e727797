"""Experiment ``routes``: three routes to fitting S, and whether freezing all but the readout is Bayesian.

The source discussion's thought experiment, made exact on a Boolean task: one
side says that sampling only the last layer over random (frozen) hidden layers
gives the same posterior over functions, in expectation over the features, as
sampling all layers; the other that a network too thin for its random
features to fit S shows the difference. Per width of one hidden ReLU layer,
the distribution over the functions on a test set E of

* ``last-sample`` (A): K random hidden layers from the prior, each with R
  readouts from the prior; a hidden layer is *expressive* if one of its R
  readouts fits S, and contributes its first fitting readout: the posterior
  E_features[P(f | S, features)] over expressive features, as the argument
  requires;
* ``last-train`` (A, trained): the same frozen random hidden layers with the
  readout trained by SGD to 100 % training accuracy (``estimators.posterior``);
* ``all-sample`` (B): all layers drawn until the network fits S
  (``engines.bayes.rejection_posterior``), i.e. P_B(f | S);
* ``all-train`` (C): the whole network trained by SGD to fit S.

All-layer sampling weights each feature draw by P(S | features), A weights the
expressive ones equally, so the two agree when P(S | features) hardly varies
between feature draws: the spread of the per-feature acceptance rate (its
coefficient of variation over expressive features) is reported beside the
total variation between the routes (permutation test, bootstrap upper bound)
and the correlation of their log frequencies (Fisher-z CI).

Each (width, route) cell is stored when done; a rerun skips it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from nnbias.engines.bayes import fit_mask, rejection_posterior
from nnbias.engines.ensemble import Ensemble, sample_ensemble
from nnbias.engines.memory import check_fits, check_training_fits
from nnbias.engines.sampler import chunk_seed
from nnbias.engines.training import TrainConfig
from nnbias.errors import check_choice, check_device, check_int, check_positive, check_seed, check_sweeps
from nnbias.estimators import verdicts as v
from nnbias.estimators.frequency import column_counts, compare_distributions, count_columns
from nnbias.estimators.posterior import trained_functions
from nnbias.executor import run_sweep
from nnbias.experiments.registry import scaled_settings
from nnbias.report import figures
from nnbias.spec import NetworkSpec
from nnbias.store import Store
from nnbias.tasks.boolean import sign_codes
from nnbias.tasks.datasets import Dataset, boolean_task

ROUTES = ("last-sample", "last-train", "all-sample", "all-train")
PAIRS = (("last-sample", "all-sample"), ("all-train", "all-sample"), ("last-train", "last-sample"))
TV_MARGIN = 0.1  # "the same posterior": total variation at most this
ALPHA = 0.01
MIN_SAMPLES = 100  # fewer functions in a route say nothing about a whole distribution
DECIDE = "more samples per route"
# networks whose readouts last-sample draws at once: bounds its buffer at any scale (1 GiB at the paper's
# 1024 readouts of width 1024); a constant, so the random stream does not depend on the machine, and a
# multiple of 16 networks, so the chunks draw what one call would (torch fills normals 16 at a time)
READOUT_CHUNK = 256


@dataclass(frozen=True)
class RoutesSettings:
    widths: tuple[int, ...] = (2, 4, 8, 32, 128)
    train: int = 8
    test: int = 5  # |E|: 32 possible functions, few enough for 4000 samples to resolve
    samples: int = 4000  # networks per route and width
    readouts: int = 256  # prior readouts tried per random hidden layer (last-sample)
    max_draws: int = 5_000_000  # prior draws all-sample may spend per width
    lr: float = 0.1  # full-batch SGD on the mean cross-entropy, for both trained routes
    max_epochs: int = 500
    device: str = "cpu"  # where networks are drawn into, conditioned and trained
    seed: int = 0

    def __post_init__(self) -> None:
        check_sweeps(self)
        for w in self.widths:
            check_int("width", w, minimum=1)
        for name in ("train", "test", "samples", "readouts", "max_draws", "max_epochs"):
            check_int(name, getattr(self, name), minimum=1)
        check_int("train + test", self.train + self.test, maximum=128)
        check_positive("lr", self.lr)
        check_seed(self.seed)
        check_device(self.device)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


PAPER = {"widths": (1, 2, 3, 4, 8, 16, 64, 256, 1024), "samples": 40_000, "readouts": 1024, "test": 8,
         "max_draws": 100_000_000}


def settings_for(scale: str, **overrides: Any) -> RoutesSettings:
    """``small`` (what ``reproduce`` runs) or ``paper`` (40 000 networks per route, |E| = 8,
    widths 1..1024)."""
    return scaled_settings(RoutesSettings, PAPER, scale, overrides)


def load_task(s: RoutesSettings) -> Dataset:
    return boolean_task(7, "0011" * 32, train=s.train, test=s.test, seed=s.seed)


def spec_for(width: int) -> NetworkSpec:
    return NetworkSpec(7, (width,), "relu", sigma_w=1.0, sigma_b=1.0, parametrization="ntk")


def last_layer_samples(nets: Ensemble, task: Dataset, readouts: int, generator: torch.Generator
                       ) -> tuple[np.ndarray, np.ndarray]:
    """For each network's (frozen) hidden layer, ``readouts`` prior readouts: (the function on E of the
    first one that fits S, or -1 when none does; the share of readouts that fit S). The readouts of
    ``READOUT_CHUNK`` networks at a time, drawn one chunk after the other from ``generator``."""
    x = torch.cat([task.x_train, task.x_test]).float()
    hidden: list[torch.Tensor] = []
    with torch.no_grad():
        nets.forward(x, hidden=hidden)
    h = hidden[-1]  # (K, width, N)
    chunks = [_fitting_readouts(h[i:i + READOUT_CHUNK], nets, readouts, task.y_train, generator)
              for i in range(0, len(h), READOUT_CHUNK)]
    return np.concatenate([c for c, _ in chunks]), np.concatenate([s for _, s in chunks])


def _fitting_readouts(h: torch.Tensor, nets: Ensemble, readouts: int, y_train: torch.Tensor,
                      generator: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``last_layer_samples`` for the hidden layers ``h`` (k, width, N) of k networks."""
    k, width = h.shape[:2]
    with torch.no_grad():
        draws = torch.randn(k, readouts, width + 1, generator=generator).to(h.device)  # the CPU's stream
        out = torch.baddbmm((draws[:, :, width] * nets.bias_scales[-1]).unsqueeze(2), draws[:, :, :width], h,
                            alpha=nets.scales[-1])  # (k, R, N)
    m = len(y_train)
    fit = fit_mask(out[:, :, :m], y_train)  # (k, R)
    first = torch.argmax(fit.to(torch.uint8), dim=1)
    chosen = out[torch.arange(k, device=out.device), first, m:]
    codes = np.where(fit.any(1).cpu().numpy(), sign_codes(chosen), -1)
    return codes, fit.double().mean(1).cpu().numpy()


def route_cell(task: Dataset, width: int, route: str, s: RoutesSettings) -> pd.DataFrame:
    """Function counts on E of one route at one width, with what it cost."""
    check_choice("route", route, ROUTES)
    task = task.to(s.device)
    spec = spec_for(width)
    key = chunk_seed(s.seed, 100 * width + ROUTES.index(route))
    x, y = task.x_train.float(), task.y_train.float()
    cells, spread, fitted = 2**s.test, math.nan, s.samples
    if route == "all-sample":
        sample = rejection_posterior(spec, x, y, s.samples, key, s.max_draws, device=s.device)
        with torch.no_grad():
            codes = sign_codes(sample.nets.forward(task.x_test.float()))
        tried, fitted = sample.draws, sample.nets.size
    elif route == "last-sample":
        generator = torch.Generator().manual_seed(key)
        nets = sample_ensemble(spec, s.samples, generator, device=s.device)
        codes, share = last_layer_samples(nets, task, s.readouts, generator)
        expressive = share > 0
        spread = float(share[expressive].std() / share[expressive].mean()) if expressive.any() else math.nan
        codes, tried, fitted = codes[expressive], s.samples, int(expressive.sum())
    else:
        config = TrainConfig("sgd", s.lr, None, "ce", s.max_epochs, "accuracy")
        chunk = trained_functions(spec, task.x_train, task.y_train, task.x_test, config, key, 0, s.samples,
                                  last_layer=route == "last-train", device=s.device)
        counts = chunk.functions
        bits = torch.from_numpy(np.unpackbits(counts.tables, axis=1, count=s.test))
        codes = np.repeat(sign_codes(bits), counts.counts)
        tried, fitted = s.samples, chunk.converged
    counts = np.bincount(codes.astype(np.int64), minlength=cells) if len(codes) else np.zeros(cells, int)
    return pd.DataFrame([{"width": width, "route": route, "tried": int(tried), "fitted": int(fitted),
                          "acceptance_cv": spread, **count_columns(counts)}])


def run_routes(store: Store, s: RoutesSettings, out: Path, quiet: bool = False,
               executor=None) -> dict[str, Any]:
    """Run (or resume) every (width, route) cell on ``executor``; compare the routes pairwise; judge the
    claims."""
    task = load_task(s)
    # before anything is run: the widest cell's networks trained on S, and one chunk of networks with
    # their readouts drawn at once (each network's R readouts and their outputs on S and E)
    widest, inputs = spec_for(max(s.widths)), s.train + s.test
    check_training_fits(widest, s.samples, s.train, torch.float32, s.device)
    check_fits(min(s.samples, READOUT_CHUNK), s.readouts * (max(s.widths) + 1 + inputs), torch.float32,
               s.device, f"{widest.describe()} with {s.readouts} readouts each on {inputs} inputs")
    run_id = store.start_run("routes", s.to_dict(), s.seed, executor)
    cells = run_sweep(store, run_id, "routes_cells", ["width", "route"],
                      [(w, r) for w in s.widths for r in ROUTES], executor, route_cell, "route cells", quiet,
                      before=(task,), after=(s,))
    store.finish_run(run_id)
    pairs = compare_routes(cells, s.seed)
    judged = routes_claims(cells, pairs)
    store.save_claims(run_id, judged)
    figs = {"three_routes": figures.three_routes(pairs, out / "three_routes.png")}
    return {"run_id": run_id, "cells": cells, "pairs": pairs, "figures": figs, "claims": judged}


def compare_routes(cells: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Per width and pair of routes: TV, its permutation p-value and bootstrap upper bound, and the
    Pearson correlation of log frequencies over the functions both saw at least twice."""
    rows = []
    for width, g in cells.groupby("width"):
        by_route = {r.route: column_counts(r) for _, r in g.iterrows()}
        for a, b in PAIRS:
            if a not in by_route or b not in by_route:
                continue
            ca, cb = by_route[a], by_route[b]
            cmp = compare_distributions(ca, cb, permutations=500, seed=seed)
            both = (ca >= 2) & (cb >= 2)
            r = float(np.corrcoef(np.log(ca[both]), np.log(cb[both]))[0, 1]) if both.sum() > 3 else math.nan
            ci = v.correlation_interval(r, int(both.sum()))
            rows.append({"width": width, "pair": f"{a} vs {b}", "samples_a": int(ca.sum()),
                         "samples_b": int(cb.sum()), "tv": cmp["tv"], "tv_upper": cmp["tv_upper"],
                         "p_value": cmp["p_value"], "log_r": r, "log_r_lo": ci.lo, "log_r_hi": ci.hi,
                         "functions": int(both.sum())})
    return pd.DataFrame(rows)


def routes_claims(cells: pd.DataFrame, pairs: pd.DataFrame) -> list[dict[str, str]]:
    """"Last-layer sampling over expressive random features = all-layer sampling" at the thinnest and
    the widest width; the rest measured."""
    claims = []
    same = pairs[pairs["pair"] == "last-sample vs all-sample"].sort_values("width")
    cv = cells[cells["route"] == "last-sample"].set_index("width")["acceptance_cv"]
    for label, row in (("thinnest", same.iloc[0]), ("widest", same.iloc[-1])) if len(same) else ():
        enough = min(row["samples_a"], row["samples_b"]) >= MIN_SAMPLES
        verdict = (v.matches_distribution(row["p_value"], row["tv_upper"], TV_MARGIN, ALPHA, DECIDE) if enough
                   else v.Verdict(v.INCONCLUSIVE, f"needs >= {MIN_SAMPLES} functions per route", DECIDE))
        claims.append(v.claim_row(
            f"A5: at the {label} width ({int(row['width'])}) last-layer sampling over random expressive "
            f"features gives all-layer sampling's posterior on E (TV <= {TV_MARGIN:g})",
            f"TV {row['tv']:.3f} (95 % upper bound {row['tv_upper']:.3f}), "
            f"permutation p = {row['p_value']:.2g}; "
            f"{int(row['samples_a'])} and {int(row['samples_b'])} samples; spread (CV) of P(S | features) "
            f"{cv.get(row['width'], math.nan):.2f}", verdict))
    for pair in ("all-train vs all-sample", "last-train vs last-sample"):
        rows = pairs[pairs["pair"] == pair].sort_values("width")
        if len(rows):
            claims.append(v.measured_row(
                f"A5: {pair}: total variation on E by width",
                ", ".join(f"w={int(r.width)}: {r.tv:.3f} (p={r.p_value:.2g})" for r in rows.itertuples())))
    return claims
