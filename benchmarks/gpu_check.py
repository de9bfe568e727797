"""The prepared device check: every engine's device path against its CPU result, then its speed.

``python benchmarks/gpu_check.py [--device cuda] [--quick]`` from the repository root. For each
engine the same inputs and the same drawn parameters go through the CPU path (float64 where the
engine allows) and the device path; the script prints the largest relative difference and both
times, one line per engine, and exits non-zero if an engine disagrees beyond its tolerance. On a
machine without a GPU it runs the same code on the CPU (``--device cpu``), which is how the test
suite keeps these paths alive; ``benchmarks/gpu_sampler_check.py`` times the sampler at full size.
Meant to finish in under 5 minutes on one GPU.
"""

import argparse
import sys
import time

import torch

sys.path.insert(0, "src")

from nnbias.engines.empirical import ntk_of_function  # noqa: E402
from nnbias.engines.ensemble import sample_ensemble  # noqa: E402
from nnbias.engines.kernels import KernelFn  # noqa: E402
from nnbias.engines.sampler import sample_chunk  # noqa: E402
from nnbias.engines.serial import SerialKernelFn, SerialNets, network_fn, sample_serial  # noqa: E402
from nnbias.engines.training import TrainConfig, train  # noqa: E402
from nnbias.layers import LayeredSpec  # noqa: E402
from nnbias.spec import NetworkSpec  # noqa: E402

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
    config = TrainConfig("adam", 0.01, min(100, n), "ce", steps, "none")

    def trained(where: str):
        params = [p.to(where) for p in nets.params]
        return train(network_fn(spec), params, x_flat, labels, config, torch.Generator().manual_seed(2))

    cpu, t_cpu = timed(lambda: trained("cpu"))
    dev, t_dev = timed(lambda: trained(device))
    worst = max(relative(a, b) for a, b in zip(dev.params, cpu.params, strict=True))
    rows.append((f"{k} CNNs trained at once (Adam, {steps} epochs), float64", worst, 1e-6, t_cpu, t_dev))

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

    cpu, t_cpu = timed(lambda: sample_chunk(mlp7, 0, 0, 1 << 14))
    dev, t_dev = timed(lambda: sample_chunk(mlp7, 0, 0, 1 << 14, device=device))
    same = float(cpu.counts.sum() == dev.counts.sum())
    rows.append(("sampler, 16384 nets 7-40-40-1 (own RNG per device: totals only)", 1 - same, 0.0, t_cpu,
                 t_dev))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the test suite's run)")
    args = parser.parse_args()
    n, k, steps = (64, 2, 1) if args.quick else (2000, 16, 20)
    print(f"device {args.device} against cpu; torch {torch.__version__}"
          + (f", {torch.cuda.get_device_name()}" if args.device.startswith("cuda") else ""))
    failed = 0
    for name, diff, tol, t_cpu, t_dev in checks(args.device, n, k, steps):
        ok = diff <= tol
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name:62s} rel. diff {diff:9.2e} (tol {tol:.0e})  "
              f"cpu {t_cpu:8.3f} s  {args.device} {t_dev:8.3f} s  ratio {t_cpu / max(t_dev, 1e-9):6.1f}x")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
