import sys

import numpy as np
import pytest
import torch
from numba import njit

from nnbias.engines.blas import matmul, sgemm_providers


@njit
def _product(sgemm, w, h, out):
    matmul(sgemm, w, h, out)


@pytest.mark.parametrize("provider", list(sgemm_providers()))
@pytest.mark.parametrize(("rows", "inner", "cols"), [(41, 41, 128), (7, 33, 1024), (1, 1, 2), (5, 0, 8)])
def test_matmul_from_compiled_code_is_the_product(provider, rows, inner, cols):
    """Each BLAS found, called from numba, against numpy's float64 product; h has spare rows (the
    kernel multiplies by its first ``inner`` rows) and out spare rows that it must leave alone."""
    rng = np.random.default_rng(rows + inner)
    w = rng.standard_normal((rows, inner)).astype(np.float32)
    h = rng.standard_normal((inner + 3, cols)).astype(np.float32)
    out = np.full((rows + 2, cols), 7.0, np.float32)
    _product(sgemm_providers()[provider], w, h, out)
    expected = w.astype(np.float64) @ h[:inner]
    assert np.allclose(out[:rows], expected, rtol=1e-5, atol=1e-5 * max(1, inner))
    assert (out[rows:] == 7.0).all()


def test_torch_blas_is_preferred_where_torch_has_mkl():
    """Where torch links MKL it exports MKL's sgemm_, and that one is first (falling back to scipy's
    OpenBLAS silently would cost ~45 % on the 40x40 layer)."""
    providers = list(sgemm_providers())
    assert providers[-1] == "openblas (scipy)"
    if torch.backends.mkl.is_available() and sys.platform == "linux":
        assert providers[0] == "mkl (torch)"
