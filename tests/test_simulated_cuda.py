"""The device paths on a CUDA device simulated on the CPU (tests/simulated_cuda.py): what a GPU
refuses is refused there too, and the GPU session's check passes on it."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nnbias.engines.training import CHECK_STEPS

ROOT = Path(__file__).resolve().parents[1]


def _simulated(script: str) -> Any:
    """What ``script`` prints last (one JSON document), run in a fresh process: importing
    simulated_cuda renames PyTorch's PrivateUse1 backend for the process's lifetime."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT / "src")])}
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                       check=True)
    return json.loads(r.stdout.splitlines()[-1])


# what CUDA refuses and what it allows, tried on the simulated device in a fresh process
PROBES = """
import json, torch
from simulated_cuda import simulated_cuda

def outcome(fn):
    try:
        fn()
        return "allowed"
    except RuntimeError:
        return "refused"

with simulated_cuda():
    x = torch.arange(6.0).reshape(2, 3).to("cuda")
    gpu_gen = torch.Generator(device="cuda").manual_seed(0)
    print(json.dumps({
        "device": str(x.device), "is_cuda": x.is_cuda,
        "values": (x @ x.T).cpu().tolist(),
        "mix with a CPU matrix": outcome(lambda: x + torch.ones(2, 3)),
        "CPU matrix into device matmul": outcome(lambda: torch.ones(3, 2) @ x),
        "numpy of a device tensor": outcome(lambda: x.numpy()),
        "CPU generator draws on the device": outcome(
            lambda: torch.randn(3, device="cuda", generator=torch.Generator().manual_seed(0))),
        "device generator draws on the CPU": outcome(lambda: torch.randn(3, generator=gpu_gen)),
        "CPU tensor indexed by a device tensor": outcome(lambda: torch.ones(4)[torch.tensor([1]).cuda()]),
        "device values into a CPU tensor": outcome(
            lambda: torch.zeros(4).index_put_((torch.tensor([1]),), torch.ones(1).cuda())),
        "a 0-dim CPU tensor beside a device tensor": outcome(lambda: x * torch.tensor(2.0)),
        "device tensor indexed by a CPU tensor": outcome(lambda: x[torch.tensor([1])]),
        "copy from the CPU into a device slice": outcome(lambda: x[0].copy_(torch.ones(3))),
        "device generator draws on the device": outcome(
            lambda: torch.randn(3, device="cuda", generator=gpu_gen)),
        "jvp of device tensors": outcome(lambda: torch.func.jvp(lambda w: (w * 2).sum(), (x,), (x,))),
    }))
"""


def test_the_simulated_device_refuses_what_cuda_refuses_and_computes_what_the_cpu_does():
    got = _simulated(PROBES)
    assert got.pop("device") == "simcuda:0" and got.pop("is_cuda") is True
    assert got.pop("values") == [[5.0, 14.0], [14.0, 50.0]]
    refused = {k for k, v in got.items() if v == "refused"}
    assert refused == {"mix with a CPU matrix", "CPU matrix into device matmul", "numpy of a device tensor",
                       "CPU generator draws on the device", "device generator draws on the CPU",
                       "CPU tensor indexed by a device tensor", "device values into a CPU tensor"}


# what training and sampling on the simulated device move between host and device, for 2 and for 34
# epochs, and for 2 and 8 batches of networks
INNER_LOOP_TRAFFIC = """
import json, torch
from simulated_cuda import simulated_cuda, traffic
from nnbias.engines.bayes import rejection_posterior
from nnbias.engines.ensemble import sample_ensemble
from nnbias.engines.sampler import generator_counts
from nnbias.engines.training import TrainConfig, train
from nnbias.spec import NetworkSpec

spec = NetworkSpec(7, (40, 40))
x = torch.randint(0, 2, (64, 7), generator=torch.Generator().manual_seed(0)).double()
y = (x.sum(1) > 3).long()
out = {}
with simulated_cuda():
    for optimizer, batch in [("sgd", 8), ("langevin", 16), ("adam", 64)]:
        for epochs in (2, 34):
            nets = sample_ensemble(spec, 32, torch.Generator().manual_seed(0), torch.float64, device="cuda")
            fn, params = nets.functional()
            traffic.clear()
            config = TrainConfig(optimizer, 0.01, batch, "ce", epochs, "none", temperature=0.1)
            train(fn, params, x, y, config, torch.Generator().manual_seed(1))
            out[f"{optimizer} {epochs}"] = dict(traffic)
    for draws in (512, 2048):
        traffic.clear()
        rejection_posterior(spec, x[:3].float(), y[:3].float(), 10_000, 3, draws, chunk=256, device="cuda")
        out[f"rejection {draws}"] = dict(traffic)
    generator_counts(spec, 256, 0, "cuda", 128)  # the first call puts the spec's constants there
    for batches in (2, 8):
        traffic.clear()
        generator_counts(spec, 128 * batches, 1, "cuda", 128)
        out[f"sampler {batches}"] = dict(traffic)
print(json.dumps(out))
"""


def test_training_and_sampling_on_a_device_copy_nothing_from_the_host_in_their_loops():
    """Training copies its training set over once; minibatch orders and Langevin noise are drawn on
    the device (they were drawn on the CPU and copied: 14 copies for 2 epochs of Langevin), and the
    host reads whether any network still trains every CHECK_STEPS steps (it read it every epoch: a
    wait for the device at every step of full-batch training). The sampler's batches copy nothing
    (each copied its layers' scales and the hypercube: 4 copies, each waiting for the device's queue
    to drain, as copies from pageable memory do), and rejection draws its chunks of prior networks on
    the device (drawn on the CPU and copied, a chunk each)."""
    traffic = _simulated(INNER_LOOP_TRAFFIC)
    for optimizer, batch in [("sgd", 8), ("langevin", 16), ("adam", 64)]:
        short, long = traffic[f"{optimizer} 2"], traffic[f"{optimizer} 34"]
        assert short.get("to device") == long.get("to device") == 2, traffic  # x and y
        assert long.get("to host", 0) == 0, traffic
        every = max(1, CHECK_STEPS // (64 // batch))  # epochs between reads
        assert long["syncs"] - short["syncs"] == math.ceil(34 / every) - math.ceil(2 / every), traffic
    # rejection: x and y go over once; the host reads which networks fit, once a chunk
    assert traffic["rejection 512"]["to device"] == traffic["rejection 2048"]["to device"] == 2, traffic
    assert traffic["rejection 2048"]["syncs"] - traffic["rejection 512"]["syncs"] == 6, traffic
    assert traffic["sampler 2"] == traffic["sampler 8"], traffic
    assert traffic["sampler 8"].get("to device", 0) <= 1, traffic  # the packing weights, once a call


# the fused sampler (engines.fused) on the simulated device, its kernel in Triton's interpreter
FUSED_SAMPLER = """
import json
import numpy as np
from simulated_cuda import simulated_cuda, traffic
from nnbias.engines.rng import STREAM
from nnbias.engines.sampler import sample_chunk
from nnbias.errors import NNBiasError
from nnbias.experiments.sampling import SamplingConfig
from nnbias.spec import NetworkSpec

spec = NetworkSpec(7, (40, 40), sigma_w=1.5, sigma_b=0.5)
out = {}
with simulated_cuda():
    sample_chunk(spec, 0, 0, 16, device="cuda")  # the first call puts the spec's layer tables there
    traffic.clear()
    device = sample_chunk(spec, 4, 1, 96, device="cuda")
    out["traffic"] = dict(traffic)
    out["streams"] = [SamplingConfig(s, 100, device="cuda").to_dict()["stream"] == STREAM
                      for s in (spec, NetworkSpec(7, (40, 40), "tanh"))]
    out["fits"] = []
    for s in (spec, NetworkSpec(7, (40, 40), "tanh")):  # 2^24 networks in a chunk (80 GiB here)
        try:
            SamplingConfig(s, 10**9, chunk_size=2**24, batch=2**24, device="cuda")
            out["fits"].append(True)
        except NNBiasError as e:
            out["fits"].append(str(e))
cpu = sample_chunk(spec, 4, 1, 96)
out["same"] = bool(np.array_equal(device.tables, cpu.tables) and np.array_equal(device.counts, cpu.counts))
out["functions"] = len(cpu.counts)
print(json.dumps(out))
"""


def test_the_fused_sampler_on_a_device_counts_the_cpus_networks_and_sends_back_only_the_counts():
    """A chunk on the device is the CPU's chunk, function for function and count for count (the same
    counter stream, computed in the kernel); the kernel's arguments are all on the device (the
    simulation refuses a CPU tensor), the chunk copies nothing to the device and reads back only the
    distinct tables and their counts, after one wait for ``unique``. A sampling run there records the
    CPU's stream, and torch's for an activation the kernel does not compute; its memory check counts
    what each path holds (a chunk's tables, or a batch's parameters and outputs)."""
    got = _simulated(FUSED_SAMPLER)
    assert got["fits"][0] is True and "16777216 networks of 7-40-40-1 tanh" in got["fits"][1], got
    assert got["same"] and got["functions"] > 20, got
    assert got["traffic"] == {"to host": 2, "syncs": 1}, got
    assert got["streams"] == [True, False], got


# gpu_check's speed line on the simulated device, at a tiny size (its matmul peak is not measured there)
SPEED_LINE = """
import json, sys
sys.path.insert(0, "benchmarks")
import gpu_check
from simulated_cuda import simulated_cuda

gpu_check.matmul_gflops = lambda device: 1.0
with simulated_cuda():
    print(json.dumps(gpu_check.sampler_speed("cuda", 16, 1)))
"""


def test_the_gpu_checks_speed_line_times_every_setting_of_the_fused_kernel():
    """The line a GPU session reads to pick the kernel's warps and register cap: every setting runs."""
    line = _simulated(SPEED_LINE)
    assert "fused kernel: " in line and "torch's forward pass: " in line, line
    for setting in ("4: ", "4 (<= 128): ", "8: ", "16: "):
        assert setting in line, (setting, line)


# training on the simulated device that reads "any network still training?" every step and every
# CHECK_STEPS steps, until networks stop at 100 % training accuracy at different epochs
STOPPING = """
import json, torch
import nnbias.engines.training as training
from simulated_cuda import simulated_cuda
from nnbias.engines.ensemble import sample_ensemble
from nnbias.spec import NetworkSpec

x = torch.randint(0, 2, (32, 7), generator=torch.Generator().manual_seed(0)).double()
y = (x.sum(1) > 3).long()  # the majority: networks stop between epochs 3 and 48
runs = []
with simulated_cuda():
    for check_steps in (1, training.CHECK_STEPS):
        training.CHECK_STEPS = check_steps
        for optimizer, batch, lr in [("sgd", 32, 0.5), ("momentum", 8, 0.05), ("adam", 32, 0.02)]:
            nets = sample_ensemble(NetworkSpec(7, (16,)), 24, torch.Generator().manual_seed(0), torch.float64,
                                   device="cuda")
            fn, params = nets.functional()
            config = training.TrainConfig(optimizer, lr, batch, "ce", 300, "accuracy")
            r = training.train(fn, params, x, y, config, torch.Generator().manual_seed(1))
            runs.append({"check_steps": check_steps, "optimizer": optimizer,
                         "epochs": r.epochs.cpu().tolist(), "converged": r.converged.cpu().tolist(),
                         "params": [p.cpu().flatten().tolist() for p in r.params]})
print(json.dumps(runs))
"""


def test_reading_whether_networks_still_train_less_often_changes_nothing():
    """On a device, extra epochs after every network stopped leave them as they were: the trained
    networks, their epochs and which converged are those of reading it after every step."""
    runs = _simulated(STOPPING)
    every_step, sparse = runs[:3], runs[3:]
    assert [run["check_steps"] for run in sparse] == [CHECK_STEPS] * 3 and CHECK_STEPS > 1
    for a, b in zip(every_step, sparse, strict=True):
        assert len(set(a["epochs"])) > 5 and all(a["converged"]), a["epochs"]
        assert (a["epochs"], a["converged"], a["params"]) == (b["epochs"], b["converged"], b["params"])


def _dry_run(experiments: str) -> list[str]:
    r = subprocess.run([sys.executable, "tests/simulated_cuda.py", "--quick", "--experiments", experiments],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [line for line in r.stdout.splitlines() if line.startswith(("ok ", "FAIL"))]
    assert lines and all(line.startswith("ok ") for line in lines), r.stdout
    return lines


def test_the_gpu_check_passes_on_the_simulated_device():
    """The engines and seven experiments: no tensor of a device path is left on the host (a bug the
    CPU run of the same script cannot show: ep.py writing device results into a CPU tensor fails here)."""
    lines = _dry_run("kernels,features,gap,transfer,inside,posterior,sgd-vs-bayes")
    assert sum(" experiment " in line for line in lines) == 7
    assert sum(" experiment " not in line for line in lines) == 9  # every engine's line


@pytest.mark.slow
def test_the_gpu_check_passes_on_the_simulated_device_for_every_experiment():
    lines = _dry_run("all")
    assert sum(" experiment " in line for line in lines) == 11
