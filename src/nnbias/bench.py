"""Benchmarks: each figure printed beside a baseline measured in the same run."""

from __future__ import annotations

import time
from typing import Any

import torch

from nnbias.engines.sampler import sample_chunk
from nnbias.executor import LocalExecutor
from nnbias.spec import NetworkSpec
from nnbias.tasks.boolean import hypercube


def _rate(fn, count: int) -> float:
    start = time.perf_counter()
    fn()
    return count / (time.perf_counter() - start)


def _loop_functional(spec: NetworkSpec, x: torch.Tensor, k: int) -> None:
    """Baseline (a): draw each network's tensors and apply it, one network at a time."""
    for _ in range(k):
        h = x
        for i, (fan_in, fan_out) in enumerate(spec.layer_sizes):
            w = torch.randn(fan_in, fan_out, device=x.device) * spec.weight_scale(fan_in)
            h = h @ w + torch.randn(fan_out, device=x.device) * spec.sigma_b
            if i < spec.depth:
                h = torch.relu(h)
        (h[:, 0] > 0).cpu().numpy()


def _loop_module(spec: NetworkSpec, x: torch.Tensor, k: int) -> None:
    """Baseline (a'): the original papers' way: one nn.Module, re-initialised per sample."""
    layers: list[torch.nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(spec.layer_sizes):
        layers.append(torch.nn.Linear(fan_in, fan_out))
        if i < spec.depth:
            layers.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*layers).to(x.device)
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for _ in range(k):
            for m in linears:
                torch.nn.init.normal_(m.weight, std=spec.weight_scale(m.in_features))
                torch.nn.init.normal_(m.bias, std=spec.sigma_b)
            (net(x)[:, 0] > 0).cpu().numpy()


def matmul_gflops(device: str = "cpu", size: int = 2048, reps: int = 3) -> float:
    """Float32 dense-matmul throughput of this device: the ceiling for any batched engine."""
    if device != "cpu":
        size, reps = 8192, 10
    a = torch.randn(size, size, device=device)
    a @ a
    _sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        a @ a
    _sync(device)
    return 2 * size**3 * reps / (time.perf_counter() - start) / 1e9


def _sync(device: str) -> None:
    if device != "cpu":
        torch.cuda.synchronize()


def bench_pfmap(samples: int = 524_288, loop_samples: int = 3_000, workers: int | None = None,
                device: str = "cpu") -> dict[str, Any]:
    """Networks/s of the batched sampler (7-40-40-1 ReLU, all 128 inputs) and its baselines."""
    spec = NetworkSpec(7, (40, 40), "relu")
    x = hypercube(7).to(device)
    executor = LocalExecutor(workers)
    chunk = 2**16
    chunks = max(executor.workers, samples // chunk)
    sample_chunk(spec, 0, 0, 4096, device=device)  # warm-up

    def batched() -> None:
        if device == "cpu":
            for _ in executor.map_unordered(lambda c: sample_chunk(spec, 0, c, chunk), range(chunks)):
                pass
        else:
            for c in range(chunks):
                sample_chunk(spec, 0, c, chunk, device=device, batch=chunk)

    engine = _rate(batched, chunks * chunk)
    loop = _rate(lambda: _loop_functional(spec, x, loop_samples), loop_samples)
    module = _rate(lambda: _loop_module(spec, x, loop_samples // 2), loop_samples // 2)
    gflops = matmul_gflops(device)
    flops_per_net = 2 * 128 * sum(i * o for i, o in spec.layer_sizes)
    effective = engine * flops_per_net / 1e9
    return {
        "network": spec.describe(), "device": device, "workers": executor.workers,
        "torch_threads": torch.get_num_threads(),
        "batched_nets_per_s": engine,
        "loop_nets_per_s": loop, "module_loop_nets_per_s": module,
        "speedup_vs_loop": engine / loop, "speedup_vs_module_loop": engine / module,
        "dense_matmul_gflops": gflops, "sampler_effective_gflops": effective,
        "fraction_of_matmul_peak": effective / gflops,
        "hours_for_1e8": 1e8 / engine / 3600,
    }
