import math

import numpy as np
import pytest
import torch

from nnbias.engines.cube import FUSED_ACTIVATIONS
from nnbias.engines.ensemble import sample_ensemble
from nnbias.engines.sampler import FoldedNets, FunctionCounts, sample_chunk, truth_tables
from nnbias.engines.volumes import exact_volumes
from nnbias.estimators.frequency import goodness_of_fit
from nnbias.executor import LocalExecutor
from nnbias.spec import NetworkSpec
from nnbias.tasks.boolean import hypercube, packed_to_strings


def counts_of(spec, chunks, size, seed=0):
    parts = [sample_chunk(spec, seed, c, size) for c in range(chunks)]
    fc = FunctionCounts.merge(parts)
    return dict(zip(packed_to_strings(fc.tables, spec.input_dim), fc.counts.tolist(), strict=True))


@pytest.mark.parametrize("activation", ["relu", "tanh", "erf", "gelu", "sign", "step", "linear"])
@pytest.mark.parametrize("prior", ["gaussian", "uniform"])
def test_batched_forward_equals_one_network_at_a_time(activation, prior):
    spec = NetworkSpec(4, (6, 5), activation, prior=prior, sigma_b=0.5, encoding="pm1")
    nets = sample_ensemble(spec, 7, torch.Generator().manual_seed(1), dtype=torch.float64)
    x = hypercube(4, "pm1", torch.float64)
    batched = nets.forward(x)
    act = {"relu": torch.relu, "tanh": torch.tanh, "erf": torch.erf, "sign": torch.sign,
           "gelu": torch.nn.functional.gelu,
           "step": lambda z: (z > 0).double(), "linear": lambda z: z}[activation]
    for k in range(7):
        h = x
        layers = zip(nets.weights, nets.biases, nets.scales, nets.bias_scales, strict=True)
        for layer, (w, b, s, bs) in enumerate(layers):
            h = h @ (s * w[k]).T + bs * b[k]
            if layer < spec.depth:
                h = act(h)
        assert torch.allclose(batched[k], h[:, 0], atol=1e-12)


def test_prior_scales():
    spec = NetworkSpec(7, (40,), prior="uniform", sigma_w=2.0, sigma_b=0.5)
    nets = sample_ensemble(spec, 2000, torch.Generator().manual_seed(0), dtype=torch.float64)
    w1 = nets.weights[0] * nets.scales[0]
    assert w1.abs().max() <= 2.0 * math.sqrt(3 / 7)
    assert w1.var().item() == pytest.approx(4.0 / 7, rel=0.02)
    assert (nets.biases[0] * nets.bias_scales[0]).var().item() == pytest.approx(0.25, rel=0.02)
    g = sample_ensemble(NetworkSpec(10, (30,)), 3000, torch.Generator().manual_seed(0))
    assert (g.weights[0] * g.scales[0]).var().item() == pytest.approx(0.1, rel=0.02)


@pytest.mark.parametrize("activation", ["relu", "tanh", "erf", "gelu", "sign", "step", "linear"])
@pytest.mark.parametrize(("prior", "bias", "hidden"), [("gaussian", True, (6, 5)), ("uniform", True, (6,)),
                                                       ("gaussian", False, (6, 5)), ("gaussian", True, ())])
def test_folded_networks_compute_what_the_ensemble_computes(activation, prior, bias, hidden):
    """The sampler's bias-folded layout (constant unit carried through act(1)) against the
    plain per-layer forward of the same parameters."""
    spec = NetworkSpec(4, hidden, activation, prior=prior, bias=bias, sigma_b=0.5, encoding="pm1")
    x = hypercube(4, "pm1")
    for generator in (None, torch.Generator().manual_seed(5)):  # counter stream (CPU), torch's (GPU path)
        nets = FoldedNets.draw(spec, 9, key=5, first_net=3, generator=generator)
        assert torch.allclose(nets.forward(x), nets.as_ensemble().forward(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("activation", FUSED_ACTIVATIONS)
@pytest.mark.parametrize(("encoding", "bias", "hidden", "n"),
                         [("01", True, (40, 40), 7), ("pm1", True, (6, 5, 4), 5), ("01", False, (9,), 3),
                          ("pm1", True, (), 4), ("01", True, (3,), 1), ("01", True, (20,), 10)])
def test_cube_tables_are_the_signs_of_forward(activation, encoding, bias, hidden, n):
    """The compiled loop (subset-sum first layer, BLAS products, readout straight to bits) against the
    plain batched forward on ``hypercube`` and np.packbits: equal except where an output is within
    rounding of 0."""
    spec = NetworkSpec(n, hidden, activation, bias=bias, sigma_b=0.5, encoding=encoding)
    nets = FoldedNets.draw(spec, 300, key=3)
    tables = nets.cube_tables()
    outputs = nets.forward(hypercube(n, encoding)).clone()
    differ = np.unpackbits(tables, axis=1, count=2**n) != (outputs.numpy() > 0)
    near_zero = (outputs.abs() <= 1e-5 * outputs.abs().amax(dim=1, keepdim=True)).numpy()
    assert not (differ & ~near_zero).any()
    assert differ.mean() < 1e-3 and len(np.unique(tables, axis=0)) > 1


@pytest.mark.parametrize("prior", ["gaussian", "uniform"])
@pytest.mark.parametrize("torch_generator", [False, True])
def test_folded_networks_have_the_prior_scales(prior, torch_generator):
    spec = NetworkSpec(7, (40, 30), "tanh", prior=prior, sigma_w=2.0, sigma_b=0.5)
    generator = torch.Generator().manual_seed(1) if torch_generator else None
    nets = FoldedNets.draw(spec, 500, key=1, generator=generator).as_ensemble()
    for w, b, bs, fan_in in zip(nets.weights, nets.biases, nets.bias_scales, (7, 40, 30), strict=True):
        # 4 standard errors of a sample variance: sqrt(2 / count) relative
        assert w.double().var().item() == pytest.approx(4.0 / fan_in, rel=4 * math.sqrt(2 / w.numel()))
        assert (b * bs).double().var().item() == pytest.approx(0.25, rel=4 * math.sqrt(2 / b.numel()))
        if prior == "uniform":
            assert w.abs().max() <= 2.0 * math.sqrt(3 / fan_in)


def test_truth_tables_do_not_depend_on_the_batch():
    spec = NetworkSpec(5, (16, 16))
    assert np.array_equal(truth_tables(spec, 1000, 9, batch=7), truth_tables(spec, 1000, 9, batch=256))


@pytest.mark.parametrize("spec", [
    NetworkSpec(2, (), prior="uniform", sigma_w=1.0, sigma_b=1 / math.sqrt(2)),
    NetworkSpec(3, (), sigma_b=0.7),
    NetworkSpec(3, (), bias=False, encoding="pm1", prior="uniform"),
], ids=["cube-2", "gauss-3", "pm1-nobias-3"])
def test_sampler_agrees_with_exact_volumes(spec):
    """Chi-square test of 1M samples against every function's exact volume."""
    exact = {v.truth_table: v.probability for v in exact_volumes(spec)}
    seen = counts_of(spec, 16, 2**16, seed=11)
    assert set(seen) <= {t for t, p in exact.items() if p > 0}
    tables = sorted(exact)
    _, _, p = goodness_of_fit(np.array([seen.get(t, 0) for t in tables]),
                              np.array([exact[t] for t in tables]))
    assert p > 1e-3


def test_uniform_t_for_bias_free_perceptron_and_not_with_hidden_layers():
    n = 6
    uniform = np.append(np.full(2**n, 2.0**-n), 0)
    for spec, expect_uniform in ((NetworkSpec(n, (), bias=False), True),
                                 (NetworkSpec(n, (), bias=False, prior="uniform"), True),
                                 (NetworkSpec(n, (20,), bias=False), False)):
        seen = counts_of(spec, 4, 50_000, seed=5)
        hist = np.zeros(2**n + 1)
        for t, c in seen.items():
            hist[t.count("1")] += c
        p = goodness_of_fit(hist, uniform)[2]
        assert (p > 1e-3) == expect_uniform


def test_chunks_are_reproducible_and_independent_of_threads():
    spec = NetworkSpec(5, (16, 16))
    a = sample_chunk(spec, 3, 2, 5000)
    b = sample_chunk(spec, 3, 2, 5000)
    c = sample_chunk(spec, 3, 3, 5000)
    assert np.array_equal(a.tables, b.tables) and np.array_equal(a.counts, b.counts)
    assert not np.array_equal(a.counts, c.counts)
    one = FunctionCounts.merge([r for _, r in LocalExecutor(1).map_unordered(
        lambda i: sample_chunk(spec, 3, i, 3000), range(6))])
    two = FunctionCounts.merge([r for _, r in LocalExecutor(2).map_unordered(
        lambda i: sample_chunk(spec, 3, i, 3000), range(6))])
    assert np.array_equal(one.tables, two.tables) and np.array_equal(one.counts, two.counts)


def test_merge_sums_counts():
    a = FunctionCounts(np.array([[1], [2]], np.uint8), np.array([3, 4]))
    b = FunctionCounts(np.array([[2], [5]], np.uint8), np.array([10, 1]))
    m = FunctionCounts.merge([a, b])
    assert m.tables[:, 0].tolist() == [1, 2, 5] and m.counts.tolist() == [3, 14, 1]


@pytest.mark.parametrize("hidden", [(6,), (6, 5)])
def test_cube_tables_when_every_unit_is_dead(hidden):
    """A first layer that is zero on every input (ReLU, no bias): every later sum is exactly 0, which is
    not > 0, as in ``forward``."""
    spec = NetworkSpec(4, hidden, "relu", bias=False)
    nets = FoldedNets.draw(spec, 50, key=2)
    nets.mats[0].abs_().neg_()  # every first-layer weight <= 0: zero on {0, 1}^4
    nets.mats[-1].abs_()
    nets.mats[-1][::2].neg_()
    expected = np.packbits(nets.forward(hypercube(4)).numpy() > 0, axis=1)
    assert np.array_equal(nets.cube_tables(), expected) and not expected.any()


@pytest.mark.parametrize("width", [1, 5, 8, 16, 63, 64, 65, 128, 512])
def test_counting_on_the_device_equals_packbits_and_np_unique(width):
    """``from_signs`` (torch packing, torch.unique) against numpy's packbits + unique, with many
    repeated rows, for table widths below, at and beyond one 64-bit word."""
    gen = torch.Generator().manual_seed(width)
    distinct = torch.rand(12, width, generator=gen) > 0.5
    signs = distinct[torch.randint(0, 12, (3000,), generator=gen)]
    got = FunctionCounts.from_signs(signs)
    want = FunctionCounts.from_packed(np.packbits(signs.numpy(), axis=1))
    assert np.array_equal(got.tables, want.tables) and np.array_equal(got.counts, want.counts)
    assert got.counts.sum() == 3000


def test_generator_path_counts_its_networks_signs():
    """The GPU path (torch's generator, device packing and counting), run on the CPU: the same
    counts as packbits of the same networks' forward signs, and whole batches or many give one
    answer."""
    from nnbias.engines.sampler import generator_counts

    spec = NetworkSpec(5, (12,), "tanh", sigma_b=0.4)
    got = generator_counts(spec, 2000, 11, "cpu", batch=2000)
    nets = FoldedNets.draw(spec, 2000, 11, generator=torch.Generator().manual_seed(11))
    want = FunctionCounts.from_packed(np.packbits((nets.forward(hypercube(5)) > 0).numpy(), axis=1))
    assert np.array_equal(got.tables, want.tables) and np.array_equal(got.counts, want.counts)
    batched = generator_counts(spec, 2000, 11, "cpu", batch=300)
    assert batched.counts.sum() == 2000 and len(batched.counts) > 10


def test_generator_path_matches_exact_volumes():
    """The GPU path's frequencies against the exact volumes of a 3-input perceptron (chi-square)."""
    from nnbias.engines.sampler import generator_counts

    spec = NetworkSpec(3, (), sigma_b=0.7)
    exact = {v.truth_table: v.probability for v in exact_volumes(spec)}
    fc = generator_counts(spec, 200_000, 5, "cpu", batch=50_000)
    seen = dict(zip(packed_to_strings(fc.tables, 3), fc.counts, strict=True))
    tables = sorted(exact)
    _, _, p = goodness_of_fit(np.array([seen.get(t, 0) for t in tables]),
                              np.array([exact[t] for t in tables]))
    assert p > 1e-3
