import itertools
import math

import numpy as np
import pytest

from nnbias.measures.complexity import (
    complexity_table,
    critical_sample_ratio,
    entropy,
    expression_size,
    generalisation_complexity,
    lz76_words,
    lz_complexity,
)


def kaspar_schuster(string: str) -> int:
    """Reference: the pointer-walking KS algorithm as in Valle-Pérez et al.'s code."""
    n = len(string)
    s = "0" + string
    c, start, i, k, k_max = 1, 1, 0, 1, 1
    while True:
        if s[i + k] != s[start + k]:
            k_max = max(k, k_max)
            i += 1
            if i == start:
                c += 1
                start += k_max
                if start + 1 > n:
                    return c
                i, k, k_max = 0, 1, 1
            else:
                k = 1
        else:
            k += 1
            if start + k > n:
                return c + 1


@pytest.mark.parametrize("length", range(2, 13))
def test_lz_words_match_kaspar_schuster_on_every_string(length):
    for bits in itertools.product("01", repeat=length):
        s = "".join(bits)
        assert lz76_words(s) == kaspar_schuster(s), s


def test_lz_complexity_definition():
    assert lz_complexity("0" * 128) == 7.0  # constants: log2 N
    assert lz_complexity("1" * 16) == 4.0
    s = "0110100110010110"
    expected = 4 * (kaspar_schuster(s) + kaspar_schuster(s[::-1])) / 2
    assert lz_complexity(s) == expected
    # periodic strings are simpler than a random one
    rng = np.random.default_rng(0)
    random = "".join(rng.choice(["0", "1"], 128))
    assert lz_complexity("01" * 64) < lz_complexity(random)


def brute_csr(table: str) -> float:
    n = int(math.log2(len(table)))
    crit = 0
    for i in range(len(table)):
        crit += any(table[i] != table[i ^ (1 << j)] for j in range(n))
    return crit / len(table)


def test_entropy_csr_generalisation():
    for tables, h in ((["0001", "0110", "0000"], [0.8112781, 1, 0]),
                      (["01101001", "00010111", "00000001"], [1, 1, 0.5435644])):
        assert np.allclose(entropy(tables), h)
        assert np.allclose(critical_sample_ratio(tables), [brute_csr(t) for t in tables])
    # parity: every Hamming-1 pair differs, no Hamming-2 pair does
    assert generalisation_complexity(["01101001"])[0] == pytest.approx(1.0)
    assert generalisation_complexity(["00000000"])[0] == 0.0


def test_expression_size():
    assert expression_size("0001") == 2  # x0 & x1
    assert expression_size("0110") == 4  # xor
    assert expression_size("01101001") == 12  # 3-bit parity: 4 terms of 3 literals
    assert expression_size("0000") == 0
    assert expression_size("00001111") == 1  # x0
    frame = complexity_table(["0001", "1111"])
    assert list(frame["expression_size"]) == [2, 0]
