"""Sweep cells as units of work: the same stored cells in one thread, two threads and two Dask worker
processes, after a Dask worker is killed mid-sweep, and a clear error when every try kills a worker."""

import os
import signal

import pytest

from nnbias.errors import NNBiasError
from nnbias.executor import DaskExecutor, LocalExecutor, run_cells
from nnbias.experiments.bound import BoundSettings, run_bound
from nnbias.store import Store

SETTINGS = BoundSettings(tasks=("bool7-0011",), corruptions=(0.0, 1.0), networks=2, max_epochs=30,
                         rejection_draws=4096)


def _cells(tmp_path, name, executor):
    with Store(tmp_path / f"{name}.duckdb") as st:
        result = run_bound(st, SETTINGS, tmp_path / name, quiet=True, executor=executor)
    cells = result["cells"]
    return cells.sort_values(["m", "corruption"], ignore_index=True), result["claims"]


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
    assert len(lines) == 9 and all(line.startswith("ok") for line in lines), r.stdout
    assert "experiment routes" in lines[-1] and "max rel. diff  0.0e+00" in lines[-1], lines[-1]
