import json
import os
import signal
import subprocess
import sys
import time

import duckdb
import pandas as pd
import pytest
import torch

from nnbias.errors import NNBiasError
from nnbias.executor import DaskExecutor
from nnbias.experiments.sampling import SamplingConfig, run_sampling
from nnbias.provenance import environment
from nnbias.spec import NetworkSpec
from nnbias.store import RUN_RECORDS, Store

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
    with Store(crashed, read_only=True) as st:  # the killed process and the one that resumed
        run_id = st.runs()["run_id"].iloc[0]
        assert sessions(st, run_id) == 2
        assert st.environments([run_id]) == [environment()]  # both on this machine: one environment


def test_finished_run_is_not_redone(tmp_path):
    cfg = SamplingConfig(SPEC, samples=3 * 1000, chunk_size=1000)
    with Store(tmp_path / "s.duckdb") as st:
        first = run_sampling(st, cfg, quiet=True)
        again = run_sampling(st, cfg, quiet=True)
        assert first == again and st.total_samples(first) == 3000
        assert st.run_status(first) == "done"
        assert sessions(st, first) == 1  # a process that finds the run done does no work on it
        assert st.environments(["no-such-run"]) == []


def sessions(st, run_id):
    return st.one("SELECT count(*) FROM run_sessions WHERE run_id = ?", [run_id])[0]


def test_the_machine_of_a_run_is_recorded_as_it_was(tmp_path):
    """What `show` reports is the stored machine, not the one reading the store."""
    with Store(tmp_path / "s.duckdb") as st:
        run_id = run_sampling(st, SamplingConfig(SPEC, samples=1000, chunk_size=1000), quiet=True)
        recorded = environment()
        assert recorded["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
        assert recorded["torch"] == torch.__version__ and recorded["cpu"]
        st.con.execute("UPDATE run_sessions SET environment = json_merge_patch(environment, ?)",
                       ['{"cpu": "Elsewhere CPU 9000", "cpu_capability": "AVX512"}'])
    r = subprocess.run([sys.executable, "-m", "nnbias", "show", run_id, "--store", str(tmp_path / "s.duckdb"),
                        "--json"], capture_output=True, text=True, timeout=120, check=True)
    (stored,) = json.loads(r.stdout)["environments"]
    assert stored == {**recorded, "cpu": "Elsewhere CPU 9000", "cpu_capability": "AVX512"}


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
            assert st.environments([run_id]) == [environment()]  # workers on this machine: one line
            assert sessions(st, run_id) == 1
    finally:
        executor.close()
    assert by_dask.equals(by_threads)


def test_a_dask_worker_on_another_kind_of_machine_is_recorded_with_the_run(tmp_path):
    """Units computed elsewhere carry that machine's last bits, so the store names it too. A worker
    whose torch dispatches to generic code (ATEN_CPU_CAPABILITY=default) stands in for another CPU."""
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                           env={"ATEN_CPU_CAPABILITY": "default"})
    executor = DaskExecutor(cluster.scheduler_address)
    try:
        with Store(tmp_path / "s.duckdb") as st:
            run_id = run_sampling(st, SamplingConfig(SPEC, samples=2 * 1000, chunk_size=1000), executor,
                                  quiet=True)
            assert st.environments([run_id]) == [environment(),
                                                 {**environment(), "cpu_capability": "DEFAULT"}]
    finally:
        executor.close()
        cluster.close()


def test_a_dask_worker_that_joins_mid_run_is_recorded_with_the_run_and_the_run_around_it(tmp_path):
    """A worker of another kind (ATEN_CPU_CAPABILITY=default) joins after the run has started and the
    only worker there was is retired, so it computes every unit: its machine is recorded with the
    sampling run and with the open run that started it, neither with the run that finished before."""
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None)
    executor = DaskExecutor(cluster.scheduler_address)
    reported = executor.environments

    def then_a_worker_joins(on_join=None):
        found = reported(on_join)
        first = list(executor.client.scheduler_info()["workers"])
        cluster.new_spec["options"]["env"] = {"ATEN_CPU_CAPABILITY": "default"}
        cluster.scale(2)
        executor.client.wait_for_workers(2)
        executor.client.retire_workers(first)
        return found

    try:
        with Store(tmp_path / "s.duckdb") as st:
            before = st.start_run("before", {}, 0, executor)
            st.finish_run(before)
            outer = st.start_run("outer", {}, 0, executor)
            executor.environments = then_a_worker_joins
            inner = run_sampling(st, SamplingConfig(SPEC, samples=2 * 1000, chunk_size=1000), executor,
                                 quiet=True)
            joined = {**environment(), "cpu_capability": "DEFAULT"}
            assert st.environments([inner]) == [environment(), joined]
            assert st.environments([outer]) == [environment(), joined]
            assert st.environments([before]) == [environment()]
    finally:
        executor.close()
        cluster.close()


def test_store_errors(tmp_path):
    not_db = tmp_path / "notes.duckdb"
    not_db.write_text("this is not a database\n" * 100)
    with pytest.raises(NNBiasError, match="cannot be opened as a DuckDB database"):
        Store(not_db)
    with pytest.raises(NNBiasError, match="not writable"):
        Store("/proc/nnbias/x.duckdb")
    with pytest.raises(NNBiasError, match="does not exist"):
        Store(tmp_path / "missing.duckdb", read_only=True)


def test_the_schema_is_created_whole_or_not_at_all(tmp_path, monkeypatch):
    """A reader's snapshot of a store whose writer is still creating the schema saw ``runs`` without
    ``chunks`` (a DuckDB catalog traceback): the schema is one transaction."""
    import nnbias.store

    path = tmp_path / "s.duckdb"
    monkeypatch.setattr(nnbias.store, "SCHEMA", nnbias.store.SCHEMA + "CREATE TABLE runs (x INTEGER);")
    with pytest.raises(duckdb.CatalogException):
        Store(path)
    con = duckdb.connect(str(path), read_only=True)
    tables = con.execute("SELECT table_name FROM information_schema.tables").fetchall()
    con.close()
    assert tables == []


def test_a_transaction_inside_another_commits_or_rolls_back_with_it(tmp_path):
    with Store(tmp_path / "s.duckdb") as st:
        with pytest.raises(RuntimeError), st.transaction():
            st.append_rows("cells", "r1", pd.DataFrame({"width": [8]}))  # its own block, nested
            raise RuntimeError("killed between two tables")
        assert not st._has_table("cells")
        with st.transaction():
            st.append_rows("cells", "r1", pd.DataFrame({"width": [8]}))
            st.append_rows("cells", "r1", pd.DataFrame({"width": [16]}))
        assert sorted(st.table("cells", "r1")["width"]) == [8, 16]


def test_an_error_forgets_only_the_new_runs_with_nothing_done(tmp_path):
    """A run this process created and that fails before any unit is stored is forgotten; one with a
    stored unit, and one it resumed, stay `running` for the rerun to continue."""
    path = tmp_path / "s.duckdb"
    with Store(path) as st:
        resumed = st.start_run("demo", {"resumed": True}, 0)
    with pytest.raises(RuntimeError), Store(path) as st:
        assert st.start_run("demo", {"resumed": True}, 0) == resumed
        empty = st.start_run("demo", {"empty": True}, 0)
        started = st.start_run("demo", {"started": True}, 0)
        st.append_rows("cells", started, pd.DataFrame({"width": [8]}))
        raise RuntimeError("out of memory at the second cell")
    with Store(path, read_only=True) as st:
        runs = st.runs().set_index("run_id")["status"].to_dict()
        assert runs == {resumed: "running", started: "running"}
        assert empty not in set(st.con.execute("SELECT run_id FROM run_sessions").df()["run_id"])
    with Store(path) as st:  # no error: nothing is forgotten
        kept = st.start_run("demo", {"empty": True}, 0)
    with Store(path, read_only=True) as st:
        assert st.run_status(kept) == "running"


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


SWEEPS = {  # the CLI commands as users run them, small: sampling and training cells, chunked training
    "routes": ["routes", "--widths", "2,4,8", "--samples", "300", "--readouts", "32"],
    "posterior": ["posterior", "--widths", "8,16,32", "--samples", "40", "--methods", "rejection,sgd-ntk"],
    "sgd-vs-bayes": ["sgd-vs-bayes", "--tasks", "bool5-0011", "--methods", "sgd-b8", "--runs", "3000",
                     "--rejection-samples", "1e5"],
}
SLOW_SWEEPS = {  # every other experiment: the same resumption code, a minute or so each here
    "kernels": ["kernels", "--tasks", "digits-3-5,single-index,linear", "--widths", "32,64,128",
                "--networks", "2", "--steps", "100"],
    "features": ["features", "--parametrizations", "ntk,mup", "--tasks", "single-index", "--widths",
                 "32,64,128,256", "--networks", "2", "--steps", "30"],
    "gap": ["gap", "--tasks", "linear", "--widths", "32,64,128", "--networks", "2", "--steps", "100",
            "--curve-sizes", "50,100"],
    "transfer": ["transfer", "--pairs", "single-index-same,single-index-flip", "--sizes", "16,64",
                 "--claim-size", "16", "--width", "64", "--networks", "2", "--steps", "50"],
    "inside": ["inside", "--widths", "32,64,128", "--networks", "2", "--steps", "100"],
    "gibbs": ["gibbs", "--step-sizes", "0.1,1.0", "--chains", "500", "--draws", "20000"],
    "bound": ["bound", "--tasks", "bool7-0011", "--corruptions", "0,1", "--networks", "2"],
    "architectures": ["architectures", "--tasks", "digits-10", "--mlp-widths", "16", "--cnn-widths", "4",
                      "--networks", "1", "--epochs", "2", "--boolean-samples", "2000"],
}
UNITS = (*RUN_RECORDS, "claims")  # tables that are not units of work
TIMINGS = ("seconds",)  # wall-clock columns: the only ones a rerun may change


def _progress(path):
    """Rows stored so far in every run's tables of results (units of work of every phase)."""
    with Store(path, read_only=True) as st:
        return sum(count for run_id in st.runs()["run_id"]
                   for name, count in st.run_tables(run_id).items() if name not in UNITS)


def _stored(path):
    """Every run's status and every table of it (timings dropped, rows sorted), by run id."""
    out = {}
    with Store(path, read_only=True) as st:
        for run_id in sorted(st.runs()["run_id"]):
            tables = {}
            for name in st.run_tables(run_id):
                if name in RUN_RECORDS:  # timestamps, and one session more for the resumed run
                    continue
                frame = st.table(name, run_id).drop(columns=["run_id", *TIMINGS], errors="ignore")
                tables[name] = frame.sort_values(list(frame.columns), ignore_index=True)
            out[run_id] = (st.run_status(run_id), tables)
    return out


def _kill_and_resume(tmp_path, name, args):
    """A real kill -9 of `nnbias <name>` as soon as its first unit of work is stored (read through the
    busy store's snapshot), then the same command again: every table equals an uninterrupted run's."""
    args = [sys.executable, "-m", "nnbias", *args, "--quiet", "--out", str(tmp_path / "figs")]
    reference, crashed = tmp_path / "reference.duckdb", tmp_path / "crashed.duckdb"
    subprocess.run([*args, "--store", str(reference)], check=True, capture_output=True, timeout=900)
    ref = _stored(reference)
    assert ref and all(status == "done" for status, _ in ref.values())

    proc = subprocess.Popen([*args, "--store", str(crashed)], stderr=subprocess.DEVNULL)
    deadline, partial = time.time() + 600, 0
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.3)
        try:
            partial = _progress(crashed)
        except (NNBiasError, IndexError, KeyError):  # not created yet, or a snapshot mid-checkpoint
            continue
        if partial:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _progress(crashed) > 0, "the kill should land after the first unit of work"
    assert any(status == "running" for status, _ in _stored(crashed).values()), "... and before the end"

    subprocess.run([*args, "--store", str(crashed)], check=True, capture_output=True, timeout=900)
    resumed = _stored(crashed)
    assert resumed.keys() == ref.keys()
    for run_id, (status, tables) in resumed.items():
        assert status == "done" and tables.keys() == ref[run_id][1].keys()
        for table, frame in tables.items():  # bit-identical rows, none lost, none twice
            assert frame.equals(ref[run_id][1][table]), (run_id, table)


@pytest.mark.parametrize("name", sorted(SWEEPS))
def test_kill_9_of_an_experiment_then_resume_gives_the_uninterrupted_results(tmp_path, name):
    _kill_and_resume(tmp_path, name, SWEEPS[name])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SLOW_SWEEPS))
def test_kill_9_of_every_other_experiment_then_resume(tmp_path, name):
    _kill_and_resume(tmp_path, name, SLOW_SWEEPS[name])
