"""Complexity measures of Boolean truth tables (strings of '0'/'1' of length 2**n).

* ``lz_complexity``: the Lempel-Ziv complexity of Valle-Pérez, Camargo & Louis
  (2018): N_w is the LZ76 word count of the Kaspar-Schuster exhaustive-history
  parse; K_LZ(x) = log2 N for constant x, else log2 N * (N_w(x) + N_w(rev x)) / 2.
* ``entropy``: binary entropy (bits) of the fraction of ones.
* ``critical_sample_ratio``: fraction of inputs with at least one Hamming-1
  neighbour that gets a different output.
* ``generalisation_complexity`` (Franco): fraction of Hamming-1 pairs with
  different outputs plus the same fraction for Hamming-2 pairs.
* ``expression_size``: operations (``sympy.count_ops``) of the smaller of
  sympy's minimised sum-of-products and product-of-sums forms of f (the
  original code's measure).
* ``translation_invariant``: whether a function of binary images ignores cyclic shifts.

``COMPLEXITY_VERSION`` names this set of definitions; the store's cache keeps
it beside each row and recomputes rows written under another version.
"""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pandas as pd
import sympy
from sympy.logic import POSform, SOPform

from nnbias.errors import require
from nnbias.tasks.boolean import strings_to_bits

COMPLEXITY_VERSION = 2  # 1: expression_size counted literals and took POS of NOT f


def lz76_words(s: str) -> int:
    """Number of words of the LZ76 exhaustive-history parse of ``s`` (Kaspar & Schuster 1987).

    Each new word is the shortest prefix of the rest that is not a substring of
    everything before its last symbol; ``str.find`` does the search in C, which
    is ~10x faster than the usual pointer-walking loop (the tests check both agree).
    """
    n, words, p = len(s), 0, 0
    while p < n:
        length = 1
        while p + length <= n and s.find(s[p:p + length], 0, p + length - 1) >= 0:
            length += 1
        words += 1
        p += length
    return words


def lz_complexity(table: str) -> float:
    """K_LZ of Valle-Pérez et al. (2018), in their units (no normalisation)."""
    n = len(table)
    if table.count(table[0]) == n:
        return math.log2(n)
    return math.log2(n) * (lz76_words(table) + lz76_words(table[::-1])) / 2


def entropy(tables: list[str]) -> np.ndarray:
    p = strings_to_bits(tables).mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
    return np.nan_to_num(h, nan=0.0)


def _flips(n: int, distance: int) -> list[int]:
    """XOR masks of all input pairs at the given Hamming distance."""
    return [sum(1 << j for j in js) for js in combinations(range(n), distance)]


def _disagreement(bits: np.ndarray, n: int, distance: int) -> np.ndarray:
    """(M, N, masks) bool: does input i disagree with its neighbour i ^ mask?"""
    idx = np.arange(bits.shape[1])
    nbrs = np.stack([idx ^ m for m in _flips(n, distance)], axis=1)
    return bits[:, idx, None] != bits[:, nbrs]


def critical_sample_ratio(tables: list[str]) -> np.ndarray:
    bits = strings_to_bits(tables)
    n = int(math.log2(bits.shape[1]))
    return _disagreement(bits, n, 1).any(axis=2).mean(axis=1)


def generalisation_complexity(tables: list[str]) -> np.ndarray:
    bits = strings_to_bits(tables)
    n = int(math.log2(bits.shape[1]))
    total = _disagreement(bits, n, 1).mean(axis=(1, 2))
    if n >= 2:
        total = total + _disagreement(bits, n, 2).mean(axis=(1, 2))
    return total


def minimal_forms(table: str) -> tuple[sympy.Basic, sympy.Basic]:
    """sympy's minimised sum-of-products and product-of-sums forms of f, over symbols x0..x(n-1).

    Both are built from f's minterms (the inputs mapped to 1): ``POSform`` takes
    the minterms of the function it writes, as ``SOPform`` does.
    """
    n = int(math.log2(len(table)))
    ones = [[(i >> (n - 1 - j)) & 1 for j in range(n)] for i, c in enumerate(table) if c == "1"]
    xs = sympy.symbols(f"x0:{n}")
    return SOPform(xs, ones), POSform(xs, ones)


def expression_size(table: str) -> int:
    """Operations (``sympy.count_ops``) in the smaller of f's minimised SOP and POS forms
    (0 for constants and single variables)."""
    if table.count(table[0]) == len(table):
        return 0
    return min(sympy.count_ops(form) for form in minimal_forms(table))


def complexity_table(tables: list[str], with_expression: bool = True) -> pd.DataFrame:
    """All measures for each truth table, one row each."""
    return pd.DataFrame({
        "truth_table": tables,
        "lz": [lz_complexity(t) for t in tables],
        "entropy": entropy(tables) if tables else [],
        "csr": critical_sample_ratio(tables) if tables else [],
        "generalisation": generalisation_complexity(tables) if tables else [],
        "expression_size": pd.array([expression_size(t) if with_expression else None
                                     for t in tables], dtype="Int64"),
    })


def translation_invariant(tables: list[str], height: int, width: int) -> np.ndarray:
    """Whether each truth table of a function of height x width binary images (pixels row-major, the
    first pixel the most significant bit) is unchanged by every cyclic shift of the image: the
    structure a circular convolution followed by pooling has built in."""
    n = height * width
    bits = strings_to_bits(tables)
    require(bits.shape[1] == 2**n, f"truth tables of length {bits.shape[1]} are not functions of "
                                   f"{height}x{width} binary images (expected {2**n})")
    pixels = (np.arange(2**n)[:, None] >> np.arange(n - 1, -1, -1)) & 1
    images = pixels.reshape(-1, height, width)
    weights = 2 ** np.arange(n - 1, -1, -1)
    invariant = np.ones(len(tables), dtype=bool)
    for axis in (1, 2):
        shifted = np.roll(images, 1, axis=axis).reshape(-1, n) @ weights  # input index of each shift
        invariant &= (bits[:, shifted] == bits).all(1)
    return invariant
