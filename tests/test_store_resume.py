import os
import signal
import subprocess
import sys
import time

import duckdb
import pytest

from nnbias.errors import NNBiasError
from nnbias.executor import DaskExecutor
from nnbias.experiments.sampling import SamplingConfig, run_sampling
from nnbias.spec import NetworkSpec
from nnbias.store import Store

SPEC = NetworkSpec(6, (32, 32))
CONFIG = SamplingConfig(SPEC, samples=120 * 4096, seed=7, chunk_size=4096)

SCRIPT = f"""
from nnbias.experiments.sampling import SamplingConfig, run_sampling
from nnbias.executor import LocalExecutor
from nnbias.spec import NetworkSpec
from nnbias.store import Store
cfg = SamplingConfig(NetworkSpec(6, (32, 32)), samples={CONFIG.samples}, seed=7, chunk_size=4096)
with Store({{path!r}}) as st:
    run_sampling(st, cfg, LocalExecutor(2), quiet=True)
"""


def counts(path):
    with Store(path) as st:
        run_id = st.runs()["run_id"].iloc[0]
        return (st.function_counts(run_id).sort_values("truth_table", ignore_index=True),
                st.total_samples(run_id), len(st.done_chunks(run_id)))


def test_kill_9_then_resume_gives_exactly_the_uninterrupted_counts(tmp_path):
    reference = tmp_path / "reference.duckdb"
    with Store(reference) as st:
        run_sampling(st, CONFIG, quiet=True)
    ref_counts, ref_total, _ = counts(reference)
    assert ref_total == CONFIG.samples

    crashed = tmp_path / "crashed.duckdb"
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT.format(path=str(crashed))])
    wal = crashed.with_name(crashed.name + ".wal")
    deadline = time.time() + 120
    while time.time() < deadline and not (wal.exists() and wal.stat().st_size > 200_000):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    _, partial_total, partial_chunks = counts(crashed)
    assert 0 < partial_chunks < 120, "the kill should land mid-run"
    assert partial_total == partial_chunks * 4096  # no chunk half-written

    with Store(crashed) as st:
        run_sampling(st, CONFIG, quiet=True)
    resumed, total, chunks = counts(crashed)
    assert total == CONFIG.samples and chunks == 120
    assert resumed.equals(ref_counts)


def test_finished_run_is_not_redone(tmp_path):
    cfg = SamplingConfig(SPEC, samples=3 * 1000, chunk_size=1000)
    with Store(tmp_path / "s.duckdb") as st:
        first = run_sampling(st, cfg, quiet=True)
        again = run_sampling(st, cfg, quiet=True)
        assert first == again and st.total_samples(first) == 3000
        assert st.run_status(first) == "done"


def test_dask_workers_give_the_same_counts(tmp_path):
    cfg = SamplingConfig(SPEC, samples=8 * 2000, chunk_size=2000, seed=3)
    with Store(tmp_path / "threads.duckdb") as st:
        run_id = run_sampling(st, cfg, quiet=True)
        by_threads = st.function_counts(run_id).sort_values("truth_table", ignore_index=True)
    executor = DaskExecutor(workers=2)
    try:
        with Store(tmp_path / "dask.duckdb") as st:
            run_id = run_sampling(st, cfg, executor, quiet=True)
            by_dask = st.function_counts(run_id).sort_values("truth_table", ignore_index=True)
    finally:
        executor.close()
    assert by_dask.equals(by_threads)


def test_store_errors(tmp_path):
    not_db = tmp_path / "notes.duckdb"
    not_db.write_text("this is not a database\n" * 100)
    with pytest.raises(NNBiasError, match="cannot be opened as a DuckDB database"):
        Store(not_db)
    with pytest.raises(NNBiasError, match="not writable"):
        Store("/proc/nnbias/x.duckdb")
    with pytest.raises(NNBiasError, match="does not exist"):
        Store(tmp_path / "missing.duckdb", read_only=True)


def test_store_is_plain_duckdb(tmp_path):
    path = tmp_path / "s.duckdb"
    with Store(path) as st:
        run_sampling(st, SamplingConfig(NetworkSpec(3, ()), samples=1000, chunk_size=500),
                     quiet=True)
    con = duckdb.connect(str(path), read_only=True)
    total = con.execute("SELECT sum(count) FROM function_counts").fetchall()[0][0]
    status = con.execute("SELECT status, seed FROM runs").fetchall()
    con.close()
    assert total == 1000 and status == [("done", 0)]


def test_chunk_counts_are_summed_into_function_counts_when_the_run_finishes(tmp_path):
    """Chunks append their counts; finishing the run sums them, per function, into function_counts
    (adding to counts already there, as a run begun by an older version has) in the same
    transaction that marks it done; finishing again adds nothing."""
    with Store(tmp_path / "s.duckdb") as st:
        run_id = st.start_run("pfmap", {"x": 1}, 0)
        st.con.execute("INSERT INTO function_counts VALUES (?, 2, '0110'::BIT, 5)", [run_id])
        st.commit_function_chunk(run_id, 0, 2, ["0110", "0001"], [3, 1])
        st.commit_function_chunk(run_id, 1, 2, ["0001", "1111"], [2, 7])
        assert st.function_counts(run_id)["count"].sum() == 5  # chunks not summed while running
        for _ in range(2):
            st.finish_run(run_id)
            summed = dict(st.function_counts(run_id).itertuples(index=False, name=None))
            assert summed == {"0110": 8, "0001": 3, "1111": 7}
        assert st.one("SELECT count(*) FROM chunk_function_counts")[0] == 0
        assert st.run_status(run_id) == "done" and st.total_samples(run_id) == 13


SWEEPS = {  # a sweep of sampling cells, of training cells, and of both: the CLI commands as users run them
    "routes": ["routes", "--widths", "2,4,8", "--samples", "300", "--readouts", "32"],
    "posterior": ["posterior", "--widths", "8,16,32", "--samples", "40", "--methods", "rejection,sgd-ntk"],
}
CELL_TABLES = {"routes": "routes_cells", "posterior": "posterior_cells"}


def _stored_cells(path, name):
    with Store(path, read_only=True) as st:
        run_id = st.runs()["run_id"].iloc[0]
        frame = st.table(CELL_TABLES[name], run_id).drop(columns="run_id")
        return frame.sort_values(list(frame.columns), ignore_index=True), st.run_status(run_id)


@pytest.mark.parametrize("name", sorted(SWEEPS))
def test_kill_9_of_a_sweep_then_resume_gives_the_uninterrupted_cells(tmp_path, name):
    """A real kill -9 of `nnbias <sweep>` once some cells are stored (read through the busy store's
    snapshot), then the same command again: the cells equal an uninterrupted run's, none twice."""
    args = [sys.executable, "-m", "nnbias", *SWEEPS[name], "--quiet", "--out", str(tmp_path / "figs")]
    reference, crashed = tmp_path / "reference.duckdb", tmp_path / "crashed.duckdb"
    subprocess.run([*args, "--store", str(reference)], check=True, capture_output=True, timeout=600)
    ref, status = _stored_cells(reference, name)
    assert status == "done"

    proc = subprocess.Popen([*args, "--store", str(crashed)], stderr=subprocess.DEVNULL)
    deadline, partial = time.time() + 300, 0
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
        try:
            frame, _ = _stored_cells(crashed, name)
            partial = len(frame)
        except (NNBiasError, IndexError, KeyError):  # not created yet, or a snapshot mid-checkpoint
            continue
        if partial >= len(ref) // 3:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    cut, status = _stored_cells(crashed, name)
    assert 0 < len(cut) < len(ref) and status == "running", "the kill should land mid-run"

    subprocess.run([*args, "--store", str(crashed)], check=True, capture_output=True, timeout=600)
    resumed, status = _stored_cells(crashed, name)
    assert status == "done"
    assert resumed.equals(ref)  # bit-identical cells, none lost, none twice
