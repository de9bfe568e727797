"""A BLAS matrix product callable from inside compiled (numba) loops, without the GIL.

Why: the sampler evaluates millions of small networks (a 40x40 layer on 128
inputs). Through torch that is one batched product per slice of networks,
with a Python call each time and activations that spill out of the L2 cache;
called per network from a compiled loop, the same BLAS kernel keeps every
network's activations in cache (measured on a 2-core AMD EPYC, 7-40-40-1
ReLU: truth tables 8.6-9.2 us/net against 13-15 us through ``torch.bmm``).

The BLAS is the one torch itself uses: torch's CPU library exports the
Fortran ``sgemm_`` (MKL on x86 builds). Where it does not, scipy's OpenBLAS
(``scipy.linalg.cython_blas``, the interface scipy documents for this) takes
its place: correct everywhere, slower on small products (9.5 us against 6.5
for the 40x40 layer above).
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import numpy as np
import torch
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import get_cython_function_address, intrinsic

from nnbias.engines.rng import JIT_OPTIONS


@functools.cache
def sgemm_providers() -> dict[str, int]:
    """Address of each Fortran ``sgemm`` found, preferred first: torch's BLAS, then scipy's."""
    found = {}
    lib = Path(torch.__file__).parent / "lib"
    for name in ("libtorch_cpu.so", "libtorch_cpu.dylib", "torch_cpu.dll"):
        try:
            symbol = ctypes.CDLL(str(lib / name)).sgemm_
        except (OSError, AttributeError):
            continue
        found["mkl (torch)" if torch.backends.mkl.is_available() else "torch's blas"] = (
            ctypes.cast(symbol, ctypes.c_void_p).value)
        break
    found["openblas (scipy)"] = get_cython_function_address("scipy.linalg.cython_blas", "sgemm")
    return found


def sgemm_address() -> int:
    """The preferred ``sgemm`` (see ``sgemm_providers``)."""
    return next(iter(sgemm_providers().values()))


@intrinsic
def _sgemm_nn(typingctx, address, m, n, k, a, lda, b, ldb, c, ldc):
    """Fortran sgemm('N', 'N', m, n, k, 1, a, lda, b, ldb, 0, c, ldc) through the function at ``address``:
    every argument by reference, as Fortran takes them; a, b, c are data addresses."""
    sig = types.void(address, m, n, k, a, lda, b, ldb, c, ldc)

    def codegen(context, builder, signature, args):
        byte_ptr = ir.IntType(8).as_pointer()

        def ref(value):  # a stack slot holding value, as the pointer Fortran wants
            return builder.bitcast(cgutils.alloca_once_value(builder, value), byte_ptr)

        def dim(i):
            return ref(context.cast(builder, args[i], signature.args[i], types.int32))

        function = builder.inttoptr(args[0], ir.FunctionType(ir.VoidType(), [byte_ptr] * 13).as_pointer())
        no_transpose = ref(ir.Constant(ir.IntType(8), ord("N")))
        builder.call(function, [
            no_transpose, no_transpose, dim(1), dim(2), dim(3), ref(ir.Constant(ir.FloatType(), 1.0)),
            builder.inttoptr(args[4], byte_ptr), dim(5), builder.inttoptr(args[6], byte_ptr), dim(7),
            ref(ir.Constant(ir.FloatType(), 0.0)), builder.inttoptr(args[8], byte_ptr), dim(9)])
        return context.get_dummy_value()

    return sig, codegen


@njit(inline="always", **JIT_OPTIONS)
def matmul(sgemm, w, h, out):
    """out[:rows] = w @ h[:inner] for w (rows, inner) and h and out with rows of equal length, all
    C-contiguous float32, by the ``sgemm`` at address ``sgemm``. (BLAS is column-major, where these
    matrices are the transposes: out^T = h^T w^T.)"""
    rows, inner = w.shape
    cols = h.shape[1]
    if inner == 0:  # an empty sum (BLAS would refuse a leading dimension of 0)
        out[:rows] = np.float32(0.0)
        return
    _sgemm_nn(sgemm, cols, rows, inner, h.ctypes.data, cols, w.ctypes.data, inner, out.ctypes.data, cols)
