"""Sweep cells as units of work: the same stored cells in one thread, two threads and two Dask worker
processes, after a Dask worker is killed mid-sweep, and a clear error when every try kills a worker."""

import os
import resource
import signal
from pathlib import Path

import pandas as pd
import pytest

from nnbias.errors import NNBiasError
from nnbias.executor import DaskExecutor, LocalExecutor, run_cells
from nnbias.experiments.bound import BoundSettings, run_bound
from nnbias.store import Store

HUGE_PAGES = Path("/sys/kernel/mm/transparent_hugepage/enabled")
SETTINGS = BoundSettings(tasks=("bool7-0011",), corruptions=(0.0, 1.0), networks=2, max_epochs=30,
                         rejection_draws=4096)


def _cells(tmp_path, name, executor):
    """The cells (in the order the experiment reads them) and claims of a bound run on ``executor``."""
    with Store(tmp_path / f"{name}.duckdb") as st:
        result = run_bound(st, SETTINGS, tmp_path / name, quiet=True, executor=executor)
    return result["cells"], result["claims"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return _cells(tmp_path_factory.mktemp("sequential"), "one", None)


def test_threads_and_dask_workers_store_the_same_cells(tmp_path, reference):
    cells, claims = reference
    assert len(cells) == 6
    threads = _cells(tmp_path, "threads", LocalExecutor(2))
    dask = DaskExecutor(workers=2)
    try:
        on_dask = _cells(tmp_path, "dask", dask)
    finally:
        dask.close()
    for other in (threads, on_dask):
        assert other[0].equals(cells) and other[1] == claims  # bit for bit, and so the verdicts


class LastFirst(DaskExecutor):
    """A local Dask cluster whose units come back in the reverse of the sweep's order, as a fast worker's
    would overtake a slow one's: the cells are committed in that order."""

    def map_unordered(self, fn, chunks):
        yield from reversed(list(super().map_unordered(fn, chunks)))


def test_cells_committed_out_of_order_are_read_in_the_sweeps_order(tmp_path, reference):
    """The stored order of a sweep's cells is the order they finished in; the experiment reads them in
    the sweep's, so its tables, claims and figures do not depend on which worker was quicker."""
    last_first = LastFirst(workers=1)
    try:
        cells, claims = _cells(tmp_path, "last-first", last_first)
    finally:
        last_first.close()
    with Store(tmp_path / "last-first.duckdb") as st:
        stored = st.table("bound_cells", st.runs()["run_id"].iloc[0])
    assert list(stored["corruption"]) != list(reference[0]["corruption"])  # committed out of order
    assert cells.equals(reference[0]) and claims == reference[1]


def test_a_sweep_table_comes_back_in_the_sweeps_order_each_cells_rows_as_stored(tmp_path):
    with Store(tmp_path / "s.duckdb") as st:
        for width, layers in ((64, ("a", "b")), (8, ("c", "d", "e")), (16, ("f",))):  # finished 64, 8, 16
            st.append_rows("t", "r", pd.DataFrame({"width": width, "method": "m", "layer": list(layers)}))
        st.append_rows("t", "other run", pd.DataFrame({"width": [8], "method": "m", "layer": ["z"]}))
        rows = st.sweep_table("t", "r", ["width", "method"], [(8, "m"), (16, "m"), (64, "m")])
        assert list(rows["layer"]) == ["c", "d", "e", "f", "a", "b"] and "run_id" not in rows
        assert st.sweep_table("none yet", "r", ["width"], [(8,)]).empty


class KillOneWorker(DaskExecutor):
    """A local Dask cluster that, after the first finished cell, has one worker process killed (-9)."""

    killed = None

    def map_unordered(self, fn, chunks):
        for item in super().map_unordered(fn, chunks):
            if self.killed is None:
                self.killed = next(iter(self.client.run(os.getpid).values()))
                os.kill(self.killed, signal.SIGKILL)
            yield item


def test_a_killed_dask_worker_has_its_cells_redone(tmp_path, reference):
    killer = KillOneWorker(workers=2)
    try:
        cells, _ = _cells(tmp_path, "killed", killer)
        alive = set(killer.client.run(os.getpid).values())
    finally:
        killer.close()
    assert killer.killed is not None and killer.killed not in alive  # it died, and was replaced
    assert cells.equals(reference[0])  # nothing lost, nothing counted twice


def test_a_cell_that_keeps_killing_workers_is_one_clear_error():
    dask = DaskExecutor(workers=1)
    try:
        with pytest.raises(NNBiasError, match="dask workers died each time"):
            run_cells(dask, os._exit, [(3,)], lambda cell, result: None, "doomed", quiet=True)
    finally:
        dask.close()


def test_a_dask_worker_reuses_freed_buffers_instead_of_mapping_each_one_afresh():
    """Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_ set, which pins glibc's mmap threshold at
    128 KiB: every buffer above it is then mapped, zero-filled page by page and unmapped again (training
    chunks took 3.5x as long on a worker as in this process). A unit on a worker counts the page faults of
    200 buffers of 1 MiB made, filled and freed in turn: about one buffer's pages when freed memory is
    reused, 200 buffers' when each is a fresh mapping."""
    import torch

    buffers, pages = 200, (1 << 20) // resource.getpagesize()

    def faults(_: int) -> int:
        before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        for _ in range(buffers):
            torch.empty(1 << 18).fill_(1.0)  # 1 MiB of float32
        return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before

    dask = DaskExecutor(workers=1)
    try:
        environ = next(iter(dask.client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_")).values()))
        ((_, on_worker),) = list(dask.map_unordered(faults, [0]))
    finally:
        dask.close()
    assert environ is not None  # the setting this guards against is still Dask's default
    assert on_worker < buffers * pages / 10, f"{on_worker} page faults for {buffers} buffers of {pages} pages"


@pytest.mark.skipif(not HUGE_PAGES.exists() or "[never]" in HUGE_PAGES.read_text(),
                    reason="this kernel gives no transparent huge pages")
def test_importing_nnbias_backs_large_tensors_with_huge_pages_unless_the_user_says_otherwise():
    """In fresh processes (torch reads the setting at its first allocation), a new 64 MiB tensor is
    touched in a few dozen page faults (2 MiB pages) after importing nnbias, and in 4 KiB pages (16384
    faults) where the user set THP_MEM_ALLOC_ENABLE=0."""
    import subprocess
    import sys

    script = ("import resource, nnbias, torch; torch.zeros(1); b = resource.getrusage(0).ru_minflt; "
              "torch.empty(1 << 24).fill_(1.0); print(resource.getrusage(0).ru_minflt - b)")

    def faults(**env: str) -> int:
        environ = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"} | env
        return int(subprocess.run([sys.executable, "-c", script], env=environ, capture_output=True, text=True,
                                  check=True).stdout)

    small_pages = (64 << 20) // resource.getpagesize()
    assert faults(THP_MEM_ALLOC_ENABLE="0") > small_pages / 2
    assert faults() < small_pages / 10


def test_prepared_device_check_runs_every_engine_path_on_this_machine():
    """benchmarks/gpu_check.py, the script a GPU session runs, on the CPU with tiny sizes: every engine's
    device code path runs here too (no GPU-only code that CI never sees) and agrees with the CPU's."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--quick", "--device", "cpu",
                        "--experiments", "routes"], cwd=root, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [line for line in r.stdout.splitlines() if line.startswith(("ok", "FAIL"))]
    assert len(lines) == 10 and all(line.startswith("ok") for line in lines), r.stdout
    assert "experiment routes" in lines[-1] and "max rel. diff  0.0e+00" in lines[-1], lines[-1]
    # the sampler's speed on each path, and where the batched pass's time goes
    assert "compiled loop: " in r.stdout and "of peak; torch's forward pass: " in r.stdout, r.stdout
    assert "of peak, one chunk's time: draw" in r.stdout, r.stdout
