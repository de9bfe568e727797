"""The GPU sampler's Triton kernel compiled ahead of time for an H100 (sm_90), without a GPU: registers
per thread, bytes spilled per thread and shared memory, per network shape and warps per network.

``python benchmarks/fused_kernel_registers.py`` from the repository root (Triton installed, as with
``.[dev]``). A spilled register is a trip to local memory in the kernel's inner loop, and registers
per thread bound how many networks an SM holds at once; ``engines.fused`` picks its warps and its
widest layer from this table. What the kernel's speed is, only a GPU can say (``gpu_check.py``).
"""

import sys

sys.path.insert(0, "src")

from nnbias.engines.fused import compiled_registers  # noqa: E402
from nnbias.spec import NetworkSpec  # noqa: E402

SHAPES = [NetworkSpec(7, ()), NetworkSpec(7, (20, 20)), NetworkSpec(7, (40, 40)),
          NetworkSpec(7, (40, 40), prior="uniform"), NetworkSpec(7, (64,)), NetworkSpec(7, (40,) * 4),
          NetworkSpec(10, (40, 40))]

if __name__ == "__main__":
    print(f"{'network':48s} warps  registers  spilled (B)  shared (B)  [default warps *]")
    for spec in SHAPES:
        default = compiled_registers(spec)["warps"]
        for warps in (4, 8, 16):
            r = compiled_registers(spec, warps)
            print(f"{spec.describe():48s} {warps:5d}{'*' if warps == default else ' '} {r['registers']:9d}  "
                  f"{r['spilled']:11d}  {r['shared']:10d}", flush=True)
