"""The sampler on a GPU as one Triton kernel: a network's parameters never leave the chip.

Why: torch's batched forward pass writes every parameter and every layer's outputs to the GPU's
memory and reads them back, about 200 KB per 7-40-40-1 network, so it is bound by memory
bandwidth far below the device's arithmetic. Here one program evaluates one network on the whole
Boolean cube: it computes the network's parameters in registers from the counter stream the CPU
sampler uses (``engines.rng``: SplitMix64 and the same float32 Box-Muller polynomials), makes the
inputs from their indices, keeps each layer's outputs on the chip and writes only the truth table
(16 bytes at n = 7). The same key gives the same networks on both devices, so a GPU's counts are the
CPU's, up to outputs within rounding of zero (the products summed in another order).

Triton's interpreter (``TRITON_INTERPRET=1``, set before the first import of this module) runs the
same kernel on the CPU: how the tests check it where no GPU is lent.
"""

from __future__ import annotations

import functools
import importlib.util

import numpy as np
import torch

from nnbias.engines.cube import FUSED_ACTIVATIONS
from nnbias.errors import NNBiasError
from nnbias.spec import NetworkSpec
from nnbias.tasks.boolean import encoding_levels

# widest padded hidden layer a program holds (a 128 x 128 float32 tile is already 64 KB of registers);
# wider networks take torch's batched forward pass, whose products are large enough to be efficient
MAX_PADDED_WIDTH = 128
_ROWS = 128  # cube inputs per block of a program


def unsupported(spec: NetworkSpec) -> str | None:
    """Why ``spec`` cannot take the fused kernel (None if it can)."""
    if importlib.util.find_spec("triton") is None:  # CPU installs; torch brings it on a GPU
        return "Triton is not installed"
    if spec.activation not in FUSED_ACTIVATIONS:
        return f"activation {spec.activation!r} is not one of {', '.join(FUSED_ACTIVATIONS)}"
    if spec.layer_sizes[-1][1] != 1:
        return "the readout has more than one unit"
    if spec.hidden and _padded(max(spec.hidden)) > MAX_PADDED_WIDTH:
        return f"a hidden layer is wider than {MAX_PADDED_WIDTH}"
    return None


def cube_words(spec: NetworkSpec, k: int, key: int, device: str | torch.device, first_net: int = 0
               ) -> torch.Tensor:
    """Truth tables (k, ceil(2^n / 64)) int64 of networks first_net .. first_net + k - 1 of the counter
    stream ``key`` (those of ``sampler.truth_tables``) on all 2^n inputs, on ``device``: each row the
    bytes of ``np.packbits`` of the network's signs, padded to whole 8-byte words (what
    ``FunctionCounts.from_words`` counts)."""
    reason = unsupported(spec)
    if reason:
        raise NNBiasError(f"{spec.describe()} cannot take the fused sampler: {reason}")
    n = spec.input_dim
    layers, scales, pairs = _layer_tables(spec, torch.device(device))
    words = torch.empty(k, -(-2**n // 64), dtype=torch.int64, device=device)
    if k:
        lo, hi = encoding_levels(spec.encoding)
        from nnbias.engines.fused_kernel import cube_kernel

        rows = min(_ROWS, max(16, 2**n))
        cube_kernel[(k,)](words, layers, scales, key % 2**63, key >> 63 & 1, first_net, pairs, n, lo, hi,
                           DEPTH=len(spec.layer_sizes), IN_PAD=_padded(n),
                           HID_PAD=_padded(max(spec.hidden, default=1)), ROWS=rows,
                           ROW_WORDS=max(1, rows // 64), WORDS=words.shape[1],
                           GAUSSIAN=spec.prior == "gaussian", BIAS=spec.bias,
                           ACTIVATION=FUSED_ACTIVATIONS.index(spec.activation), num_warps=4)
    return words


def _padded(width: int) -> int:
    """A tile's side for ``width`` units: a power of two, at least 16 (``tl.dot``'s smallest)."""
    return max(16, 1 << (width - 1).bit_length())


@functools.cache
def _layer_tables(spec: NetworkSpec, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Per layer (fan_in, fan_out, cols, row size, first pair) and (weight scale, bias scale) as the
    folded layout of ``engines.sampler`` lays a network's numbers out in the stream, on ``device``."""
    from nnbias.engines.sampler import folded_layers  # the sampler imports this module

    folded, pairs = folded_layers(spec)
    ints, floats = [], []
    for layer, (fan_in, fan_out) in zip(folded, spec.layer_sizes, strict=True):
        ints.append((fan_in, fan_out, layer.cols, layer.rows * layer.cols, layer.first_pair))
        floats.append((layer.scale[0], layer.scale[fan_in] if spec.bias else 0.0))
    return (torch.tensor(ints, dtype=torch.int64, device=device),
            torch.tensor(np.array(floats, np.float32), device=device), pairs)
