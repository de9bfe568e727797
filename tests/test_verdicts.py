"""Verdict rules: each must come out supported, contradicted and inconclusive on synthetic inputs,
and every experiment's claims must be able to come out against the claim."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from nnbias.estimators import verdicts as v
from nnbias.estimators.frequency import BoundFit, compare_distributions, goodness_of_fit
from nnbias.experiments import features, gap, kernels, pfmap, sgd_bayes
from nnbias.spec import NetworkSpec

S, C, U = v.SUPPORTED, v.CONTRADICTED, v.INCONCLUSIVE  # U: undecided


def iv(lo: float, hi: float) -> v.Interval:
    return v.Interval((lo + hi) / 2, lo, hi)


@pytest.mark.parametrize(("ci", "word"), [(iv(-0.55, -0.45), S), (iv(-0.2, -0.1), C), (iv(-0.9, -0.7), C),
                                          (iv(-0.7, -0.4), U), (iv(-0.45, 0.1), U),
                                          (v.Interval(-0.5, -math.inf, math.inf), U)])
def test_equals_is_an_equivalence_test(ci, word):
    verdict = v.equals(ci, -0.5, 0.15, "more widths")
    assert verdict.word == word
    assert verdict.decide == "more widths"  # carried, and shown only when inconclusive
    assert (v.claim_row("c", "m", verdict)["decide"] != "") == (word == U)


def test_a_wide_interval_never_supports_what_a_narrow_one_rejects():
    """The old rule |e - theory| <= max(ci, 0.15) passed noisier fits more easily; this one cannot."""
    assert v.equals(v.Interval.around(-0.29, 0.29), -0.5, 0.15, "").word == U
    assert v.equals(v.Interval.around(-0.29, 0.02), -0.5, 0.15, "").word == C


@pytest.mark.parametrize(("ci", "word"), [(iv(-0.9, -0.4), S), (iv(-0.3, 0.1), C), (iv(-0.58, 0.0), U)])
def test_bound_at_most(ci, word):
    assert v.at_most(ci, -0.35, "").word == word


@pytest.mark.parametrize(("ci", "word"), [(iv(0.6, 0.9), S), (iv(0.1, 0.4), C), (iv(0.3, 0.7), U),
                                          (iv(math.nan, math.nan), U)])
def test_bound_at_least(ci, word):
    assert v.at_least(ci, 0.5, "").word == word


@pytest.mark.parametrize(("a", "b", "word"), [(iv(200, 400), iv(800, math.inf), S),
                                              (iv(100, 200), iv(50, 100), C),
                                              (iv(100, 200), iv(100, 200), U),
                                              (iv(800, math.inf), iv(800, math.inf), U)])
def test_ordered(a, b, word):
    assert v.ordered(a, b, "n", "").word == word


def test_aggregate_all_of():
    s, c, i = (v.Verdict(w, "r", "d") for w in (S, C, U))
    assert v.all_of([s, s], "x").word == S
    assert v.all_of([s, i], "x").word == U and v.all_of([s, i], "x").decide == "d"
    assert v.all_of([s, i, c], "x").word == C
    assert v.all_of([], "x").word == U


@pytest.mark.parametrize(("p", "tv_hi", "word"), [(0.4, 0.02, S), (1e-5, 0.02, C), (0.4, 0.3, U),
                                                  (math.nan, 0.0, U)])
def test_matches_distribution(p, tv_hi, word):
    assert v.matches_distribution(p, tv_hi, 0.05, 0.001, "").word == word


def test_a_verdict_is_one_word_of_the_vocabulary():
    with pytest.raises(ValueError):
        v.Verdict("consistent", "r")


def test_correlation_interval_against_a_monte_carlo():
    """Fisher z: the interval covers the true correlation in about 95 % of bivariate normal samples."""
    rng = np.random.default_rng(0)
    rho, n, hits = 0.6, 40, 0
    cov = [[1, rho], [rho, 1]]
    for _ in range(400):
        x = rng.multivariate_normal([0, 0], cov, n)
        ci = v.correlation_interval(float(np.corrcoef(x.T)[0, 1]), n)
        hits += ci.lo <= rho <= ci.hi
    assert 0.91 <= hits / 400 <= 0.985


def test_mean_and_quantile_intervals():
    ci = v.mean_interval([1.0, 2.0, 3.0])
    assert ci.estimate == 2.0 and ci.hi - 2.0 == pytest.approx(stats.t.ppf(0.975, 2) / math.sqrt(3))
    assert v.mean_interval([1.0]).hi == math.inf
    q = v.quantile_interval(np.arange(1000.0), 0.9)
    assert q.lo < 899.1 < q.hi and q.hi - q.lo < 60


def test_tv_bound_covers_the_true_distance():
    """Weissman et al.'s bound: the sample TV's 95 % upper bound lies above the true TV (0 here) and the
    sample TV of a distribution 0.1 away stays near 0.1."""
    rng = np.random.default_rng(1)
    p = np.full(64, 1 / 64)
    for _ in range(20):
        assert v.tv_upper_bound(rng.multinomial(20_000, p), p)[1] >= 0
    q = p.copy()
    q[:32] *= 1.2
    q[32:] *= 0.8
    tv, hi = v.tv_upper_bound(rng.multinomial(200_000, q), p)
    assert abs(tv - 0.1) < 0.01 and hi > 0.1


def test_bootstrap_tv_bound_of_two_samples():
    rng = np.random.default_rng(2)
    p = rng.dirichlet(np.ones(30))
    same = compare_distributions(rng.multinomial(5000, p), rng.multinomial(5000, p))
    assert same["p_value"] > 0.01 and same["tv"] <= same["tv_upper"] < 0.1
    q = np.roll(p, 1)
    diff = compare_distributions(rng.multinomial(5000, p), rng.multinomial(5000, q))
    assert diff["p_value"] < 0.01 and diff["tv_upper"] > 0.2


# ------------------------------------------------------------ every experiment's claims can say no
def _main(top_lz, random_lz, bound, rho, n=500):
    return {**pfmap.simplicity_quantiles(np.asarray(top_lz, float), np.asarray(random_lz, float)),
            "bound": bound, "spearman_count_lz": (rho, 0.0), "n_repeated": n}


def _words(rows):
    return [r["verdict"] for r in rows]


def test_pfmap_simplicity_claims_can_be_contradicted_and_inconclusive():
    rng = np.random.default_rng(0)
    random_lz = rng.normal(140, 5, 2000)
    simple = _main(rng.normal(30, 5, 100), random_lz, BoundFit(0.5, 1.0, 0.1), -0.7)
    assert _words(pfmap.simplicity_claims(simple)) == [S, S, S]
    typical = _main(rng.normal(140, 5, 100), random_lz, BoundFit(-0.2, 1.0, 0.1), 0.1)
    assert _words(pfmap.simplicity_claims(typical)) == [C, C, C]
    few = _main(rng.normal(30, 5, 4), random_lz, None, -0.3, n=10)
    assert _words(pfmap.simplicity_claims(few)) == [U, U, U]


def _theorem(hist: np.ndarray, encoding: str) -> pd.DataFrame:
    n = int(math.log2(len(hist) - 1))
    ref = pfmap.theorem_distribution(n, encoding)
    stat, dof, p = goodness_of_fit(hist, ref)
    tv, tv_hi = v.tv_upper_bound(hist, ref)
    return pd.DataFrame([{"chi2": stat, "dof": dof, "p_value": p, "tv": tv, "tv_upper": tv_hi,
                          "samples": int(hist.sum()), "p_T_half": hist[2 ** (n - 1)] / hist.sum()}])


def test_theorem_claim_can_be_contradicted_and_inconclusive():
    spec = NetworkSpec(4, ())
    rng = np.random.default_rng(3)
    uniform = np.append(rng.multinomial(200_000, np.full(16, 1 / 16)), 0)
    assert pfmap.theorem_claim(_theorem(uniform, "01"), spec)["verdict"] == S
    binomial = np.append(rng.multinomial(200_000, stats.binom.pmf(np.arange(16), 15, 0.5)), 0)
    assert pfmap.theorem_claim(_theorem(binomial, "01"), spec)["verdict"] == C
    few = np.append(rng.multinomial(300, np.full(16, 1 / 16)), 0)
    assert pfmap.theorem_claim(_theorem(few, "01"), spec)["verdict"] == U
    pm1 = NetworkSpec(4, (), encoding="pm1")
    half = np.zeros(17, int)
    half[8] = 1000
    assert pfmap.theorem_claim(_theorem(half, "pm1"), pm1)["verdict"] == S
    half[3] = 1
    assert pfmap.theorem_claim(_theorem(half, "pm1"), pm1)["verdict"] == C


def _fluct(rate: float, noise: float, seed: int = 0, forward: float = 1.0) -> pd.DataFrame:
    """Fluctuation cells whose NTK grows as exp(rate beta) and whose forward pass as its closed form
    to the power ``forward``, each with log-normal noise."""
    rng = np.random.default_rng(seed)
    grid = np.meshgrid([1.0, 2.0, 4.0, 8.0], [16.0, 32.0, 64.0, 128.0], indexing="ij")
    depth, width = (a.ravel() for a in grid)
    beta, exact = depth / width, (1 + 5 / width) ** depth
    return pd.DataFrame({"depth": depth, "width": width, "beta": beta,
                         "ntk_ratio": np.exp(rate * beta + rng.normal(0, noise, len(beta))),
                         "forward_ratio": np.exp(forward * np.log(exact) + rng.normal(0, noise, len(beta))),
                         "forward_exact": exact, "hanin_nica": np.exp(5 * beta)})


def _conv() -> pd.DataFrame:
    return pd.DataFrame({"width": [64, 128], "seed": [0, 0], "rel_error": [0.1, 0.07]})


def test_kernel_claims_can_be_contradicted_and_inconclusive():
    empty = pd.DataFrame(columns=["task", "model", "width", "score", "score_sd", "metric"])
    good = kernels.kernel_claims(empty, v.Interval.around(-0.5, 0.05), _conv(), _fluct(5.0, 0.01))
    assert _words(good) == [S, S, S, S]
    bad = kernels.kernel_claims(empty, v.Interval.around(-1.0, 0.05), _conv(), _fluct(3.3, 0.01, forward=0.6))
    assert _words(bad) == [C, S, C, C]  # grows, but at exp(3.3 beta); the forward pass at 0.6 of its law
    shrinking = kernels.kernel_claims(empty, v.Interval.around(-0.5, 0.6), _conv(), _fluct(-2.0, 0.01))
    assert _words(shrinking)[:2] == [U, C]
    noisy = kernels.kernel_claims(empty, v.Interval.around(-0.5, 0.05), _conv(), _fluct(5.0, 0.5))
    assert _words(noisy)[2:] == [U, U]


def test_feature_claims_can_be_contradicted_and_inconclusive():
    coord = pd.DataFrame({"parametrization": ["ntk", "ntk", "mup", "mup", "standard", "standard"],
                          "layer": ["hidden 1", "hidden 2"] * 3,
                          "exponent": [-0.5, -0.52, -0.5, 0.0, -1.2, -0.5],
                          "ci95": [0.05, 0.05, 0.05, 0.05, 0.6, 0.05]})
    sweep = pd.DataFrame({"task": ["t", "t"], "parametrization": ["ntk", "mup"],
                          "measure": ["act_change_1", "act_change_1"], "exponent": [-0.45, -0.3],
                          "ci95": [0.05, 0.3]})
    assert _words(features.feature_claims(coord, sweep)) == [S, C, U, S, U]


def _summary(task: str, gap_value: float, half: float, lazy_diff: float = 0.0) -> dict:
    return {"task": task, "best_kernel": "NNGP", "kernel_error": 0.5, "limit_error": 0.3,
            "mup_width": 64, "mup_error": 0.5 - gap_value, "mup_ci95": half, "mup_gap": gap_value,
            "ntk_error": 0.3 + lazy_diff, "ntk_ci95": 0.01, "ntk_vs_limit": lazy_diff}


def test_gap_claims_can_be_contradicted_and_inconclusive():
    summary = pd.DataFrame([_summary("parity-k3", 0.0, 0.01), _summary("linear", 0.3, 0.01),
                            _summary("parity-k2", 0.0, 0.2, lazy_diff=0.2),
                            _summary("digits-3-5", 0.1, 0.01)])
    divergence = pd.DataFrame({"task": ["mnist1d-2-7", "digits-3-5"], "measure": ["output_divergence"] * 2,
                               "exponent": [-0.29, -0.55], "ci95": [0.29, 0.05]})
    learned = pd.DataFrame({"task": ["parity-k2"] * 3, "model": ["NNGP", "NTK t=inf", "muP network"],
                            "n_learned": [100.0, 200.0, 200.0], "n_below": [50.0, 100.0, 100.0],
                            "largest_n": [800] * 3, "error_at_largest": [0.0] * 3})
    rows = gap.gap_claims(summary, divergence, learned)
    by_claim = {r["claim"].split(" ")[2]: r["verdict"] for r in rows if r["claim"].startswith("B3: on")}
    assert by_claim["parity-k3"] == C  # predicted open, measured closed
    assert by_claim["linear"] == C  # predicted closed, measured open
    assert by_claim["parity-k2"] == C  # the kernel learns first
    closed = next(r for r in rows if r["claim"].startswith("B3: on parity-k2 kernels"))
    assert closed["verdict"] == U  # gap 0 +- 0.2: cannot tell
    assert next(r for r in rows if r["claim"].startswith("B3: on digits-3-5"))["verdict"] == v.MEASURED
    lazy = next(r for r in rows if "test like their limit" in r["claim"])
    assert lazy["verdict"] == C
    bound = next(r for r in rows if r["claim"].startswith("B2: test outputs"))
    assert bound["verdict"] == U and "mnist1d-2-7: -0.29 +- 0.29 (inconclusive)" in bound["measured"]


def _psgd_row(method: str, r: float, points: int, p: float, tv_hi: float, fit_s: int = 1000) -> dict:
    return {"task": "bool5-0011", "method": method, "samples": 1000, "fit_s": fit_s, "distinct": 50,
            "pearson_ep": r, "spearman_ep": r, "points_ep": points, "tv_rejection": 0.05,
            "tv_upper_rejection": tv_hi, "p_value_rejection": p}


def test_sgd_bayes_claims_can_be_contradicted_and_inconclusive():
    s = sgd_bayes.SgdBayesSettings(tasks=("bool5-0011",), methods=("sgd-b8", "adam-b8", "sgd-full"))
    rows = pd.DataFrame([_psgd_row("sgd-b8", 0.9, 200, 0.5, 0.05),
                         _psgd_row("adam-b8", 0.1, 200, 1e-4, 0.4),
                         _psgd_row("sgd-full", 0.6, 4, 0.5, 0.5),
                         {**_psgd_row("rejection", 0.8, 100, math.nan, math.nan), "fit_s": 300}])
    words = {(r["claim"].split(", ")[1].split(":")[0], "=" in r["claim"].split(": ")[2]): r["verdict"]
             for r in sgd_bayes.sgd_bayes_claims(rows, s)}
    assert words[("sgd-b8", False)] == S and words[("sgd-b8", True)] == S
    assert words[("adam-b8", False)] == C and words[("adam-b8", True)] == C
    assert words[("sgd-full", False)] == U and words[("sgd-full", True)] == U
    assert words[("rejection", False)] == S
    too_few = rows.assign(fit_s=np.where(rows["method"] == "rejection", 20, rows["fit_s"]))
    last = sgd_bayes.sgd_bayes_claims(too_few, s)[-1]
    assert last["verdict"] == U and "prior samples" in last["decide"]
