"""Compiled kernels for the two ends of a folded network evaluated on the whole Boolean cube.

The sampler only ever evaluates networks on all 2^n inputs of {lo, hi}^n and
keeps only the output's sign, so both ends of the network need less than a
matrix product:

- first layer: a unit's pre-activation on input x is b + sum_c w_c x_c, so on
  the cube it is a table of subset sums; with the inputs split into high and
  low coordinates, each entry is one addition of a high-table and a low-table
  value (2^n additions per unit instead of n multiply-adds), the activation
  applied in the same pass when it is ReLU.
- readout: one output unit, of which only the sign is kept: a weighted sum of
  the last hidden layer that goes straight to packed truth-table bits.

Measured on one thread, 7-40-40-1 ReLU: first layer 1.2 us/net against 3.8 us for
torch's mm + relu_; readout 0.5 us against ~1.5 us for bmm, relu_, compare and
``np.packbits``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from nnbias.engines.rng import JIT_OPTIONS

# the first layer's low table spans 5 coordinates: 32 entries, the iterations LLVM needs to vectorise
# (8 lanes x 4), and a count fixed at compile time so that the table is 5 multiply-adds per entry
_LOW = 5


@njit(**JIT_OPTIONS)
def first_layer_on_cube(w, n, lo, hi, relu, out, start, stop):
    """Pre-activations (or their ReLU) of networks start..stop-1 on all 2^n inputs of {lo, hi}^n, in the
    package's input order (coordinate 0 is the most significant bit of the input's index).

    w: (K, rows, n) float32, or (K, rows, n + 1) with the bias in the last column; out: (K, rows, 2^n).
    The last min(n, 5) coordinates make the low table, the others the high one; when n < 5 the low
    table's leading coordinates are absent (step 0) and only its first 2^n entries are used.
    """
    bias = w.shape[2] > n
    n_high = max(n - _LOW, 0)
    n_low = n - n_high
    absent = _LOW - n_low
    low_bits, high_bits = _bit_table(_LOW), _bit_table(n_high)
    width = min(2**_LOW, 2**n)
    low_sums = np.empty(2**_LOW, np.float32)
    high_sums = np.empty(high_bits.shape[1], np.float32)
    steps = np.zeros(_LOW, np.float32)
    zero = np.float32(0.0)
    lo32 = np.float32(lo)
    delta = np.float32(hi - lo)
    for k in range(start, stop):
        for r in range(w.shape[1]):
            base = w[k, r, n] if bias else zero  # the pre-activation at input 0, (lo, ..., lo)
            for c in range(n):
                base += w[k, r, c] * lo32
            for c in range(n_low):
                steps[absent + c] = w[k, r, n_high + c] * delta
            s0, s1, s2, s3, s4 = steps[0], steps[1], steps[2], steps[3], steps[4]
            for i in range(2**_LOW):
                low_sums[i] = (low_bits[0, i] * s0 + low_bits[1, i] * s1 + low_bits[2, i] * s2
                               + low_bits[3, i] * s3 + low_bits[4, i] * s4)
            high_sums[:] = base
            for c in range(n_high):
                step = w[k, r, c] * delta
                for i in range(high_sums.size):
                    high_sums[i] += high_bits[c, i] * step
            for a in range(high_sums.size):
                shift = high_sums[a]
                if relu:  # (two loops: see readout_signs)
                    for b in range(width):
                        out[k, r, a * width + b] = max(shift + low_sums[b], zero)
                else:
                    for b in range(width):
                        out[k, r, a * width + b] = shift + low_sums[b]


@njit(**JIT_OPTIONS)
def readout_signs(h, w, relu, out, start, stop):
    """Packed truth tables of networks start..stop-1: bit x is [sum_r w[r] act(h[r, x]) > 0], act = ReLU
    or identity, bits packed as ``np.packbits`` packs them (first input in the high bit).

    h: (K, rows, N) float32, the last hidden layer; w: (K, 1, rows) float32; out: (K, ceil(N / 8)) uint8.
    """
    size = h.shape[2]
    acc = np.empty(size, np.float32)
    zero = np.float32(0.0)
    for k in range(start, stop):
        acc[:] = zero
        for r in range(h.shape[1]):
            weight = w[k, 0, r]
            if relu:  # two loops: a select inside one would keep it from vectorising (4x slower)
                for i in range(size):
                    acc[i] += weight * max(h[k, r, i], zero)
            else:
                for i in range(size):
                    acc[i] += weight * h[k, r, i]
        for byte in range(out.shape[1]):
            bits = 0
            for t in range(min(8, size - 8 * byte)):
                bits |= (acc[8 * byte + t] > zero) << (7 - t)
            out[k, byte] = bits


@njit(**JIT_OPTIONS)
def _bit_table(bits):
    """(bits, 2^bits) float32: entry (c, i) is bit c of i, counted from the most significant."""
    table = np.empty((bits, 2**bits), np.float32)
    for c in range(bits):
        for i in range(2**bits):
            table[c, i] = (i >> (bits - 1 - c)) & 1
    return table
