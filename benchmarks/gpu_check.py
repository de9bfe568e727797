"""The prepared device check: every engine's device path against its CPU result, then its speed.

``python benchmarks/gpu_check.py [--device cuda] [--quick]`` from the repository root. For each
engine the same inputs and the same drawn parameters go through the CPU path (float64 where the
engine allows) and the device path; the script prints the largest relative difference and both
times, one line per engine, and exits non-zero if an engine disagrees beyond its tolerance. On a
machine without a GPU it runs the same code on the CPU (``--device cpu``), which is how the test
suite keeps these paths alive; ``benchmarks/gpu_sampler_check.py`` times the sampler at full size.
Meant to finish in under 5 minutes on one GPU; ``python tests/simulated_cuda.py --quick`` dry-runs it
on a CUDA device simulated on the CPU, which catches tensors left on the host before a GPU is lent.
"""

import argparse
import importlib
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, "src")

from nnbias.bench import matmul_gflops  # noqa: E402
from nnbias.engines import fused  # noqa: E402
from nnbias.engines.empirical import ntk_of_function  # noqa: E402
from nnbias.engines.ensemble import sample_ensemble  # noqa: E402
from nnbias.engines.kernels import KernelFn  # noqa: E402
from nnbias.engines.sampler import (  # noqa: E402
    FUSED_KERNEL,
    TORCH_PASS,
    FoldedNets,
    FunctionCounts,
    generator_counts,
    sample_chunk,
    sampler_path,
)
from nnbias.engines.serial import SerialKernelFn, SerialNets, network_fn, sample_serial  # noqa: E402
from nnbias.engines.training import TrainConfig, train  # noqa: E402
from nnbias.layers import LayeredSpec  # noqa: E402
from nnbias.spec import NetworkSpec  # noqa: E402
from nnbias.store import RUN_RECORDS, Store  # noqa: E402

CNN = "conv1d:{w}:5:1:2,relu,conv1d:{w}:3:1:2,relu,conv1d:{w}:3:1:2,relu,{ro},dense:10"


def timed(fn):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().cpu(), b.double().cpu()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


def checks(device: str, n: int, k: int, steps: int) -> list[tuple[str, float, float, float, float]]:
    """(engine, relative difference, tolerance, CPU seconds, device seconds) per engine."""
    rows = []
    gen = torch.Generator().manual_seed(0)
    x_flat = torch.randn(n, 40, dtype=torch.float64, generator=gen)

    mlp = NetworkSpec(40, (512, 512, 512), "relu", sigma_w=1.4, sigma_b=0.1, parametrization="ntk")
    cpu, t_cpu = timed(lambda: KernelFn(mlp)(x_flat, kind="ntk"))
    dev, t_dev = timed(lambda: KernelFn(mlp)(x_flat, kind="ntk", device=device))
    rows.append(("analytic NTK, MLP 40-512x3, float64", relative(dev, cpu), 1e-10, t_cpu, t_dev))
    tanh = NetworkSpec(40, (512, 512), "tanh", sigma_w=1.5, sigma_b=0.1, parametrization="ntk")
    m = min(n, 128)
    cpu, t_cpu = timed(lambda: KernelFn(tanh)(x_flat[:m], kind="ntk"))
    dev, t_dev = timed(lambda: KernelFn(tanh)(x_flat[:m], kind="ntk", device=device))
    rows.append(("analytic NTK, tanh MLP (sum of erfs), float64", relative(dev, cpu), 1e-10, t_cpu, t_dev))

    for readout in ("flatten", "gap"):
        spec = LayeredSpec((1, 40), CNN.format(w=1, ro=readout), 1.0, 0.1)
        m = n if readout == "flatten" else n // 4
        cpu, t_cpu = timed(lambda spec=spec, m=m: SerialKernelFn(spec)(x_flat[:m], kind="ntk"))
        dev, t_dev = timed(lambda spec=spec, m=m: SerialKernelFn(spec)(x_flat[:m], kind="ntk", device=device))
        rows.append((f"CNTK ({readout}), MNIST-1D ConvBase, float64", relative(dev, cpu), 1e-10, t_cpu,
                     t_dev))

    spec = LayeredSpec((1, 40), CNN.format(w=25, ro="flatten"), 1.0, 0.1, parametrization="standard")
    nets = sample_serial(spec, k, torch.Generator().manual_seed(1), torch.float64)
    labels = torch.randint(0, 10, (n,), generator=gen)
    # full batch: a device draws minibatch orders from its own generator, so only full-batch training
    # gives the CPU's networks there
    config = TrainConfig("adam", 0.01, None, "ce", steps, "none")

    def trained(where: str):
        params = [p.to(where) for p in nets.params]
        return train(network_fn(spec), params, x_flat, labels, config, torch.Generator().manual_seed(2))

    cpu, t_cpu = timed(lambda: trained("cpu"))
    dev, t_dev = timed(lambda: trained(device))
    worst = max(relative(a, b) for a, b in zip(dev.params, cpu.params, strict=True))
    rows.append((f"{k} CNNs trained at once (Adam, full batch, {steps} steps), float64", worst, 1e-6, t_cpu,
                 t_dev))

    one = SerialNets(spec, [p[:1] for p in nets.params])

    def ntk(where: str):
        params = [p.to(where) for p in one.params]
        fn = network_fn(spec)
        return ntk_of_function(lambda p, x: fn(p, x)[0], params, x_flat[:64].to(where), mode="trace")

    cpu, t_cpu = timed(lambda: ntk("cpu"))
    dev, t_dev = timed(lambda: ntk(device))
    rows.append(("empirical NTK of one CNN (torch.func), float64", relative(dev, cpu), 1e-10, t_cpu, t_dev))

    mlp7 = NetworkSpec(7, (40, 40))
    ens = sample_ensemble(mlp7, 4 * k, torch.Generator().manual_seed(3), torch.float64)
    cube = torch.tensor([[(i >> b) & 1 for b in range(6, -1, -1)] for i in range(128)], dtype=torch.float64)

    def forward(where: str):
        moved = ens.from_params([p.to(where) for p in ens.functional()[1]])
        return moved.forward(cube.to(where), inplace=False)

    cpu, t_cpu = timed(lambda: forward("cpu"))
    dev, t_dev = timed(lambda: forward(device))
    rows.append((f"{4 * k} stacked MLPs 7-40-40-1 forward, float64", relative(dev, cpu), 1e-10, t_cpu, t_dev))

    folded = FoldedNets.draw(mlp7, 1 << 14, 0, generator=torch.Generator().manual_seed(4))

    def counted(where: str) -> dict[bytes, int]:
        if where == "cpu":
            fc = FunctionCounts.from_packed(folded.cube_tables())
        else:
            fc = FunctionCounts.from_signs(FoldedNets(mlp7, [m.to(where) for m in folded.mats]).cube_signs())
        return {t.tobytes(): int(c) for t, c in zip(fc.tables, fc.counts, strict=True)}

    cpu, t_cpu = timed(lambda: counted("cpu"))
    dev, t_dev = timed(lambda: counted(device))
    rows.append(("sampler 7-40-40-1, torch's pass, 16384 nets (share moved)", _moved(cpu, dev), 1e-3,
                 t_cpu, t_dev))

    def sampled(where: str) -> dict[bytes, int]:
        fc = sample_chunk(mlp7, 0, 0, n * k, device=where)
        return {t.tobytes(): int(c) for t, c in zip(fc.tables, fc.counts, strict=True)}

    name = f"sampler 7-40-40-1 as runs sample, {n * k} nets (share moved)"
    try:  # the fused kernel's first run on a GPU: a failure is reported, and the other checks go on
        sampled(device)  # compiles the kernel
        cpu, t_cpu = timed(lambda: sampled("cpu"))
        dev, t_dev = timed(lambda: sampled(device))
        rows.append((name, _moved(cpu, dev), 1e-3, t_cpu, t_dev))
    except Exception:  # noqa: BLE001
        print(f"FAIL {name}:\n{traceback.format_exc(limit=-4)}")
        rows.append((name, float("inf"), 1e-3, 0.0, 0.0))
    return rows


def _moved(a: dict[bytes, int], b: dict[bytes, int]) -> float:
    """The share of networks counted under another function in b than in a."""
    return sum(abs(a.get(t, 0) - b.get(t, 0)) for t in a.keys() | b.keys()) / 2 / sum(a.values())


# every experiment at a tiny size: (module, run function, settings overrides); the whole list takes a
# few minutes on one CPU core, and is what `--experiments` runs on the device beside the CPU
EXPERIMENTS = {
    "kernels": ("kernels", "run_kernels", {"tasks": ("digits-3-5",), "widths": (32, 64), "networks": 2,
                                           "steps": 50, "convergence_widths": (64, 128),
                                           "convergence_seeds": 2, "fluctuation_depths": (1, 2),
                                           "fluctuation_widths": (16, 32), "fluctuation_networks": 50}),
    "features": ("features", "run_features", {"parametrizations": ("ntk", "mup"), "tasks": ("single-index",),
                                              "widths": (32, 64), "networks": 2, "steps": 20,
                                              "coord_widths": (64, 128)}),
    "gap": ("gap", "run_gap", {"tasks": ("linear",), "widths": (32, 64), "networks": 2, "steps": 50,
                               "curve_sizes": (50, 100)}),
    "transfer": ("transfer", "run_transfer", {"pairs": ("single-index-same",), "sizes": (16,),
                                              "claim_size": 16, "width": 64, "networks": 2, "steps": 50}),
    "inside": ("inside", "run_inside", {"widths": (32, 64), "networks": 2, "steps": 50}),
    "gibbs": ("gibbs", "run_gibbs", {"step_sizes": (0.1,), "chains": 500, "draws": 20_000, "steps": 200,
                                     "sgd_lrs": (0.1,), "sgd_batches": (2,)}),
    "posterior": ("posterior", "run_posterior", {"widths": (8, 16), "samples": 40,
                                                 "methods": ("rejection", "sgd-ntk")}),
    "routes": ("routes", "run_routes", {"widths": (2, 4), "samples": 300, "readouts": 32}),
    "bound": ("bound", "run_bound", {"tasks": ("bool7-0011",), "corruptions": (0.0,), "networks": 2}),
    "sgd-vs-bayes": ("sgd_bayes", "run_sgd_bayes", {"tasks": ("bool5-0011",), "methods": ("sgd-b8",),
                                                    "runs": 500, "rejection_samples": 100_000}),
    "architectures": ("architectures", "run_architectures", {"tasks": ("digits-10",), "mlp_widths": (16,),
                                                             "cnn_widths": (4,), "networks": 1, "epochs": 2,
                                                             "boolean_samples": 2000}),
}


def _experiment(name: str, device: str, folder: Path) -> tuple[dict[str, pd.DataFrame], list[str], float]:
    """Run one tiny experiment on ``device`` into a fresh store (in a fresh ``folder``): its tables,
    verdicts and seconds."""
    module, runner, overrides = EXPERIMENTS[name]
    mod = importlib.import_module(f"nnbias.experiments.{module}")
    settings = mod.settings_for("small", device=device, **overrides)
    start = time.perf_counter()
    folder.mkdir(exist_ok=True)
    with Store(folder / f"{name}.duckdb") as st:
        result = getattr(mod, runner)(st, settings, folder / f"{name}-{device}", quiet=True)
        tables: dict[str, list[pd.DataFrame]] = {}
        for run_id in st.runs()["run_id"]:
            for table in st.run_tables(run_id):
                if table not in (*RUN_RECORDS, "claims"):
                    tables.setdefault(table, []).append(st.table(table, run_id).drop(columns="run_id"))
    seconds = time.perf_counter() - start
    return ({t: pd.concat(f, ignore_index=True) for t, f in tables.items()},
            [c["verdict"] for c in result["claims"]], seconds)


def _largest_difference(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> tuple[float, int]:
    """Largest relative difference between the numeric columns of tables of the same shape, and how many
    tables differ in shape (float32 experiments may count other functions on another device)."""
    worst, reshaped = 0.0, 0
    for name in a.keys() & b.keys():
        x, y = a[name], b[name]
        if x.shape != y.shape:
            reshaped += 1
            continue
        numbers = [c for c in x.columns if c in y.columns and pd.api.types.is_numeric_dtype(x[c])
                   and not pd.api.types.is_bool_dtype(x[c]) and c != "seconds"]
        for c in numbers:  # counts too: a device's other minibatches or noise move them
            u, v = x[c].to_numpy(float), y[c].to_numpy(float)
            both = np.isfinite(u) & np.isfinite(v)
            scale = np.abs(v[both]).max(initial=0.0) or 1.0
            worst = max(worst, float(np.abs(u[both] - v[both]).max(initial=0.0) / scale))
    return worst, reshaped


def experiments_on(device: str, names: list[str]) -> int:
    """Every named experiment on the CPU and on ``device``: one line each; the number that failed."""
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name in names:
            try:
                cpu, cpu_verdicts, t_cpu = _experiment(name, "cpu", folder / "reference")
                dev, dev_verdicts, t_dev = _experiment(name, device, folder / "device")
            except Exception:  # noqa: BLE001 (the check reports every experiment, then fails)
                failed += 1
                print(f"FAIL experiment {name} on {device}:\n{traceback.format_exc(limit=-3)}")
                continue
            worst, reshaped = _largest_difference(dev, cpu)
            same = sum(a == b for a, b in zip(cpu_verdicts, dev_verdicts, strict=False))
            print(f"ok   experiment {name:14s} {len(cpu)} tables, max rel. diff {worst:8.1e}"
                  f"{f' ({reshaped} tables of another shape)' if reshaped else ''}, verdicts {same}/"
                  f"{len(cpu_verdicts)} the same  cpu {t_cpu:7.1f} s  {device} {t_dev:7.1f} s")
    return failed


def sampler_speed(device: str, chunk: int, chunks: int) -> str:
    """The sampler's networks/s on ``device`` (7-40-40-1, all 128 inputs, counting included) and the
    fraction of the device's float32 matmul throughput it reaches, both measured here: first the path
    runs take there (the fused kernel on a GPU), then torch's batched forward pass (the path of networks
    the kernel does not take) with how its chunk's time splits between drawing, the forward pass and
    counting."""
    spec = NetworkSpec(7, (40, 40))
    peak = matmul_gflops(device)
    flops = 2 * 128 * sum(i * o for i, o in spec.layer_sizes)

    def rate(sample) -> float:
        sample(0)  # compiles, allocates
        return chunk * chunks / timed(lambda: [sample(c) for c in range(chunks)])[1]

    def share(nets_per_s: float) -> str:
        gflops = nets_per_s * flops / 1e9
        return f"{nets_per_s:,.0f} nets/s, {gflops:,.0f} GFLOP/s: {gflops / peak:.1%} of peak"

    path = sampler_path(spec, device)
    runs = share(rate(lambda c: sample_chunk(spec, 0, c, chunk, device=device, batch=chunk)))
    if path == FUSED_KERNEL:  # the fastest warps and register cap (benchmarks/fused_kernel_compiled.py)

        def tuned(warps: int, cap: int | None) -> str:
            words = lambda c: fused.cube_words(spec, chunk, c, device, num_warps=warps, max_registers=cap)  # noqa: E731
            nets_per_s = rate(lambda c: FunctionCounts.from_words(words(c), 128))
            return f"{warps}{f' (<= {cap})' if cap else ''}: {nets_per_s:,.0f} nets/s"

        runs += "; by warps per network (registers per thread): " + ", ".join(
            tuned(warps, cap) for warps, cap in ((4, None), (4, 128), (8, None), (16, None)))
    batched = share(rate(lambda c: generator_counts(spec, chunk, c, device, chunk)))
    generator = torch.Generator(device=device).manual_seed(0)
    nets = FoldedNets.draw(spec, chunk, 0, device=device, generator=generator)  # allocates its matrices
    signs = nets.cube_signs().clone()  # allocates the forward pass's buffers, kept for the timed one
    split = {"draw": timed(lambda: FoldedNets.draw(spec, chunk, 0, device=device, generator=generator,
                                                   reuse=nets))[1],
             "forward": timed(nets.cube_signs)[1],
             "count": timed(lambda: FunctionCounts.from_signs(signs))[1]}
    total = sum(split.values())
    return (f"sampler on {device} in chunks of {chunk}, float32 matmul measured here {peak:,.0f} GFLOP/s; "
            f"{path}: {runs}; {TORCH_PASS}: {batched}, one chunk's time: "
            + ", ".join(f"{name} {t / total:.0%}" for name, t in split.items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the test suite's run)")
    parser.add_argument("--experiments", default="all",
                        help="comma-separated experiments to run on both devices, 'all' or 'none'")
    args = parser.parse_args()
    names = (list(EXPERIMENTS) if args.experiments == "all" else
             [] if args.experiments == "none" else args.experiments.split(","))
    for name in names:
        if name not in EXPERIMENTS:
            parser.error(f"experiment {name!r} is not allowed; choose from {', '.join(EXPERIMENTS)}")
    n, k, steps = (64, 2, 1) if args.quick else (2000, 16, 20)
    print(f"device {args.device} against cpu; torch {torch.__version__}"
          + (f", {torch.cuda.get_device_name()}" if args.device.startswith("cuda") else ""))
    failed = 0
    for name, diff, tol, t_cpu, t_dev in checks(args.device, n, k, steps):
        ok = diff <= tol
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name:62s} rel. diff {diff:9.2e} (tol {tol:.0e})  "
              f"cpu {t_cpu:8.3f} s  {args.device} {t_dev:8.3f} s  ratio {t_cpu / max(t_dev, 1e-9):6.1f}x")
    try:
        print(sampler_speed(args.device, *((1 << 12, 2) if args.quick else (1 << 20, 16))))
    except Exception:  # noqa: BLE001 (the experiments still run)
        failed += 1
        print(f"FAIL sampler speed on {args.device}:\n{traceback.format_exc(limit=-4)}")
    failed += experiments_on(args.device, names)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
