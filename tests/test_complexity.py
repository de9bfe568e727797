import itertools
import math

import numpy as np
import pytest
import sympy

from nnbias.measures.complexity import (
    COMPLEXITY_VERSION,
    complexity_table,
    critical_sample_ratio,
    entropy,
    expression_size,
    generalisation_complexity,
    lz76_words,
    lz_complexity,
    minimal_forms,
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


def _truth_table(expr, n: int) -> str:
    xs = sympy.symbols(f"x0:{n}")
    return "".join("1" if bool(expr.subs({x: (i >> (n - 1 - j)) & 1 for j, x in enumerate(xs)})) else "0"
                   for i in range(2**n))


@pytest.mark.parametrize("table", ["0001", "0110", "0111", "01101001", "00010111", "0000011101110111",
                                   "1000000000000001", "0101010101010110"])
def test_both_minimal_forms_compute_f_itself(table):
    """The old code built the POS form of NOT f; each form must reproduce f on every input."""
    n = int(math.log2(len(table)))
    for form in minimal_forms(table):
        assert _truth_table(form, n) == table


def test_expression_size_counts_operations_of_the_smaller_form():
    # (x0 | x1) & (x2 | x3): POS 3 operations, SOP x0&x2 | x0&x3 | x1&x2 | x1&x3 is 5
    sop, pos = minimal_forms("0000011101110111")
    assert sympy.count_ops(pos) == 3 and sympy.count_ops(sop) == 5
    assert expression_size("0000011101110111") == 3
    assert expression_size("0001") == 1  # x0 & x1
    assert expression_size("0111") == 1  # x0 | x1
    assert expression_size("0110") == 5  # (x0 & ~x1) | (x1 & ~x0)
    assert expression_size("0000") == 0 and expression_size("00001111") == 0  # constant, x0
    frame = complexity_table(["0001", "1111"])
    assert list(frame["expression_size"]) == [1, 0]


def test_stale_complexity_cache_rows_are_recomputed(tmp_path):
    """Rows cached under an older COMPLEXITY_VERSION (the wrong expression sizes) are not served."""
    from nnbias.experiments.pfmap import complexities
    from nnbias.store import Store

    with Store(tmp_path / "c.duckdb") as st:
        st.con.execute("INSERT INTO function_complexity VALUES ('0000011101110111', 1, 1, 1, 1, 8, 1)")
        assert len(st.cached_complexity(["0000011101110111"])) == 0
        fresh = complexities(st, ["0000011101110111"], top=1)
        assert int(fresh["expression_size"].iloc[0]) == 3
        row = st.one("SELECT expression_size, version FROM function_complexity")
    assert row == (3, COMPLEXITY_VERSION)
