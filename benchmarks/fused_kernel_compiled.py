"""The GPU sampler's Triton kernel compiled ahead of time for an H100 (sm_90), without a GPU: per network
shape and warps per network, registers and bytes spilled per thread, shared memory, machine
instructions per network, and the bound they put on the fraction of float32 peak (FFMA) it can reach.

``python benchmarks/fused_kernel_compiled.py`` from the repository root (Triton installed, as with
``.[dev]``). A spilled register is a trip to local memory in the kernel's inner loop, and registers per
thread bound how many networks an SM holds at once; ``engines.fused`` picks its warps and its widest
layer from this table. Each instruction takes an issue slot of a warp scheduler, and an FFMA does 64 of
the products' flops in one, so (useful multiply-adds / 32) / (warp instructions per network) bounds the
fraction of the FFMA peak at full issue; n <= 7, where a program runs each instruction once. The speed
itself only a GPU can measure (``gpu_check.py``).
"""

import sys

sys.path.insert(0, "src")

from nnbias.engines.fused import compiled_kernel  # noqa: E402
from nnbias.spec import NetworkSpec  # noqa: E402

SHAPES = [NetworkSpec(7, ()), NetworkSpec(7, (20, 20)), NetworkSpec(7, (40, 40)),
          NetworkSpec(7, (40, 40), prior="uniform"), NetworkSpec(7, (64,)), NetworkSpec(7, (64, 64)),
          NetworkSpec(7, (40,) * 4)]

if __name__ == "__main__":
    print(f"{'network':48s} warps  registers  spilled (B)  shared (B)  warp instr./net  bound  (* default)")
    for spec in SHAPES:
        default = compiled_kernel(spec)["warps"]
        useful = 2**spec.input_dim * sum(i * o for i, o in spec.layer_sizes) / 32  # FFMA warp instructions
        for warps in (4, 8, 16):
            r = compiled_kernel(spec, warps)
            issued = r["instructions"] * warps
            print(f"{spec.describe():48s} {warps:5d}{'*' if warps == default else ' '} {r['registers']:9d}  "
                  f"{r['spilled']:11d}  {r['shared']:10d}  {issued:15,d}  {useful / issued:5.1%}", flush=True)
