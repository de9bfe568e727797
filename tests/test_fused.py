"""The GPU sampler's Triton kernel (engines.fused), run by Triton's interpreter on the CPU: the same
truth tables as the CPU sampler for the same key, over the networks and priors it takes.

The interpreter is chosen where a kernel is defined, so the variable is set before anything imports
``engines.fused_kernel`` in this process (only ``fused.cube_words`` imports it, and only these tests
call it on the CPU).
"""

import os

os.environ["TRITON_INTERPRET"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from nnbias.engines import fused  # noqa: E402
from nnbias.engines.sampler import truth_tables  # noqa: E402
from nnbias.errors import NNBiasError  # noqa: E402
from nnbias.spec import NetworkSpec  # noqa: E402

pytest.importorskip("triton")


def _tables(spec: NetworkSpec, k: int, key: int, first_net: int = 0) -> np.ndarray:
    words = fused.cube_words(spec, k, key, "cpu", first_net=first_net)
    return words.numpy().view(np.uint8)[:, :(2**spec.input_dim + 7) // 8]


@pytest.mark.parametrize("spec", [
    NetworkSpec(7, (40, 40), sigma_w=1.5, sigma_b=0.4),  # the papers' network: units in tiles of 32 + 16
    NetworkSpec(7, ()),  # a perceptron: the readout straight on the inputs
    NetworkSpec(3, (5,)),  # 8 inputs in a block of 16 rows, one partly filled word
    NetworkSpec(8, (20, 40), prior="uniform"),  # two blocks of 128 inputs, hidden layers of two widths
    NetworkSpec(5, (40,), "sign", encoding="pm1"),
    NetworkSpec(6, (36, 24, 36), "step", bias=False),
    NetworkSpec(6, (64, 64), sigma_b=0.1),  # one tile of 64
    NetworkSpec(4, (16,), "linear", prior="uniform", sigma_b=2.0),
], ids=lambda spec: spec.describe())
def test_the_kernel_computes_the_cpu_samplers_truth_tables(spec):
    """Networks 3..34 of a key, each table against ``truth_tables``'s (numba's stream, the compiled
    CPU loop): a number drawn, placed or scaled differently changes a table (checked below)."""
    got = _tables(spec, 32, 20261208, first_net=3)
    want = truth_tables(spec, 35, 20261208)[3:]
    assert len(np.unique(want, axis=0)) > 3  # the comparison sees different functions
    assert np.array_equal(got, want), (got != want).any(axis=1).sum()


def test_the_kernel_takes_keys_of_all_64_bits_and_another_key_gives_other_networks():
    spec = NetworkSpec(7, (40, 40))
    key = 2**63 + 12345  # the top bit travels apart from the rest
    want = truth_tables(spec, 24, key)
    assert np.array_equal(_tables(spec, 24, key), want)
    # without its top bit: other networks (a few may share a frequent function, e.g. a constant)
    assert (_tables(spec, 24, key - 2**63) != want).any(axis=1).sum() >= 12


def test_networks_the_kernel_does_not_take_are_named_and_refused():
    assert fused.unsupported(NetworkSpec(7, (40, 40))) is None
    assert "activation 'tanh'" in fused.unsupported(NetworkSpec(7, (40,), "tanh"))
    assert "wider than 64" in fused.unsupported(NetworkSpec(7, (65,)))
    assert fused.unsupported(NetworkSpec(7, (64, 64))) is None
    with pytest.raises(NNBiasError, match="cannot take the fused sampler: activation 'erf'"):
        fused.cube_words(NetworkSpec(7, (40,), "erf"), 4, 0, "cpu")


def test_without_triton_or_with_one_too_old_no_network_takes_the_kernel(monkeypatch):
    import triton.language as tl

    monkeypatch.delattr(tl, "gather")  # as in Triton 3.2 and before
    assert "has no tl.gather (3.3 and later have)" in fused.unsupported(NetworkSpec(7, (40, 40)))
    monkeypatch.setattr(fused.importlib.util, "find_spec", lambda name: None)
    assert fused.unsupported(NetworkSpec(7, (40, 40))) == "Triton is not installed"


COMPILED = """
import json
from nnbias.engines.fused import compiled_kernel
from nnbias.spec import NetworkSpec
print(json.dumps([compiled_kernel(NetworkSpec(7, (40, 40))), compiled_kernel(NetworkSpec(7, ()))]))
"""


def test_the_kernel_compiles_for_an_h100_in_registers_and_few_enough_instructions():
    """What the interpreter cannot show: Triton compiles the kernel for sm_90 (its types, its unrolled
    layers, its gathers), ptxas keeps the papers' network in registers at the default warps (at most 16
    spilled; the first version spilled 2.5 KB a thread in 4 warps), and it issues few enough
    instructions to reach the 30 % of the FFMA peak the GPU sampler aims at, at full issue (the first
    version, one hash and one logarithm per number, not per pair, on tiles of 64: 12.5 %; per pair:
    19 %; in tiles of 32 + 16: 28.5 %; the first layer by input, not a product padded to 16 inputs:
    33.5 %). In a fresh process: this module's kernels are the interpreter's."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"} | {"PYTHONPATH": str(root / "src")}
    r = subprocess.run([sys.executable, "-c", COMPILED], cwd=root, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    papers, perceptron = json.loads(r.stdout.splitlines()[-1])
    assert papers["warps"] == 4 and papers["spilled"] <= 64 and papers["shared"] > 0, papers
    useful = 128 * (7 * 40 + 40 * 40 + 40) / 32  # FFMA warp instructions of the products
    assert useful / (papers["instructions"] * papers["warps"]) >= 0.30, papers
    assert perceptron["spilled"] == 0, perceptron
