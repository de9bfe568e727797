"""The results store: one embedded DuckDB file.

Tables (open the file with ``duckdb``, pandas or polars and query them):

* ``runs``: one row per run: id, experiment, full config (JSON), seed,
  package version, status (running/done), start and end times.
* ``run_sessions``: (run_id, started_at, environment JSON): every process that
  started or resumed a run, and each distinct machine among the Dask workers
  connected then or joining later, with what it ran on (``provenance.environment``: CPU and its
  vector instructions, GPU, versions), since results agree bit for bit on one
  kind of machine, not across CPUs.
* ``chunks``: (run_id, chunk, n_samples): the done-marks of finished chunks.
* ``function_counts``: (run_id, n_inputs, truth_table, count): the parameter-
  function map's counts of each finished run. ``truth_table`` is a DuckDB
  ``BIT`` string (one bit per input, ~8x smaller than text); select
  ``truth_table::VARCHAR`` to read it as '0'/'1' text, ``bit_count`` for T.
* ``chunk_function_counts``: (run_id, chunk, n_inputs, truth_table, count):
  the counts of each finished chunk of a run still in progress, appended as
  chunks finish and summed into ``function_counts`` when the run is done
  (appending stays fast however many functions a run has seen; adding into
  one keyed table slowed a 10^8-sample run down to the writer's pace).
* ``function_complexity``: (truth_table, lz, entropy, csr, generalisation,
  expression_size, version): complexity measures, a cache keyed by the truth
  table; rows of another ``measures.complexity.COMPLEXITY_VERSION`` are stale
  and recomputed (and overwritten) when next asked for.
* ``claims``: (run_id, position, claim, measured, verdict, rule, decide): each
  run's claim table as judged by ``estimators.verdicts`` (``nnbias claims``).
* experiment tables such as ``pfmap_theorem`` (created by the experiment).

A chunk's counts and its done-mark are written in one transaction, and so are
a run's summed counts and its done status, so a run killed at any moment
resumes with exactly the counts of an uninterrupted run.

DuckDB lets one process hold a file for writing; a reader (``runs``, ``show``,
``claims``, ``export``) that finds it held reads a snapshot instead: the file
and its write-ahead log copied at that moment, which shows every committed
transaction up to then (a snapshot taken mid-checkpoint that does not open is
reported as busy).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pandas as pd

from nnbias import __version__
from nnbias.errors import NNBiasError
from nnbias.provenance import environment

if TYPE_CHECKING:
    from nnbias.executor import DaskExecutor, LocalExecutor

DEFAULT_STORE = Path("nnbias-results") / "nnbias.duckdb"
RUN_RECORDS = ("runs", "run_sessions")  # about runs (times, machines), not their results

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY, experiment VARCHAR, config JSON, seed BIGINT,
    version VARCHAR, status VARCHAR, started_at TIMESTAMP, ended_at TIMESTAMP);
CREATE TABLE IF NOT EXISTS run_sessions (
    run_id VARCHAR, started_at TIMESTAMP, environment JSON);
CREATE TABLE IF NOT EXISTS chunks (
    run_id VARCHAR, chunk INTEGER, n_samples BIGINT, PRIMARY KEY (run_id, chunk));
CREATE TABLE IF NOT EXISTS function_counts (
    run_id VARCHAR, n_inputs INTEGER, truth_table BIT, count BIGINT,
    PRIMARY KEY (run_id, truth_table));
CREATE TABLE IF NOT EXISTS chunk_function_counts (
    run_id VARCHAR, chunk INTEGER, n_inputs INTEGER, truth_table BIT, count BIGINT);
CREATE TABLE IF NOT EXISTS claims (
    run_id VARCHAR, position INTEGER, claim VARCHAR, measured VARCHAR, verdict VARCHAR, rule VARCHAR,
    decide VARCHAR);
CREATE TABLE IF NOT EXISTS function_complexity (
    truth_table VARCHAR PRIMARY KEY, lz DOUBLE, entropy DOUBLE, csr DOUBLE,
    generalisation DOUBLE, expression_size INTEGER);
ALTER TABLE function_complexity ADD COLUMN IF NOT EXISTS version INTEGER;
CREATE TABLE IF NOT EXISTS report_figures (
    section BIGINT, position BIGINT, name VARCHAR, png BLOB, run_id VARCHAR, file VARCHAR, pdf BLOB);
ALTER TABLE report_figures ADD COLUMN IF NOT EXISTS file VARCHAR;
ALTER TABLE report_figures ADD COLUMN IF NOT EXISTS pdf BLOB;
"""


def default_store_path() -> Path:
    """``$NNBIAS_STORE`` if set, else ``./nnbias-results/nnbias.duckdb``."""
    return Path(os.environ.get("NNBIAS_STORE", DEFAULT_STORE))


def run_id_for(experiment: str, config: dict[str, Any]) -> str:
    """Deterministic run id: the same experiment and config resume the same run."""
    digest = hashlib.sha256(json.dumps([experiment, config], sort_keys=True).encode()).hexdigest()
    return f"{experiment}-{digest[:12]}"


class Store:
    """A connection to the results file, with the few writes nnbias needs."""

    def __init__(self, path: str | os.PathLike | None = None, read_only: bool = False):
        self.path = Path(path) if path is not None else default_store_path()
        if not read_only:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise NNBiasError(f"store path {str(self.path)!r} is not writable: {e.strerror}") from e
            if not os.access(self.path.parent, os.W_OK):
                raise NNBiasError(f"store path {str(self.path)!r} is not writable; "
                                  "choose a directory you can write to")
        elif not self.path.exists():
            raise NNBiasError(f"store {str(self.path)!r} does not exist; run an experiment first")
        self._snapshot: str | None = None
        self._transactions = 0  # open transaction() blocks: only the outermost begins and commits
        self._sessions: dict[str, set[str]] = {}  # runs open in this process -> machines recorded
        self._created: set[str] = set()  # runs this process inserted (not ones it resumed)
        try:
            self.con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.Error as e:
            first = str(e).splitlines()[0]
            if "lock" not in first.lower():
                raise NNBiasError(f"store {str(self.path)!r} cannot be opened as a DuckDB database "
                                  f"({first}); give a .duckdb file or a new path") from e
            # another process writes to it: busy, not broken; a reader reads a snapshot
            if not read_only:
                raise NNBiasError(f"store {str(self.path)!r} is in use by another nnbias process (a run "
                                  "holds its write lock); wait for it to finish, or use another "
                                  "--store") from None
            self.con = self._open_snapshot()
        if not read_only:  # all tables or none: a reader's snapshot never sees half a schema
            with self.transaction():
                self.con.execute(SCHEMA)

    def _open_snapshot(self) -> duckdb.DuckDBPyConnection:
        """A read-only connection to a copy of the file and its WAL, taken now."""
        self._snapshot = tempfile.mkdtemp(prefix="nnbias-snapshot-")
        copy = Path(self._snapshot) / self.path.name
        try:
            shutil.copyfile(self.path, copy)
            if Path(f"{self.path}.wal").exists():
                shutil.copyfile(f"{self.path}.wal", f"{copy}.wal")
            con = duckdb.connect(str(copy), read_only=True)
            con.execute("SELECT count(*) FROM runs").fetchall()
        except (OSError, duckdb.Error):
            shutil.rmtree(self._snapshot, ignore_errors=True)
            raise NNBiasError(f"store {str(self.path)!r} is in use by another nnbias process and no "
                              "consistent snapshot could be read just now; try again, or wait for the "
                              "run to finish") from None
        print(f"store {str(self.path)!r} is in use by a running nnbias process; reading a snapshot "
              "taken now", file=sys.stderr)
        return con

    def close(self) -> None:
        self.con.close()
        if self._snapshot:
            shutil.rmtree(self._snapshot, ignore_errors=True)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is not None and self._created:
            with contextlib.suppress(duckdb.Error):  # the error being raised is the one to report
                self._drop_empty_runs()
        self.close()

    def _drop_empty_runs(self) -> None:
        """Forget the runs this process created that end in an error before any unit finished: a
        bad count found at the first allocation leaves no `running` run behind with nothing in it
        to resume (a run killed outright keeps its row; its rerun starts it afresh anyway)."""
        empty = [r for r in self._created
                 if self.run_status(r) == "running" and not set(self.run_tables(r)) - set(RUN_RECORDS)]
        with self.transaction():
            for name in RUN_RECORDS:
                self.con.execute(f"DELETE FROM {name} WHERE list_contains(?, run_id)", [empty])

    def one(self, sql: str, params: list | dict | None = None) -> tuple | None:
        """First row of a query, fully fetched (DuckDB >= 2 refuses new work while a result is open)."""
        rows = self.con.execute(sql, params or []).fetchall()
        return rows[0] if rows else None

    # runs -------------------------------------------------------------------
    def start_run(self, experiment: str, config: dict[str, Any], seed: int,
                  executor: LocalExecutor | DaskExecutor | None = None) -> str:
        """Create the run for (experiment, config) or reopen it to resume. A process that will work on
        it (not one that finds it done) is recorded with its machine in ``run_sessions``, and so is
        each distinct machine among ``executor``'s workers: those connected now, and each that joins
        later when its first unit comes back (Dask workers elsewhere)."""
        run_id = run_id_for(experiment, config)
        now = dt.datetime.now()
        status = self.run_status(run_id)
        if status == "done":
            return run_id
        workers = [] if executor is None else executor.environments(on_join=self._joined)
        with self.transaction():
            if status is None:
                self.con.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, 'running', ?, NULL)",
                                 [run_id, experiment, json.dumps(config, sort_keys=True), seed,
                                  __version__, now])
                self._created.add(run_id)
            self._sessions[run_id] = set()
            self._record_sessions(run_id, [environment(), *workers], now)
        return run_id

    def _record_sessions(self, run_id: str, environments: list[dict[str, str]], at: dt.datetime) -> None:
        """Add the machines among ``environments`` not yet recorded for ``run_id`` by this process."""
        new = [e for e in dict.fromkeys(json.dumps(e, sort_keys=True) for e in environments)
               if e not in self._sessions[run_id]]
        self._sessions[run_id].update(new)
        if new:
            self.con.executemany("INSERT INTO run_sessions VALUES (?, ?, ?)", [[run_id, at, e] for e in new])

    def _joined(self, environments: list[dict[str, str]]) -> None:
        """Workers that joined mid-run worked on every run this process has open: a run of an
        experiment that started inner runs (sgd-vs-bayes and its P_SGD runs) rests on theirs."""
        now = dt.datetime.now()
        with self.transaction():
            for run_id in self._sessions:
                self._record_sessions(run_id, environments, now)

    def finish_run(self, run_id: str) -> None:
        """Mark the run done and, in the same transaction, sum its chunks' function counts into
        ``function_counts``."""
        with self.transaction():
            self.con.execute(
                "INSERT INTO function_counts SELECT run_id, any_value(n_inputs), truth_table, sum(count) "
                "FROM chunk_function_counts WHERE run_id = ? GROUP BY run_id, truth_table "
                "ON CONFLICT (run_id, truth_table) DO UPDATE SET count = count + EXCLUDED.count", [run_id])
            self.con.execute("DELETE FROM chunk_function_counts WHERE run_id = ?", [run_id])
            self.con.execute("UPDATE runs SET status = 'done', ended_at = ? WHERE run_id = ? "
                             "AND status <> 'done'", [dt.datetime.now(), run_id])
        self._sessions.pop(run_id, None)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """All writes inside commit together or not at all (a cell stored in two tables); a block
        inside another joins the outer one."""
        self._transactions += 1
        try:
            if self._transactions > 1:
                yield
                return
            self.con.execute("BEGIN TRANSACTION")
            try:
                yield
            except BaseException:
                self.con.execute("ROLLBACK")
                raise
            self.con.execute("COMMIT")
        finally:
            self._transactions -= 1

    def run_status(self, run_id: str) -> str | None:
        row = self.one("SELECT status FROM runs WHERE run_id = ?", [run_id])
        return None if row is None else row[0]

    def runs(self) -> pd.DataFrame:
        return self.con.execute(
            "SELECT r.run_id, r.experiment, r.status, r.seed, r.version, r.started_at, "
            "r.ended_at, coalesce(sum(c.n_samples), 0)::BIGINT AS samples, r.config "
            "FROM runs r LEFT JOIN chunks c USING (run_id) GROUP BY ALL "
            "ORDER BY r.started_at").df()

    def run_config(self, run_id: str) -> dict[str, Any]:
        """The config a run was started with (what its id is the hash of)."""
        row = self.one("SELECT config FROM runs WHERE run_id = ?", [run_id])
        if row is None:
            raise NNBiasError(f"run={run_id!r} is not in the store; `nnbias runs` lists them")
        return json.loads(row[0])

    def environments(self, run_ids: list[str]) -> list[dict[str, str]]:
        """The distinct machines and software that worked on ``run_ids``, first seen first (empty for
        runs of a store older than ``run_sessions``)."""
        if not self._has_table("run_sessions"):
            return []
        rows = self.con.execute("SELECT environment FROM run_sessions WHERE list_contains(?, run_id) "
                                "ORDER BY started_at, rowid", [run_ids]).fetchall()
        return [json.loads(e) for e in dict.fromkeys(r[0] for r in rows)]

    def latest_run(self, experiment: str) -> str | None:
        """The most recently finished run of an experiment, if any."""
        row = self.one("SELECT run_id FROM runs WHERE experiment = ? AND status = 'done' "
                       "ORDER BY ended_at DESC LIMIT 1", [experiment])
        return None if row is None else row[0]

    # claims -----------------------------------------------------------------
    def save_claims(self, run_id: str, claims: list[dict[str, str]]) -> None:
        """A run's claim table, replacing the one stored before (verdicts follow the stored data)."""
        frame = pd.DataFrame([{"position": i, **{k: c.get(k, "") for k in
                                                 ("claim", "measured", "verdict", "rule", "decide")}}
                              for i, c in enumerate(claims)])
        with self.transaction():
            self.con.execute("DELETE FROM claims WHERE run_id = ?", [run_id])
            if len(frame):
                self.append_rows("claims", run_id, frame)

    def claims(self, run_id: str) -> list[dict[str, str]]:
        rows = self.con.execute("SELECT claim, measured, verdict, rule, decide FROM claims WHERE run_id = ? "
                                "ORDER BY position", [run_id]).df()
        return rows.to_dict(orient="records")

    # chunks -----------------------------------------------------------------
    def done_chunks(self, run_id: str) -> set[int]:
        rows = self.con.execute("SELECT chunk FROM chunks WHERE run_id = ?", [run_id]).fetchall()
        return {r[0] for r in rows}

    def commit_function_chunk(self, run_id: str, chunk: int, n_inputs: int,
                              tables: list[str], counts: np.ndarray,
                              stats: tuple[str, dict[str, Any]] | None = None) -> None:
        """Add one chunk's function counts and its done-mark in one transaction.

        ``stats`` = (table, row) adds a row of per-chunk statistics (e.g. how many
        training runs converged) in the same transaction, so they are never
        counted twice or lost either. ``n_samples`` is the chunk's sample count
        (its row's ``trained`` when given: networks that did not fit S count too).
        """
        frame = pd.DataFrame({"truth_table": tables, "count": np.asarray(counts, np.int64)})
        samples = int(frame["count"].sum()) if stats is None else int(stats[1]["trained"])
        with self.transaction():
            self.con.register("chunk_counts", frame)
            self.con.execute(
                "INSERT INTO chunk_function_counts SELECT ?, ?, ?, truth_table::BIT, count FROM chunk_counts",
                [run_id, chunk, n_inputs])
            self.con.unregister("chunk_counts")
            if stats is not None:
                self.append_rows(stats[0], run_id, pd.DataFrame([{"chunk": chunk, **stats[1]}]))
            self.con.execute("INSERT INTO chunks VALUES (?, ?, ?)", [run_id, chunk, samples])

    # queries ----------------------------------------------------------------
    def function_counts(self, run_id: str, limit: int | None = None) -> pd.DataFrame:
        sql = ("SELECT truth_table::VARCHAR AS truth_table, count FROM function_counts "
               "WHERE run_id = ? ORDER BY count DESC, truth_table")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return self.con.execute(sql, [run_id]).df()

    def consistent_functions(self, run_id: str, train_inputs: np.ndarray, train_labels: np.ndarray,
                             test_inputs: np.ndarray) -> pd.DataFrame:
        """Rejection sampling from a stored parameter-function map: the functions that agree
        with the labels on the training inputs, as (function on the test inputs, count).

        Input numbers index the run's truth tables; the filter is one bitwise
        AND per stored function, done by DuckDB.
        """
        n_bits = len(self.one("SELECT truth_table::VARCHAR FROM function_counts WHERE run_id = ? "
                              "LIMIT 1", [run_id])[0])
        mask, pattern = ["0"] * n_bits, ["0"] * n_bits
        for i, label in zip(train_inputs, train_labels, strict=True):
            mask[i], pattern[i] = "1", str(int(label))
        rows = self.con.execute(
            "SELECT truth_table::VARCHAR, count FROM function_counts WHERE run_id = ? "
            "AND (truth_table & ?::BIT) = ?::BIT", [run_id, "".join(mask), "".join(pattern)]).fetchall()
        found: Counter[str] = Counter()
        for table, count in rows:  # distinct full tables can agree on the test inputs
            found["".join(table[i] for i in test_inputs)] += count
        return pd.DataFrame({"function": pd.Series(list(found), dtype=str),
                             "count": pd.Series(list(found.values()), dtype="int64")})

    def total_samples(self, run_id: str) -> int:
        return int(self.one("SELECT coalesce(sum(n_samples), 0) FROM chunks WHERE run_id = ?",
                            [run_id])[0])

    def cached_complexity(self, tables: list[str]) -> pd.DataFrame:
        """Cached complexity rows of ``tables`` computed under the current definitions."""
        from nnbias.measures.complexity import COMPLEXITY_VERSION

        frame = pd.DataFrame({"truth_table": tables})
        self.con.register("wanted", frame)
        try:
            return self.con.execute("SELECT c.* EXCLUDE (version) FROM function_complexity c "
                                    "JOIN wanted USING (truth_table) WHERE c.version = ?",
                                    [COMPLEXITY_VERSION]).df()
        finally:
            self.con.unregister("wanted")

    def save_complexity(self, frame: pd.DataFrame) -> None:
        """Cache complexity rows, replacing stale rows of the same truth tables."""
        from nnbias.measures.complexity import COMPLEXITY_VERSION

        self.con.register("new_complexity", frame)
        try:
            self.con.execute("INSERT OR REPLACE INTO function_complexity "
                             "SELECT truth_table, lz, entropy, csr, generalisation, expression_size, ? "
                             "FROM new_complexity", [COMPLEXITY_VERSION])
        finally:
            self.con.unregister("new_complexity")

    def replace_table(self, name: str, run_id: str, frame: pd.DataFrame) -> None:
        """Write an experiment's result table rows for one run (replacing earlier ones)."""
        if self._has_table(name):
            self.con.execute(f"DELETE FROM {name} WHERE run_id = ?", [run_id])
        self.append_rows(name, run_id, frame)

    def append_rows(self, name: str, run_id: str, frame: pd.DataFrame) -> None:
        """Add finished cells of a sweep (one transaction), so a rerun can skip them."""
        frame = frame.assign(run_id=run_id)
        self.con.register("incoming", frame)
        try:
            with self.transaction():  # a killed process leaves no empty table behind
                self.con.execute(f"CREATE TABLE IF NOT EXISTS {name} AS SELECT * FROM incoming LIMIT 0")
                self.con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM incoming")
        finally:
            self.con.unregister("incoming")

    def appender(self, name: str, run_id: str) -> Callable[[tuple, pd.DataFrame], None]:
        """``commit(cell, rows)`` for ``executor.run_cells``: a finished cell's rows go to table ``name``."""
        return lambda _cell, frame: self.append_rows(name, run_id, frame)

    def _has_table(self, name: str) -> bool:
        return bool(self.one("SELECT count(*) FROM information_schema.tables WHERE table_name = ?",
                             [name])[0])

    def table(self, name: str, run_id: str) -> pd.DataFrame:
        """Rows of an experiment table for one run (empty if the table does not exist yet)."""
        if not self._has_table(name):
            return pd.DataFrame()
        return self.con.execute(f"SELECT * FROM {name} WHERE run_id = ?", [run_id]).df()

    def run_tables(self, run_id: str) -> dict[str, int]:
        """Every table with a ``run_id`` column and how many of its rows belong to ``run_id``."""
        names = [r[0] for r in self.con.execute(
            "SELECT table_name FROM information_schema.columns WHERE column_name = 'run_id' "
            "ORDER BY table_name").fetchall()]
        counts = {n: self.one(f'SELECT count(*) FROM "{n}" WHERE run_id = ?', [run_id])[0] for n in names}
        return {n: c for n, c in counts.items() if c}

    def export_run(self, run_id: str, folder: Path, fmt: str) -> list[Path]:
        """Write each of the run's tables (its rows only) to ``folder/<table>.<fmt>`` with DuckDB's COPY
        (``parquet`` or ``csv``); BIT truth tables are written as '0'/'1' text."""
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for name in self.run_tables(run_id):
            columns = self.con.execute("SELECT column_name, data_type FROM information_schema.columns "
                                       "WHERE table_name = ? ORDER BY ordinal_position", [name]).fetchall()
            select = ", ".join(f'"{c}"::VARCHAR AS "{c}"' if t == "BIT" else f'"{c}"' for c, t in columns)
            target = folder / f"{name}.{fmt}"
            self.con.execute(f"""COPY (SELECT {select} FROM "{name}" WHERE run_id = $run) """
                             f"""TO '{str(target).replace("'", "''")}' """
                             f"(FORMAT {'PARQUET' if fmt == 'parquet' else 'CSV, HEADER'})", {"run": run_id})
            written.append(target)
        return written

    def sweep_table(self, name: str, run_id: str, keys: list[str], cells: list[tuple]) -> pd.DataFrame:
        """One run's rows of a sweep's table (without ``run_id``) in the order of ``cells``, the tuples of
        the ``keys`` columns' values, each cell's rows in the order its unit stored them. Cells are stored
        as they finish, which on several workers is not the sweep's order; claims, figures and the
        report read the rows in this order, so they do not depend on which worker was quicker."""
        frame = self.table(name, run_id)
        if not len(frame):
            return frame
        position = {cell: i for i, cell in enumerate(cells)}
        order = [position.get(key, len(cells)) for key in frame[keys].itertuples(index=False, name=None)]
        return frame.iloc[np.argsort(order, kind="stable")].reset_index(drop=True).drop(columns="run_id")

    def done_cells(self, name: str, run_id: str, keys: list[str]) -> set[tuple]:
        """The ``keys`` tuples of the cells of a sweep already stored for a run: what a rerun skips."""
        frame = self.table(name, run_id)
        return set(frame[keys].itertuples(index=False, name=None)) if len(frame) else set()
