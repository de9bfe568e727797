"""Counts beyond what the device holds are refused before anything is allocated, in one line.

Each case asks for more than this machine has (its available RAM, read from /proc/meminfo), with
tensors that cost nothing to hold (a few inputs, or parameters that are stride-0 views of one
network), and checks that the refusal names the count; the same calls within memory pass."""

import os
import re
from pathlib import Path

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


def test_activations_count_what_autograd_saves():
    from nnbias.layers import LayeredSpec, mlp_layers
    from nnbias.spec import ACTIVATIONS

    assert NetworkSpec(7, (40, 30)).activations == 40 + 30  # relu saves its output, not its input
    assert NetworkSpec(7, (40, 30), "erf").activations == 2 * (40 + 30)  # erf its input as well
    assert NetworkSpec(7).activations == 0  # a perceptron keeps none
    for activation in ACTIVATIONS:  # the dense spec's rule against the layered form's hooks
        spec = NetworkSpec(5, (100, 30), activation)
        assert spec.activations == mlp_layers(spec).activations, activation
    cnn = LayeredSpec((1, 8, 8), "conv2d:4:3:same:2,relu,conv2d:6:3:same:2,relu,flatten,dense:10")
    # 8x8 -> 4x4 -> 2x2: each convolution's windows (positions x channels in x 3x3), each relu's
    # output, and the readout's contiguous copy of its (flattened) input
    assert cnn.activations == 16 * 1 * 9 + 4 * 4 * 4 + 4 * 4 * 9 + 6 * 2 * 2 + 6 * 2 * 2
    assert LayeredSpec((9,), "dense:14,relu,dense:1").activations == 14


def test_the_peak_is_the_widest_step_of_a_forward_pass():
    from nnbias.layers import LayeredSpec

    assert NetworkSpec(7, (40, 30)).peak == 2 * 40  # pre- and post-activation
    assert NetworkSpec(7).peak == 2  # a perceptron's output
    cnn = LayeredSpec((1, 8, 8), "conv2d:4:3:same:2,relu,conv2d:6:3:same:2,relu,flatten,dense:10")
    assert cnn.peak == 4 * 4 * 4 + 4 * 4 * 9 + 6 * 2 * 2  # the second convolution's input, windows, output
    assert LayeredSpec((9,), "dense:3,relu,dense:12").peak == 3 + 12  # the readout counts


def test_a_convolution_whose_windows_do_not_fit_is_refused_before_training():
    """A convolution copies each input window out before its matmul and autograd keeps the copy, nine
    times its input for a 3x3 filter: networks whose layer outputs fit but whose windows do not are
    refused before a run, not by the allocator (or the OOM killer) inside it."""
    from nnbias.engines.memory import check_training_fits
    from nnbias.layers import LayeredSpec

    spec = LayeredSpec((1, 28, 28), "conv2d:32:3:same,relu,conv2d:32:3:same,relu,gap,dense:10")
    outputs = 4 * 32 * 28 * 28  # every layer's output below the readout, the count before windows
    windows = 28 * 28 * 9 * (1 + 32)
    assert spec.activations >= windows + 2 * 32 * 28 * 28  # both relus' outputs
    k = device_bytes("cpu") // (4 * (6 * spec.n_params + 100 * outputs)) // 2  # their outputs fit twice
    with pytest.raises(NNBiasError, match=rf"^{k} networks of .* trained by sgd on 100 inputs"):
        check_training_fits(spec, k, 100, torch.float32, "cpu")
    check_training_fits(spec, k // 4, 100, torch.float32, "cpu")


def test_a_layered_forward_pass_beyond_memory_is_refused_before_it_runs():
    """The layered networks' pure function (training, empirical NTKs) asks before each pass, as the
    dense ensemble's forward does: with autograd for what it saves or its widest step, whichever is
    more, without for the widest step."""
    from nnbias.engines.serial import network_fn, sample_serial
    from nnbias.layers import LayeredSpec

    spec = LayeredSpec((1,), "dense:1000,relu,dense:1")
    fn, params = network_fn(spec), sample_serial(spec, 1, torch.Generator().manual_seed(0)).params
    n = device_bytes("cpu") // (4 * 2 * 1000) + 1  # the widest layer's input and output fill the RAM
    x = torch.zeros(n, 1)
    refused = rf"^1 networks of .* on {n} inputs \(activations\)"
    with torch.no_grad(), pytest.raises(NNBiasError, match=refused):
        fn(params, x)
    with pytest.raises(NNBiasError, match=rf"on {n} inputs \(activations and gradients\)"):
        fn(params, x)  # the widest step's 2 x 1000 are more than the 1000 relu outputs kept
    assert fn(params, x[:10]).shape == (1, 10)
    deep = LayeredSpec((1,), "dense:1000,relu,dense:1000,relu,dense:1000,relu,dense:1")
    fn, params = network_fn(deep), sample_serial(deep, 1, torch.Generator().manual_seed(0)).params
    assert deep.activations == 3 * 1000 > deep.peak
    m = device_bytes("cpu") // (4 * 3 * 1000) + 1  # its three relu outputs kept fill the RAM
    with pytest.raises(NNBiasError, match=rf"on {m} inputs \(activations and gradients\)"):
        fn(params, x[:m])


def test_the_training_state_counted_before_a_run_is_what_training_holds():
    """Before a run: the draws and the buffers ``train`` allocates for them (six with SGD, seven with
    Adam's second moments), not only the parameters twice."""
    from nnbias.engines.memory import check_training_fits

    spec = NetworkSpec(5, (64,))
    k = device_bytes("cpu") // (4 * 4 * spec.n_params)  # twice the parameters fit twice over
    for optimizer, copies in (("sgd", 6), ("adam", 7)):
        per_net = copies * spec.n_params + 10 * max(spec.activations, spec.peak)
        with pytest.raises(NNBiasError, match=rf"^{k} networks of 5-64-1 .* by {optimizer} on 10 inputs "
                                              rf"\(the draws, their training state and the activations\) "
                                              rf"\({per_net} numbers each\)"):
            check_training_fits(spec, k, 10, torch.float32, "cpu", optimizer)


def test_a_minibatch_run_is_refused_when_its_evaluation_on_all_inputs_does_not_fit(tmp_path):
    """Trained on minibatches of 100 but evaluated on all 4000 MNIST-1D training inputs at once (and
    its 1000 test inputs): networks that fit the minibatch tenfold are refused for the evaluation,
    before a run is written, not after the cells before them."""
    from nnbias.engines.memory import check_training_fits
    from nnbias.experiments import architectures as arch
    from nnbias.store import Store

    spec = arch.model_spec("mnist1d-10", "cnn", 25)
    k = device_bytes("cpu") // (4 * 10**6)  # 1e6 numbers per network: between the two needs below
    assert 7 * spec.n_params + 100 * max(spec.activations, spec.peak) < 3e5  # under a third of the 1e6
    assert 7 * spec.n_params + 4000 * spec.peak > 1.5e6
    check_training_fits(spec, k, 100, torch.float32, "cpu", "adam")
    refused = rf"^{k} networks of .* trained by adam on 100 inputs and evaluated on 4000"
    with pytest.raises(NNBiasError, match=refused):
        check_training_fits(spec, k, 100, torch.float32, "cpu", "adam", evaluated=4000)
    settings = arch.ArchitecturesSettings(tasks=("mnist1d-10",), mlp_widths=(1,), cnn_widths=(25,),
                                          networks=k)
    with Store(tmp_path / "s.duckdb") as st:
        with pytest.raises(NNBiasError, match="evaluated on 4000"):
            arch.run_architectures(st, settings, tmp_path, quiet=True)
        assert st.runs().empty


@pytest.fixture
def cgroup_tree(tmp_path, monkeypatch):
    """Builds a cgroup file system as the kernel lays it out (v1 or v2) in ``tmp_path``, which nnbias
    then reads instead of this machine's; the cached total is forgotten before and after."""
    from nnbias.engines import memory

    def build(membership: str, files: dict[str, str]) -> None:
        for name, text in files.items():
            (tmp_path / "cgroup" / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / "cgroup" / name).write_text(text)
        (tmp_path / "self").write_text(membership)
        monkeypatch.setattr(memory, "PROC_CGROUP", tmp_path / "self")
        monkeypatch.setattr(memory, "CGROUP_ROOT", tmp_path / "cgroup")
        memory._total_bytes.cache_clear()

    yield build
    memory._total_bytes.cache_clear()


def test_a_cgroup_v2_job_limit_and_its_parents_are_read(cgroup_tree):
    """A batch job's step inside its job (SLURM's layout): the job's limit binds; the step has none."""
    from nnbias.engines.memory import CgroupMemory, cgroup_memory

    cgroup_tree("0::/job_7/step_0\n", {
        "memory.stat": "anon 1\n",  # the root cgroup has no memory.max: no limit there
        "job_7/memory.max": "1000000000\n", "job_7/memory.current": "600000000\n",
        "job_7/memory.stat": "anon 500000000\ninactive_file 100000000\nactive_file 0\n",
        "job_7/step_0/memory.max": "max\n", "job_7/step_0/memory.current": "500000000\n",
        "job_7/step_0/memory.stat": "inactive_file 0\n"})
    assert cgroup_memory() == [CgroupMemory(1_000_000_000, 600_000_000, 100_000_000)]
    assert device_bytes("cpu") == 500_000_000  # limit - used + the page cache the kernel reclaims first


def test_a_cgroup_v1_limit_beside_other_controllers_is_read(cgroup_tree):
    from nnbias.engines.memory import UNLIMITED, CgroupMemory, cgroup_memory

    cgroup_tree("5:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n0::/\n", {
        "memory/memory.limit_in_bytes": "9223372036854771712\n",  # v1's "unlimited"
        "memory/docker/memory.limit_in_bytes": str(UNLIMITED + 1),
        "memory/docker/abc/memory.limit_in_bytes": "2147483648\n",
        "memory/docker/abc/memory.usage_in_bytes": "1073741824\n",
        "memory/docker/abc/memory.stat": "cache 5\ntotal_inactive_file 4096\n"})
    assert cgroup_memory() == [CgroupMemory(2**31, 2**30, 4096)]
    with pytest.raises(NNBiasError, match=r"more than the 1 GiB left under this job's memory limit "
                                          r"\(2 GiB, its cgroup\); at most 262145 fit"):
        check_fits(10**6, 1024, torch.float32, "cpu", "a test network")  # 4 GB: within RAM, not the job


def test_a_container_that_sees_only_its_own_cgroup_reads_the_mount_root(cgroup_tree, tmp_path):
    """Docker without a cgroup namespace names the host's path, which the container's mount lacks."""
    from nnbias.engines.memory import CgroupMemory, cgroup_memory

    cgroup_tree("0::/system.slice/docker-abc.scope\n", {
        "memory.max": "4294967296\n", "memory.current": "1000\n", "memory.stat": "inactive_file 24\n"})
    assert cgroup_memory() == [CgroupMemory(2**32, 1000, 24)]
    cgroup_tree("0::/\n", {"memory.max": "max\n"})
    assert cgroup_memory() == []
    (tmp_path / "self").unlink()  # no /proc (macOS): nothing to read
    assert cgroup_memory() == []


def _own_memory_cgroup() -> Path | None:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return Path("/sys/fs/cgroup/memory") / path.lstrip("/")
    return None


def test_a_real_cgroup_limit_is_what_a_process_inside_it_sees(tmp_path):
    """A child memory cgroup (v1) with a 1 GiB limit, made for this test where this machine lets it
    (root): a process started inside reads at most that, though the machine has more."""
    import subprocess
    import sys
    import uuid

    own = _own_memory_cgroup()
    if own is None or not os.access(own, os.W_OK):
        pytest.skip("no writable cgroup v1 memory controller here (needs root and cgroup v1)")
    child = own / f"nnbias-test-{uuid.uuid4().hex[:8]}"
    try:
        child.mkdir()
        (child / "memory.limit_in_bytes").write_text(str(2**30))
    except OSError as err:
        pytest.skip(f"cannot make a memory cgroup here: {err}")
    try:
        def enter() -> None:
            (child / "cgroup.procs").write_text(str(os.getpid()))

        seen = subprocess.run([sys.executable, "-c", "from nnbias.engines.memory import device_bytes; "
                               "print(device_bytes('cpu'))"], capture_output=True, text=True,
                              preexec_fn=enter, check=True)
        assert 0 < int(seen.stdout) <= 2**30 < device_bytes("cpu")
    finally:
        child.rmdir()


def _refusals_on_a_worker() -> tuple[int, int, str, str]:
    from nnbias.engines import memory

    def refusal(k: int) -> str:
        try:
            memory.check_fits(k, 2**20, torch.uint8, "cpu", "a test network")
        except NNBiasError as err:
            return str(err)
        return ""

    room = memory.device_bytes("cpu")
    just_over = room // 2**20 + 32  # networks of 1 MiB: 32 MiB more than the worker has
    return (room, just_over * 2**20, refusal(12 * 2**10),  # 12 GiB
            refusal(just_over))


def test_a_dask_worker_sees_its_memory_limit_not_the_machine():
    """A worker of a real local cluster limited to 600 MiB (its nanny restarts it past 95 %): what it
    reads is within that, and a buffer within this machine's memory but not the worker's is refused
    there in one line that names the worker's limit, not run until the nanny kills it. The buffer
    just over the worker's room is below 1/64 of this machine (24 GiB: 384 MiB), where a request is
    granted without reading what is free unless the worker's own limit sets the threshold."""
    from distributed import Client, LocalCluster

    with (LocalCluster(n_workers=1, threads_per_worker=1, processes=True, memory_limit="600MiB",
                       dashboard_address=None) as cluster, Client(cluster) as client):
        room, just_over, far_over, near_over = client.submit(_refusals_on_a_worker).result()
    assert 0 < room <= 0.95 * 600 * 2**20
    worker = r"GiB left under this Dask worker's memory limit \(0.586 GiB; its nanny restarts it past 95 %\)"
    assert re.match(r"12288 networks of a test network \(1048576 numbers each\) need 12 GiB, more than the "
                    r"0\.\d+ " + worker + "; at most", far_over)
    assert re.match(rf"{just_over // 2**20} networks of a test network .* more than the .* {worker}",
                    near_over)


def test_the_samplers_batches_beyond_memory_are_refused_before_they_are_allocated():
    """The sampler's folded networks and, where they are held (a GPU, or an activation without the
    compiled loop), their outputs on every input."""
    from nnbias.engines.sampler import FoldedNets
    from nnbias.experiments.sampling import SamplingConfig

    spec = NetworkSpec(7, (1000,), bias=False)
    k = 2 * device_bytes("cpu") // (4 * spec.n_params)
    with pytest.raises(NNBiasError, match=rf"^{k} networks of 7-1000-1 relu"):
        FoldedNets.draw(spec, k, key=0)
    with pytest.raises(NNBiasError, match=rf"^{k} networks of 7-1000-1 relu"):
        SamplingConfig(spec, samples=10**9, chunk_size=k, batch=k)  # before a run is written
    nets = FoldedNets.draw(spec, 1, key=0)
    inputs = 2 * device_bytes("cpu") // (4 * 1001)
    with pytest.raises(NNBiasError, match=rf"^1 networks of 7-1000-1 relu .* on {inputs} inputs"):
        nets.forward(torch.zeros(1, 7).expand(inputs, 7))  # a view: costs nothing to hold
