"""The Triton kernel of ``engines.fused`` (imported on first use: Triton costs a fifth of a second to
import, and only a GPU run needs it). Each helper mirrors the ``engines.rng`` or ``engines.cube``
function it names, step for step, so that both devices compute the same numbers.
"""

import triton
import triton.language as tl


@triton.jit
def _splitmix64(key, counter):
    """``engines.rng._splitmix64``: 64 bits from (key, counter), both uint64."""
    gamma = (tl.full((), 0x9E3779B9, tl.uint64) << 32) | 0x7F4A7C15
    mix1 = (tl.full((), 0xBF58476D, tl.uint64) << 32) | 0x1CE4E5B9
    mix2 = (tl.full((), 0x94D049BB, tl.uint64) << 32) | 0x133111EB
    z = key + (counter + 1) * gamma
    z = (z ^ (z >> 30)) * mix1
    z = (z ^ (z >> 27)) * mix2
    return z ^ (z >> 31)


@triton.jit
def _unit(bits):
    return (bits.to(tl.float32) + 0.5) * 2.3283064365386963e-10  # (bits + 1/2) 2^-32


@triton.jit
def _log_unit(bits):
    """``engines.rng._log_unit``: ln u to float32 accuracy, the same steps and polynomial."""
    u = _unit(bits)
    ubits = u.to(tl.uint32, bitcast=True)
    e = (ubits >> 23).to(tl.int32) - 126
    m = ((ubits & 0x007FFFFF) | 0x3F000000).to(tl.float32, bitcast=True)
    low = m < 0.70710677
    s = tl.where(low, m + m, m) - 1.0
    ef = tl.where(low, e - 1, e).to(tl.float32)
    near_one = u >= 0.70710677
    s = tl.where(near_one, -_unit(~bits), s)
    ef = tl.where(near_one, 0.0, ef)
    z = s * s
    z2 = z * z
    p = ((((7.0376836292e-2 * s + -1.1514610310e-1) * z + (1.1676998740e-1 * s + -1.2420140846e-1)) * z2
          + ((1.4249322787e-1 * s + -1.6668057665e-1) * z + (2.0000714765e-1 * s + -2.4999993993e-1)))
         * s + 3.3333331174e-1)
    return ef * 0.693359375 + (s - 0.5 * z + (s * z * p + ef * -2.12194440e-4))


@triton.jit
def _row(key, first, PAIRS: tl.constexpr, GAUSSIAN: tl.constexpr):
    """Pairs 0 .. PAIRS-1 of a row that starts at pair ``first`` of the stream, both numbers of each
    (``engines.rng._normal_pair`` or ``_uniform_pair``), interleaved: entry 2q is pair q's first number,
    2q + 1 its second. One hash and one logarithm give two numbers, as on the CPU."""
    z = _splitmix64(key, (first + tl.arange(0, PAIRS)).to(tl.uint64))
    high = (z >> 32).to(tl.uint32)
    low = (z & 0xFFFFFFFF).to(tl.uint32)
    if GAUSSIAN:
        r = tl.sqrt_rn(-2.0 * _log_unit(high))
        y = (low & 0x1FFFFFFF).to(tl.int32).to(tl.float32) * 1.4629180792671596e-09  # pi/4 2^-29
        y2 = y * y
        sin_y = y + y * y2 * ((-1.9515295891e-4 * y2 + 8.3321608736e-3) * y2 + -1.6666654611e-1)
        cos_y = 1.0 - 0.5 * y2 + y2 * y2 * ((2.443315711809948e-5 * y2 + -1.388731625493765e-3) * y2
                                           + 4.166664568298827e-2)
        swap = (low >> 31) != 0
        sign_a = 1.0 - 2.0 * ((low >> 30) & 1).to(tl.int32).to(tl.float32)
        sign_b = 1.0 - 2.0 * ((low >> 29) & 1).to(tl.int32).to(tl.float32)
        a = r * tl.where(swap, sin_y, cos_y) * sign_a
        b = r * tl.where(swap, cos_y, sin_y) * sign_b
    else:  # (2c + 1) 2^-24 from the top 24 bits of each half
        a = (2 * ((high >> 8).to(tl.int32) - 8388608) + 1).to(tl.float32) * 5.960464477539063e-08
        b = (2 * ((low >> 8).to(tl.int32) - 8388608) + 1).to(tl.float32) * 5.960464477539063e-08
    return tl.reshape(tl.join(a, b), (2 * PAIRS,))


@triton.jit
def _place(numbers, p, size):
    """The numbers at positions p of a row of ``size``, as ``engines.rng._fill`` places them: pair i
    gives positions i and size // 2 + i, and an odd last position takes one more pair's first number."""
    half = size // 2
    entry = tl.where(p < half, 2 * p, tl.where(p < 2 * half, 2 * (p - half) + 1, 2 * half))
    return tl.gather(numbers, tl.reshape(entry, (entry.numel,)), 0).reshape(entry.shape)


@triton.jit
def _layer_row(key, net_first, layers, index: tl.constexpr, PAIRS: tl.constexpr, GAUSSIAN: tl.constexpr):
    """Layer ``index``'s numbers (``_row``; PAIRS covers its row's pairs) and where they go: the row's
    size, the folded matrix's columns, the layer's fan-in and fan-out."""
    numbers = _row(key, net_first + tl.load(layers + index * 5 + 4), PAIRS, GAUSSIAN)
    size = tl.load(layers + index * 5 + 3).to(tl.int32)
    cols = tl.load(layers + index * 5 + 2).to(tl.int32)
    return numbers, size, cols, tl.load(layers + index * 5), tl.load(layers + index * 5 + 1)


@triton.jit
def _weights(numbers, size, cols, fan_in, fan_out, scale, C0: tl.constexpr, CN: tl.constexpr,
             R0: tl.constexpr, RN: tl.constexpr):
    """Inputs C0 .. C0 + CN - 1 by units R0 .. R0 + RN - 1 of a layer's weights, transposed, zero outside
    the layer: position (r, c) of the folded row-major (rows, cols) matrix holds weight (r, c)."""
    c = C0 + tl.arange(0, CN)[:, None]
    r = R0 + tl.arange(0, RN)[None, :]
    inside = (c < fan_in) & (r < fan_out)
    return tl.where(inside, _place(numbers, tl.where(inside, r * cols + c, 0), size) * scale, 0.0)


@triton.jit
def _on_inputs(numbers, size, cols, fan_in, fan_out, scale, index, lo, hi, R0: tl.constexpr, RN: tl.constexpr,
               N_IN: tl.constexpr):
    """Units R0 .. R0 + RN - 1 of the first layer on the cube's inputs ``index`` (ROWS,), without biases:
    one multiply-add per input coordinate, made from the index (coordinate 0 its highest bit, the
    hypercube's order), instead of a product padded to 16 coordinates."""
    z = tl.zeros((index.shape[0], RN), tl.float32)
    for k in tl.static_range(N_IN):
        x = lo + (hi - lo) * ((index >> (N_IN - 1 - k)) & 1).to(tl.float32)
        z += x[:, None] * _weights(numbers, size, cols, fan_in, fan_out, scale, k, 1, R0, RN)
    return z


@triton.jit
def _biases(numbers, size, cols, fan_in, fan_out, scale, R0: tl.constexpr, RN: tl.constexpr,
            BIAS: tl.constexpr):
    """The biases of units R0 .. R0 + RN - 1 (at c = fan_in of their rows), zero outside the layer."""
    r = R0 + tl.arange(0, RN)
    biases = tl.zeros((RN,), tl.float32)
    if BIAS:
        at = tl.where(r < fan_out, r * cols + fan_in, 0)
        biases = tl.where(r < fan_out, _place(numbers, at, size) * scale, 0.0)
    return biases


@triton.jit
def _act(z, ACTIVATION: tl.constexpr):
    """``FUSED_ACTIVATIONS``: relu, linear, sign, step (torch's, exactly)."""
    if ACTIVATION == 0:
        z = tl.maximum(z, 0.0)
    elif ACTIVATION == 2:
        z = tl.where(z > 0, 1.0, tl.where(z < 0, -1.0, 0.0))
    elif ACTIVATION == 3:
        z = tl.where(z > 0, 1.0, 0.0)
    return z


# a key and a first network differ from call to call: one compiled kernel for all of them
@triton.jit(do_not_specialize=["key_low", "key_top", "first_net"])
def cube_kernel(words, layers, scales, key_low, key_top, first_net, pairs, lo, hi,
                N_IN: tl.constexpr, DEPTH: tl.constexpr, HA: tl.constexpr, HB: tl.constexpr,
                ROWS: tl.constexpr, ROW_WORDS: tl.constexpr, WORDS: tl.constexpr, IN_PAIRS: tl.constexpr,
                HID_PAIRS: tl.constexpr, OUT_PAIRS: tl.constexpr, GAUSSIAN: tl.constexpr,
                BIAS: tl.constexpr, ACTIVATION: tl.constexpr):
    """One network (program) on all 2^N_IN inputs, ROWS at a time; its truth table to ``words``."""
    net = tl.program_id(0).to(tl.int64)
    key = tl.cast(key_low, tl.uint64) | (tl.cast(key_top, tl.uint64) << 63)
    net_first = (tl.cast(first_net, tl.int64) + net) * pairs
    for start in range(0, 1 << N_IN, ROWS):
        index = start + tl.arange(0, ROWS)
        # hidden units in two blocks of HA and HB (a 40-unit layer in 32 + 16: 2304 products per input in
        # a 40 x 40 layer instead of the 4096 of one 64-wide tile); HB = 0: one block
        if DEPTH == 1:
            numbers, size, cols, fan_in, fan_out = _layer_row(key, net_first, layers, 0, OUT_PAIRS, GAUSSIAN)
            z = _on_inputs(numbers, size, cols, fan_in, fan_out, tl.load(scales), index, lo, hi, 0, 1, N_IN)
            out = tl.sum(z, axis=1) + tl.sum(
                _biases(numbers, size, cols, fan_in, fan_out, tl.load(scales + 1), 0, 1, BIAS), axis=0)
        else:
            numbers, size, cols, fan_in, fan_out = _layer_row(key, net_first, layers, 0, IN_PAIRS, GAUSSIAN)
            w_scale, b_scale = tl.load(scales), tl.load(scales + 1)
            z_a = _on_inputs(numbers, size, cols, fan_in, fan_out, w_scale, index, lo, hi, 0, HA, N_IN)
            h_a = _act(z_a + _biases(numbers, size, cols, fan_in, fan_out, b_scale, 0, HA, BIAS)[None, :],
                       ACTIVATION)
            if HB > 0:
                z_b = _on_inputs(numbers, size, cols, fan_in, fan_out, w_scale, index, lo, hi, HA, HB, N_IN)
                z_b += _biases(numbers, size, cols, fan_in, fan_out, b_scale, HA, HB, BIAS)[None, :]
                h_b = _act(z_b, ACTIVATION)
            for layer in tl.static_range(1, DEPTH - 1):
                numbers, size, cols, fan_in, fan_out = _layer_row(key, net_first, layers, layer, HID_PAIRS,
                                                                  GAUSSIAN)
                w_scale, b_scale = tl.load(scales + 2 * layer), tl.load(scales + 2 * layer + 1)
                z_a = tl.dot(h_a, _weights(numbers, size, cols, fan_in, fan_out, w_scale, 0, HA, 0, HA),
                             input_precision="ieee")
                z_a += _biases(numbers, size, cols, fan_in, fan_out, b_scale, 0, HA, BIAS)[None, :]
                if HB > 0:
                    z_a = tl.dot(h_b, _weights(numbers, size, cols, fan_in, fan_out, w_scale, HA, HB, 0, HA),
                                 acc=z_a, input_precision="ieee")
                    z_b = tl.dot(h_a, _weights(numbers, size, cols, fan_in, fan_out, w_scale, 0, HA, HA, HB),
                                 input_precision="ieee")
                    z_b = tl.dot(h_b, _weights(numbers, size, cols, fan_in, fan_out, w_scale, HA, HB, HA, HB),
                                 acc=z_b, input_precision="ieee")
                    z_b += _biases(numbers, size, cols, fan_in, fan_out, b_scale, HA, HB, BIAS)[None, :]
                    h_b = _act(z_b, ACTIVATION)
                h_a = _act(z_a, ACTIVATION)
            numbers, size, cols, fan_in, fan_out = _layer_row(key, net_first, layers, DEPTH - 1, OUT_PAIRS,
                                                              GAUSSIAN)
            w_scale = tl.load(scales + 2 * (DEPTH - 1))
            w = tl.reshape(_weights(numbers, size, cols, fan_in, fan_out, w_scale, 0, HA, 0, 1), (HA,))
            b_scale = tl.load(scales + 2 * DEPTH - 1)
            out = tl.sum(h_a * w[None, :], axis=1) + tl.sum(
                _biases(numbers, size, cols, fan_in, fan_out, b_scale, 0, 1, BIAS), axis=0)
            if HB > 0:
                w = tl.reshape(_weights(numbers, size, cols, fan_in, fan_out, w_scale, HA, HB, 0, 1), (HB,))
                out += tl.sum(h_b * w[None, :], axis=1)
        # np.packbits's bit order (first input in a byte's highest bit), bytes little-endian in a word
        place = (8 * ((index % 64) // 8) + 7 - index % 8).to(tl.int64)
        bits = tl.where((out > 0) & (index < (1 << N_IN)), tl.full((ROWS,), 1, tl.int64) << place, 0)
        packed = tl.sum(tl.reshape(bits, (ROW_WORDS, ROWS // ROW_WORDS)), axis=1)
        word = start // 64 + tl.arange(0, ROW_WORDS)
        tl.store(words + net * WORDS + word, packed, mask=word < WORDS)
