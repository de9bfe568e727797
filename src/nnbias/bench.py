"""Benchmarks: each figure printed beside a baseline measured in the same run."""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from queue import Empty
from typing import Any

import numpy as np
import torch

from nnbias.engines.memory import check_gram_fits
from nnbias.engines.sampler import FoldedNets, sample_chunk
from nnbias.errors import NNBiasError
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


def _module(spec: NetworkSpec) -> torch.nn.Sequential:
    """The spec's ReLU MLP as a plain nn.Sequential (what the baselines loop over)."""
    layers: list[torch.nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(spec.layer_sizes):
        layers.append(torch.nn.Linear(fan_in, fan_out))
        if i < spec.depth:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def _draw_prior(net: torch.nn.Sequential, spec: NetworkSpec) -> None:
    """Re-initialise a ``_module`` network from the spec's Gaussian prior."""
    with torch.no_grad():
        for m in net:
            if isinstance(m, torch.nn.Linear):
                torch.nn.init.normal_(m.weight, std=spec.weight_scale(m.in_features))
                torch.nn.init.normal_(m.bias, std=spec.sigma_b)


def _loop_module(spec: NetworkSpec, x: torch.Tensor, k: int) -> None:
    """Baseline (a'): the original papers' way: one nn.Module, re-initialised per sample."""
    net = _module(spec).to(x.device)
    with torch.no_grad():
        for _ in range(k):
            _draw_prior(net, spec)
            (net(x)[:, 0] > 0).cpu().numpy()


def _stage_costs(spec: NetworkSpec, x: torch.Tensor, k: int = 256, reps: int = 40) -> dict[str, float]:
    """Microseconds per network on one thread: the counter-based draw beside torch's ``normal_``
    filling the same number of floats, and the truth tables beside the plain batched forward pass."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    nets = FoldedNets.draw(spec, k, 0)
    floats = torch.empty(k * sum(m[0].numel() for m in nets.mats))
    generator = torch.Generator().manual_seed(0)
    stages = {"draw (counter RNG)": lambda: FoldedNets.draw(spec, k, 0, reuse=nets),
              "draw baseline (torch normal_)": lambda: floats.normal_(generator=generator),
              "truth tables (compiled loop, BLAS)": nets.cube_tables,
              "baseline: batched forward, packbits": lambda: np.packbits(nets.forward(x).numpy() > 0, 1)}
    out = {name: 1e6 / _rate(lambda f=fn: [f() for _ in range(reps)], reps * k)
           for name, fn in stages.items()}
    torch.set_num_threads(threads)
    return out


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
                device: str = "cpu", rounds: int = 3) -> dict[str, Any]:
    """Networks/s of the batched sampler (7-40-40-1 ReLU, all 128 inputs) and its baselines.

    The engine and the loops are measured in alternation over ``rounds`` rounds, and each ratio is
    the median of the rounds' ratios: a shared machine's speed drifts by tens of percent within a
    minute, and measuring one side early and the other late would put that drift in the ratio.
    """
    spec = NetworkSpec(7, (40, 40), "relu")
    x = hypercube(7).to(device)
    executor = LocalExecutor(workers)
    chunk = 2**15
    chunks = executor.workers * max(1, samples // rounds // chunk // executor.workers)
    sample_chunk(spec, 0, 0, 4096, device=device)  # warm-up

    def batched() -> None:
        if device == "cpu":
            for _ in executor.map_unordered(lambda c: sample_chunk(spec, 0, c, chunk), range(chunks)):
                pass
        else:
            for c in range(chunks):
                sample_chunk(spec, 0, c, chunk, device=device, batch=chunk)

    engine, loop, module = [], [], []
    per_round = loop_samples // rounds
    for _ in range(rounds):
        engine.append(_rate(batched, chunks * chunk))
        loop.append(_rate(lambda: _loop_functional(spec, x, per_round), per_round))
        module.append(_rate(lambda: _loop_module(spec, x, per_round // 2), per_round // 2))
    stages = _stage_costs(spec, x) if device == "cpu" else {}
    gflops = matmul_gflops(device)
    flops_per_net = 2 * 128 * sum(i * o for i, o in spec.layer_sizes)
    rate = statistics.median(engine)
    effective = rate * flops_per_net / 1e9
    return {
        "network": spec.describe(), "device": device, "workers": executor.workers,
        "torch_threads": torch.get_num_threads(), "rounds": rounds,
        "batched_nets_per_s": rate,
        "loop_nets_per_s": statistics.median(loop), "module_loop_nets_per_s": statistics.median(module),
        "speedup_vs_loop": statistics.median(e / lp for e, lp in zip(engine, loop, strict=True)),
        "speedup_vs_module_loop": statistics.median(e / m for e, m in zip(engine, module, strict=True)),
        "speedups_vs_loop_by_round": [e / lp for e, lp in zip(engine, loop, strict=True)],
        "dense_matmul_gflops": gflops, "sampler_effective_gflops": effective,
        "fraction_of_matmul_peak": effective / gflops,
        "hours_for_1e8": 1e8 / rate / 3600,
        "us_per_net_one_thread": stages,
    }


def _loop_training(spec: NetworkSpec, x: torch.Tensor, y: torch.Tensor, config, runs: int) -> list[int]:
    """Baseline: the straightforward way: one nn.Module and torch.optim per run, trained to 100 %."""
    generator = torch.Generator().manual_seed(0)
    epochs = []
    for _ in range(runs):
        net = _module(spec)
        _draw_prior(net, spec)
        opt = torch.optim.SGD(net.parameters(), lr=config.lr)
        epoch = 0
        for epoch in range(config.max_epochs + 1):  # noqa: B007 (the epoch count is the result)
            with torch.no_grad():
                if ((net(x)[:, 0] > 0).float() == y).all() or epoch == config.max_epochs:
                    break
            order = torch.randperm(len(x), generator=generator)
            for start in range(0, len(x), config.batch_size):
                idx = order[start:start + config.batch_size]
                loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x[idx])[:, 0], y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        epochs.append(epoch)
    return epochs


def bench_train(runs: int = 8192, loop_runs: int = 30, workers: int | None = None) -> dict[str, Any]:
    """Training runs/s to 100 % training accuracy: the batched engine beside a per-network loop.

    7-40-40-1 ReLU (Gaussian prior sigma_w = sigma_b = 1), |S| = 64 points of the
    Boolean target "0011"*32, SGD lr 0.1, batch 8, cross-entropy, epoch cap 500:
    the P_SGD setting of ``sgd-vs-bayes``. The loop uses torch's default threads;
    the engine runs chunks of 256 networks on ``workers`` threads.
    """
    from nnbias.engines.training import TrainConfig
    from nnbias.estimators.posterior import trained_functions
    from nnbias.tasks.datasets import boolean_task

    task = boolean_task(7, "0011" * 32, train=64, seed=0)
    spec = NetworkSpec(7, (40, 40), "relu")
    config = TrainConfig("sgd", 0.1, 8, "ce", 500, "accuracy")
    executor = LocalExecutor(workers)
    chunk = 256
    chunks = max(executor.workers, runs // chunk)
    results = []

    def work(c: int):
        return trained_functions(spec, task.x_train, task.y_train, task.x_test, config, 0, c, chunk)

    def batched() -> None:
        results.extend(r for _, r in executor.map_unordered(work, range(chunks)))

    engine = _rate(batched, chunks * chunk)
    loop_epochs: list[int] = []
    loop = _rate(lambda: loop_epochs.extend(_loop_training(spec, task.x_train.float(),
                                                           task.y_train.float(), config, loop_runs)),
                 loop_runs)
    fitted = sum(r.converged for r in results)
    return {
        "network": spec.describe(), "train_points": len(task.y_train), "config": config.label(),
        "workers": executor.workers, "torch_threads": torch.get_num_threads(),
        "batched_runs": chunks * chunk, "batched_runs_per_s": engine,
        "batched_fit_fraction": fitted / (chunks * chunk),
        "batched_mean_epochs": sum(r.epochs for r in results) / (chunks * chunk),
        "loop_runs": loop_runs, "loop_runs_per_s": loop,
        "loop_fit_fraction": sum(e < config.max_epochs for e in loop_epochs) / loop_runs,
        "loop_mean_epochs": sum(loop_epochs) / loop_runs,
        "speedup_vs_loop": engine / loop, "minutes_for_1e5": 1e5 / engine / 60,
    }


# the analytic and empirical cases' network, and their inputs
KERNEL_BENCH_SPEC = NetworkSpec(32, (512, 512, 512), "relu", parametrization="ntk", sigma_w=1.4, sigma_b=0.1)
TANH_BENCH_SPEC = replace(KERNEL_BENCH_SPEC, activation="tanh")


def _kernel_bench_inputs(n: int, dtype: torch.dtype) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(n, KERNEL_BENCH_SPEC.input_dim, dtype=dtype)


def _peak_case(case: str, n: int, dtype: str, queue) -> None:
    """Put ("ok", (seconds, MiB)) of one case, or ("error", its first line) for the parent to report:
    a traceback printed by a spawned child is not an error the user's command can exit with."""
    try:
        queue.put(("ok", _peak_case_figures(case, n, dtype)))
    except Exception as e:
        queue.put(("error", next(iter(str(e).strip().splitlines()), type(e).__name__)))


def _peak_case_figures(case: str, n: int, dtype: str) -> tuple[float, float]:
    """One kernel benchmark case in a fresh process: (seconds of the faster of two runs, peak RSS in MiB)."""
    import resource

    from nnbias.engines.empirical import spec_empirical_ntk
    from nnbias.engines.kernels import KernelFn
    from nnbias.estimators.gp import gp_posterior

    dt = getattr(torch, dtype)
    x = _kernel_bench_inputs(n, dt)
    spec = KERNEL_BENCH_SPEC
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if case.startswith("gp_solve"):  # the Gram matrix is the setup here, not the timed work
        k = KernelFn(spec)(x, kind="nngp", dtype=dt)
    work = {
        "analytic": lambda: KernelFn(spec)(x, kind="ntk", dtype=dt),
        # a second input set: every block, none mirrored
        "analytic_full": lambda: KernelFn(spec)(x, x.clone(), kind="ntk", dtype=dt),
        # blocks of 1024 inputs, out of a CPU core's cache
        "analytic_large_blocks": lambda: KernelFn(spec)(x, kind="ntk", dtype=dt, block=1024),
        "analytic_naive": lambda: _naive_relu_ntk(x.numpy(), spec),
        # tanh: 32 erfs per pair, so (block, block, 32) temporaries and a smaller default block
        "analytic_tanh": lambda: KernelFn(TANH_BENCH_SPEC)(x, kind="ntk", dtype=dt),
        "analytic_tanh_cap": lambda: KernelFn(TANH_BENCH_SPEC)(x, kind="ntk", dtype=dt, block=256),
        "gp_solve": lambda: gp_posterior(k, torch.randn(n, 1, dtype=dt), k[:100], noise=1e-6),
        "gp_solve_naive": lambda: (k[:100].numpy() @ np.linalg.inv(k.numpy() + 1e-6 * np.eye(n))
                                   @ np.random.default_rng(0).normal(size=(n, 1))),
        "empirical": lambda: spec_empirical_ntk(spec, x, dtype=dt),
        "empirical_jacobian": lambda: spec_empirical_ntk(spec, x, dtype=dt, strategy="jacobian"),
        "empirical_loop": lambda: _loop_empirical_ntk(spec, x),
    }[case]
    times = []
    for _ in range(2):  # the faster of two: the first also pays first-touch page faults of its output
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times), (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024


def _naive_relu_ntk(x, spec: NetworkSpec):
    """Baseline: the same recursion on the whole matrix in numpy, no blocking."""
    q = x @ x.T / x.shape[1]
    theta = np.zeros_like(q)
    for layer in range(spec.depth + 1):
        k = spec.sigma_w**2 * q + spec.sigma_b**2
        theta = k + spec.sigma_w**2 * theta
        if layer == spec.depth:
            return theta
        d = np.sqrt(np.diag(k))
        rho = np.clip(k / np.outer(d, d), -1, 1)
        angle = np.arccos(rho)
        q = np.outer(d, d) / (2 * np.pi) * (np.sin(angle) + (np.pi - angle) * rho)
        theta = theta * (np.pi - angle) / (2 * np.pi)


def _loop_empirical_ntk(spec: NetworkSpec, x: torch.Tensor) -> torch.Tensor:
    """Baseline: per-sample Jacobians materialised one input at a time in a Python loop."""
    from nnbias.engines.ensemble import sample_ensemble

    nets = sample_ensemble(spec, 1, torch.Generator().manual_seed(0), dtype=x.dtype)
    fn, params = nets.functional()
    params = [p.detach().requires_grad_(True) for p in params]
    rows = []
    for xi in x:
        grads = torch.autograd.grad(fn(params, xi.unsqueeze(0)).sum(), params)
        rows.append(torch.cat([g.flatten() for g in grads]))
    jac = torch.stack(rows)
    return jac @ jac.T


def _measure(case: str, n: int, dtype: str = "float64") -> tuple[float, float]:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_peak_case, args=(case, n, dtype, queue))
    proc.start()
    while True:
        try:
            status, value = queue.get(timeout=1.0)
            break
        except Empty:
            if not proc.is_alive() and queue.empty():  # killed (e.g. by the kernel's OOM killer) unheard
                raise NNBiasError(f"benchmark case {case!r} at n={n} died (exit code {proc.exitcode}) "
                                  "before it answered; try a smaller n") from None
    proc.join()
    if status == "error":
        raise NNBiasError(f"benchmark case {case!r} at n={n} failed: {value}")
    return value


def _run_neural_tangents(python: str, args: list[str]) -> str:
    """stdout of ``python`` run with ``args``, or one line saying why that interpreter cannot serve."""
    import subprocess

    from nnbias.errors import NNBiasError

    try:
        done = subprocess.run([python, *args], capture_output=True, text=True)
    except OSError as err:
        raise NNBiasError(f"--neural-tangents {python!r} cannot be run ({err.strerror}); give a Python "
                          "interpreter that has jax and neural_tangents") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise NNBiasError(f"--neural-tangents {python!r} failed: {last}; give a Python interpreter "
                          "that has jax and neural_tangents")
    return done.stdout


def neural_tangents_ntk(python: str, n: int) -> dict[str, Any]:
    """neural-tangents' NTK of the analytic case (same inputs, float64, jitted; the compile apart) in
    the interpreter ``python``, which has JAX and neural-tangents (``neural_tangents_side.py``), and
    the largest difference from nnbias' Gram matrix relative to its largest entry."""
    import json
    import tempfile
    from pathlib import Path

    from nnbias import neural_tangents_side
    from nnbias.engines.kernels import KernelFn

    spec = KERNEL_BENCH_SPEC
    x = _kernel_bench_inputs(n, torch.float64)
    with tempfile.TemporaryDirectory() as tmp:
        x_path, out_path = Path(tmp) / "x.npy", Path(tmp) / "ntk.npy"
        np.save(x_path, x.numpy())
        args = [neural_tangents_side.__file__, "time", str(x_path), str(spec.depth), str(spec.hidden[0]),
                str(spec.sigma_w), str(spec.sigma_b), str(out_path)]
        row = json.loads(_run_neural_tangents(python, args).strip().splitlines()[-1])
        theirs = np.load(out_path)
    ours = KernelFn(spec)(x, kind="ntk").numpy()
    exact = _relu_ntk_diagonal(x.numpy(), spec)
    row["n"] = n
    row["max_relative_difference"] = float(np.abs(ours - theirs).max() / np.abs(theirs).max())
    row["diagonal_error_nnbias"] = float(np.abs(np.diag(ours) - exact).max() / exact.max())
    row["diagonal_error_neural_tangents"] = float(np.abs(np.diag(theirs) - exact).max() / exact.max())
    return row


def _relu_ntk_diagonal(x: np.ndarray, spec: NetworkSpec) -> np.ndarray:
    """Theta(x, x) of a ReLU MLP (NTK parametrization) exactly: at rho = 1 the ReLU's dual is K/2 and
    its derivative's 1/2, no arc-cosine, so the diagonal is a reference for both implementations."""
    k = spec.sigma_w**2 * (x * x).sum(1) / x.shape[1] + spec.sigma_b**2
    theta = k
    for _ in spec.hidden:
        k = spec.sigma_w**2 * k / 2 + spec.sigma_b**2
        theta = k + spec.sigma_w**2 * theta / 2
    return theta


def bench_kernels(n_analytic: int = 4000, n_empirical: int = 500, neural_tangents: str | None = None
                  ) -> dict[str, Any]:
    """Kernel engines beside straightforward implementations, each in a fresh process; with
    ``neural_tangents`` (a Python interpreter), neural-tangents' NTK of the analytic case too."""
    check_gram_fits("n", n_analytic, n_analytic, torch.float64, "cpu")  # before a child is spawned
    if neural_tangents:  # before minutes of work: can that interpreter import both?
        _run_neural_tangents(neural_tangents, ["-c", "import jax, neural_tangents"])
    rows = {}
    for name, case, n, dtype in (
        ("analytic NTK float32 (upper triangle)", "analytic", n_analytic, "float32"),
        ("analytic NTK float64 (upper triangle)", "analytic", n_analytic, "float64"),
        ("  baseline: every block (no symmetry)", "analytic_full", n_analytic, "float64"),
        ("  baseline: blocks of 1024 inputs", "analytic_large_blocks", n_analytic, "float64"),
        ("  baseline: unblocked numpy recursion", "analytic_naive", n_analytic, "float64"),
        ("analytic NTK tanh float64 (default block)", "analytic_tanh", n_analytic // 8, "float64"),
        ("  baseline: blocks of 256 (the former cap)", "analytic_tanh_cap", n_analytic // 8, "float64"),
        ("GP solve (Cholesky)", "gp_solve", n_analytic, "float64"),
        ("  baseline: explicit inverse", "gp_solve_naive", n_analytic, "float64"),
        ("empirical NTK width 512 depth 3 (structured)", "empirical", n_empirical, "float32"),
        ("empirical NTK, torch.func vmap(jacrev)", "empirical_jacobian", n_empirical, "float32"),
        ("  baseline: per-sample Jacobian loop", "empirical_loop", n_empirical, "float32"),
    ):
        seconds, mib = _measure(case, n, dtype)
        rows[name] = {"n": n, "seconds": seconds, "peak_mib": mib}
    if neural_tangents:
        row = neural_tangents_ntk(neural_tangents, n_analytic)
        rows[f"  neural-tangents {row['neural_tangents']} NTK float64 (jit)"] = row
    return rows
