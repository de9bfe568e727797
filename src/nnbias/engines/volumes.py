"""Exact volumes P(f) of the functions a small perceptron computes.

A perceptron f(x) = [w.x + b > 0] computes truth table t exactly on the open
polyhedral cone C_t = {p = (w, b) : s_x a_x.p > 0 for all inputs x}, with a_x
the input row (x, 1) and s_x = +1 where t_x = 1, -1 elsewhere.

One geometric core serves both priors. The polytope P_t = C_t ∩ [-1, 1]^d has
the origin (the cone's apex) as a vertex; triangulating P_t's boundary
(qhull, then exact rational vertices) and coning each boundary simplex from
the origin splits P_t into simplices and C_t into simplicial cones.

* Uniform prior on a box: the volume is a sum of |det(v_1..v_d)| / d! over
  those simplices, in exact rational arithmetic (``fractions.Fraction``).
* Gaussian prior: each simplicial cone's probability is a Gaussian orthant
  probability, closed form (arcsin) for d <= 3 and, for d = 4, Plackett's
  (1954) reduction to a one-dimensional integral of a closed-form integrand,
  accurate to ~1e-12.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy import integrate
from scipy.spatial import ConvexHull, QhullError

from nnbias.errors import NNBiasError, require
from nnbias.spec import NetworkSpec
from nnbias.tasks.boolean import hypercube

MAX_VOLUME_INPUTS = 3


@dataclass(frozen=True)
class Volume:
    """The exact prior probability of one function."""

    truth_table: str
    probability: float
    exact: Fraction | None  # set for the uniform prior


def _input_rows(spec: NetworkSpec, bias_ratio: Fraction) -> list[list[Fraction]]:
    """Rows a_x of the pre-activation a_x.p, with the bias coordinate scaled by ``bias_ratio``."""
    x = hypercube(spec.input_dim, spec.encoding).long().tolist()
    return [[Fraction(v) for v in row] + ([bias_ratio] if spec.bias else []) for row in x]


def _exact_solve(a: list[list[Fraction]], b: list[Fraction]) -> list[Fraction] | None:
    """Solve a.x = b exactly (Gauss-Jordan on Fractions); None if singular."""
    d = len(a)
    m = [row[:] + [rhs] for row, rhs in zip(a, b, strict=True)]
    for col in range(d):
        pivot = next((r for r in range(col, d) if m[r][col] != 0), None)
        if pivot is None:
            return None
        m[col], m[pivot] = m[pivot], m[col]
        for r in range(d):
            if r != col and m[r][col] != 0:
                f = m[r][col] / m[col][col]
                m[r] = [u - f * v for u, v in zip(m[r], m[col], strict=True)]
    return [m[r][d] / m[r][r] for r in range(d)]


def _exact_det(rows: list[list[Fraction]]) -> Fraction:
    m = [r[:] for r in rows]
    det = Fraction(1)
    for col in range(len(m)):
        pivot = next((r for r in range(col, len(m)) if m[r][col] != 0), None)
        if pivot is None:
            return Fraction(0)
        if pivot != col:
            m[col], m[pivot] = m[pivot], m[col]
            det = -det
        det *= m[col][col]
        for r in range(col + 1, len(m)):
            f = m[r][col] / m[col][col]
            m[r] = [u - f * v for u, v in zip(m[r], m[col], strict=True)]
    return det


def _vertices(halfspaces: list[list[Fraction]]) -> list[tuple[Fraction, ...]]:
    """Exact vertices of {p : h.p >= 0 for the cone rows, -1 <= p_i <= 1}.

    ``halfspaces`` are the cone rows; the cube's faces are added here. Candidate
    vertices are found in floating point (all d-subsets of the planes at once),
    then rounded to nearby rationals and verified exactly, so no float error
    survives into the result.
    """
    d = len(halfspaces[0])
    eye = [[Fraction(int(i == j)) for j in range(d)] for i in range(d)]
    planes = [(h, Fraction(0)) for h in halfspaces]
    planes += [(e, Fraction(1)) for e in eye] + [(e, Fraction(-1)) for e in eye]
    a = np.array([[float(v) for v in h] for h, _ in planes])
    rhs = np.array([float(c) for _, c in planes])
    combos = np.array(list(itertools.combinations(range(len(planes)), d)))
    mats, vecs = a[combos], rhs[combos]
    ok = np.abs(np.linalg.det(mats)) > 1e-9
    pts = np.linalg.solve(mats[ok], vecs[ok][..., None])[..., 0]
    cone = np.array([[float(v) for v in h] for h in halfspaces])
    feasible = (pts @ cone.T >= -1e-9).all(axis=1) & (np.abs(pts) <= 1 + 1e-9).all(axis=1)
    found = set()
    for combo in combos[ok][feasible]:
        sub = [planes[i] for i in combo]
        v = _exact_solve([h for h, _ in sub], [c for _, c in sub])
        if v is None:
            continue
        inside = all(sum(hi * vi for hi, vi in zip(h, v, strict=True)) >= 0 for h in halfspaces)
        if inside and all(-1 <= vi <= 1 for vi in v):
            found.add(tuple(v))
    return sorted(found)


def _simplices(halfspaces: list[list[Fraction]]) -> list[list[tuple[Fraction, ...]]]:
    """Boundary simplices of P = cone ∩ cube not containing the apex (empty if P is flat)."""
    verts = _vertices(halfspaces)
    d = len(halfspaces[0])
    origin = tuple(Fraction(0) for _ in range(d))
    if d == 1:  # qhull needs two dimensions; a 1-D cone is a half-line or empty
        return [[v] for v in verts if v != origin]
    if len(verts) < d + 1:
        return []
    try:
        hull = ConvexHull(np.array(verts, dtype=float), qhull_options="Qt")
    except QhullError:
        return []  # P has no interior: the function's volume is zero
    out = []
    for simplex in hull.simplices:
        corners = [verts[i] for i in simplex]
        if origin not in corners:
            out.append(corners)
    return out


def orthant_probability(corr: np.ndarray) -> float:
    """P(Y_1 > 0, ..., Y_d > 0) for Y ~ N(0, corr), d <= 4.

    d <= 3 in closed form (Sheppard); d = 4 by Plackett's identity
    dP/d rho_ij = phi_2(0, 0; rho_ij) P(Y_k > 0, Y_l > 0 | Y_i = Y_j = 0),
    integrated along rho(t) = t * corr from the independent case (1/16).
    """
    d = corr.shape[0]
    pairs = list(itertools.combinations(range(d), 2))
    if d == 1:
        return 0.5
    if d in (2, 3):
        return 2.0**-d + sum(math.asin(corr[i, j]) for i, j in pairs) / (2 ** (d - 1) * math.pi)
    require(d == 4, f"orthant probabilities are implemented for d <= 4, got d={d}")

    def integrand(t: float, i: int, j: int) -> float:
        r = t * corr + (1 - t) * np.eye(4)
        k, m = (c for c in range(4) if c not in (i, j))
        s_ij = r[np.ix_([i, j], [i, j])]
        s_kl = r[np.ix_([k, m], [k, m])]
        cross = r[np.ix_([k, m], [i, j])]
        cond = s_kl - cross @ np.linalg.solve(s_ij, cross.T)
        partial = cond[0, 1] / math.sqrt(cond[0, 0] * cond[1, 1])
        rho = r[i, j]
        density = 1.0 / (2 * math.pi * math.sqrt(1 - rho * rho))
        return corr[i, j] * density * (0.25 + math.asin(np.clip(partial, -1, 1)) / (2 * math.pi))

    total = 1 / 16
    for i, j in pairs:
        total += integrate.quad(integrand, 0.0, 1.0, args=(i, j), epsabs=1e-13, epsrel=1e-12,
                                limit=200)[0]
    return total


def _cone_probability(rays: np.ndarray) -> float:
    """Standard-normal probability of the simplicial cone spanned by the columns of ``rays``."""
    inv = np.linalg.inv(rays)
    cov = inv @ inv.T
    sd = np.sqrt(np.diag(cov))
    return orthant_probability(cov / np.outer(sd, sd))


def _uniform_bias_ratio(spec: NetworkSpec) -> Fraction:
    """Ratio of the bias half-width to the weight half-width, as an exact rational."""
    if not spec.bias:
        return Fraction(1)
    a_w, a_b = spec.uniform_half_widths(spec.input_dim)
    ratio = Fraction(a_b / a_w).limit_denominator(10**6)
    require(abs(float(ratio) - a_b / a_w) < 1e-9,
            f"bias/weight half-width ratio {a_b / a_w!r} is not a simple rational; exact "
            "uniform volumes need one (e.g. sigma_b = sigma_w / sqrt(n) gives a cube)")
    return ratio


def exact_volumes(spec: NetworkSpec) -> list[Volume]:
    """Exact P(f) for every function on {0,1}^n or {-1,1}^n of a perceptron spec (n <= 3)."""
    if spec.hidden:
        raise NNBiasError("exact volumes need a perceptron (no hidden layers), "
                          f"got hidden={list(spec.hidden)}")
    require(spec.input_dim <= MAX_VOLUME_INPUTS,
            f"inputs={spec.input_dim} is too large for exact volumes; allowed 1..{MAX_VOLUME_INPUTS}")
    n_in = 2**spec.input_dim
    ratio = _uniform_bias_ratio(spec) if spec.prior == "uniform" else Fraction(1)
    rows = _input_rows(spec, ratio)
    d = len(rows[0])
    if spec.prior == "gaussian":
        scale = np.array([spec.weight_scale(spec.input_dim)] * spec.input_dim
                         + ([spec.sigma_b] if spec.bias else []))
        require(bool((scale > 0).all()), "sigma_b must be > 0 for a Gaussian prior with bias")
    out = []
    for code in range(2**n_in):
        table = format(code, f"0{n_in}b")
        # An all-zero row (input 0 without bias) has pre-activation 0, so output 0 always.
        if any(bit == "1" and not any(row) for row, bit in zip(rows, table, strict=True)):
            out.append(Volume(table, 0.0, Fraction(0) if spec.prior == "uniform" else None))
            continue
        cone = [[v if bit == "1" else -v for v in row]
                for row, bit in zip(rows, table, strict=True) if any(row)]
        simplices = _simplices(cone)
        if spec.prior == "uniform":
            vol = sum((abs(_exact_det([list(v) for v in s])) for s in simplices), Fraction(0))
            exact = vol / math.factorial(d) / 2**d
            out.append(Volume(table, float(exact), exact))
        else:
            prob = sum(_cone_probability(np.array(s, dtype=float).T / scale[:, None])
                       for s in simplices if _exact_det([list(v) for v in s]) != 0)
            out.append(Volume(table, float(prob), None))
    return out


def method_name(spec: NetworkSpec) -> str:
    if spec.prior == "uniform":
        return ("exact rational polytope volume (cone ∩ box, triangulated from the apex, "
                "exact determinants)")
    return ("Gaussian solid angle: cone split into simplicial cones; orthant probabilities in "
            "closed form (d <= 3) or by Plackett's 1-D integral (d = 4)")
