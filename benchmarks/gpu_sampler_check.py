"""GPU path of the sampler: correctness against exact volumes and CPU float64, then speed.

Run on a machine with a CUDA GPU from the repository root (no install needed):
``python benchmarks/gpu_sampler_check.py``.
"""

import json
import math
import sys
import time

import numpy as np
import torch

sys.path.insert(0, "src")

from nnbias.bench import bench_pfmap  # noqa: E402
from nnbias.engines.ensemble import sample_ensemble  # noqa: E402
from nnbias.engines.sampler import FunctionCounts, sample_chunk  # noqa: E402
from nnbias.engines.volumes import exact_volumes  # noqa: E402
from nnbias.estimators.frequency import goodness_of_fit  # noqa: E402
from nnbias.spec import NetworkSpec  # noqa: E402
from nnbias.tasks.boolean import hypercube, packed_to_strings  # noqa: E402


def same_networks_on_cpu() -> None:
    """The GPU's float32 outputs against float64 CPU outputs of the same drawn networks."""
    nets = sample_ensemble(NetworkSpec(7, (40, 40)), 512, torch.Generator("cuda").manual_seed(0))
    x = hypercube(7).cuda()
    gpu = nets.forward(x).double().cpu()
    nets.weights = [w.double().cpu() for w in nets.weights]
    nets.biases = [b.double().cpu() for b in nets.biases]
    cpu = nets.forward(x.cpu().double())
    agree = ((gpu > 0) == (cpu > 0)).double().mean().item()
    print(f"max |gpu - cpu64| = {(gpu - cpu).abs().max().item():.2e}, sign agreement {agree}")


def against_exact_volumes() -> None:
    specs = [NetworkSpec(2, (), prior="uniform", sigma_w=1.0, sigma_b=1 / math.sqrt(2)),
             NetworkSpec(3, (), sigma_b=0.7)]
    for spec in specs:
        exact = {v.truth_table: v.probability for v in exact_volumes(spec)}
        parts = [sample_chunk(spec, 1, c, 2**20, device="cuda", batch=2**20) for c in range(8)]
        fc = FunctionCounts.merge(parts)
        seen = dict(zip(packed_to_strings(fc.tables, spec.input_dim), fc.counts, strict=True))
        tables = sorted(exact)
        stat, dof, p = goodness_of_fit(np.array([seen.get(t, 0) for t in tables]),
                                       np.array([exact[t] for t in tables]))
        print(f"{spec.describe()}: chi2 = {stat:.1f}, dof = {dof}, p = {p:.3f} (8M samples)")


def chunk_sizes() -> None:
    spec = NetworkSpec(7, (40, 40))
    for chunk in (2**16, 2**18, 2**20):
        sample_chunk(spec, 0, 0, chunk, device="cuda", batch=chunk)
        torch.cuda.synchronize()
        start, n = time.perf_counter(), 0
        for c in range(max(4, 2**22 // chunk)):
            sample_chunk(spec, 0, c, chunk, device="cuda", batch=chunk)
            n += chunk
        print(f"chunk {chunk}: {n / (time.perf_counter() - start):,.0f} nets/s")


if __name__ == "__main__":
    print(torch.__version__, torch.cuda.get_device_name())
    same_networks_on_cpu()
    against_exact_volumes()
    chunk_sizes()
    print(json.dumps(bench_pfmap(device="cuda", samples=2**21), indent=1))
