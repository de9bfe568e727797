"""Experiment ``pfmap``: is the parameter-function map biased towards simple functions?

Three parts, each a sampling run in the store:

1. The main network (default 7-40-40-1 ReLU, Gaussian prior): P(f) of every
   function seen, with exact 95 % intervals; its complexities; the rank-frequency
   plot; P(f) against LZ complexity with a fitted upper bound; the distribution
   of T (inputs mapped to 1) against the binomial of a uniform prior.
2. The theorem check (Mingard et al. 2019, Thm 4.1): a perceptron without bias
   on {0,1}^n with a reflection-symmetric prior has T uniform on {0..2^n-1};
   a chi-square test, and the same for the perceptron with bias and the main net.
   On {-1,+1}^n the theorem does not apply: there f(-x) = -f(x), so T = 2^(n-1)
   for every bias-free perceptron, and that is the statement tested.
3. Sampler against exact volumes for the 2-input perceptron (uniform cube).

Verdicts (``estimators.verdicts``): "large volume => simple" is tested in its
own direction, by the complexity of the highest-volume functions against that of
uniformly random functions, beside the fitted Levin-style bound's slope and a
rank correlation with a stated effect size; the theorem and the exact volumes
are distribution claims (goodness of fit and a bound on the total variation).
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
from nnbias.estimators import verdicts as v
from nnbias.estimators.frequency import clopper_pearson, goodness_of_fit, upper_bound_fit
from nnbias.experiments.sampling import SamplingConfig, run_sampling
from nnbias.measures.complexity import complexity_table, lz_complexity
from nnbias.report import figures
from nnbias.spec import NetworkSpec
from nnbias.store import Store

MAX_SINGLETONS = 20_000  # singletons all share P = 1/N; a sample of them suffices for the plot
MAX_COMPLEX = 200_000
TOP_VOLUME = 100  # the highest-volume functions whose complexity "large volume => simple" reads
TOP_MIN_COUNT = 10  # ... each seen at least this often (its volume resolved)
RANDOM_FUNCTIONS = 2000  # uniformly random truth tables: the complexity an unbiased map would give
RHO_EFFECT = -0.3  # the rank correlation of P(f) and K_LZ the claim states (at most this)
TV_MARGIN = 0.05  # sampled and exact distributions agree within this total variation
ALPHA = 0.001  # goodness-of-fit tests of mathematical facts reject at this level


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
    top_lz = frame[frame["count"] >= TOP_MIN_COUNT]["lz"].to_numpy()[:TOP_VOLUME]
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
            "n_repeated": len(repeated), **simplicity_quantiles(top_lz, random_complexity(spec.input_dim)),
            "figures": figs}


def simplicity_quantiles(top_lz: np.ndarray, random_lz: np.ndarray) -> dict[str, Any]:
    """The 90th percentile of K_LZ among the highest-volume functions and the 5th among random ones,
    with their 95 % intervals (None with fewer than 10 resolved functions)."""
    enough = len(top_lz) >= 10
    return {"n_top": len(top_lz), "n_random": len(random_lz),
            "top_q90": v.quantile_interval(top_lz, 0.9) if enough else None,
            "random_q05": v.quantile_interval(random_lz, 0.05)}


def random_complexity(n: int, draws: int = RANDOM_FUNCTIONS, seed: int = 0) -> np.ndarray:
    """K_LZ of uniformly random functions on n inputs: the complexity of a typical function, which the
    top of P(f) would have if the parameter-function map were not biased."""
    bits = np.random.default_rng(seed).integers(0, 2, (draws, 2**n))
    return np.array([lz_complexity("".join("01"[b] for b in row)) for row in bits])


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
    reference = theorem_distribution(n, base.spec.encoding)
    for label, h in hists.items():
        stat, dof, p = goodness_of_fit(h, reference)
        tv, tv_hi = v.tv_upper_bound(h, reference)
        rows.append({"variant": label, "samples": int(h.sum()), "chi2": stat, "dof": dof,
                     "p_value": p, "tv": tv, "tv_upper": tv_hi,
                     "p_T_half": float(h[2 ** (n - 1)] / h.sum()),
                     "p_T_extreme": float((h[0] + h[-1]) / h.sum()),
                     "binomial_p_T_extreme": 2 * 0.5 ** (2**n)})
    table = pd.DataFrame(rows)
    store.replace_table("pfmap_theorem", main_run, table)
    return table, figures.ones_histograms(hists, n, out / "t_histogram.png")


def theorem_distribution(n: int, encoding: str) -> np.ndarray:
    """P(T = t), t = 0 .. 2^n, of a bias-free perceptron with a reflection-symmetric prior: uniform on
    {0 .. 2^n - 1} on {0,1}^n (Thm 4.1); on {-1,+1}^n, f(-x) = -f(x) puts all mass on T = 2^(n-1)."""
    if encoding == "01":
        return np.append(np.full(2**n, 1 / 2**n), 0.0)  # T = 2**n is impossible without bias
    return np.eye(2**n + 1)[2 ** (n - 1)]


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
    tv, tv_hi = v.tv_upper_bound(observed, p_exact)
    store.replace_table("pfmap_exact", main_run, frame)
    fig = figures.exact_vs_sampled(p_exact, observed / total, lo, hi, tables,
                                   f"2-input perceptron, uniform cube, {total:,} samples",
                                   out / "exact_vs_sampled.png")
    return frame, {"chi2": stat, "dof": dof, "p_value": p, "tv": tv, "tv_upper": tv_hi,
                   "inside_ci": int(frame["inside_ci"].sum()), "functions": len(frame)}, fig


def run_pfmap(store: Store, settings: PfmapSettings, out: Path, executor=None,
              quiet: bool = False) -> dict[str, Any]:
    """Run (or resume) the whole experiment and return its results and verdicts."""
    main_run = run_sampling(store, settings.sampling, executor, quiet=quiet)
    main = analyse_main(store, main_run, settings.sampling.spec, settings.top, out)
    theorem, t_fig = theorem_check(store, settings, main_run, executor, quiet, out)
    exact, exact_stats, exact_fig = exact_check(store, settings, main_run, executor, quiet, out)
    main["figures"].update({"t_histogram": t_fig, "exact_vs_sampled": exact_fig})
    judged = claims(main, theorem, exact_stats, settings.sampling.spec)
    store.save_claims(main_run, judged)
    return {**main, "theorem": theorem, "exact": exact, "exact_stats": exact_stats, "claims": judged}


def claims(main: dict[str, Any], theorem: pd.DataFrame, exact: dict[str, Any],
           spec: NetworkSpec) -> list[dict[str, str]]:
    """Claim -> what was measured -> verdict, each by a rule of ``estimators.verdicts``."""
    return [*simplicity_claims(main), theorem_claim(theorem, spec),
            v.measured_row("A3 (contrast): with bias / hidden layers T is not uniform, but still far from "
                           "the binomial of a uniform prior over functions",
                           "; ".join(f"{r.variant}: P(T in {{0, 2^n}}) = {r.p_T_extreme:.3f} vs binomial "
                                     f"{r.binomial_p_T_extreme:.1e}" for r in theorem.iloc[1:].itertuples())),
            v.claim_row("A2: the sampler agrees with the exact volumes (2-input perceptron, uniform cube), "
                        f"within total variation {TV_MARGIN}",
                        f"chi2 = {exact['chi2']:.1f}, dof = {exact['dof']}, p = {exact['p_value']:.3f}; "
                        f"TV = {exact['tv']:.4f} (95 % upper bound {exact['tv_upper']:.4f}); "
                        f"{exact['inside_ci']}/{exact['functions']} exact values inside the 95 % CI",
                        v.matches_distribution(exact["p_value"], exact["tv_upper"], TV_MARGIN, ALPHA,
                                               "more exact-check samples"))]


def simplicity_claims(main: dict[str, Any]) -> list[dict[str, str]]:
    """A1 in its own direction (large volume => simple), its Levin-style bound, and a rank correlation."""
    rows = []
    claim = (f"A1: large volume => simple: 90 % of the {TOP_VOLUME} highest-volume functions are simpler "
             "(K_LZ) than 95 % of uniformly random functions")
    if main["top_q90"] is not None:
        rows.append(v.claim_row(claim, f"90th percentile of K_LZ over the {main['n_top']} highest-volume "
                                       f"functions {main['top_q90']}; 5th percentile over {main['n_random']} "
                                       f"random functions {main['random_q05']}",
                                v.ordered(main["top_q90"], main["random_q05"],
                                          "top-volume 90th percentile < random 5th percentile",
                                          "more samples")))
    else:
        rows.append(v.claim_row(claim, f"only {main['n_top']} functions seen >= {TOP_MIN_COUNT} times",
                                v.Verdict(v.INCONCLUSIVE, "needs >= 10 resolved functions",
                                          "more samples")))
    bound = main["bound"]
    claim = "A1: P(f) <= 2^(-a K_LZ - b) with a > 0 (Levin-style bound fitted to the best-resolved maxima)"
    if bound is None:
        rows.append(v.claim_row(claim, "no bound fitted (fewer than three resolved complexity values)",
                                v.Verdict(v.INCONCLUSIVE, "needs >= 3 resolved complexity values",
                                          "more samples")))
    else:
        a = v.Interval.around(bound.a, bound.a_ci95)
        rows.append(v.claim_row(claim, f"a = {a}, b = {bound.b:.2f}",
                                v.at_least(a, 0.0, "more samples (more resolved complexity values)")))
    rho, _ = main["spearman_count_lz"]
    r = v.correlation_interval(rho, main["n_repeated"], rank=True)
    rows.append(v.claim_row(f"A1: P(f) and K_LZ are rank-correlated at rho <= {RHO_EFFECT}",
                            f"Spearman rho = {r} (Fisher z) over {main['n_repeated']} functions "
                            "seen >= 5 times",
                            v.at_most(r, RHO_EFFECT, "more samples")))
    return rows


def theorem_claim(theorem: pd.DataFrame, spec: NetworkSpec) -> dict[str, str]:
    """Thm 4.1 on {0,1}^n, or its counterpart T = 2^(n-1) on {-1,+1}^n (where the theorem does not apply)."""
    thm = theorem.iloc[0]
    if spec.encoding == "01":
        return v.claim_row(
            "A3: a bias-free perceptron on {0,1}^n has T uniform on {0..2^n-1} (Thm 4.1), "
            f"within total variation {TV_MARGIN}",
            f"chi2 = {thm.chi2:.1f}, dof = {thm.dof}, p = {thm.p_value:.3f}; TV = {thm.tv:.4f} "
            f"(95 % upper bound {thm.tv_upper:.4f}; {thm.samples:,} samples)",
            v.matches_distribution(thm.p_value, thm.tv_upper, TV_MARGIN, ALPHA, "more theorem samples"))
    always = thm.p_T_half == 1.0
    return v.claim_row(
        "A3 on {-1,+1}^n (Thm 4.1 does not apply): a bias-free perceptron has f(-x) = -f(x), so T = 2^(n-1)",
        f"P(T = 2^(n-1)) = {thm.p_T_half:.6f} over {thm.samples:,} samples",
        v.Verdict(v.SUPPORTED if always else v.CONTRADICTED,
                  "every sample has T = 2^(n-1): supported; any other T: contradicted"))
