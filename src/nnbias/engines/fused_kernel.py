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
def _layer(key, net_first, layers, scales, index: tl.constexpr, IN: tl.constexpr, OUT: tl.constexpr,
           PAIRS: tl.constexpr, GAUSSIAN: tl.constexpr, BIAS: tl.constexpr):
    """Layer ``index``'s weights, transposed to an (IN, OUT) tile, and its biases (OUT,), zero
    outside the layer: position (r, c) of the folded row-major (rows, cols) matrix holds weight
    (r, c) for c < fan_in and the bias of unit r at c = fan_in. PAIRS covers the row's pairs."""
    fan_in = tl.load(layers + index * 5)
    fan_out = tl.load(layers + index * 5 + 1)
    cols = tl.load(layers + index * 5 + 2).to(tl.int32)
    size = tl.load(layers + index * 5 + 3).to(tl.int32)
    numbers = _row(key, net_first + tl.load(layers + index * 5 + 4), PAIRS, GAUSSIAN)
    c = tl.arange(0, IN)[:, None]
    r = tl.arange(0, OUT)[None, :]
    inside = (c < fan_in) & (r < fan_out)
    weights = tl.where(inside, _place(numbers, tl.where(inside, r * cols + c, 0), size)
                       * tl.load(scales + 2 * index), 0.0)
    units = tl.arange(0, OUT)
    biases = tl.zeros((OUT,), tl.float32)
    if BIAS:
        at_bias = tl.where(units < fan_out, units * cols + fan_in, 0)
        biases = tl.where(units < fan_out, _place(numbers, at_bias, size) * tl.load(scales + 2 * index + 1),
                          0.0)
    return weights, biases


@triton.jit
def _readout(key, net_first, layers, scales, index: tl.constexpr, IN: tl.constexpr, PAIRS: tl.constexpr,
             GAUSSIAN: tl.constexpr, BIAS: tl.constexpr):
    """The one-unit layer ``index``: its weights (IN,), zero outside the layer, and its bias (a row of
    the stream: weight c at position c, the bias at position fan_in)."""
    fan_in = tl.load(layers + index * 5)
    size = tl.load(layers + index * 5 + 3).to(tl.int32)
    numbers = _row(key, net_first + tl.load(layers + index * 5 + 4), PAIRS, GAUSSIAN)
    c = tl.arange(0, IN)
    weights = tl.where(c < fan_in, _place(numbers, tl.where(c < fan_in, c, 0), size)
                       * tl.load(scales + 2 * index), 0.0)
    bias = tl.full((), 0.0, tl.float32)
    if BIAS:
        at_bias = tl.where(c == 0, fan_in, 0).to(tl.int32)
        bias = tl.sum(tl.where(c == 0, _place(numbers, at_bias, size), 0.0), axis=0)
        bias = bias * tl.load(scales + 2 * index + 1)
    return weights, bias


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
def cube_kernel(words, layers, scales, key_low, key_top, first_net, pairs, n, lo, hi,
                 DEPTH: tl.constexpr, IN_PAD: tl.constexpr, HID_PAD: tl.constexpr, ROWS: tl.constexpr,
                 ROW_WORDS: tl.constexpr, WORDS: tl.constexpr, IN_PAIRS: tl.constexpr,
                 HID_PAIRS: tl.constexpr, OUT_PAIRS: tl.constexpr, GAUSSIAN: tl.constexpr,
                 BIAS: tl.constexpr, ACTIVATION: tl.constexpr):
    """One network (program) on all 2^n inputs, ROWS at a time; its truth table to ``words``."""
    net = tl.program_id(0).to(tl.int64)
    key = tl.cast(key_low, tl.uint64) | (tl.cast(key_top, tl.uint64) << 63)
    net_first = (tl.cast(first_net, tl.int64) + net) * pairs
    coord = tl.arange(0, IN_PAD)[None, :]
    for start in range(0, 1 << n, ROWS):
        index = start + tl.arange(0, ROWS)
        shift = tl.where(coord < n, n - 1 - coord, 0)
        bit = ((index[:, None] >> shift) & 1).to(tl.float32)
        x = tl.where(coord < n, lo + (hi - lo) * bit, 0.0)  # hypercube's order: coordinate 0 highest
        # each layer's tiles under their own names: the unrolled layers do not reuse one of another shape
        if DEPTH == 1:
            w_out, b_out = _readout(key, net_first, layers, scales, 0, IN_PAD, OUT_PAIRS, GAUSSIAN, BIAS)
            out = tl.sum(x * w_out[None, :], axis=1) + b_out
        else:
            w_in, b_in = _layer(key, net_first, layers, scales, 0, IN_PAD, HID_PAD, IN_PAIRS, GAUSSIAN, BIAS)
            h = _act(tl.dot(x, w_in, input_precision="ieee") + b_in[None, :], ACTIVATION)
            for layer in tl.static_range(1, DEPTH - 1):  # exact float32 products ("ieee", not TF32)
                w_hid, b_hid = _layer(key, net_first, layers, scales, layer, HID_PAD, HID_PAD, HID_PAIRS,
                                      GAUSSIAN, BIAS)
                h = _act(tl.dot(h, w_hid, input_precision="ieee") + b_hid[None, :], ACTIVATION)
            w_out, b_out = _readout(key, net_first, layers, scales, DEPTH - 1, HID_PAD, OUT_PAIRS, GAUSSIAN,
                                    BIAS)
            out = tl.sum(h * w_out[None, :], axis=1) + b_out
        # np.packbits's bit order (first input in a byte's highest bit), bytes little-endian in a word
        place = (8 * ((index % 64) // 8) + 7 - index % 8).to(tl.int64)
        bits = tl.where((out > 0) & (index < (1 << n)), tl.full((ROWS,), 1, tl.int64) << place, 0)
        packed = tl.sum(tl.reshape(bits, (ROW_WORDS, ROWS // ROW_WORDS)), axis=1)
        word = start // 64 + tl.arange(0, ROW_WORDS)
        tl.store(words + net * WORDS + word, packed, mask=word < WORDS)
