"""Convolutional kernels and CNN ensembles: ``python benchmarks/bench_cnn.py [inputs] [networks]``.

1. CNN-GP/CNTK (``engines.serial.SerialKernelFn``) of MNIST-1D's ConvBase (three stride-2
   convolutions), flatten and global-average-pool readouts, float32 and float64: time per kernel
   entry and the peak memory of the process (each measured in a fresh child process, so one
   figure's allocations do not hide another's), with a small and the default memory budget.
   Baseline in the same run: the Monte-Carlo NNGP of wide finite networks of the same spec
   (256 channels), its time per entry and its distance from the analytic kernel.
2. K CNNs trained at once (one batched matmul over networks, ``engines.training.train``) against
   the same K trained one at a time with the same code (runs/s, ratio).
"""

import json
import subprocess
import sys
import time

import torch

CONVS = "conv1d:{w}:5:1:2,relu,conv1d:{w}:3:1:2,relu,conv1d:{w}:3:1:2,relu,{ro},dense:10"

def measure(n: int, readout: str, dtype: str, memory: int, mc: int, path: str) -> None:
    """In a child process: one kernel's time and the peak memory it added; the kernel saved to ``path``."""
    import resource

    from nnbias.engines.serial import SerialKernelFn, serial_monte_carlo_nngp
    from nnbias.layers import LayeredSpec
    from nnbias.tasks.datasets import mnist1d

    torch.set_num_threads(1)
    x = mnist1d().x_train[:n]
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    spec = LayeredSpec((1, 40), CONVS.format(w=256 if mc else 1, ro=readout))
    start = time.perf_counter()
    if mc:
        k = serial_monte_carlo_nngp(spec, x, networks=mc, dtype=getattr(torch, dtype))
    else:
        k = SerialKernelFn(spec)(x, kind="both", memory=memory, dtype=getattr(torch, dtype))[0]
    seconds = time.perf_counter() - start
    torch.save(k, path)
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak}))


def child(n: int, readout: str, dtype: str, memory: int, mc: int, path: str) -> dict:
    args = [sys.executable, __file__, "--child", str(n), readout, dtype, str(memory), str(mc), path]
    out = subprocess.run(args, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def kernels(n: int, networks: int) -> None:
    entries = n * n
    print(f"CNN-GP/CNTK of MNIST-1D's ConvBase on {n} inputs ({entries:,} entries, NNGP and NTK together), "
          "1 thread")
    for readout in ("flatten", "gap"):
        exact_path = f"/tmp/bench_cnn_{readout}.pt"
        for dtype, memory in (("float64", 2**28), ("float32", 2**28), ("float64", 2**24)):
            r = child(n, readout, dtype, memory, 0, exact_path if dtype == "float64" else "/tmp/bench_x.pt")
            per_entry = 1e6 * r["seconds"] / entries
            print(f"  {readout:8s} {dtype}  budget {memory / 2**20:6.0f} MiB: {per_entry:8.2f} us/entry, "
                  f"peak +{r['peak_mb']:7.1f} MB")
        r = child(n, readout, "float64", 2**28, networks, "/tmp/bench_mc.pt")
        exact, mc = torch.load(exact_path), torch.load("/tmp/bench_mc.pt")
        error = float((mc - exact).norm() / exact.norm())
        print(f"  {readout:8s} baseline: Monte Carlo, {networks} networks of 256 channels: "
              f"{1e6 * r['seconds'] / entries:8.2f} us/entry, relative error {error:.3f}")


def ensembles(k: int, steps: int) -> None:
    from nnbias.engines.serial import sample_serial
    from nnbias.engines.training import TrainConfig, train
    from nnbias.layers import LayeredSpec
    from nnbias.tasks.datasets import mnist1d

    torch.set_num_threads(1)
    task = mnist1d()
    x, y = task.x_train.float(), task.y_train
    spec = LayeredSpec((1, 40), CONVS.format(w=25, ro="flatten"), 1.0, 0.1, parametrization="standard")
    nets = sample_serial(spec, k, torch.Generator().manual_seed(0))
    fn, params = nets.functional()
    config = TrainConfig("adam", 0.01, 100, "ce", max(1, steps * 100 // len(y)), "none")
    start = time.perf_counter()
    train(fn, params, x, y, config, torch.Generator().manual_seed(1))
    batched = k / (time.perf_counter() - start)
    start = time.perf_counter()
    for i in range(k):
        train(fn, [p[i:i + 1] for p in params], x, y, config, torch.Generator().manual_seed(1))
    loop = k / (time.perf_counter() - start)
    print(f"{k} ConvBase CNNs, Adam, {config.max_epochs} epochs of minibatches of 100 on MNIST-1D, 1 thread:")
    print(f"  batched (windows x filters)    {batched:8.3f} runs/s")
    print(f"  one network at a time          {loop:8.3f} runs/s")
    print(f"  ratio {batched / loop:.1f}x")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        n, readout, dtype, memory, mc, path = sys.argv[2:]
        measure(int(n), readout, dtype, int(memory), int(mc), path)
        sys.exit()
    args = [int(a) for a in sys.argv[1:]]
    kernels(args[0] if args else 400, args[1] if len(args) > 1 else 200)
    ensembles(16, 400)
