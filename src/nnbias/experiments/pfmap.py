"""Experiment ``pfmap``: is the parameter-function map biased towards simple functions?

Three parts, each a sampling run in the store:

1. The main network (default 7-40-40-1 ReLU, Gaussian prior): P(f) of every
   function seen, with exact 95 % intervals; its complexities; the rank-frequency
   plot; P(f) against LZ complexity with a fitted upper bound; the distribution
   of T (inputs mapped to 1) against the binomial of a uniform prior.
2. The theorem check (Mingard et al. 2019, Thm 4.1): a perceptron without bias
   on {0,1}^n with a reflection-symmetric prior has T uniform on {0..2^n-1};
   a chi-square test, and the same for the perceptron with bias and the main net.
3. Sampler against exact volumes for the 2-input perceptron (uniform cube).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from nnbias.engines.volumes import exact_volumes
from nnbias.estimators.frequency import clopper_pearson, goodness_of_fit, upper_bound_fit
from nnbias.experiments.sampling import SamplingConfig, run_sampling
from nnbias.measures.complexity import complexity_table
from nnbias.report import figures
from nnbias.spec import NetworkSpec
from nnbias.store import Store

MAX_SINGLETONS = 20_000  # singletons all share P = 1/N; a sample of them suffices for the plot
MAX_COMPLEX = 200_000


@dataclass(frozen=True)
class PfmapSettings:
    sampling: SamplingConfig
    theorem_samples: int = 200_000
    exact_samples: int = 200_000
    top: int = 20


def default_settings(samples: int = 1_000_000, **overrides: Any) -> PfmapSettings:
    spec = NetworkSpec(7, (40, 40), "relu")
    return PfmapSettings(SamplingConfig(spec, samples, **overrides))


def ones_histogram(store: Store, run_id: str, n: int) -> np.ndarray:
    """Sample counts of T = number of ones, for T = 0 .. 2**n."""
    rows = store.con.execute(
        "SELECT bit_count(truth_table) AS t, sum(count) FROM function_counts "
        "WHERE run_id = ? GROUP BY t", [run_id]).fetchall()
    hist = np.zeros(2**n + 1, dtype=np.int64)
    for t, c in rows:
        hist[t] = c
    return hist


def complexities(store: Store, tables: list[str], top: int) -> pd.DataFrame:
    """Complexity of each truth table, computing and caching what the store lacks.

    The (slow, sympy) expression size is computed for the ``top`` first tables only.
    """
    have = store.cached_complexity(tables)
    missing = sorted(set(tables) - set(have["truth_table"]))
    if missing:
        head = set(tables[:top])
        fresh = complexity_table(missing, with_expression=False)
        sizes = complexity_table([t for t in missing if t in head])
        fresh = fresh.set_index("truth_table")
        fresh.loc[sizes["truth_table"], "expression_size"] = sizes["expression_size"].to_numpy()
        fresh = fresh.reset_index()
        store.save_complexity(fresh)
        have = pd.concat([have, fresh], ignore_index=True) if len(have) else fresh
    return have.drop_duplicates("truth_table").set_index("truth_table").loc[tables].reset_index()


def analyse_main(store: Store, run_id: str, spec: NetworkSpec, top: int,
                 out: Path) -> dict[str, Any]:
    total = store.total_samples(run_id)
    counts = store.con.execute(
        f"""(SELECT truth_table::VARCHAR AS truth_table, count FROM function_counts
             WHERE run_id = $r AND count > 1 ORDER BY count DESC, truth_table LIMIT {MAX_COMPLEX})
            UNION ALL
            (SELECT truth_table::VARCHAR, count FROM function_counts WHERE run_id = $r
             AND count = 1 ORDER BY hash(truth_table) LIMIT {MAX_SINGLETONS})""", {"r": run_id}).df()
    counts = counts.sort_values(["count", "truth_table"], ascending=[False, True],
                                ignore_index=True)
    distinct = store.one("SELECT count(*) FROM function_counts WHERE run_id = ?", [run_id])[0]
    cx = complexities(store, counts["truth_table"].tolist(), top)
    frame = counts.merge(cx, on="truth_table")
    frame["p"] = frame["count"] / total
    frame["p_lo"], frame["p_hi"] = clopper_pearson(frame["count"].to_numpy(), total)
    all_counts = store.con.execute("SELECT count FROM function_counts WHERE run_id = ?",
                                   [run_id]).df()["count"].to_numpy()
    bound = upper_bound_fit(frame["lz"].to_numpy(), np.log2(frame["p"].to_numpy()),
                            frame["count"].to_numpy())
    repeated = frame[frame["count"] >= 5]
    rho, rho_p = (stats.spearmanr(repeated["count"], repeated["lz"]) if len(repeated) > 2
                  else (float("nan"), float("nan")))
    label = spec.describe()
    figs = {
        "rank_frequency": figures.rank_frequency(all_counts, total, label, out / "rank_frequency.png"),
        "p_vs_lz": figures.probability_vs_complexity(frame["lz"].to_numpy(), frame["p"].to_numpy(),
                                                     bound, 1 / total, label, out / "p_vs_lz.png"),
    }
    top_rows = frame.head(top)
    store.replace_table("pfmap_top", run_id, top_rows)
    return {"run_id": run_id, "samples": total, "distinct_functions": int(distinct),
            "top": top_rows, "bound": bound, "spearman_count_lz": (float(rho), float(rho_p)),
            "n_repeated": len(repeated), "figures": figs}


def theorem_check(store: Store, settings: PfmapSettings, main_run: str, executor, quiet: bool,
                  out: Path) -> tuple[pd.DataFrame, Path]:
    """T uniform for a bias-free perceptron; compared with bias and with the main network."""
    base = settings.sampling
    n = base.spec.input_dim
    variants = {
        "perceptron, no bias (theorem)": replace(base.spec, hidden=(), bias=False),
        "perceptron with bias": replace(base.spec, hidden=()),
    }
    hists, rows = {}, []
    for label, spec in variants.items():
        cfg = replace(base, spec=spec, samples=settings.theorem_samples)
        run_id = run_sampling(store, cfg, executor, quiet=quiet)
        hists[label] = ones_histogram(store, run_id, n)
    hists[f"main: {base.spec.describe()}"] = ones_histogram(store, main_run, n)
    uniform = np.append(np.full(2**n, 1 / 2**n), 0.0)  # T = 2**n is impossible without bias
    for label, h in hists.items():
        stat, dof, p = goodness_of_fit(h, uniform)
        binom_extremes = 2 * 0.5 ** (2**n)
        rows.append({"variant": label, "samples": int(h.sum()), "chi2": stat, "dof": dof,
                     "p_value": p, "p_T_extreme": float((h[0] + h[-1]) / h.sum()),
                     "binomial_p_T_extreme": binom_extremes})
    table = pd.DataFrame(rows)
    store.replace_table("pfmap_theorem", main_run, table)
    return table, figures.ones_histograms(hists, n, out / "t_histogram.png")


def exact_check(store: Store, settings: PfmapSettings, main_run: str, executor, quiet: bool,
                out: Path) -> tuple[pd.DataFrame, dict[str, Any], Path]:
    """Sampled P(f) of the 2-input perceptron (uniform cube prior) against its exact volumes."""
    spec = NetworkSpec(2, (), prior="uniform", sigma_w=1.0, sigma_b=1 / math.sqrt(2))
    cfg = replace(settings.sampling, spec=spec, samples=settings.exact_samples)
    run_id = run_sampling(store, cfg, executor, quiet=quiet)
    exact = {v.truth_table: v for v in exact_volumes(spec)}
    seen = dict(store.function_counts(run_id).itertuples(index=False, name=None))
    total = store.total_samples(run_id)
    tables = sorted(exact)
    observed = np.array([seen.get(t, 0) for t in tables])
    lo, hi = clopper_pearson(observed, total)
    p_exact = np.array([exact[t].probability for t in tables])
    frame = pd.DataFrame({"truth_table": tables, "exact": [str(exact[t].exact) for t in tables],
                          "p_exact": p_exact, "count": observed, "p_sampled": observed / total,
                          "p_lo": lo, "p_hi": hi})
    frame["inside_ci"] = (frame["p_exact"] >= lo) & (frame["p_exact"] <= hi)
    stat, dof, p = goodness_of_fit(observed, p_exact)
    store.replace_table("pfmap_exact", main_run, frame)
    fig = figures.exact_vs_sampled(p_exact, observed / total, lo, hi, tables,
                                   f"2-input perceptron, uniform cube, {total:,} samples",
                                   out / "exact_vs_sampled.png")
    return frame, {"chi2": stat, "dof": dof, "p_value": p,
                   "inside_ci": int(frame["inside_ci"].sum()), "functions": len(frame)}, fig


def run_pfmap(store: Store, settings: PfmapSettings, out: Path, executor=None,
              quiet: bool = False) -> dict[str, Any]:
    """Run (or resume) the whole experiment and return its results and verdicts."""
    main_run = run_sampling(store, settings.sampling, executor, quiet=quiet)
    main = analyse_main(store, main_run, settings.sampling.spec, settings.top, out)
    theorem, t_fig = theorem_check(store, settings, main_run, executor, quiet, out)
    exact, exact_stats, exact_fig = exact_check(store, settings, main_run, executor, quiet, out)
    main["figures"].update({"t_histogram": t_fig, "exact_vs_sampled": exact_fig})
    return {**main, "theorem": theorem, "exact": exact, "exact_stats": exact_stats,
            "claims": claims(main, theorem, exact_stats)}


def claims(main: dict[str, Any], theorem: pd.DataFrame, exact: dict[str, Any]) -> list[dict[str, str]]:
    """Claim -> what was measured -> verdict, for the report."""
    rho, rho_p = main["spearman_count_lz"]
    bound = main["bound"]
    simple = rho < 0 and rho_p < 0.01
    slope = "no bound fitted (too few resolved functions)" if bound is None else \
        f"upper bound log2 P <= -{bound[0]:.3f} K {-bound[1]:+.2f}"
    thm = theorem.iloc[0]
    rest = theorem.iloc[1:]
    out = [
        {"claim": "A1: large-volume functions are simple (P(f) falls with LZ complexity)",
         "measured": f"Spearman(count, K_LZ) = {rho:.3f} (p = {rho_p:.1e}) over "
                     f"{main['n_repeated']} functions seen >= 5 times; {slope}",
         "verdict": "supported" if simple else "not supported at this scale"},
        {"claim": "A3: bias-free perceptron on {0,1}^n has T uniform on {0..2^n-1} (Thm 4.1)",
         "measured": f"chi2 = {thm.chi2:.1f}, dof = {thm.dof}, p = {thm.p_value:.3f} "
                     f"({thm.samples:,} samples)",
         "verdict": "consistent" if thm.p_value > 0.001 else "rejected"},
        {"claim": "A3 (contrast): with bias / hidden layers T is not uniform, but still far "
                  "from the binomial",
         "measured": "; ".join(f"{r.variant}: p = {r.p_value:.1e}, P(T in {{0, 2^n}}) = "
                               f"{r.p_T_extreme:.3f} vs binomial {r.binomial_p_T_extreme:.1e}"
                               for r in rest.itertuples()),
         "verdict": "measured"},
        {"claim": "A2: sampler agrees with exact volumes (2-input perceptron, uniform cube)",
         "measured": f"chi2 = {exact['chi2']:.1f}, dof = {exact['dof']}, p = {exact['p_value']:.3f}; "
                     f"{exact['inside_ci']}/{exact['functions']} exact values inside the 95 % CI",
         "verdict": "agree" if exact["p_value"] > 0.001 else "disagree"},
    ]
    return out
