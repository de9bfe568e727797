"""The memory checks against real peaks: ``python benchmarks/bench_memory.py [scale]``.

Every experiment refuses, before a run is written, networks whose draws, training state and
activations cannot be held (``engines.memory``); the count is meant as a lower bound, so that a
refusal is never wrong. Here each case runs for real in a fresh child process (so one case's freed
pages do not hide another's) and the growth of its peak resident memory (``ru_maxrss``) from just
before its networks are drawn is printed beside what the check counts: ``train`` on the whole
training set (``memory.training_numbers``), a forward and backward pass, or a forward pass without
autograd (``memory.forward_numbers``). A ratio measured / counted of 1 or more is a lower bound that
held; how far above 1 says how much the check leaves out (temporaries it does not name). ``scale``
multiplies the inputs (default 1: about 1 GiB at most per case).
"""

import json
import subprocess
import sys

import torch

CASES = [  # (name, engine, input shape, layers or hidden widths, activation, networks, inputs, what)
    ("dense relu MLP", "ensemble", (64,), (2000, 2000), "relu", 4, 2000, "backward"),
    ("dense erf MLP", "ensemble", (64,), (2000, 2000), "erf", 4, 2000, "backward"),
    ("layered relu MLP", "layered", (64,), "dense:2000,relu,dense:2000,relu,dense:1", "", 4, 2000, "sgd"),
    ("layered relu MLP", "layered", (64,), "dense:2000,relu,dense:2000,relu,dense:1", "", 4, 2000, "adam"),
    ("layered erf MLP", "layered", (64,), "dense:2000,erf,dense:2000,erf,dense:1", "", 4, 2000, "sgd"),
    ("MNIST-1D ConvBase, 256 channels", "layered", (1, 40),
     "conv1d:256:5:1:2,relu,conv1d:256:3:1:2,relu,conv1d:256:3:1:2,relu,flatten,dense:10", "",
     4, 1000, "adam"),
    ("conv1d same, 400 channels", "layered", (1, 40),
     "conv1d:400:5:same,relu,conv1d:400:5:same,relu,flatten,dense:10", "", 4, 300, "sgd"),
    ("conv2d 3x3 same x2 + gap", "layered", (1, 28, 28),
     "conv2d:32:3:same,relu,conv2d:32:3:same,relu,gap,dense:10", "", 4, 120, "sgd"),
    ("conv2d 3x3 same x2 + gap", "layered", (1, 28, 28),
     "conv2d:32:3:same,relu,conv2d:32:3:same,relu,gap,dense:10", "", 4, 120, "backward"),
    ("conv2d 3x3 same x2 + gap", "layered", (1, 28, 28),
     "conv2d:32:3:same,relu,conv2d:32:3:same,relu,gap,dense:10", "", 4, 120, "no-grad"),
    ("conv2d tanh/erf, stride 2", "layered", (3, 16, 16),
     "conv2d:64:5:valid,tanh,conv2d:64:3:same:2,erf,flatten,dense:10", "", 4, 300, "backward"),
]


def measure(case: int, scale: float) -> None:
    """In a child process: run one case and print its counted and measured bytes."""
    import resource

    from nnbias.engines.ensemble import sample_ensemble
    from nnbias.engines.memory import forward_numbers, training_numbers
    from nnbias.engines.serial import network_fn, sample_serial
    from nnbias.engines.training import TrainConfig, train
    from nnbias.layers import LayeredSpec
    from nnbias.spec import NetworkSpec

    torch.set_num_threads(1)
    _, engine, shape, layers, activation, k, n, what = CASES[case]
    n = max(1, round(n * scale))
    if engine == "ensemble":
        spec = NetworkSpec(shape[0], layers, activation)
    else:
        spec = LayeredSpec(shape, layers)
    x = torch.randn(n, shape[0] if engine == "ensemble" else int(torch.tensor(shape).prod()))
    fn = None if engine == "ensemble" else network_fn(spec)
    if what in ("sgd", "adam"):
        counted = training_numbers(spec, n, what)
    else:
        counted = forward_numbers(n, spec.activations, spec.peak, spec.n_params, what == "backward")
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    generator = torch.Generator().manual_seed(0)
    if engine == "ensemble":
        nets = sample_ensemble(spec, k, generator)
        for t in [*nets.weights, *(b for b in nets.biases if b is not None)]:
            t.requires_grad_(True)
        nets.forward(x, inplace=False).sum().backward()
    else:
        params = list(sample_serial(spec, k, generator).params)
        if what in ("sgd", "adam"):
            y = torch.randint(0, spec.outputs, (n,)).float()
            train(fn, params, x, y, TrainConfig(what, 0.01, None, "ce", 2, "none"))
        elif what == "backward":
            fn([p.requires_grad_(True) for p in params], x).sum().backward()
        else:
            with torch.no_grad():
                fn(params, x)
    measured = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024
    print(json.dumps({"counted": k * counted * 4, "measured": measured, "inputs": n, "networks": k}))


def main(scale: float) -> None:
    print("memory checks (counted, float32) against the measured peak growth of a fresh process, 1 thread")
    print(f"  {'case':34s} {'run':10s} {'networks x inputs':>17s} {'counted':>11s} {'measured':>11s}  ratio")
    ratios = []
    for i, (name, _, _, _, _, _, _, what) in enumerate(CASES):
        out = subprocess.run([sys.executable, __file__, "--child", str(i), str(scale)],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        ratios.append(r["measured"] / r["counted"])
        run = {"sgd": "train sgd", "adam": "train adam"}.get(what, what)
        print(f"  {name:34s} {run:10s} {r['networks']:>7d} x {r['inputs']:<7d} "
              f"{r['counted'] / 2**20:7.1f} MiB {r['measured'] / 2**20:7.1f} MiB  {ratios[-1]:.2f}")
    held = sum(r >= 1 for r in ratios)
    print(f"ratio measured / counted: {min(ratios):.2f} to {max(ratios):.2f}; "
          f"the count is a lower bound in {held} of {len(ratios)} cases")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        measure(int(sys.argv[2]), float(sys.argv[3]))
        sys.exit()
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 1.0)
