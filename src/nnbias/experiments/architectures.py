"""Experiment ``architectures`` (A6, B3): how much of the inductive bias is the architecture's?

One side (seeds/004) says the architecture is the main source of inductive bias:
CNNs beat fully connected networks on images with the same optimiser; the other
says kernel limits fall behind finite networks on harder tasks (Arora et al.
2019: the CNTK below the finite CNN on CIFAR-10). Three parts, every model one
:class:`~nnbias.layers.LayeredSpec`:

* trained networks: logistic regression, MLP and CNN (MNIST-1D's own models:
  ``MLPBase`` 100-100, ``ConvBase`` three stride-2 convolutions of 25 channels),
  K seeds batched, Adam lr 1e-2, minibatches of 100, 150 epochs (MNIST-1D's
  standard 6000 steps), across widths, on MNIST-1D with its 10 classes and on
  sklearn's 8x8 digits (10 classes);
* their infinite-width kernels: NNGP/NTK of the MLP, CNN-GP/CNTK of the CNN with its
  flatten readout and with global average pooling, as 10-output kernel regression;
  the gap table (trained network - best kernel of its architecture);
* the parameter-function map of a CNN against an FCN with as many parameters on
  3x3 binary images: how simple (LZ), how concentrated and how translation-invariant
  the functions they compute at random are.

Published MNIST-1D test accuracies (Greydanus 2020, the ``mnist1d`` README):
logistic 32 %, MLP 68 %, CNN 94 %. Each cell is stored when done; a rerun skips it.
"""

from __future__ import annotations

import functools
import math
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from nnbias.engines.memory import check_training_fits
from nnbias.engines.sampler import chunk_seed
from nnbias.engines.serial import SerialKernelFn, network_fn, sample_serial, serial_function_counts
from nnbias.engines.training import TrainConfig, train
from nnbias.errors import check_device, check_int, check_seed, check_sweeps, require
from nnbias.estimators import verdicts as v
from nnbias.estimators.gp import kernel_classify
from nnbias.executor import run_cells, run_sweep
from nnbias.experiments.registry import check_task, scaled_settings
from nnbias.layers import LayeredSpec
from nnbias.measures.complexity import lz_complexity, translation_invariant
from nnbias.report import figures
from nnbias.store import Store
from nnbias.tasks.boolean import hypercube, packed_to_strings
from nnbias.tasks.datasets import Dataset, digits, mnist1d

TASKS = {
    "mnist1d-10": lambda seed: mnist1d(seed=seed),
    "digits-10": lambda seed: digits(None, train=1000, seed=seed),
}
IMAGE = {"mnist1d-10": (1, 40), "digits-10": (1, 8, 8)}
CONVS = {  # the CNN's convolutions at a channel count w (MNIST-1D: its ConvBase, padding 1, stride 2)
    "mnist1d-10": "conv1d:{w}:5:1:2,relu,conv1d:{w}:3:1:2,relu,conv1d:{w}:3:1:2,relu",
    "digits-10": "conv2d:{w}:3:same:2,relu,conv2d:{w}:3:same:2,relu",  # 8x8 -> 4x4 -> 2x2
}
PUBLISHED = {"mnist1d-10": {"logistic": 0.32, "mlp": 0.68, "cnn": 0.94}}  # Greydanus 2020
PUBLISHED_MARGIN = 0.03  # "reproduces a published accuracy": within 3 points
CNN_MARGIN = 0.05  # "CNNs beat FCNs": by at least 5 points of test accuracy
SIMPLER_MARGIN = 0.02  # "a CNN's random functions are simpler": mean LZ at least 2 % below the FCN's
BOOLEAN = {  # 3x3 binary images: a circular CNN and an FCN with about as many parameters (153, 155)
    "cnn": ((1, 3, 3), "conv2d:8:3:circular,relu,flatten,dense:1"),
    "fcn": ((9,), "dense:14,relu,dense:1"),
}
SIGMA_W, SIGMA_B = 1.0, 0.1
DECIDE = "more seeds"
OPTIMIZER = "adam"  # MNIST-1D's own training


def model_spec(
    task: str, model: str, width: int, readout: str = "flatten", parametrization: str = "standard"
) -> LayeredSpec:
    """The layered spec of ``model`` (logistic, mlp, cnn) for ``task`` at ``width``; 10 outputs."""
    flat = (math.prod(IMAGE[task]),)
    if model == "logistic":
        return LayeredSpec(flat, "dense:10", SIGMA_W, SIGMA_B, parametrization=parametrization)
    if model == "mlp":
        return LayeredSpec(
            flat,
            f"dense:{width},relu,dense:{width},relu,dense:10",
            SIGMA_W,
            SIGMA_B,
            parametrization=parametrization,
        )
    return LayeredSpec(
        IMAGE[task],
        CONVS[task].format(w=width) + f",{readout},dense:10",
        SIGMA_W,
        SIGMA_B,
        parametrization=parametrization,
    )


@dataclass(frozen=True)
class ArchitecturesSettings:
    tasks: tuple[str, ...] = ("mnist1d-10", "digits-10")
    mlp_widths: tuple[int, ...] = (100,)  # the first is the published architecture's
    cnn_widths: tuple[int, ...] = (25,)
    networks: int = 3  # seeds per (task, model, width), trained at once
    epochs: int = 150  # MNIST-1D's standard 6000 steps of 100 on its 4000 examples
    lr: float = 0.01
    batch: int = 100
    kernel_train: int | None = None  # training examples of every kernel; None: all
    kernel_test: int | None = None
    pooled_train: int | None = 1000  # at most this many for the pooled (GAP) kernels; None: no cap
    pooled_test: int | None = None
    boolean_samples: int = 20_000
    device: str = "cpu"  # where networks train and kernels are computed (initial networks: the CPU's draws)
    seed: int = 0

    def __post_init__(self) -> None:
        check_sweeps(self)
        for t in self.tasks:
            check_task(TASKS, t)
        for w in (*self.mlp_widths, *self.cnn_widths):
            check_int("width", w, minimum=1)
        check_int("networks", self.networks, minimum=1)
        check_int("epochs", self.epochs, minimum=1)
        check_int("batch", self.batch, minimum=1)
        require(self.lr > 0, f"lr={self.lr} is not allowed; expected > 0")
        for name in ("kernel_train", "kernel_test", "pooled_train", "pooled_test"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), minimum=1)
        check_int("boolean_samples", self.boolean_samples, minimum=1, maximum=10**9)
        check_device(self.device)
        check_seed(self.seed)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


PAPER = {
    "mlp_widths": (100, 400, 1600),
    "cnn_widths": (25, 100, 400),
    "networks": 8,
    "pooled_train": None,
    "pooled_test": None,
    "boolean_samples": 1_000_000,
}


def settings_for(scale: str, **overrides: Any) -> ArchitecturesSettings:
    """``small`` (what ``reproduce`` runs) or ``paper`` (8 seeds, wider nets, pooled kernels on all data)."""
    return scaled_settings(ArchitecturesSettings, PAPER, scale, overrides)


def _cell_seed(s: ArchitecturesSettings, *key: Any) -> int:
    """The seed of one cell: the run's seed and the cell's key, whatever order cells run in."""
    return chunk_seed(s.seed, zlib.crc32(repr(key).encode()))


@functools.lru_cache(maxsize=4)
def load_task(name: str, seed: int) -> Dataset:
    """A task, built once per process (cells run in threads or on Dask workers load their own)."""
    return TASKS[name](seed)


def network_cell(task_name: str, model: str, width: int, s: ArchitecturesSettings) -> pd.DataFrame:
    """K networks of one (task, model, width), trained at once; their train and test accuracy."""
    task = load_task(task_name, s.seed)
    spec = model_spec(task_name, model, width)
    generator = torch.Generator().manual_seed(_cell_seed(s, task_name, model, width))
    nets = sample_serial(spec, s.networks, generator)
    fn, params = network_fn(spec), [p.to(s.device) for p in nets.params]
    n = len(task.y_train)
    batch = min(s.batch, n)
    config = TrainConfig(OPTIMIZER, s.lr, batch, "ce", s.epochs, "none")
    start = time.perf_counter()
    result = train(fn, params, task.x_train.float(), task.y_train, config, generator)
    with torch.no_grad():
        test = (fn(result.params, task.x_test.float()).argmax(2).cpu() == task.y_test).double().mean(1)
    return pd.DataFrame(
        {
            "task": task_name,
            "model": model,
            "width": width,
            "seed": range(s.networks),
            "params": spec.n_params,
            "train_acc": result.accuracy.double().cpu().numpy(),
            "test_acc": test.numpy(),
            "seconds": time.perf_counter() - start,
        }
    )


def kernel_cell(task_name: str, name: str, s: ArchitecturesSettings) -> pd.DataFrame:
    """NNGP and NTK 10-class kernel regression of one architecture (mlp, cnn-flatten, cnn-gap)."""
    task = load_task(task_name, s.seed)
    model, _, readout = name.partition("-")
    spec = model_spec(task_name, model, 1, readout or "flatten", "ntk")
    caps = (s.kernel_train, s.kernel_test) + ((s.pooled_train, s.pooled_test) if readout == "gap" else ())
    n = min([len(task.y_train)] + [c for c in caps[::2] if c is not None])
    m = min([len(task.y_test)] + [c for c in caps[1::2] if c is not None])
    start = time.perf_counter()
    kernel = functools.partial(SerialKernelFn(spec), kind="both", dtype=torch.float32, device=s.device)
    trains = kernel(task.x_train[:n])  # symmetric: its upper triangle
    crosses = kernel(task.x_test[:m], task.x_train[:n])  # the test-test block is never needed
    rows = []
    for kind, train_gram, cross in zip(("nngp", "ntk"), trains, crosses, strict=True):
        pred = kernel_classify(train_gram, task.y_train[:n], cross, task.classes)
        rows.append(
            {
                "task": task_name,
                "kernel": name,
                "kind": kind,
                "train": n,
                "test": m,
                "test_acc": float((pred == task.y_test[:m]).double().mean()),
            }
        )
    return pd.DataFrame(rows).assign(seconds=time.perf_counter() - start)


def boolean_cell(name: str, s: ArchitecturesSettings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The parameter-function map of one Boolean-image architecture: summary and its functions."""
    shape, layers = BOOLEAN[name]
    spec = LayeredSpec(shape, layers, 1.0, 1.0)
    counts = serial_function_counts(spec, hypercube(9), s.boolean_samples, _cell_seed(s, "boolean", name),
                                    device=s.device)
    tables = packed_to_strings(counts.tables, 9)
    lz = np.array([lz_complexity(t) for t in tables])
    invariant = translation_invariant(tables, 3, 3)
    w = counts.counts / counts.counts.sum()
    mean = float(w @ lz)
    sd = float(np.sqrt(w @ (lz - mean) ** 2))
    constant = np.array([t.count(t[0]) == len(t) for t in tables])
    summary = pd.DataFrame(
        [
            {
                "architecture": name,
                "layers": layers,
                "params": spec.n_params,
                "samples": s.boolean_samples,
                "distinct": len(tables),
                "lz_mean": mean,
                "lz_sd": sd,
                "constant_share": float(w @ constant),
                "invariant_share": float(w @ invariant),
                "top_share": float(w.max()),
            }
        ]
    )
    order = np.argsort(-counts.counts)
    functions = pd.DataFrame(
        {
            "architecture": name,
            "rank": np.arange(1, len(order) + 1),
            "count": counts.counts[order],
            "lz": lz[order],
            "invariant": invariant[order],
        }
    )
    return summary, functions


def run_architectures(
    store: Store, s: ArchitecturesSettings, out: Path, quiet: bool = False, executor=None
) -> dict[str, Any]:
    """Run (or resume) every cell on ``executor``; return the tables, figures and claims."""
    for t in s.tasks:  # the widest networks must fit before anything is run: trained on a minibatch,
        task = load_task(t, s.seed)  # evaluated on the whole training set and test set at once
        n, m = len(task.y_train), len(task.y_test)
        for model, widths in (("mlp", s.mlp_widths), ("cnn", s.cnn_widths)):  # never empty (check_sweeps)
            check_training_fits(model_spec(t, model, max(widths)), s.networks, min(s.batch, n), torch.float32,
                                s.device, OPTIMIZER, evaluated=max(n, m))
    run_id = store.start_run("architectures", s.to_dict(), s.seed, executor)
    models = (("logistic", (0,)), ("mlp", s.mlp_widths), ("cnn", s.cnn_widths))
    net_cells = [(t, m, w) for t in s.tasks for m, widths in models for w in widths]
    kernel_cells = [(t, k) for t in s.tasks for k in ("mlp", "cnn-flatten", "cnn-gap")]
    bool_cells = [(a,) for a in BOOLEAN]
    bool_done = store.done_cells("architecture_boolean", run_id, ["architecture"])

    def commit_boolean(cell: tuple, frames: tuple[pd.DataFrame, pd.DataFrame]) -> None:
        with store.transaction():  # both tables or neither: a rerun then redoes the cell once
            store.append_rows("architecture_boolean", run_id, frames[0])
            store.append_rows("architecture_functions", run_id, frames[1])

    nets = run_sweep(store, run_id, "architecture_nets", ["task", "model", "width"], net_cells, executor,
                     network_cell, "trained networks", quiet, after=(s,))
    kernels = run_sweep(store, run_id, "architecture_kernels", ["task", "kernel"], kernel_cells, executor,
                        kernel_cell, "kernels", quiet, after=(s,))
    run_cells(executor, boolean_cell, [c for c in bool_cells if c not in bool_done], commit_boolean,
              "Boolean-image P(f)", quiet, after=(s,))
    store.finish_run(run_id)
    boolean, functions = (store.sweep_table(t, run_id, ["architecture"], bool_cells)
                          for t in ("architecture_boolean", "architecture_functions"))
    accuracy = accuracy_table(nets)
    gaps = gap_table(accuracy, kernels)
    judged = architecture_claims(accuracy, gaps, boolean)
    store.save_claims(run_id, judged)
    figs = {
        "architecture_accuracy": figures.architecture_accuracy(
            accuracy, kernels, PUBLISHED, out / "architecture_accuracy.png"
        ),
        "architecture_functions": figures.architecture_functions(
            functions, boolean, out / "architecture_functions.png"
        ),
    }
    return {
        "run_id": run_id,
        "accuracy": accuracy,
        "kernels": kernels,
        "gaps": gaps,
        "boolean": boolean,
        "figures": figs,
        "claims": judged,
    }


def accuracy_table(nets: pd.DataFrame) -> pd.DataFrame:
    """Test accuracy per (task, model, width): mean over seeds with its Student-t 95 % interval."""
    rows = []
    for (task, model, width), g in nets.groupby(["task", "model", "width"], sort=False):
        ci = v.mean_interval(g["test_acc"])
        rows.append(
            {
                "task": task,
                "model": model,
                "width": int(width),
                "params": int(g["params"].iloc[0]),
                "seeds": len(g),
                "test_acc": ci.estimate,
                "lo": ci.lo,
                "hi": ci.hi,
                "sd": float(g["test_acc"].std(ddof=1)) if len(g) > 1 else math.nan,
                "train_acc": float(g["train_acc"].mean()),
            }
        )
    return pd.DataFrame(rows)


def gap_table(accuracy: pd.DataFrame, kernels: pd.DataFrame) -> pd.DataFrame:
    """Per (task, architecture): the widest trained network against its best kernel computed on the
    same training and test sets (a pooled kernel on a subset is reported, not compared)."""
    rows = []
    for (task, model), g in accuracy[accuracy["model"].isin(["mlp", "cnn"])].groupby(
        ["task", "model"], sort=False
    ):
        net = g.sort_values("width").iloc[-1]
        k = kernels[(kernels["task"] == task) & kernels["kernel"].str.startswith(model)]
        k = k[(k["train"] == k["train"].max()) & (k["test"] == k["test"].max())]
        best = k.sort_values("test_acc").iloc[-1]
        ci = v.Interval.around(net["test_acc"] - best["test_acc"], (net["hi"] - net["lo"]) / 2)
        rows.append(
            {
                "task": task,
                "architecture": model,
                "width": int(net["width"]),
                "net_acc": net["test_acc"],
                "best_kernel": f"{best['kernel']} {best['kind']}",
                "kernel_acc": best["test_acc"],
                "gap": ci.estimate,
                "gap_lo": ci.lo,
                "gap_hi": ci.hi,
            }
        )
    return pd.DataFrame(rows)


def _standard(accuracy: pd.DataFrame, task: str, model: str) -> pd.Series:
    """The row of a model at its smallest width (the published architecture's)."""
    return accuracy[(accuracy["task"] == task) & (accuracy["model"] == model)].sort_values("width").iloc[0]


def architecture_claims(
    accuracy: pd.DataFrame, gaps: pd.DataFrame, boolean: pd.DataFrame
) -> list[dict[str, str]]:
    claims = []
    for task in accuracy["task"].unique():
        cnn, mlp = _standard(accuracy, task, "cnn"), _standard(accuracy, task, "mlp")
        ci = v.difference_interval(
            cnn["test_acc"], cnn["sd"], int(cnn["seeds"]), mlp["test_acc"], mlp["sd"], int(mlp["seeds"])
        )
        claims.append(
            v.claim_row(
                f"A6: {task}: a CNN beats an MLP trained by the same optimiser by at least {CNN_MARGIN:g} "
                "test accuracy",
                f"CNN ({int(cnn['width'])} channels) {cnn['test_acc']:.3f} - MLP ({int(mlp['width'])}) "
                f"{mlp['test_acc']:.3f} = {ci}",
                v.at_least(ci, CNN_MARGIN, DECIDE),
            )
        )
        for model, published in PUBLISHED.get(task, {}).items():
            row = _standard(accuracy, task, model)
            ci = v.Interval(row["test_acc"], row["lo"], row["hi"])
            claims.append(
                v.claim_row(
                    f"A6: {task}: nnbias's {model} reproduces the published test accuracy {published:.0%} "
                    f"(Greydanus 2020) within {PUBLISHED_MARGIN:g}",
                    f"{ci} over {int(row['seeds'])} seeds",
                    v.equals(ci, published, PUBLISHED_MARGIN, DECIDE),
                )
            )
    for g in gaps.itertuples():
        ci = v.Interval(g.gap, g.gap_lo, g.gap_hi)
        claims.append(
            v.claim_row(
                f"B3: {g.task}: the trained {g.architecture.upper()} beats its best infinite-width kernel "
                "(Arora et al. 2019: CNTK below the finite CNN)",
                f"net (width {g.width}) {g.net_acc:.3f} - {g.best_kernel} {g.kernel_acc:.3f} = {ci}",
                v.at_least(ci, 0.0, DECIDE),
            )
        )
    by = boolean.set_index("architecture")
    if {"cnn", "fcn"} <= set(by.index):
        c, f = by.loc["cnn"], by.loc["fcn"]
        ci = v.difference_interval(
            f["lz_mean"], f["lz_sd"], int(f["samples"]), c["lz_mean"], c["lz_sd"], int(c["samples"])
        )
        rel = v.Interval(ci.estimate / f["lz_mean"], ci.lo / f["lz_mean"], ci.hi / f["lz_mean"])
        claims.append(
            v.claim_row(
                f"A6: on 3x3 binary images a random CNN ({int(c['params'])} parameters) computes simpler "
                f"functions than a random FCN ({int(f['params'])}): mean LZ at least "
                f"{SIMPLER_MARGIN:.0%} lower",
                f"(LZ_FCN - LZ_CNN) / LZ_FCN = {rel} (LZ {f['lz_mean']:.1f} against {c['lz_mean']:.1f})",
                v.at_least(rel, SIMPLER_MARGIN, "more samples"),
            )
        )
        claims.append(
            v.measured_row(
                "A6: share of random functions invariant under cyclic shifts of the image, CNN and FCN",
                f"CNN {c['invariant_share']:.3f}, FCN {f['invariant_share']:.3f}; constant functions "
                f"{c['constant_share']:.3f} and {f['constant_share']:.3f}",
            )
        )
    return claims
