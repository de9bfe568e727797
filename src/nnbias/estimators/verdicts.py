"""Verdicts: one vocabulary, one place that decides it, from rules fixed before the data are seen.

Every claim row in nnbias's reports ends in exactly one word:

* ``supported``: the data show the claim within the margin the claim states;
* ``contradicted``: the data show it false by more than that margin;
* ``inconclusive``: neither (the interval straddles the margin, or the sample is
  too small); the row then says what would decide it;
* ``measured``: the row states no claim, it reports a number.

Failing to reject a claim is not support: an interval must lie wholly inside
the claim's band to support it, and wholly outside to contradict it (an
equivalence test in the manner of TOST). Each rule below returns a
:class:`Verdict` that carries the rule's own statement, so a report shows by
which rule each row was judged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

SUPPORTED, CONTRADICTED, INCONCLUSIVE, MEASURED = "supported", "contradicted", "inconclusive", "measured"
VERDICTS = (SUPPORTED, CONTRADICTED, INCONCLUSIVE, MEASURED)
LEVEL = 0.95  # every interval a rule reads is a 95 % interval
EXPONENT_MARGIN = 0.15  # a scaling exponent "equals" a prediction within this (stated in each claim)


@dataclass(frozen=True)
class Interval:
    """An estimate with its 95 % interval [lo, hi]."""

    estimate: float
    lo: float
    hi: float

    @classmethod
    def around(cls, estimate: float, half_width: float) -> Interval:
        return cls(float(estimate), float(estimate - half_width), float(estimate + half_width))

    def __str__(self) -> str:
        return f"{self.estimate:.3g} [{self.lo:.3g}, {self.hi:.3g}]"


@dataclass(frozen=True)
class Verdict:
    word: str  # one of VERDICTS
    rule: str  # the rule the row was judged by, as stated before the data
    decide: str = ""  # for an inconclusive verdict: what data would decide it

    def __post_init__(self) -> None:
        if self.word not in VERDICTS:
            raise ValueError(f"verdict={self.word!r} is not one of {VERDICTS}")


def claim_row(claim: str, measured: str, verdict: Verdict) -> dict[str, str]:
    """One row of a claim table: the claim, what was measured, the verdict word, its rule."""
    return {"claim": claim, "measured": measured, "verdict": verdict.word, "rule": verdict.rule,
            "decide": verdict.decide if verdict.word == INCONCLUSIVE else ""}


def measured_row(claim: str, measured: str) -> dict[str, str]:
    return claim_row(claim, measured, Verdict(MEASURED, "no claim: the number is reported"))


def _decided(ok: bool, bad: bool, rule: str, decide: str) -> Verdict:
    return Verdict(SUPPORTED if ok else CONTRADICTED if bad else INCONCLUSIVE, rule, decide)


def _finite(ci: Interval) -> bool:
    return all(math.isfinite(v) for v in (ci.lo, ci.hi))


# ---------------------------------------------------------------- interval rules
def equals(ci: Interval, target: float, margin: float, decide: str) -> Verdict:
    """"value = target": supported if the whole interval lies in target +- margin, contradicted if
    it lies wholly outside that band, inconclusive otherwise (an equivalence test)."""
    rule = f"95 % CI inside {target:g} +- {margin:g}: supported; wholly outside: contradicted"
    if not _finite(ci):
        return Verdict(INCONCLUSIVE, rule, decide)
    lo, hi = target - margin, target + margin
    return _decided(lo <= ci.lo and ci.hi <= hi, ci.hi < lo or ci.lo > hi, rule, decide)


def at_most(ci: Interval, bound: float, decide: str) -> Verdict:
    """"value <= bound": supported if the interval's upper end is <= bound, contradicted if its lower
    end is > bound (a bound "exponent <= e" passes its margin folded into ``bound``)."""
    rule = f"95 % CI upper end <= {bound:g}: supported; lower end > {bound:g}: contradicted"
    if math.isnan(ci.lo) or math.isnan(ci.hi):
        return Verdict(INCONCLUSIVE, rule, decide)
    return _decided(ci.hi <= bound, ci.lo > bound, rule, decide)


def at_least(ci: Interval, bound: float, decide: str) -> Verdict:
    """"value > bound": supported if the interval's lower end is > bound, contradicted if its upper
    end is < bound."""
    rule = f"95 % CI lower end > {bound:g}: supported; upper end < {bound:g}: contradicted"
    if math.isnan(ci.lo) or math.isnan(ci.hi):
        return Verdict(INCONCLUSIVE, rule, decide)
    return _decided(ci.lo > bound, ci.hi < bound, rule, decide)


def ordered(smaller: Interval, larger: Interval, what: str, decide: str) -> Verdict:
    """"a < b" for two quantities known up to intervals: supported if a's interval ends below b's,
    contradicted if b's ends below a's (or at its start), inconclusive where they overlap."""
    rule = f"{what}: intervals disjoint in the claimed order: supported; in the other order: contradicted"
    return _decided(smaller.hi <= larger.lo and smaller.hi < larger.hi,
                    larger.hi <= smaller.lo and larger.hi < smaller.hi, rule, decide)


def all_of(verdicts: Sequence[Verdict], what: str) -> Verdict:
    """Aggregate over the parts of a claim (tasks, layers, ...): supported if every part is,
    contradicted if any part is, inconclusive otherwise."""
    words = [v.word for v in verdicts]
    rule = f"aggregate over {what}: every part supported: supported; any contradicted: contradicted"
    if not words:
        return Verdict(INCONCLUSIVE, rule, "no part could be measured")
    decide = "; ".join(dict.fromkeys(v.decide for v in verdicts if v.word == INCONCLUSIVE and v.decide))
    word = (CONTRADICTED if CONTRADICTED in words else SUPPORTED if all(w == SUPPORTED for w in words)
            else INCONCLUSIVE)
    return Verdict(word, rule + f" (each: {verdicts[0].rule})", decide)


# ---------------------------------------------------------------- intervals from data
def mean_half_width(sd: float, k: int) -> float:
    """Student-t 95 % half-width of a mean of k measurements (seeds) with sample sd (inf for k < 2)."""
    return float(stats.t.ppf(0.5 + LEVEL / 2, k - 1) * sd / math.sqrt(k)) if k > 1 else math.inf


def mean_interval(values: Sequence[float]) -> Interval:
    """Mean of repeated measurements (seeds) with its Student-t 95 % interval (infinite for one value)."""
    x = np.asarray(values, float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return Interval(math.nan, math.nan, math.nan)
    return Interval.around(float(x.mean()), mean_half_width(float(x.std(ddof=1)) if len(x) > 1 else 0.0,
                                                            len(x)))


def difference_interval(mean_a: float, sd_a: float, n_a: int, mean_b: float, sd_b: float,
                        n_b: int) -> Interval:
    """mean_a - mean_b with its Welch 95 % interval, from each sample's mean, sd and size."""
    if min(n_a, n_b) < 2:
        return Interval(mean_a - mean_b, -math.inf, math.inf)
    va, vb = sd_a**2 / n_a, sd_b**2 / n_b
    se = math.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1)) if se > 0 else n_a + n_b - 2
    return Interval.around(mean_a - mean_b, float(stats.t.ppf(0.5 + LEVEL / 2, dof)) * se)


def correlation_interval(r: float, n: int, rank: bool = False) -> Interval:
    """Fisher-z 95 % interval of a Pearson (or, ``rank``, Spearman: se 1.03/sqrt(n-3), Fieller et al.
    1957) correlation coefficient from n pairs."""
    if n <= 3 or not math.isfinite(r):
        return Interval(r, -1.0, 1.0)
    z, se = math.atanh(min(max(r, -0.999999), 0.999999)), (1.03 if rank else 1.0) / math.sqrt(n - 3)
    q = stats.norm.ppf(0.5 + LEVEL / 2)
    return Interval(r, math.tanh(z - q * se), math.tanh(z + q * se))


def quantile_interval(values: Sequence[float], q: float) -> Interval:
    """The q-quantile of a sample with its distribution-free 95 % interval (order statistics,
    ``scipy.stats.quantile_test``)."""
    v = np.asarray(values, float)
    ci = stats.quantile_test(v, q=float(np.quantile(v, q)), p=q).confidence_interval(LEVEL)
    lo = ci.low if math.isfinite(ci.low) else -math.inf
    hi = ci.high if math.isfinite(ci.high) else math.inf
    return Interval(float(np.quantile(v, q)), float(lo), float(hi))


def tv_upper_bound(counts: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """Total variation between the distribution that produced ``counts`` and ``reference``:
    (the sample's TV, a 95 % upper bound).

    The bound adds to the sample's TV the L1 deviation bound of Weissman et al. (2003) for an
    empirical distribution over k cells, P(||p_hat - p||_1 >= eps) <= (2^k - 2) exp(-n eps^2 / 2).
    """
    c, ref = np.asarray(counts, float), np.asarray(reference, float)
    n, k = c.sum(), int(((c > 0) | (ref > 0)).sum())
    observed = 0.5 * float(np.abs(c / n - ref).sum())
    log_terms = k * math.log(2) + math.log(1 / (1 - LEVEL))  # log((2^k - 2) / delta), rounded up
    return observed, observed + 0.5 * math.sqrt(2 * log_terms / n)


# ---------------------------------------------------------------- distribution rules
def matches_distribution(p_value: float, tv_hi: float, margin: float, alpha: float,
                         decide: str) -> Verdict:
    """"the samples come from this distribution": contradicted if the goodness-of-fit (or
    permutation) test rejects at ``alpha``; supported if it does not and the 95 % upper bound on the
    total variation is <= margin (the sample could have shown a larger difference); else inconclusive."""
    rule = (f"test p < {alpha:g}: contradicted; p >= {alpha:g} and TV 95 % upper bound <= {margin:g}: "
            "supported")
    if not math.isfinite(p_value):
        return Verdict(INCONCLUSIVE, rule, decide)
    return _decided(p_value >= alpha and tv_hi <= margin, p_value < alpha, rule, decide)
