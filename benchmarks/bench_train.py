"""Benchmark of the ensemble training engine: ``python benchmarks/bench_train.py``.

Same as ``nnbias bench train``: training runs/s to 100 % training accuracy for a
7-40-40-1 ReLU net on |S| = 64 Boolean points, the batched engine beside a
per-network nn.Module + torch.optim loop measured in the same run.
"""

import sys

from nnbias.cli import app

if __name__ == "__main__":
    sys.argv = ["nnbias", "bench", "train", *sys.argv[1:]]
    app()
