"""Matplotlib figures of the experiments (PNG, headless)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402
from scipy import stats  # noqa: E402

from nnbias.estimators.frequency import BoundFit, log_frequencies  # noqa: E402

DENSE_POINTS = 5000  # a line or scatter with more points is rasterised in the PDF (else megabytes of vectors)


def _save(fig, path: Path) -> Path:
    """The PNG (for the report) and a PDF beside it (vector, for a paper): the PDF carries no
    creation date, so a rerun writes the same bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    for ax in fig.axes:
        for artist in [*ax.lines, *ax.collections]:
            points = len(artist.get_xdata()) if hasattr(artist, "get_xdata") else len(artist.get_offsets())
            artist.set_rasterized(points > DENSE_POINTS)
    fig.savefig(path.with_suffix(".pdf"), dpi=300, metadata={"CreationDate": None})
    plt.close(fig)
    return path


def rank_frequency(counts: np.ndarray, total: int, label: str, path: Path) -> Path:
    """P(f) of the functions against their rank, log-log (Zipf-like if biased)."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    p = np.sort(counts)[::-1] / total
    ax.loglog(np.arange(1, len(p) + 1), p, ".", ms=2)
    ax.set(xlabel="rank", ylabel="P(f)", title=f"Rank-frequency, {total:,} samples\n{label}")
    return _save(fig, path)


def probability_vs_complexity(lz: np.ndarray, p: np.ndarray, bound: BoundFit | None,
                              floor: float, label: str, path: Path) -> Path:
    """P(f) against K_LZ(f), with the fitted upper bound 2^(-a K - b)."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.semilogy(lz, p, ".", ms=3, alpha=0.4, label="functions seen")
    ax.axhline(floor, color="grey", lw=0.8, ls=":", label="1 / samples")
    if bound is not None:
        a, b = bound.a, bound.b
        ks = np.linspace(lz.min(), lz.max(), 50)
        ax.semilogy(ks, 2.0 ** (-a * ks - b), "r-", label=f"bound, slope a={a:.3f}")
    ax.set_ylim(floor / 5, 1.5)  # below 1/samples nothing can be seen
    ax.set(xlabel="LZ complexity K(f)", ylabel="P(f)", title=f"P(f) vs complexity\n{label}")
    ax.legend(fontsize=8)
    return _save(fig, path)


def ones_histograms(histograms: dict[str, np.ndarray], n: int, path: Path) -> Path:
    """Distribution of T (inputs mapped to 1) per variant, against the binomial of a uniform prior."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    t = np.arange(2**n + 1)
    for label, h in histograms.items():
        ax.step(t, h / h.sum(), where="mid", label=label)
    ax.plot(t, stats.binom.pmf(t, 2**n, 0.5), "k--", lw=1,
            label="binomial: uniform prior over functions")
    ax.axhline(1 / 2**n, color="grey", lw=0.8, ls=":", label="uniform on {0..2^n-1}")
    ax.set_yscale("log")
    ax.set_ylim(1e-6, 1)
    ax.set(xlabel="T = number of inputs mapped to 1", ylabel="P(T)",
           title=f"Bias towards low entropy, n = {n}")
    ax.legend(fontsize=7)
    return _save(fig, path)


def exact_vs_sampled(exact: np.ndarray, sampled: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                     labels: list[str], title: str, path: Path) -> Path:
    """Sampled P(f) with 95 % intervals against the exact volumes."""
    fig, ax = plt.subplots(figsize=(max(5, 0.35 * len(labels)), 4))
    x = np.arange(len(labels))
    ax.bar(x, exact, color="lightgrey", label="exact")
    ax.errorbar(x, sampled, yerr=[sampled - lo, hi - sampled], fmt="o", ms=3, color="C3",
                label="sampled, 95 % CI")
    ax.set_xticks(x, labels, rotation=90, fontsize=7)
    ax.set(ylabel="P(f)", title=title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def kernel_gap(results, path: Path) -> Path:
    """Per task: each trained model's test score against width (mean +- sd), kernel predictors as lines.

    Rows with a width are finite networks (one line per model); rows without are kernels.
    """
    tasks = list(dict.fromkeys(results["task"]))
    cols = min(len(tasks), 3)
    rows_ = -(-len(tasks) // cols)
    fig, axes = plt.subplots(rows_, cols, figsize=(4.2 * cols, 3.6 * rows_), squeeze=False)
    for ax, task in zip(axes.flat, tasks, strict=False):
        rows = results[results["task"] == task]
        finite = rows[rows["width"].notna()]
        for model, nets in finite.groupby("model", sort=False):
            nets = nets.sort_values("width")
            label = "trained nets" if model == "network" and finite["model"].nunique() == 1 else model
            ax.errorbar(nets["width"], nets["score"], yerr=nets["score_sd"], fmt="o-", ms=4, capsize=2,
                        label=label)
        kernels = rows[rows["width"].isna()].iterrows()
        for (_, r), style in zip(kernels, ("--", "-", ":", "-."), strict=False):
            ax.axhline(r["score"], ls=style, color="k", lw=1, label=r["model"])
        ax.set_xscale("log")
        ax.set(xlabel="width", ylabel=f"test {rows['metric'].iloc[0]}", title=task)
        if ax is axes.flat[0]:  # the same models in every panel: one legend
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(tasks):]:
        ax.set_visible(False)
    return _save(fig, path)


def linearisation_divergence(cells, path: Path) -> Path:
    """How far full training strays from linearised training, against width (log-log), per task."""
    nets = cells[(cells["model"] == "network") & ~cells["diverged"]]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, column, label in ((axes[0], "weight_divergence", "||theta - theta_lin|| / ||theta - theta_0||"),
                              (axes[1], "output_divergence", "||f - f_lin|| / ||f - f_0|| (test)")):
        for task, g in nets.groupby("task", sort=False):
            m = g.groupby("width")[column].agg(["mean", "std"]).reset_index()
            ax.errorbar(m["width"], m["mean"], yerr=m["std"].fillna(0), fmt="o-", ms=4, capsize=2, label=task)
        widths = np.array(sorted(nets["width"].unique()), dtype=float)
        if len(widths):
            anchor = nets[nets["width"] == widths[0]][column].mean()
            ax.plot(widths, anchor * (widths / widths[0]) ** -0.5, "k:", label="width^-1/2")
        ax.set(xscale="log", yscale="log", xlabel="width", ylabel=label)
        ax.legend(fontsize=7)
    fig.suptitle("Full vs linearised training (NTK parametrization, same init, lr, steps)")
    return _save(fig, path)


def sample_complexity(curves, learned: float, path: Path) -> Path:
    """Test error against training-set size per task, kernels and networks (mean +- sd over seeds)."""
    tasks = list(dict.fromkeys(curves["task"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.6 * len(tasks), 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        rows = curves[(curves["task"] == task) & ~curves["diverged"]]
        for model, g in rows.groupby("model", sort=False):
            m = g.groupby("n")["error"].agg(["mean", "std"]).reset_index()
            ax.errorbar(m["n"], m["mean"], yerr=m["std"].fillna(0), fmt="o-", ms=4, capsize=2, label=model)
        ax.axhline(learned, color="grey", lw=0.8, ls=":", label=f"error {learned}")
        ax.set(xscale="log", xlabel="training-set size |S|", ylabel="test error", title=task,
               ylim=(-0.02, 0.6))
        sizes = sorted(rows["n"].unique())
        ax.set_xticks(sizes, [str(int(n)) for n in sizes])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.legend(fontsize=7)
    return _save(fig, path)


def ntk_convergence(conv, slope: float, intercept: float, path: Path) -> Path:
    """Relative error of the empirical NTK against width, with the fitted power law."""
    fig, ax = plt.subplots(figsize=(5, 3.8))
    ax.loglog(conv["width"], conv["rel_error"], "o", alpha=0.5, label="seeds")
    w = np.array(sorted(set(conv["width"])))
    ax.loglog(w, np.exp(intercept) * w**slope, "r-", label=f"fit: width^{slope:.2f}")
    ax.loglog(w, np.exp(intercept) * w[0] ** (slope + 0.5) * w**-0.5, "k:", label="width^-0.5")
    ax.set(xlabel="width", ylabel="||Theta_emp - Theta|| / ||Theta||",
           title="Empirical NTK -> analytic NTK")
    ax.legend(fontsize=8)
    return _save(fig, path)


def ntk_fluctuations(fluct, path: Path) -> Path:
    """E[Theta^2]/E[Theta]^2 at initialisation against beta = depth/width, with exp(5 beta), beside the
    forward pass's E[q^2]/E[q]^2 on the same networks and its closed form (1 + 5/width)^depth."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    b = np.linspace(0, fluct["beta"].max(), 50)
    panels = (("ntk_ratio", "E[Theta(x,x)^2] / E[Theta(x,x)]^2", "NTK fluctuations at initialisation"),
              ("forward_ratio", "E[q^2] / E[q]^2", "Forward pass, q = ||h_L||^2"))
    for ax, (column, ylabel, title) in zip(axes, panels, strict=True):
        for depth, rows in fluct.groupby("depth"):
            line, = ax.plot(rows["beta"], rows[column], "o", label=f"depth {depth}")
            if column == "forward_ratio":
                order = rows.sort_values("beta")
                ax.plot(order["beta"], order["forward_exact"], "_", ms=12, color=line.get_color())
        ax.plot(b, np.exp(5 * b), "k--", label="exp(5 beta) (Hanin & Nica)")
        ax.set_yscale("log")
        ax.set(xlabel="beta = depth / width", ylabel=ylabel, title=title)
    axes[1].plot([], [], "k_", ms=12, label="(1 + 5/width)^depth, exact")
    axes[1].legend(fontsize=8)
    return _save(fig, path)


def sgd_vs_bayes(table, methods: list[str], min_count: int, label: str, path: Path) -> Path:
    """log P_SGD(f|S) of each method against log P_B(f|S) (EP; rejection where there is one)."""
    references = [("log_pb_ep", "log P_B(f|S), NNGP + EP")]
    if "rejection" in table:
        references.append(("rejection", "log P_B(f|S), rejection sampling"))
    fig, axes = plt.subplots(1, len(references), figsize=(5.5 * len(references), 4.5), squeeze=False)
    for ax, (column, xlabel) in zip(axes[0], references, strict=True):
        x = (log_frequencies(table["rejection"].to_numpy(), min_count) if column == "rejection"
             else table[column].to_numpy(dtype=float))
        lo, hi = np.inf, -np.inf
        for method in methods:
            if method not in table or method == column:
                continue
            y = log_frequencies(table[method].to_numpy(), min_count)
            keep = np.isfinite(x) & np.isfinite(y)
            if keep.any():
                ax.plot(x[keep], y[keep], "o", ms=4, alpha=0.6, label=f"{method} ({keep.sum()})")
                lo, hi = min(lo, x[keep].min(), y[keep].min()), max(hi, x[keep].max(), y[keep].max())
        if np.isfinite(lo):
            ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8, ls="--", label="P_SGD = P_B")
            ax.legend(fontsize=7)
        else:  # e.g. no prior sample fitted S: say so instead of leaving empty axes
            ax.text(0.5, 0.5, f"no function seen >= {min_count} times\nby a method and by this P_B",
                    transform=ax.transAxes, ha="center", va="center", fontsize=9, color="grey")
            ax.set(xticks=[], yticks=[])
        ax.set(xlabel=xlabel, ylabel="log P_SGD(f|S)")
    fig.suptitle(f"{label}\nfunctions seen >= {min_count} times", fontsize=9)
    return _save(fig, path)


def coordinate_check(coord, path: Path) -> Path:
    """Typical coordinate of each layer's change after a few steps against width, one panel
    per parametrization (microsoft/mup's coordinate check); flat lines = width-independent."""
    params = list(dict.fromkeys(coord["parametrization"]))
    fig, axes = plt.subplots(1, len(params), figsize=(3.6 * len(params), 3.4), squeeze=False, sharey=True)
    for ax, param in zip(axes[0], params, strict=True):
        for layer, g in coord[coord["parametrization"] == param].groupby("layer", sort=False):
            ax.loglog(g["width"], g["change"], "o-", ms=3, label=layer)
        ax.set(title=param, xlabel="width")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("mean |h_t - h_0| after a few SGD steps")
    return _save(fig, path)


def feature_movement(cells, path: Path) -> Path:
    """Relative change of the first hidden layer's activations against width, per task and
    parametrization (mean +- sd over seeds), with the theory's slopes for reference."""
    tasks = list(dict.fromkeys(cells["task"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.6 * len(tasks), 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for param, g in cells[(cells["task"] == task) & ~cells["diverged"]].groupby("parametrization",
                                                                                    sort=False):
            m = g.groupby("width")["act_change_1"].agg(["mean", "std"])
            ax.errorbar(m.index, m["mean"], yerr=m["std"].fillna(0), fmt="o-", ms=3, capsize=2, label=param)
        ax.set(xscale="log", yscale="log", xlabel="width", title=task,
               ylabel="||h_T - h_0|| / ||h_0||, hidden layer 1")
        ax.legend(fontsize=7)
    return _save(fig, path)


def transfer_curves(cells, path: Path) -> Path:
    """Test error on B against n_B per pair: each learner after pretraining on A (solid) and from
    scratch (dashed, same colour), the NNGP and NTK from scratch in black (mean over seeds)."""
    pairs = list(dict.fromkeys(cells["pair"]))
    cols = min(3, len(pairs))
    rows_n = -(-len(pairs) // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.4 * cols, 3.6 * rows_n), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, pair in zip(axes.flat, pairs, strict=False):
        rows = cells[cells["pair"] == pair]
        learners = [m for m in dict.fromkeys(rows["learner"]) if m not in ("NNGP", "NTK")]
        for colour, learner in zip(colours, learners, strict=False):
            m = rows[rows["learner"] == learner].groupby("n")[["error_scratch", "error_transfer"]].mean()
            ax.plot(m.index, m["error_transfer"], "o-", ms=3, color=colour, label=learner)
            ax.plot(m.index, m["error_scratch"], "--", color=colour, lw=0.9)
        for style, kernel in zip((":", "-."), ("NNGP", "NTK"), strict=True):
            k = rows[rows["learner"] == kernel].sort_values("n")
            ax.plot(k["n"], k["error_scratch"], style, color="k", lw=1, label=f"{kernel} (scratch)")
        ax.set(xscale="log", xlabel="n_B", ylabel="test MSE / Var(y)", title=pair)
        sizes = sorted(rows["n"].unique())
        ax.set_xticks(sizes, [str(int(n)) for n in sizes])
        ax.xaxis.set_minor_formatter(NullFormatter())
        if ax is axes.flat[0]:
            ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(pairs):]:
        ax.set_visible(False)
    fig.suptitle("Transfer: after pretraining on A (solid) against from scratch (dashed)", fontsize=9)
    return _save(fig, path)


def transfer_gains(gains, n: int, path: Path) -> Path:
    """The transfer-gain matrix, learners x pairs at n_B = n: colour = mean gain (error scratch -
    error after pretraining), text = mean and 95 % interval over seeds; > 0 means transfer helped."""
    pairs, learners = list(dict.fromkeys(gains["pair"])), list(dict.fromkeys(gains["learner"]))
    mean = gains.pivot(index="learner", columns="pair", values="gain").loc[learners, pairs]
    lo = gains.pivot(index="learner", columns="pair", values="gain_lo").loc[learners, pairs]
    hi = gains.pivot(index="learner", columns="pair", values="gain_hi").loc[learners, pairs]
    bound = float(np.nanmax(np.abs(mean.to_numpy()))) or 1.0
    fig, ax = plt.subplots(figsize=(1.9 * len(pairs) + 2, 0.7 * len(learners) + 1.6))
    ax.imshow(mean.to_numpy(), cmap="RdBu", vmin=-bound, vmax=bound, aspect="auto")
    for i in range(len(learners)):
        for j in range(len(pairs)):
            ax.text(j, i, f"{mean.iat[i, j]:+.2f}\n[{lo.iat[i, j]:+.2f}, {hi.iat[i, j]:+.2f}]",
                    ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(pairs)), pairs, rotation=20, ha="right", fontsize=8)
    ax.set_yticks(range(len(learners)), learners, fontsize=8)
    ax.set_title(f"Transfer gain at n_B = {n} (blue: helps, red: hurts)", fontsize=9)
    return _save(fig, path)


def transfer_sign_flip(gains, n: int, path: Path) -> Path:
    """Each learner's transfer gain on B = A against B = -A at n_B = n (mean, 95 % interval): a model
    that transfers only through its starting point turns help into harm when the target flips."""
    same, flip = (gains[gains["relation"] == r].set_index("learner") for r in ("same", "flip"))
    learners = [m for m in same.index if m in flip.index]
    x = np.arange(len(learners))
    fig, ax = plt.subplots(figsize=(1.3 * len(learners) + 2, 3.6))
    for offset, rows, label in ((-0.18, same, "B = A"), (0.18, flip, "B = -A")):
        r = rows.loc[learners]
        ax.bar(x + offset, r["gain"], width=0.36, label=label,
               yerr=[r["gain"] - r["gain_lo"], r["gain_hi"] - r["gain"]], capsize=3)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(x, learners, rotation=15, fontsize=8)
    ax.set(ylabel="transfer gain (normalised MSE)", title=f"Flipping the target's sign, n_B = {n}")
    ax.legend(fontsize=8)
    return _save(fig, path)


def kernel_solution(cells, path: Path) -> Path:
    """Inside the kernel solution p*: the nonlinear network's departure from its linear model (left) and
    the movement of its hidden activations beside the trained network's (right), against width."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    star = cells[cells["solution"] == "kernel solution"]
    for param, g in star.groupby("parametrization", sort=False):
        m = g.groupby("width")["output_gap"].agg(["mean", "std"])
        axes[0].errorbar(m.index, m["mean"], yerr=m["std"].fillna(0), fmt="o-", ms=3, capsize=2, label=param)
    for (param, solution), g in cells.groupby(["parametrization", "solution"], sort=False):
        m = g.groupby("width")["act_change"].agg(["mean", "std"])
        axes[1].errorbar(m.index, m["mean"], yerr=m["std"].fillna(0), fmt="o-" if solution == "trained" else
                         "s--", ms=3, capsize=2, label=f"{param}, {solution}")
    widths = np.array(sorted(cells["width"].unique()), dtype=float)
    for ax, column in zip(axes, ("output_gap", "act_change"), strict=True):
        anchor = cells[(cells["width"] == widths[0])][column].mean()
        ax.plot(widths, anchor * (widths / widths[0]) ** -0.5, "k:", label="width^-1/2")
        ax.set(xscale="log", yscale="log", xlabel="width")
        ax.legend(fontsize=7)
    axes[0].set(ylabel="||f(p*) - f_lin(p*)|| / ||f_lin(p*) - f0|| (test)",
                title="Network at p* vs linear model")
    axes[1].set(ylabel="||h - h_0|| / ||h_0||, hidden layer", title="Feature movement")
    return _save(fig, path)


def posterior_layers(gains, path: Path) -> Path:
    """Alignment gain of each layer over its prior against width, per posterior or training method."""
    layers = list(dict.fromkeys(gains["layer"]))
    fig, axes = plt.subplots(1, len(layers), figsize=(3.6 * len(layers), 3.6), squeeze=False)
    for ax, layer in zip(axes[0], layers, strict=True):
        for method, g in gains[gains["layer"] == layer].groupby("method", sort=False):
            g = g.sort_values("width")
            err = np.vstack([g["gain"] - g["gain_lo"], g["gain_hi"] - g["gain"]])
            ax.errorbar(g["width"], g["gain"], yerr=np.nan_to_num(err), fmt="o-", ms=3, capsize=2,
                        label=method)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set(xscale="log", yscale="symlog", xlabel="width", title=layer)
        ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    axes[0][0].set_ylabel("alignment gain over the prior")
    axes[0][0].legend(fontsize=7)
    return _save(fig, path)


def langevin_boltzmann(langevin, tempering, path: Path, min_ess: float = 0.0) -> Path:
    """Left: Langevin's TV to the exact Gibbs posterior against its step size. Right: each SGD setting's
    TV to the tempered posteriors against their temperature (P_B drawn at the left edge), for the
    references with an effective sample size of at least ``min_ess``."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    ax = axes[0]
    above = langevin["tv_upper"] - langevin["tv"]
    ax.errorbar(langevin["lr"], langevin["tv"], yerr=[np.zeros(len(langevin)), above],
                fmt="o-", ms=4, capsize=3, label="TV (bar: 95 % upper bound)")
    ax.set(xscale="log", xlabel="Langevin step size", ylabel="TV to the exact Gibbs posterior",
           title="Langevin against Boltzmann")
    ax.legend(fontsize=7)
    ax = axes[1]
    tempering = tempering[tempering["ess"] >= min_ess]  # a reference this thin is not the posterior
    tempered = tempering[tempering["temperature"] > 0]
    lowest = tempered["temperature"].min() if len(tempered) else 1.0
    for (lr, batch), g in tempering.groupby(["lr", "batch"], sort=False):
        g = g.sort_values("temperature")
        t = np.where(g["temperature"] > 0, g["temperature"], lowest / 3)
        ax.plot(t, g["tv"], "o-", ms=3, label=f"SGD lr={lr:g} b={batch}")
    ax.axvline(lowest / 3, color="grey", lw=0.8, ls=":")
    ax.set(xscale="log", xlabel=f"temperature T (dotted: P_B; references with ESS >= {min_ess:g})",
           ylabel="TV of P_SGD(f|S) to the posterior",
           title="Optimizers against tempered posteriors")
    ax.legend(fontsize=6, ncol=2)
    return _save(fig, path)


def pac_bayes_bound(cells, path: Path) -> Path:
    """The PAC-Bayes bound against the SGD networks' test error, one point per (task, m, corruption),
    marker by corruption, size by m within its task; the bound holds above the diagonal."""
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    markers = dict(zip(sorted(cells["corruption"].unique()), "osD^v<>", strict=False))
    for i, (task, g) in enumerate(cells.groupby("task", sort=False)):
        sizes = g["m"].rank(method="dense").to_numpy()
        for size, r in zip(sizes, g.itertuples(), strict=True):
            ax.errorbar(r.error, r.bound, xerr=0 if np.isnan(r.error_sd) else r.error_sd,
                        fmt=markers[r.corruption], color=f"C{i}", ms=3 + 2 * size, capsize=2, alpha=0.8)
        ax.plot([], [], "o", color=f"C{i}", label=task)
    for c, m in markers.items():
        ax.plot([], [], m, color="grey", label=f"corruption {c:g}")
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set(xlim=(0, 0.6), ylim=(0, 1.02), xlabel="SGD test error (mean over networks)",
           ylabel="PAC-Bayes bound (EP on the NNGP)", title="Marginal-likelihood bound vs error")
    ax.legend(fontsize=7)
    return _save(fig, path)


def three_routes(pairs, path: Path) -> Path:
    """Total variation between routes to fitting S (last-layer / all-layer, sampled / trained) against
    the hidden layer's width, with bootstrap 95 % upper bounds."""
    fig, ax = plt.subplots(figsize=(5.8, 4))
    for pair, g in pairs.groupby("pair", sort=False):
        g = g.sort_values("width")
        ax.errorbar(g["width"], g["tv"], yerr=[np.zeros(len(g)), g["tv_upper"] - g["tv"]], fmt="o-", ms=4,
                    capsize=3, label=pair)
    ax.set(xscale="log", xlabel="hidden width", ylabel="TV between the routes' P(f|S) on E",
           title="Three routes to fitting S")
    ax.legend(fontsize=7)
    return _save(fig, path)


def architecture_accuracy(accuracy, kernels, published: dict, path: Path) -> Path:
    """Test accuracy per task: trained models across widths (mean and 95 % interval over seeds), their
    infinite-width kernels (NNGP, NTK) as bars, and the published accuracies as ticks."""
    tasks = list(accuracy["task"].unique())
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.2 * len(tasks), 4.2), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        rows = accuracy[accuracy["task"] == task]
        labels = [f"{r.model}" + (f" {r.width}" if r.model != "logistic" else "") for r in rows.itertuples()]
        x = np.arange(len(rows))
        ax.errorbar(x, rows["test_acc"], yerr=[rows["test_acc"] - rows["lo"], rows["hi"] - rows["test_acc"]],
                    fmt="o", color="C0", capsize=3, label="trained (Adam)")
        for i, r in enumerate(rows.itertuples()):
            if r.model in published.get(task, {}):
                ax.plot(i, published[task][r.model], "_", color="k", ms=18, mew=2,
                        label="published" if i == 0 else None)
        k = kernels[kernels["task"] == task]
        kx = np.arange(len(k)) + len(rows) + 0.5
        colours = ["C1" if kind == "nngp" else "C2" for kind in k["kind"]]
        ax.bar(kx, k["test_acc"], color=colours, width=0.7)
        klabels = [f"{r.kernel} {r.kind}" + (f"\n(train {r.train})" if r.train < k["train"].max() else "")
                   for r in k.itertuples()]
        ax.set_xticks(list(x) + list(kx), labels + klabels, rotation=60, ha="right", fontsize=7)
        ax.set(ylim=(0, 1), ylabel="test accuracy", title=task)
        handles, _ = ax.get_legend_handles_labels()
        handles += [Patch(color="C1", label="NNGP / CNN-GP"), Patch(color="C2", label="NTK / CNTK")]
        ax.legend(handles=handles, fontsize=7, loc="lower right")
    return _save(fig, path)


def architecture_functions(functions, boolean, path: Path) -> Path:
    """Random CNN against FCN on 3x3 binary images: P(f) against rank, and P(f) against LZ."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for i, (name, g) in enumerate(functions.groupby("architecture", sort=False)):
        total = int(boolean.set_index("architecture").loc[name, "samples"])
        p = g["count"].to_numpy() / total
        left.loglog(g["rank"], p, ".", ms=2, color=f"C{i}", label=name)
        right.semilogy(g["lz"], p, ".", ms=3, alpha=0.4, color=f"C{i}", label=name)
    left.set(xlabel="rank", ylabel="P(f)", title="Rank-frequency on 3x3 binary images")
    right.set(xlabel="LZ complexity", ylabel="P(f)", title="P(f) against complexity")
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    return _save(fig, path)
