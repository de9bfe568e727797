"""Experiment ``sgd-vs-bayes``: does SGD pick functions in proportion to their prior volume?

Mingard et al. (JMLR 2021, "Is SGD a Bayesian sampler? Well, almost"): train
many networks from fresh prior draws to 100 % accuracy on S and count the
functions they compute on a test set E (P_SGD), then compare with the prior
conditioned on S (P_B), obtained three ways:

* rejection: the stored parameter-function map of the same network on the whole
  Boolean hypercube, filtered to the functions that fit S (Boolean tasks only;
  at n = 7 and |S| = 32 only ~2e-5 of the prior fits a simple target, so
  this needs the paper-scale 10^8 samples to see many functions);
* the NNGP of the architecture with EP (any task; per function found);
* training only the last layer of randomly initialised networks (a method like
  the optimizers, marked ``last-``).

Every (task, method) is a chunked, seeded, resumable run in the store (the
sampler's machinery); EP scores are cached per (task, function).
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
from scipy import stats

from nnbias.engines.memory import check_training_fits
from nnbias.engines.training import OPTIMIZERS, TrainConfig
from nnbias.errors import check_device, check_int, check_seed, check_sweeps, require
from nnbias.estimators import verdicts as v
from nnbias.estimators.frequency import compare_distributions, log_frequencies
from nnbias.estimators.posterior import TrainedChunk, cube_indices, ep_log_posterior, trained_functions
from nnbias.executor import LocalExecutor, chunk_count, chunk_length, run_chunks
from nnbias.experiments.registry import check_task, named_task, scaled_settings
from nnbias.experiments.sampling import SamplingConfig, run_sampling
from nnbias.report import figures
from nnbias.spec import NetworkSpec
from nnbias.store import Store
from nnbias.tasks.boolean import packed_to_bit_strings
from nnbias.tasks.datasets import Dataset, boolean_task, digits

TASKS = {
    "bool5-0011": lambda seed: boolean_task(5, "0011" * 8, train=16, seed=seed),
    "bool7-0011": lambda seed: boolean_task(7, "0011" * 32, train=32, test=32, seed=seed),
    "bool7-0011-s64": lambda seed: boolean_task(7, "0011" * 32, train=64, test=32, seed=seed),
    "bool7-random": lambda seed: boolean_task(7, "random:1.0", train=32, test=32, seed=seed),
    "digits-3-5": lambda seed: digits((3, 5), train=100, binarize=True, test=100, seed=seed),
}
MIN_REJECTION_FITS = 100  # fewer accepted prior samples say nothing about a whole distribution
TRACKS = 0.5  # "P_SGD tracks P_B": Pearson r of the log probabilities at least this
TV_MARGIN = 0.1  # "P_SGD = P_B": total variation at most this
ALPHA = 0.01  # the permutation test of equal distributions rejects at this level
MIN_POINTS = 5  # fewer functions seen repeatedly give no correlation worth a verdict
DEFAULT_LR = {"sgd": 0.1, "momentum": 0.01, "adam": 0.003, "langevin": 0.01}


def parse_method(method: str, lr: float | None = None, max_epochs: int = 500) -> tuple[TrainConfig, bool]:
    """'[last-]<optimizer>-<b<batch>|full>' -> (training config, last layer only)."""
    last = method.startswith("last-")
    parts = method.removeprefix("last-").split("-")
    ok = len(parts) == 2 and parts[0] in OPTIMIZERS and (parts[1] == "full" or
                                                         (parts[1][:1] == "b" and parts[1][1:].isdigit()))
    require(ok, f"method={method!r} is not allowed; expected [last-]<optimizer>-<b<batch>|full> with "
                f"optimizer one of {list(OPTIMIZERS)}, e.g. sgd-b8, adam-full, last-sgd-b8")
    batch = None if parts[1] == "full" else int(parts[1][1:])
    return TrainConfig(parts[0], lr or DEFAULT_LR[parts[0]], batch, "ce", max_epochs, "accuracy"), last


def load_task(name: str, seed: int) -> Dataset:
    return named_task(TASKS, name, seed)


def check_disjoint(task: Dataset) -> None:
    """S and E must not share an input: a function 'on E' would otherwise be partly fixed by S."""
    shared = int(task.test_in_training().sum())
    require(shared == 0, f"{task.name}: {shared} test inputs also occur in the training set; "
                         "S and E must be disjoint")


@dataclass(frozen=True)
class SgdBayesSettings:
    tasks: tuple[str, ...] = ("bool5-0011", "bool7-0011", "bool7-random", "digits-3-5")
    methods: tuple[str, ...] = ("sgd-b8", "adam-b8", "sgd-full", "last-sgd-b8")
    runs: int = 2000  # training runs per (task, method)
    chunk_size: int = 250
    hidden: tuple[int, ...] = (40, 40)
    rejection_samples: int = 1_000_000
    max_epochs: int = 300
    lr: float | None = None  # None: each optimizer's default
    min_count: int = 2  # functions seen at least this often by a method enter its scatter
    ep_functions: int = 150  # most frequent functions scored by EP per task
    device: str = "cpu"  # where networks train, prior draws are evaluated and the NNGP is computed
    seed: int = 0

    def __post_init__(self) -> None:
        check_sweeps(self)
        for name in ("runs", "chunk_size", "rejection_samples", "max_epochs", "min_count", "ep_functions"):
            check_int(name, getattr(self, name), minimum=1)
        chunk_count("runs", self.runs, self.chunk_size)
        check_seed(self.seed)
        check_device(self.device)
        for task in self.tasks:  # names only: building the data sets here would be done twice
            check_task(TASKS, task)
        for method in self.methods:
            parse_method(method, self.lr, self.max_epochs)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


PAPER = {"runs": 100_000, "rejection_samples": 100_000_000, "chunk_size": 1000, "max_epochs": 2000,
         "tasks": ("bool5-0011", "bool7-0011", "bool7-0011-s64", "bool7-random", "digits-3-5"),
         "ep_functions": 1000}


def settings_for(scale: str, **overrides: Any) -> SgdBayesSettings:
    """``small`` (minutes, the default of ``reproduce``) or ``paper`` (Mingard et al.'s sample sizes)."""
    return scaled_settings(SgdBayesSettings, PAPER, scale, overrides)


def task_spec(task: Dataset, s: SgdBayesSettings) -> NetworkSpec:
    """The original runs' network: ReLU MLP, Gaussian prior sigma_w = sigma_b = 1."""
    return NetworkSpec(task.dim, s.hidden, "relu", sigma_w=1.0, sigma_b=1.0)


def _train_chunk(spec: NetworkSpec, task: Dataset, config: TrainConfig, last: bool, s: SgdBayesSettings,
                 chunk: int) -> TrainedChunk:
    return trained_functions(spec, task.x_train, task.y_train, task.x_test, config, s.seed, chunk,
                             chunk_length(s.runs, s.chunk_size, chunk), last_layer=last, device=s.device)


def check_batch(method: str, config: TrainConfig, task: Dataset) -> None:
    require(config.batch_size is None or config.batch_size <= len(task.y_train),
            f"method={method!r}: batch size {config.batch_size} is larger than |S| = {len(task.y_train)} "
            f"of task {task.name!r}")


def check_tasks(s: SgdBayesSettings) -> None:
    """Every method must fit every task (batch <= |S|, S and E disjoint) before anything is written."""
    for task_name in s.tasks:
        task = load_task(task_name, s.seed)
        check_disjoint(task)
        for method in s.methods:
            check_batch(method, parse_method(method, s.lr, s.max_epochs)[0], task)


def run_psgd(store: Store, task_name: str, method: str, s: SgdBayesSettings, executor=None,
             quiet: bool = False) -> str:
    """Train (or finish training) ``s.runs`` networks of one method on one task; return the run id."""
    task = load_task(task_name, s.seed)
    check_disjoint(task)
    spec = task_spec(task, s)
    config, last = parse_method(method, s.lr, s.max_epochs)
    check_batch(method, config, task)
    # a chunk's networks must fit training on S before a run is written
    check_training_fits(spec, min(s.chunk_size, s.runs), len(task.y_train), torch.float32, s.device,
                        config.optimizer)
    run_config = {"task": task_name, "task_seed": s.seed, "spec": spec.to_dict(), "method": method,
                  "train": config.__dict__, "last_layer": last, "runs": s.runs,
                  "chunk_size": s.chunk_size, "device": s.device, "seed": s.seed}
    run_id = store.start_run("psgd", run_config, s.seed, executor)
    done = store.done_chunks(run_id)
    todo = [c for c in range(chunk_count("runs", s.runs, s.chunk_size)) if c not in done]
    bits = len(task.y_test)

    def commit(chunk: int, result: TrainedChunk) -> None:
        store.commit_function_chunk(run_id, chunk, bits, packed_to_bit_strings(result.functions.tables, bits),
                                    result.functions.counts, stats=("psgd_chunks", result.stats()))

    run_chunks(executor or LocalExecutor(), functools.partial(_train_chunk, spec, task, config, last, s),
               todo, commit, f"P_SGD {task_name} {method}", quiet=quiet)
    store.finish_run(run_id)
    return run_id


def run_rejection(store: Store, task_name: str, s: SgdBayesSettings, executor=None,
                  quiet: bool = False) -> tuple[pd.DataFrame, int, str] | None:
    """P_B by rejection for a Boolean task: (function counts on E, prior samples, run id), else None.

    The prior samples are an ordinary parameter-function-map run of the same
    network, so an existing run of the same config (e.g. ``pfmap``'s) is reused.
    """
    task = load_task(task_name, s.seed)
    if not task.name.startswith("boolean"):
        return None
    spec = task_spec(task, s)
    run_id = run_sampling(store, SamplingConfig(spec, s.rejection_samples, s.seed, device=s.device), executor,
                          quiet=quiet)
    found = store.consistent_functions(run_id, cube_indices(task.x_train), task.y_train.numpy(),
                                       cube_indices(task.x_test))
    return found, store.total_samples(run_id), run_id


def _ep_scores(store: Store, run_id: str, task_name: str, task: Dataset, s: SgdBayesSettings,
               functions: list[str]) -> pd.DataFrame:
    """log P_B(f|S) by NNGP + EP, computed once per (task, function) and kept in the store."""
    done = store.table("sgd_bayes_ep", run_id)
    have = set(done.loc[done["task"] == task_name, "function"]) if len(done) else set()
    todo = [f for f in functions if f not in have]
    if todo:
        scores = ep_log_posterior(task_spec(task, s), task.x_train, task.y_train, task.x_test, todo,
                                  device=s.device)
        store.append_rows("sgd_bayes_ep", run_id,
                          pd.DataFrame({"task": task_name, "function": todo, "log_pb_ep": scores}))
    done = store.table("sgd_bayes_ep", run_id)
    if not len(done):  # nothing fitted S, so nothing to score
        return pd.DataFrame({"function": pd.Series(dtype=str), "log_pb_ep": pd.Series(dtype=float)})
    return done.loc[done["task"] == task_name, ["function", "log_pb_ep"]]


def _training_stats(store: Store, run_id: str) -> dict[str, int]:
    row = store.one("SELECT sum(trained), sum(converged), sum(diverged), sum(epochs) FROM psgd_chunks "
                    "WHERE run_id = ?", [run_id])
    return dict(zip(("trained", "converged", "diverged", "epochs"), (int(v) for v in row), strict=True))


def _correlation(x: np.ndarray, y: np.ndarray) -> tuple[float, float, int]:
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 3:
        return math.nan, math.nan, int(keep.sum())
    return float(stats.pearsonr(x[keep], y[keep])[0]), float(stats.spearmanr(x[keep], y[keep])[0]), \
        int(keep.sum())


def compare_task(store: Store, run_id: str, task_name: str, s: SgdBayesSettings, executor=None,
                 quiet: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every method's P_SGD against P_B on one task: (summary rows, per-function table)."""
    task = load_task(task_name, s.seed)
    counts, summary = {}, []
    for method in s.methods:
        psgd = run_psgd(store, task_name, method, s, executor, quiet)
        frame = store.function_counts(psgd).rename(columns={"truth_table": "function"})
        counts[method] = frame.set_index("function")["count"]
        stats_ = _training_stats(store, psgd)
        summary.append({"task": task_name, "method": method, "run_id": psgd, "samples": stats_["trained"],
                        "fit_s": stats_["converged"], "diverged": stats_["diverged"],
                        "epochs": stats_["epochs"], "distinct": len(frame)})
    rejection = run_rejection(store, task_name, s, executor, quiet)
    if rejection is not None:
        found, prior_samples, _ = rejection
        counts["rejection"] = found.set_index("function")["count"]
        summary.append({"task": task_name, "method": "rejection", "run_id": rejection[2],
                        "samples": prior_samples, "fit_s": int(found["count"].sum()), "diverged": 0,
                        "epochs": 0, "distinct": len(found)})
    table = pd.DataFrame(counts).fillna(0).astype("int64")
    table.index.name = "function"
    # EP scores the functions the methods found most often (by their summed share)
    share = (table / table.sum().replace(0, 1)).sum(axis=1).sort_values(ascending=False)
    scored = _ep_scores(store, run_id, task_name, task, s, list(share.index[:s.ep_functions]))
    table = table.join(scored.set_index("function"), how="left").reset_index()
    summary_frame = pd.DataFrame(summary)
    rows = []
    for row in summary_frame.itertuples():
        c = table[row.method].to_numpy()
        log_p = log_frequencies(c, s.min_count)
        pearson, spearman, points = _correlation(log_p, table["log_pb_ep"].to_numpy())
        extra = {"pearson_ep": pearson, "spearman_ep": spearman, "points_ep": points}
        if "rejection" in table and row.method != "rejection":
            ref = table["rejection"].to_numpy()
            pearson, spearman, points = _correlation(log_p, log_frequencies(ref, s.min_count))
            extra |= {"pearson_rejection": pearson, "spearman_rejection": spearman,
                      "points_rejection": points,
                      **{f"{k}_rejection": v for k, v in compare_distributions(c, ref, seed=s.seed).items()}}
        rows.append(extra)
    summary_frame = pd.concat([summary_frame, pd.DataFrame(rows)], axis=1)
    summary_frame["fit_fraction"] = summary_frame["fit_s"] / summary_frame["samples"]
    return summary_frame, table.assign(task=task_name)


def run_sgd_bayes(store: Store, s: SgdBayesSettings, out: Path, executor=None,
                  quiet: bool = False) -> dict[str, Any]:
    """Run (or resume) the experiment on every task; return tables, figures and claims."""
    check_tasks(s)
    run_id = store.start_run("sgd-vs-bayes", s.to_dict(), s.seed, executor)
    summaries, tables, figs = [], {}, {}
    for task_name in s.tasks:
        summary, table = compare_task(store, run_id, task_name, s, executor, quiet)
        summaries.append(summary)
        tables[task_name] = table
        figs[task_name] = figures.sgd_vs_bayes(table, list(s.methods) + ["rejection"], s.min_count,
                                               load_task(task_name, s.seed).describe(),
                                               out / f"sgd_vs_bayes_{task_name}.png")
    summary = pd.concat(summaries, ignore_index=True)
    store.replace_table("sgd_bayes_summary", run_id, summary)
    store.finish_run(run_id)
    judged = sgd_bayes_claims(summary, s)
    store.save_claims(run_id, judged)
    return {"run_id": run_id, "summary": summary, "functions": tables, "figures": figs, "claims": judged}


def sgd_bayes_claims(summary: pd.DataFrame, s: SgdBayesSettings) -> list[dict[str, str]]:
    """Per (task, method): does log P_SGD track log P_B (EP), and is P_SGD = P_B (rejection)?"""
    claims = []
    for task, rows in summary.groupby("task", sort=False):
        trained = rows[rows["method"] != "rejection"]
        reject = rows[rows["method"] == "rejection"]
        fits = int(reject["fit_s"].iloc[0]) if len(reject) else 0
        enough = fits >= MIN_REJECTION_FITS
        for r in trained.itertuples():
            claims.append(_tracking_claim(task, r.method, r, s))
            claim = f"A4: on {task}, {r.method}: P_SGD(f|S) = P_B(f|S) by rejection, within TV {TV_MARGIN}"
            if enough and r.fit_s == 0:
                claims.append(v.claim_row(claim, _no_fit(r, s), _NO_FIT))
            elif enough:
                claims.append(v.claim_row(
                    claim,
                    f"TV = {r.tv_rejection:.3f} (bootstrap 95 % upper bound {r.tv_upper_rejection:.3f}), "
                    f"permutation p = {r.p_value_rejection:.3f}; {r.fit_s} SGD runs against {fits} accepted "
                    "prior samples",
                    v.matches_distribution(r.p_value_rejection, r.tv_upper_rejection, TV_MARGIN, ALPHA,
                                           "more training runs and prior samples")))
        if len(reject) and enough:
            claims.append(_tracking_claim(task, "rejection", reject.iloc[0], s))
        elif len(reject):
            claims.append(v.claim_row(
                f"A4: on {task}, P_SGD(f|S) = P_B(f|S) by rejection, within TV {TV_MARGIN}",
                f"{fits} of {int(reject['samples'].iloc[0]):,} prior samples fit S",
                v.Verdict(v.INCONCLUSIVE, f"needs >= {MIN_REJECTION_FITS} accepted prior samples",
                          "more prior samples (rejection_samples)")))
    return claims


_NO_FIT = v.Verdict(v.INCONCLUSIVE, "needs runs that fit S", "a higher epoch cap or learning rate")


def _no_fit(r: Any, s: SgdBayesSettings) -> str:
    """What a method whose runs never fit S measured."""
    return f"no run of {r.samples} fit S within {s.max_epochs} epochs" + (f" ({r.diverged} diverged)"
                                                                          if r.diverged else "")


def _tracking_claim(task: str, method: str, r: Any, s: SgdBayesSettings) -> dict[str, str]:
    """Pearson r of log P_method against log P_B(EP) over the functions seen repeatedly, its CI vs TRACKS."""
    claim = f"A4: on {task}, {method}: log P(f|S) tracks log P_B(f|S) (NNGP + EP): Pearson r >= {TRACKS}"
    if r.fit_s == 0:
        return v.claim_row(claim, _no_fit(r, s), _NO_FIT)
    measured = f"{r.fit_s}/{r.samples} fit S, {r.distinct} functions"
    if r.points_ep < MIN_POINTS:
        return v.claim_row(claim, measured + f"; {r.points_ep} seen >= {s.min_count} times and scored",
                           v.Verdict(v.INCONCLUSIVE, f"needs >= {MIN_POINTS} repeated functions",
                                     "more runs"))
    ci = v.correlation_interval(r.pearson_ep, int(r.points_ep))
    return v.claim_row(claim, measured + f"; r = {ci} (Fisher z), Spearman {r.spearman_ep:.2f}, over "
                                         f"{r.points_ep} functions",
                       v.at_least(ci, TRACKS, "more runs (more repeated functions)"))
