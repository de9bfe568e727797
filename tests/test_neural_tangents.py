"""nnbias' analytic kernels against a second implementation: neural-tangents' ``stax`` kernels.

The fixture ``data/neural_tangents_reference.npz`` holds neural-tangents' float64 NNGP and NTK of
every case in ``nnbias.neural_tangents_side.CASES`` with their inputs; that script made it under
JAX (``python src/nnbias/neural_tangents_side.py reference tests/data/neural_tangents_reference.npz``
in an environment with neural-tangents), so these tests need neither JAX nor neural-tangents.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from nnbias.engines.kernels import NO_NTK, KernelFn
from nnbias.engines.serial import SerialKernelFn
from nnbias.layers import LayeredSpec
from nnbias.neural_tangents_side import CASES, TANH_DEGREE
from nnbias.spec import NetworkSpec

FIXTURE = np.load(Path(__file__).parent / "data" / "neural_tangents_reference.npz")
META = json.loads(str(FIXTURE["meta"]))
BY_NAME = {case["name"]: case for case in META["cases"]}
# Relative to the largest entry. On the diagonal (a point with itself) acos near rho = 1 turns
# float64 rounding into sqrt(eps) ~ 1e-8 of the arc-cosine derivative in neural-tangents' values
# (nnbias pins rho = 1 there; ``nnbias bench kernels --neural-tangents`` shows whose diagonal is
# exact); measured up to 3e-10 here, everything else 1e-15
TOLERANCE = 1e-8


def _relative(ours: torch.Tensor, theirs: np.ndarray) -> float:
    return float(np.abs(ours.numpy() - theirs).max() / np.abs(theirs).max())


def _layered(case: dict) -> LayeredSpec:
    return LayeredSpec(tuple(case["input_shape"]), case["layers"], case["sigma_w"], case["sigma_b"],
                       bias=case["sigma_b"] > 0, parametrization=case["parametrization"])


def _mlp(case: dict) -> NetworkSpec:
    """The NetworkSpec of an MLP case: dense:W,ACT,... ,dense:1."""
    tokens = case["layers"].split(",")
    hidden = tuple(int(t.split(":")[1]) for t in tokens[:-1:2])
    return NetworkSpec(case["input_shape"][0], hidden, tokens[1], bias=case["sigma_b"] > 0,
                       sigma_w=case["sigma_w"], sigma_b=case["sigma_b"],
                       parametrization=case["parametrization"])


def _kinds(case: dict) -> list[str]:
    return ["nngp"] if any(t in NO_NTK for t in case["layers"].split(",")) else ["nngp", "ntk"]


def test_the_fixture_holds_every_case():
    """The cases the tests read are the ones the script defines (a case added there needs a new fixture)."""
    assert [c["name"] for c in META["cases"]] == [c[0] for c in CASES]
    assert META["tanh_quadrature_degree"] == TANH_DEGREE


@pytest.mark.parametrize("name", [c[0] for c in CASES if "tanh" not in c[2]])
def test_layered_kernels_equal_neural_tangents(name):
    """Every layer kind, padding, stride, readout and parametrization: NNGP and NTK of the layered
    engine equal neural-tangents' to float64 rounding."""
    case = BY_NAME[name]
    x = torch.from_numpy(FIXTURE[f"{name}/x"]).flatten(1)
    for kind in _kinds(case):
        ours = SerialKernelFn(_layered(case))(x, kind=kind)
        assert _relative(ours, FIXTURE[f"{name}/{kind}"]) < TOLERANCE, (name, kind)


@pytest.mark.parametrize("name", [c[0] for c in CASES if c[0].startswith("mlp") and "tanh" not in c[2]])
def test_mlp_kernels_equal_neural_tangents(name):
    """The MLP engine (``KernelFn``, the one the experiments use) against the same reference."""
    case = BY_NAME[name]
    x = torch.from_numpy(FIXTURE[f"{name}/x"])
    for kind in _kinds(case):
        ours = KernelFn(_mlp(case))(x, kind=kind)
        assert _relative(ours, FIXTURE[f"{name}/{kind}"]) < TOLERANCE, (name, kind)


def test_tanh_kernels_and_neural_tangents_quadrature():
    """neural-tangents computes tanh by 2-D Gauss-Hermite (``stax.ElementwiseNumerical``, 300 nodes
    here): nnbias' quadrature with the same nodes gives its values to rounding (the conventions are
    the same), and nnbias' default, tanh as a sum of erfs (exact to 1e-13 against scipy's dblquad in
    test_kernels), differs from it by that quadrature's own error at these variances (~6, the
    diagonal's rho = 1 the worst; measured 5e-8)."""
    case = BY_NAME["mlp-tanh-1"]
    x = torch.from_numpy(FIXTURE["mlp-tanh-1/x"])
    for kind in ("nngp", "ntk"):
        theirs = FIXTURE[f"mlp-tanh-1/{kind}"]
        same_rule = KernelFn(_mlp(case), method="quadrature", quadrature_nodes=TANH_DEGREE)(x, kind=kind)
        assert _relative(same_rule, theirs) < 1e-12
        assert _relative(KernelFn(_mlp(case))(x, kind=kind), theirs) < 1e-6
