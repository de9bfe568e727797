"""Benchmark of the batched parameter-function-map sampler: ``python benchmarks/bench_pfmap.py``.

Same as ``nnbias bench pfmap``: networks/s of the batched engine for a
7-40-40-1 ReLU net on all 128 inputs, beside a per-network PyTorch loop and
this machine's dense-matmul throughput, all measured in this run.
"""

import sys

from nnbias.cli import app

if __name__ == "__main__":
    sys.argv = ["nnbias", "bench", "pfmap", *sys.argv[1:]]
    app()
