"""Counts beyond what the device holds are refused before anything is allocated, in one line.

Each case asks for more than this machine has (its available RAM, read from /proc/meminfo), with
tensors that cost nothing to hold (a few inputs, or parameters that are stride-0 views of one
network), and checks that the refusal names the count; the same calls within memory pass."""

import pytest
import torch

from nnbias.engines.empirical import structured_ntk
from nnbias.engines.ensemble import Ensemble, layer_scales, sample_ensemble
from nnbias.engines.memory import check_fits, check_gram_fits, device_bytes
from nnbias.engines.training import TrainConfig, train
from nnbias.errors import NNBiasError
from nnbias.spec import NetworkSpec


def test_available_memory_is_positive_and_at_most_the_machine():
    with open("/proc/meminfo") as f:
        total = f.readline().split()[1]  # MemTotal, kB
    assert 0 < device_bytes("cpu") <= int(total) * 1024


def test_a_buffer_just_beyond_the_device_is_refused_and_one_within_passes():
    per_net = 1000
    fit = device_bytes("cpu") // (4 * per_net)
    check_fits(fit // 2, per_net, torch.float32, "cpu", "a test network")
    with pytest.raises(NNBiasError, match=rf"^{2 * fit} networks of a test network \(1000 numbers each\) "
                                          rf"need .* GiB, more than the .* GiB free on this machine; at "
                                          rf"most \d+ fit at once"):
        check_fits(2 * fit, per_net, torch.float32, "cpu", "a test network")
    with pytest.raises(NNBiasError, match="not even one fits"):
        check_fits(1, 2 * device_bytes("cpu"), torch.uint8, "cpu", "a test network")


def test_a_gram_matrix_beyond_the_device_is_refused_with_the_largest_that_fits():
    side = int((device_bytes("cpu") // 8) ** 0.5)
    check_gram_fits("n", side // 2, side // 2, torch.float64, "cpu")
    with pytest.raises(NNBiasError, match=rf"^n={2 * side} is not allowed: its {2 * side} x {2 * side} Gram "
                                          r"matrix needs .* \(a square one fits up to \d+ points\)"):
        check_gram_fits("n", 2 * side, 2 * side, torch.float64, "cpu")


def _views(spec: NetworkSpec, k: int) -> Ensemble:
    """k copies of one network as stride-0 views: k networks' shapes at one network's memory."""
    one = sample_ensemble(spec, 1, torch.Generator().manual_seed(0))
    scales, bias_scales = (list(t) for t in zip(*layer_scales(spec), strict=True))
    return Ensemble(spec, [w.expand(k, -1, -1) for w in one.weights],
                    [b.expand(k, -1) for b in one.biases], scales, bias_scales)


def test_networks_beyond_memory_are_refused_before_they_are_drawn():
    spec = NetworkSpec(7, (40, 40))
    k = 2 * device_bytes("cpu") // (4 * spec.n_params)
    with pytest.raises(NNBiasError, match=rf"^{k} networks of 7-40-40-1 relu"):
        sample_ensemble(spec, k, torch.Generator().manual_seed(0))


def test_activations_beyond_memory_are_refused_before_the_forward_pass():
    nets = sample_ensemble(NetworkSpec(1, (1000,)), 1, torch.Generator().manual_seed(0))
    n = device_bytes("cpu") // (4 * 1000) + 1  # one layer of activations of these inputs fills the RAM
    x = torch.zeros(n, 1)
    with pytest.raises(NNBiasError, match=rf"^1 networks of 1-1000-1 .* on {n} inputs \(activations and "
                                          "gradients\\)"):
        nets.forward(x, inplace=False)
    with torch.no_grad(), pytest.raises(NNBiasError, match=rf"on {n} inputs \(activations\)"):
        nets.forward(x)
    with pytest.raises(NNBiasError, match="the NTK's layer inputs"):
        structured_ntk(nets, x[:n // 10])  # its (N, N) matrix alone is far beyond
    assert nets.forward(x[:10], inplace=False).shape == (1, 10)


def test_training_state_beyond_memory_is_refused_before_it_is_allocated():
    spec = NetworkSpec(5, (64,))
    k = 2 * device_bytes("cpu") // (4 * spec.n_params)  # views: they hold one network's memory
    nets = _views(spec, k)
    with pytest.raises(NNBiasError, match=rf"^{k} networks of 5-64-1 .* \(a copy of the parameters"):
        nets.functional()
    fn, params = _views(spec, 3).functional()
    x, y = torch.zeros(4, 5), torch.zeros(4)
    big = [q[:1].expand(k, *q.shape[1:]) for q in params]
    with pytest.raises(NNBiasError, match=rf"^{k} networks of {spec.n_params} parameters \(training"):
        train(lambda p, x: torch.zeros(p[0].shape[0], x.shape[0]), big, x, y,
              TrainConfig("sgd", 0.1, None, "mse", 1, "none"))


def test_a_benchmark_case_that_fails_in_its_spawned_child_is_reported_by_the_parent():
    from nnbias.bench import _measure

    with pytest.raises(NNBiasError, match=r"^benchmark case 'empirical' at n=1000000 failed: 1 networks of "
                                          r"32-512-512-512-1 .* \(the NTK's layer inputs"):
        _measure("empirical", 10**6, "float32")


def test_a_benchmark_child_killed_before_it_answers_is_one_line():
    """The benchmark's child killed from outside (as the kernel's OOM killer would) before it answers:
    the parent names the case and the exit code instead of waiting forever."""
    import multiprocessing
    import os
    import signal
    import threading
    import time

    from nnbias.bench import _measure

    errors: list[str] = []

    def measure() -> None:
        try:
            _measure("analytic", 3000, "float64")
        except NNBiasError as err:
            errors.append(str(err))

    waiting = threading.Thread(target=measure)
    waiting.start()
    deadline = time.monotonic() + 60
    while not multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(multiprocessing.active_children()[0].pid, signal.SIGKILL)  # still importing torch: no answer
    waiting.join(60)
    assert errors == ["benchmark case 'analytic' at n=3000 died (exit code -9) before it answered; "
                      "try a smaller n"]


def test_activations_count_every_layer_output_below_the_readout():
    from nnbias.layers import LayeredSpec

    assert NetworkSpec(7, (40, 30)).activations == 2 * (40 + 30)  # pre- and post-activation
    assert NetworkSpec(7).activations == 0  # a perceptron keeps none
    cnn = LayeredSpec((1, 8, 8), "conv2d:4:3:same:2,relu,conv2d:6:3:same:2,relu,flatten,dense:10")
    assert cnn.activations == 2 * 4 * 4 * 4 + 2 * 6 * 2 * 2  # 8x8 -> 4x4 -> 2x2; flatten is a view
    assert LayeredSpec((9,), "dense:14,relu,dense:1").activations == 28
