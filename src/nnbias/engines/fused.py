"""The sampler on a GPU as one Triton kernel: a network's parameters never leave the chip.

Why: torch's batched forward pass writes every parameter and every layer's outputs to the GPU's
memory and reads them back, about 200 KB per 7-40-40-1 network, so it is bound by memory
bandwidth far below the device's arithmetic. Here one program evaluates one network on the whole
Boolean cube: it computes the network's parameters in registers from the counter stream the CPU
sampler uses (``engines.rng``: SplitMix64 and the same float32 Box-Muller polynomials), makes the
inputs from their indices, keeps each layer's outputs on the chip and writes only the truth table
(16 bytes at n = 7). The same key gives the same networks on both devices, so a GPU's counts are the
CPU's, up to outputs within rounding of zero (the products summed in another order).

Triton's interpreter (``TRITON_INTERPRET=1``, set before ``engines.fused_kernel`` is first imported) runs the
same kernel on the CPU: how the tests check it where no GPU is lent.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

from nnbias.engines.cube import FUSED_ACTIVATIONS
from nnbias.errors import NNBiasError
from nnbias.spec import NetworkSpec
from nnbias.tasks.boolean import encoding_levels

# The kernel compiled ahead of time for an H100 (sm_90, Triton 3.9 and its ptxas; no GPU needed:
# benchmarks/fused_kernel_compiled.py). A 7-40-40-1 network in 4 warps: 255 registers, none spilled,
# 22,944 warp instructions, which bounds it at 33.5 % of the FFMA peak at full issue (27,584 in 8
# warps). Two 64-unit layers are best in 8 warps (40.6 %; 4 spill 21 KB a thread), everything else in 4.
# Tiles of 128 spilled 6.6 KB a thread in 16 warps and 48 KB in 8, so hidden layers wider than 64 take
# torch's batched pass, whose products are large enough to be efficient there.
MAX_WIDTH = 64
_ROWS = 128  # cube inputs per block of a program


def unsupported(spec: NetworkSpec) -> str | None:
    """Why ``spec`` cannot take the fused kernel (None if it can)."""
    if importlib.util.find_spec("triton") is None:  # CPU installs; torch brings it on a GPU
        return "Triton is not installed"
    import triton
    import triton.language as tl

    if not hasattr(tl, "gather"):  # torch before 2.7 brings an older Triton
        return f"Triton {triton.__version__} has no tl.gather (3.3 and later have)"
    if spec.activation not in FUSED_ACTIVATIONS:
        return f"activation {spec.activation!r} is not one of {', '.join(FUSED_ACTIVATIONS)}"
    if spec.layer_sizes[-1][1] != 1:
        return "the readout has more than one unit"
    if max(spec.hidden, default=0) > MAX_WIDTH:
        return f"a hidden layer is wider than {MAX_WIDTH}"
    return None


def cube_words(spec: NetworkSpec, k: int, key: int, device: str | torch.device, first_net: int = 0,
               num_warps: int | None = None, max_registers: int | None = None) -> torch.Tensor:
    """Truth tables (k, ceil(2^n / 64)) int64 of networks first_net .. first_net + k - 1 of the counter
    stream ``key`` (those of ``sampler.truth_tables``) on all 2^n inputs, on ``device``: each row the
    bytes of ``np.packbits`` of the network's signs, padded to whole 8-byte words (what
    ``FunctionCounts.from_words`` counts). ``num_warps``: the kernel's warps per network (default:
    those of the fewest instructions, above); ``max_registers``: a cap per thread (ptxas spills the
    rest), which lets more networks share an SM (at 128, four programs of 4 warps instead of two: 656
    bytes spilled a thread and 24,928 warp instructions for 7-40-40-1, against none and 22,944; which
    is faster, only a GPU can say). Multiplies and adds fuse, as in the CPU's compiled stream (and as
    Triton's default, which 3.10 changes)."""
    from nnbias.engines.fused_kernel import cube_kernel

    constants, warps = launch_constants(spec, num_warps)  # refuses a network the kernel does not take
    layers, scales, pairs = _layer_tables(spec, torch.device(device))
    words = torch.empty(k, constants["WORDS"], dtype=torch.int64, device=device)
    if k:
        lo, hi = encoding_levels(spec.encoding)
        cube_kernel[(k,)](words, layers, scales, key % 2**63, key >> 63 & 1, first_net, pairs, lo, hi,
                          **constants, num_warps=warps, enable_fp_fusion=True,
                          **({"maxnreg": max_registers} if max_registers else {}))
    return words


def launch_constants(spec: NetworkSpec, num_warps: int | None = None) -> tuple[dict[str, int | bool], int]:
    """The kernel's compile-time constants for ``spec`` and its warps per network (refusing a network
    the kernel does not take)."""
    from nnbias.engines.sampler import folded_layers  # the sampler imports this module

    reason = unsupported(spec)
    if reason:
        raise NNBiasError(f"{spec.describe()} cannot take the fused sampler: {reason}")
    n = spec.input_dim
    rows = min(_ROWS, max(16, 2**n))
    first, rest = _blocks(max(spec.hidden, default=1))
    pairs = [_padded(-(-layer.rows * layer.cols // 2)) for layer in folded_layers(spec)[0]]
    constants = {"N_IN": n, "DEPTH": len(spec.layer_sizes), "HA": first, "HB": rest, "ROWS": rows,
                 "ROW_WORDS": max(1, rows // 64), "WORDS": -(-2**n // 64),
                 # tiles of each layer's pairs of the stream: the first, the hidden ones', the readout's
                 "IN_PAIRS": pairs[0], "HID_PAIRS": max(pairs[1:-1], default=16), "OUT_PAIRS": pairs[-1],
                 "GAUSSIAN": spec.prior == "gaussian", "BIAS": spec.bias,
                 "ACTIVATION": FUSED_ACTIVATIONS.index(spec.activation)}
    return constants, num_warps or (8 if first == 64 and len(spec.hidden) > 1 else 4)


def compiled_kernel(spec: NetworkSpec, num_warps: int | None = None, arch: int = 90) -> dict[str, int]:
    """The kernel for ``spec`` compiled ahead of time for CUDA architecture ``arch`` (90: H100, H200) by
    Triton and the ptxas it ships, no GPU needed: warps per network, registers and bytes of registers
    spilled per thread, shared memory, and machine instructions (SASS) per thread, counted in the
    binary: at n <= 7 a program runs each once (its one loop, over blocks of inputs, runs once), which
    bounds its speed at full issue. Not in Triton's interpreter (TRITON_INTERPRET unset)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.backends.nvidia.compiler import get_ptxas
    from triton.compiler import ASTSource

    from nnbias.engines.fused_kernel import cube_kernel

    constants, warps = launch_constants(spec, num_warps)
    types = {"words": "*i64", "layers": "*i64", "scales": "*fp32", "key_low": "i64", "key_top": "i64",
             "first_net": "i64", "pairs": "i64", "lo": "fp32", "hi": "fp32"}
    source = ASTSource(cube_kernel, {**types, **dict.fromkeys(constants, "constexpr")},
                       {(cube_kernel.arg_names.index(name),): value for name, value in constants.items()})
    kernel = triton.compile(source, target=GPUTarget("cuda", arch, 32),
                            options={"num_warps": warps, "enable_fp_fusion": True})
    ptxas = Path(get_ptxas(arch).path)
    with tempfile.TemporaryDirectory() as tmp:
        ptx, cubin = Path(tmp) / "kernel.ptx", Path(tmp) / "kernel.cubin"
        ptx.write_text(kernel.asm["ptx"])
        report = subprocess.run([str(ptxas), f"-arch=sm_{arch}a", "-v", str(ptx), "-o", str(cubin)],
                                capture_output=True, text=True, check=True).stderr
        sass = subprocess.run([str(ptxas.with_name("cuobjdump")), "-sass", str(cubin)], capture_output=True,
                              text=True, check=True).stdout
    return {"warps": warps, "registers": int(re.search(r"Used (\d+) registers", report)[1]),
            "spilled": int(re.search(r"(\d+) bytes spill stores", report)[1]),
            "shared": int(kernel.metadata.shared),
            "instructions": len(re.findall(r"^\s+/\*[0-9a-f]{4,}\*/\s", sass, re.MULTILINE))}


def _blocks(width: int) -> tuple[int, int]:
    """Tile sides (a, b) that hold ``width`` units, b = 0 for one tile: 40 units in 32 + 16 (a product of
    two such layers 1.8x smaller than in one tile of 64), 20 in one of 32."""
    first = max(16, 1 << (width.bit_length() - 1))
    rest = _padded(width - first) if width > first else 0
    return (first, rest) if first + rest < _padded(width) else (_padded(width), 0)


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
