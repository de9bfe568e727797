"""A compiled loop that evaluates folded networks on the whole Boolean cube, one network at a time.

The sampler only ever evaluates networks on all 2^n inputs of {lo, hi}^n and
keeps only the output's sign, so a network needs less than its forward pass:

- first layer: a unit's pre-activation on input x is b + sum_c w_c x_c, so on
  the cube it is a table of subset sums; with the inputs split into high and
  low coordinates, each entry is one addition of a high-table and a low-table
  value (2^n additions per unit instead of n multiply-adds), the activation
  applied in the same pass when it is ReLU.
- hidden layers: BLAS products (``engines.blas``).
- readout: one output unit, of which only the sign is kept: a weighted sum of
  the last hidden layer that goes straight to packed truth-table bits.

One network at a time keeps its activations in cache, and the whole batch is
one call without the GIL. Measured on one thread of a 2-core AMD EPYC,
7-40-40-1 ReLU: first layer 1.2 us/net against 3.8 us for torch's mm +
relu_, readout 0.5 us against ~1.5 us for bmm, relu_, compare and
``np.packbits``, and the whole truth table ~8.5 us against 13-15 us for the
same kernels around torch's batched products.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from nnbias.engines.blas import matmul
from nnbias.engines.rng import JIT_OPTIONS

# activations this loop computes itself, exactly as torch does (the others, tanh, erf and gelu, need
# vectorised transcendental functions: networks with them take torch's batched forward pass)
FUSED_ACTIVATIONS = ("relu", "linear", "sign", "step")
_RELU, _SIGN, _STEP = (FUSED_ACTIVATIONS.index(a) for a in ("relu", "sign", "step"))

# the first layer's low table spans 5 coordinates: 32 entries, the iterations LLVM needs to vectorise
# (8 lanes x 4), and a count fixed at compile time so that the table is 5 multiply-adds per entry
_LOW = 5


@njit(**JIT_OPTIONS)
def cube_signs(mats, n, lo, hi, activation, sgemm, out):
    """Packed truth tables (as ``np.packbits`` packs them) of all K networks of a folded batch on all 2^n
    inputs of {lo, hi}^n, in the package's input order.

    mats: the folded layers, each (K, rows, cols) float32; activation: index in FUSED_ACTIVATIONS;
    sgemm: address of a Fortran sgemm; out: (K, ceil(2^n / 8)) uint8.
    """
    depth = len(mats) - 1
    relu = activation == _RELU
    widest = 0
    for mat in mats:
        widest = max(widest, mat.shape[1])
    # one network's layer outputs (two, in turn) and readout sums, reused from network to network
    below, above = np.empty((widest, 2**n), np.float32), np.empty((widest, 2**n), np.float32)
    sums = np.empty(2**n, np.float32)
    for k in range(out.shape[0]):
        first_layer_on_cube(mats[0][k], n, lo, hi, relu and depth > 0, below)
        if depth == 0:
            _pack_signs(below[0], out[k])
            continue
        for layer in range(1, depth):
            if not (relu and layer == 1):  # (the first layer's ReLU is fused)
                _activate(below, mats[layer - 1].shape[1], activation)
            matmul(sgemm, mats[layer][k], below, above)
            below, above = above, below
        if not relu:  # (the readout fuses ReLU)
            _activate(below, mats[depth - 1].shape[1], activation)
        _readout_signs(below, mats[depth][k, 0], relu, sums, out[k])


@njit(**JIT_OPTIONS)
def first_layer_on_cube(w, n, lo, hi, relu, out):
    """Pre-activations (or their ReLU) of one network's first layer on all 2^n inputs of {lo, hi}^n.

    w: (rows, n) float32, or (rows, n + 1) with the bias in the last column; out: (rows, 2^n) or more rows.
    The last min(n, 5) coordinates make the low table, the others the high one; when n < 5 the low
    table's leading coordinates are absent (step 0) and only its first 2^n entries are used.
    """
    bias = w.shape[1] > n
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
    for r in range(w.shape[0]):
        base = w[r, n] if bias else zero  # the pre-activation at input 0, (lo, ..., lo)
        for c in range(n):
            base += w[r, c] * lo32
        for c in range(n_low):
            steps[absent + c] = w[r, n_high + c] * delta
        s0, s1, s2, s3, s4 = steps[0], steps[1], steps[2], steps[3], steps[4]
        for i in range(2**_LOW):
            low_sums[i] = (low_bits[0, i] * s0 + low_bits[1, i] * s1 + low_bits[2, i] * s2
                           + low_bits[3, i] * s3 + low_bits[4, i] * s4)
        high_sums[:] = base
        for c in range(n_high):
            step = w[r, c] * delta
            for i in range(high_sums.size):
                high_sums[i] += high_bits[c, i] * step
        for a in range(high_sums.size):
            shift = high_sums[a]
            if relu:  # (two loops: see _readout_signs)
                for b in range(width):
                    out[r, a * width + b] = max(shift + low_sums[b], zero)
            else:
                for b in range(width):
                    out[r, a * width + b] = shift + low_sums[b]


@njit(inline="always", **JIT_OPTIONS)
def _activate(h, rows, activation):
    """FUSED_ACTIVATIONS[activation] in place on the first ``rows`` rows of h."""
    flat = h.ravel()[:rows * h.shape[1]]
    zero, one = np.float32(0.0), np.float32(1.0)
    if activation == _RELU:
        for i in range(flat.size):
            flat[i] = max(flat[i], zero)
    elif activation == _SIGN:
        for i in range(flat.size):
            flat[i] = np.sign(flat[i])
    elif activation == _STEP:
        for i in range(flat.size):
            flat[i] = one if flat[i] > zero else zero


@njit(inline="always", **JIT_OPTIONS)
def _readout_signs(h, w, relu, sums, out):
    """out = packed bits of [sum_r w[r] act(h[r, x]) > 0], act = ReLU or identity (sums: scratch)."""
    zero = np.float32(0.0)
    sums[:] = zero
    for r in range(w.size):
        weight = w[r]
        if relu:  # two loops: a select inside one would keep it from vectorising (4x slower)
            for x in range(sums.size):
                sums[x] += weight * max(h[r, x], zero)
        else:
            for x in range(sums.size):
                sums[x] += weight * h[r, x]
    _pack_signs(sums, out)


@njit(inline="always", **JIT_OPTIONS)
def _pack_signs(values, out):
    """out (bytes) = np.packbits(values > 0)."""
    for byte in range(out.size):
        bits = 0
        for t in range(min(8, values.size - 8 * byte)):
            bits |= (values[8 * byte + t] > 0) << (7 - t)
        out[byte] = bits


@njit(**JIT_OPTIONS)
def _bit_table(bits):
    """(bits, 2^bits) float32: entry (c, i) is bit c of i, counted from the most significant."""
    table = np.empty((bits, 2**bits), np.float32)
    for c in range(bits):
        for i in range(2**bits):
            table[c, i] = (i >> (bits - 1 - c)) & 1
    return table
