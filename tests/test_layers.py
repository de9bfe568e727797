"""Layered specs: the MLP as a special case, CNN-GP/CNTK against independent references, K CNNs at once."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from nnbias.engines.ensemble import sample_ensemble
from nnbias.engines.kernels import KernelFn
from nnbias.engines.serial import (
    SerialKernelFn,
    SerialNets,
    sample_serial,
    serial_empirical_ntk,
    serial_function_counts,
)
from nnbias.engines.training import TrainConfig, train
from nnbias.engines.volumes import exact_volumes
from nnbias.errors import NNBiasError
from nnbias.estimators.frequency import goodness_of_fit
from nnbias.layers import LayeredSpec, mlp_layers
from nnbias.measures.complexity import translation_invariant
from nnbias.spec import NetworkSpec
from nnbias.tasks.boolean import hypercube, packed_to_strings


@pytest.mark.parametrize("parametrization", ["ntk", "standard"])
@pytest.mark.parametrize("activation", ["relu", "erf", "tanh"])
def test_an_mlp_is_the_special_case(parametrization, activation):
    """The layered form of a NetworkSpec MLP has the MLP engine's kernels and outputs."""
    spec = NetworkSpec(7, (40, 40), activation, sigma_w=1.3, sigma_b=0.4, parametrization=parametrization)
    x, y = torch.randn(9, 7, dtype=torch.float64), torch.randn(4, 7, dtype=torch.float64)
    layered = mlp_layers(spec)
    for a, b in zip(
        KernelFn(spec)(x, y, kind="both"), SerialKernelFn(layered)(x, y, kind="both"), strict=True
    ):
        assert torch.allclose(a, b, rtol=1e-6, atol=0)
    nets = sample_ensemble(spec, 5, torch.Generator().manual_seed(1), dtype=torch.float64)
    fn, params = nets.functional()
    assert torch.allclose(fn(params, x), SerialNets(layered, params).forward(x), rtol=1e-12, atol=1e-12)


def _patches(x: torch.Tensor, filt: int, padding, stride: int) -> torch.Tensor:
    """(N, P_out, C f^2) windows of 2-D images (N, C, H, W) by torch's unfold (an independent route)."""
    if padding == "valid":
        pad = (0, 0, 0, 0)
    else:
        total = [max((-(-s // stride) - 1) * stride + filt - s, 0) for s in x.shape[2:]]
        pad = (total[1] // 2, total[1] - total[1] // 2, total[0] // 2, total[0] - total[0] // 2)
    x = F.pad(x, pad, mode="circular" if padding == "circular" else "constant")
    return F.unfold(x, filt, stride=stride).transpose(1, 2)


@pytest.mark.parametrize("padding,stride", [("valid", 1), ("same", 1), ("circular", 1), ("same", 2)])
@pytest.mark.parametrize("readout", ["flatten", "gap"])
def test_one_linear_convolution_matches_its_closed_form(padding, stride, readout):
    """One linear conv layer then a readout: K = s_w^2 mean(h) + s_b^2 with the hidden covariance
    h_ij = s_w^2 patch_i . patch'_j / (C f^2) + s_b^2 (mean over the diagonal for flatten, over all pairs
    for gap) and Theta = K + s_w^2 mean(h), to 1e-10 in float64."""
    sw, sb, c, filt = 1.4, 0.3, 2, 3
    spec = LayeredSpec((c, 5, 6), f"conv2d:7:{filt}:{padding}:{stride},linear,{readout},dense:1", sw, sb)
    x1, x2 = torch.randn(4, c * 30, dtype=torch.float64), torch.randn(3, c * 30, dtype=torch.float64)
    p1, p2 = (_patches(x.reshape(-1, c, 5, 6), filt, padding, stride) for x in (x1, x2))
    h = sw**2 * torch.einsum("aip,bjp->abij", p1, p2) / (c * filt**2) + sb**2
    mean = h.diagonal(dim1=2, dim2=3).mean(-1) if readout == "flatten" else h.flatten(2).mean(-1)
    nngp, ntk = SerialKernelFn(spec)(x1, x2, kind="both", memory=10_000)
    assert torch.allclose(nngp, sw**2 * mean + sb**2, rtol=1e-10, atol=1e-12)
    assert torch.allclose(ntk, sw**2 * mean + sb**2 + sw**2 * mean, rtol=1e-10, atol=1e-12)


CNN = "conv1d:{w}:3:1:2,relu,conv1d:{w}:3:circular,erf,{ro},dense:2"


@pytest.mark.parametrize("readout", ["flatten", "gap"])
def test_monte_carlo_kernel_of_wide_cnns_matches_cnn_gp(readout):
    """mean_k f_k(x) f_k(x') over 600 CNNs of 256 channels lies within 4.5 Monte-Carlo standard errors
    of the CNN-GP at every entry; the kernel of a wrong composition (relu in place of erf) does not.
    (Windows, padding and strides are checked exactly by the linear closed form above.)"""
    x = torch.randn(5, 2 * 9, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    wide = LayeredSpec((2, 9), CNN.format(w=256, ro=readout), 1.2, 0.2)
    nets = sample_serial(wide, 600, torch.Generator().manual_seed(3), torch.float64)
    with torch.no_grad():
        out = nets.forward(x)  # (K, N, 2)
    prods = torch.einsum("kio,kjo->kij", out, out) / 2
    mc, se = prods.mean(0), prods.std(0) / math.sqrt(prods.shape[0])

    def worst_z(layers: str) -> float:
        return float(((mc - SerialKernelFn(LayeredSpec((2, 9), layers, 1.2, 0.2))(x)) / se).abs().max())

    assert worst_z(CNN.format(w=1, ro=readout)) <= 4.5
    assert worst_z(CNN.format(w=1, ro=readout).replace("erf", "relu")) > 4.5


def test_empirical_ntk_of_cnns_converges_to_the_cntk_at_rate_width_to_minus_half():
    """Relative distance of single networks' empirical NTKs from the CNTK, widths 16..1024: slope of
    log(error) against log(width) within -0.5 +- 0.2 (Jacot et al.; a fixed offset would give 0)."""
    x = torch.randn(5, 16, dtype=torch.float64)
    exact = SerialKernelFn(
        LayeredSpec((2, 8), "conv1d:1:3:same,relu,conv1d:1:3:circular:2,relu,gap,dense:1")
    )(x, kind="ntk")
    widths, errors = (16, 64, 256, 1024), []
    for w in widths:
        spec = LayeredSpec((2, 8), f"conv1d:{w}:3:same,relu,conv1d:{w}:3:circular:2,relu,gap,dense:1")
        errors.append(
            np.mean(
                [
                    float((serial_empirical_ntk(spec, x, seed=s) - exact).norm() / exact.norm())
                    for s in range(8)
                ]
            )
        )
    slope = np.polyfit(np.log(widths), np.log(errors), 1)[0]
    assert -0.7 <= slope <= -0.3, (slope, errors)


def test_blocks_and_symmetry_do_not_change_the_kernel():
    """A tiny memory budget (many blocks, upper triangle mirrored) gives the one-block Gram matrix."""
    spec = LayeredSpec((1, 4, 4), "conv2d:3:2:valid,relu,conv2d:3:2:same,relu,gap,dense:1", 1.1, 0.5)
    x = torch.randn(11, 16, dtype=torch.float64)
    whole = SerialKernelFn(spec)(x, kind="ntk")
    tiled = SerialKernelFn(spec)(x, kind="ntk", memory=20_000)
    assert torch.allclose(whole, tiled, rtol=1e-12, atol=1e-12)
    assert torch.equal(tiled, tiled.T)
    # a second input set equal to the first is not known to be the same: only rounding may differ
    assert torch.allclose(SerialKernelFn(spec)(x, x.clone(), kind="ntk"), whole, rtol=1e-7, atol=0)


def test_layered_sampler_matches_exact_perceptron_volumes():
    """P(f) of a layered perceptron (dense:1) on {0,1}^2 against the exact Gaussian solid angles."""
    spec = NetworkSpec(2, (), "relu")
    counts = serial_function_counts(mlp_layers(spec), hypercube(2), 40_000, seed=5, chunk=10_000)
    seen = dict(zip(packed_to_strings(counts.tables, 2), counts.counts, strict=True))
    volumes = {vol.truth_table: float(vol.probability) for vol in exact_volumes(spec)}
    keys = sorted(volumes)
    observed = np.array([seen.get(k, 0) for k in keys])
    assert observed.sum() == 40_000 and set(seen) <= set(volumes)
    _, _, p = goodness_of_fit(observed, np.array([volumes[k] for k in keys]))
    assert p > 1e-3


def test_k_cnns_train_at_once_as_each_would_alone():
    """Ten-class softmax training of 3 CNNs stacked equals training each on its own (full batch)."""
    spec = LayeredSpec((1, 8, 8), "conv2d:4:3:same,relu,gap,dense:10", parametrization="standard")
    x, y = torch.randn(30, 64), torch.randint(0, 10, (30,))
    nets = sample_serial(spec, 3, torch.Generator().manual_seed(0), torch.float64)
    fn, params = nets.functional()
    config = TrainConfig("adam", 0.01, None, "ce", 20, "none")
    together = train(fn, params, x, y.double(), config)
    for k in range(3):
        alone = train(fn, [p[k : k + 1] for p in params], x, y.double(), config)
        for a, b in zip(together.params, alone.params, strict=True):
            assert torch.allclose(a[k : k + 1], b, rtol=1e-10, atol=1e-12)
        assert together.accuracy[k] == alone.accuracy[0]
    assert (
        together.losses
        < train(fn, params, x, y.double(), TrainConfig("adam", 0.01, None, "ce", 1, "none")).losses
    ).all()


@pytest.mark.parametrize(
    "layers,shape,message",
    [
        ("conv1d:4:9:valid,relu,flatten,dense:1", (1, 8), "filter 9 is larger than the input (8)"),
        ("conv1d:0:3,relu,flatten,dense:1", (1, 8), "channels"),
        ("conv1d:4:3:diagonal,flatten,dense:1", (1, 8), "padding='diagonal'"),
        ("conv2d:4:3,relu,flatten,dense:1", (1, 8), "conv1d"),
        ("dense:4,relu,dense:1", (1, 8), "put flatten or gap before it"),
        ("conv1d:4:3,relu,flatten", (1, 8), "ends with its dense readout"),
        ("gap,dense:1", (8,), "gap needs a spatial input"),
        ("maxpool,dense:1", (8,), "layer 'maxpool' is not allowed"),
    ],
)
def test_bad_layer_descriptions_name_the_layer(layers, shape, message):
    with pytest.raises(NNBiasError, match=message.replace("(", r"\(").replace(")", r"\)")):
        LayeredSpec(shape, layers)


def test_translation_invariance_of_image_functions():
    images = hypercube(9).numpy().astype(int)
    tables = [
        "".join(map(str, col))
        for col in (
            np.zeros(512, int),
            images[:, 0],
            (images.sum(1) > 4).astype(int),
            (images.reshape(-1, 3, 3)[:, 0, :].sum(1) == 3).astype(int),
        )
    ]
    assert translation_invariant(tables, 3, 3).tolist() == [True, False, True, False]


def test_stacked_convolutions_match_torch_conv_one_network_at_a_time():
    """K networks' forward pass (windows times filters, batched over networks) against torch's conv2d
    with the same explicit padding, each network alone: SAME with stride 2 pads (1, 1) rows, (0, 1)
    columns of a 5x6 image (lax's convention), CIRCULAR wraps."""
    spec = LayeredSpec((2, 5, 6), "conv2d:4:3:same:2,relu,conv2d:3:2:circular,flatten,dense:1", sigma_b=0.5,
                       parametrization="standard")
    nets = sample_serial(spec, 3, torch.Generator().manual_seed(0), torch.float64)
    x = torch.randn(7, 60, dtype=torch.float64)
    p = nets.params
    for k in range(3):
        h = F.conv2d(F.pad(x.reshape(7, 2, 5, 6), (0, 1, 1, 1)), p[0][k], p[1][k], stride=2).relu()
        h = F.conv2d(F.pad(h, (0, 1, 0, 1), mode="circular"), p[2][k], p[3][k]).flatten(1)
        assert torch.allclose(nets.forward(x)[k], (h @ p[4][k].T + p[5][k])[:, 0], rtol=1e-12, atol=1e-12)
