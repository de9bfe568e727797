"""Run independent chunks of work in-process (threads) or on a Dask cluster: sampling and training
chunks (an index each) and the cells of every experiment's sweep (``run_cells``).

The executor only moves work and results: each chunk is a pure function of
its index (its seed is derived from the run seed and the index), and the
caller commits each finished chunk to the store from this process, the only
writer. So the result of a run is the same with 1 thread, N threads or N Dask
workers, and a resumed run simply leaves out the chunks already marked done.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from nnbias.errors import NNBiasError, check_int

if TYPE_CHECKING:
    import pandas as pd

    from nnbias.store import Store

MAX_CHUNKS = 10**7  # a run's chunks are rows of the store and entries of its to-do list


def chunk_count(name: str, total: int, chunk_size: int) -> int:
    """How many chunks ``total`` units in chunks of ``chunk_size`` make, refused beyond MAX_CHUNKS (a
    run of 10^12 single-network chunks would first build a to-do list that no memory holds)."""
    count = -(-total // chunk_size)
    if count > MAX_CHUNKS:
        raise NNBiasError(f"{name}={total} in chunks of {chunk_size} is {count} chunks, more than the "
                          f"{MAX_CHUNKS:,} a run can track (each is a row of the store); ask for fewer, or "
                          f"for chunks of at least {-(-total // MAX_CHUNKS)}")
    return count


def chunk_length(total: int, chunk_size: int, chunk: int) -> int:
    """Units in chunk ``chunk`` of ``total`` in chunks of ``chunk_size`` (the last may be short)."""
    return min(chunk_size, total - chunk * chunk_size)


def _single_threaded(fn: Callable[[int], Any], chunk: int) -> Any:
    """Run one chunk with one intra-op thread: parallelism comes from running chunks side by side."""
    torch.set_num_threads(1)
    return fn(chunk)


# glibc's mallopt parameters, and the values its adaptive rule settles at on 64-bit machines
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD, TRIM_THRESHOLD = 32 << 20, 64 << 20


@functools.cache
def reuse_freed_memory() -> bool:
    """Let this process's glibc keep freed buffers for reuse: mmap only buffers of 32 MiB and more, and
    give the heap back beyond 64 MiB free, where glibc's own adaptive thresholds end up on 64-bit.

    Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536 (to hand memory back to the OS), and
    any such variable freezes glibc's mmap threshold at 128 KiB: each tensor above it is then a fresh
    mmap, zero-filled page by page and unmapped when freed. Measured on a training chunk: 16x the page
    faults and 3.5x the time of the same chunk in this process. Once per process; False where the C
    library is not glibc (nothing to undo there)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and libc.mallopt(M_TRIM_THRESHOLD,
                                                                                 TRIM_THRESHOLD))
    except (OSError, AttributeError):
        return False


def _on_worker(fn: Callable[[int], Any], chunk: int) -> tuple[str, Any]:
    """A chunk on a Dask worker, with the worker's address: the one machine that computed it."""
    from distributed import get_worker

    reuse_freed_memory()
    return get_worker().address, _single_threaded(fn, chunk)


class LocalExecutor:
    """Chunks on a pool of threads in this process (torch releases the GIL in its kernels)."""

    def __init__(self, workers: int | None = None):
        self.workers = check_int("workers", workers or os.cpu_count() or 1, minimum=1)

    def environments(self, on_join: Callable[[list[dict[str, str]]], None] | None = None
                     ) -> list[dict[str, str]]:
        """None besides this process's own: its threads run every unit, and none joins later."""
        return []

    def map_unordered(self, fn: Callable[[int], Any], chunks: Iterable[int]) -> Iterator[tuple[int, Any]]:
        if self.workers == 1:  # in this thread, one chunk after another, on one intra-op thread
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                for chunk in chunks:
                    yield chunk, fn(chunk)
            finally:
                torch.set_num_threads(threads)
            return
        todo = iter(chunks)
        threads = torch.get_num_threads()  # workers set 1 thread each; restore afterwards
        with ThreadPoolExecutor(self.workers) as pool:
            running = {}
            while True:
                while len(running) < 2 * self.workers:
                    chunk = next(todo, None)
                    if chunk is None:
                        break
                    running[pool.submit(_single_threaded, fn, chunk)] = chunk
                if not running:
                    torch.set_num_threads(threads)
                    return
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield running.pop(fut), fut.result()


class DaskExecutor:
    """Chunks on a Dask cluster: a scheduler address, or a local cluster of ``workers`` processes."""

    def __init__(self, address: str | None = None, workers: int | None = None):
        from distributed import Client, LocalCluster

        if address:
            try:
                self.client = Client(address, timeout="10s")
            except (OSError, ValueError, TypeError) as e:  # unreachable, or not an address at all
                first = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise NNBiasError(f"dask scheduler {address!r} cannot be reached ({first}); "
                                  "give the address printed by `dask scheduler`, e.g. "
                                  "tcp://HOST:8786") from None
            self.cluster = None
        else:
            n = check_int("workers", workers or os.cpu_count() or 1, minimum=1)
            self.cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                        dashboard_address=None)
            self.client = Client(self.cluster)
        self._known: set[str] = set()  # addresses of the workers whose machines are reported
        self._on_join: Callable[[list[dict[str, str]]], None] | None = None

    def environments(self, on_join: Callable[[list[dict[str, str]]], None] | None = None
                     ) -> list[dict[str, str]]:
        """The machine and software of every worker connected now, as each reports its own: on a
        cluster of other machines they, not this process, compute the units (and set their last bits).
        From now on, a worker that joins later is reported to ``on_join`` when its first unit comes
        back (a worker that dies before it can answer goes unreported)."""
        from nnbias.provenance import environment

        found = self.client.run(environment)
        self._known = set(found)
        self._on_join = on_join
        return list(found.values())

    def _came_from(self, worker: str) -> None:
        """Report ``worker``'s machine the first time one of its units comes back."""
        from nnbias.provenance import environment

        if worker in self._known:
            return
        self._known.add(worker)
        found = self.client.run(environment, workers=[worker], on_error="ignore")
        if self._on_join is not None and found:
            self._on_join(list(found.values()))

    def map_unordered(self, fn: Callable[[int], Any], chunks: Iterable[int]) -> Iterator[tuple[int, Any]]:
        """Chunks in completion order. A worker that dies has its chunks redone on the others (Dask
        retries a chunk whose workers died up to ``distributed.scheduler.allowed-failures`` times);
        a chunk that keeps killing workers is one error naming it."""
        from distributed import KilledWorker

        try:
            yield from self._map_unordered(fn, chunks)
        except KilledWorker as e:
            raise NNBiasError(f"dask workers died each time they ran one unit of work ({e.args[0]}); "
                              "the usual cause is running out of memory: give workers more memory, "
                              "use fewer threads per worker or a smaller chunk") from None

    def _map_unordered(self, fn: Callable[[int], Any], chunks: Iterable[int]) -> Iterator[tuple[int, Any]]:
        from distributed import as_completed

        todo = iter(chunks)
        window = 2 * max(1, len(self.client.scheduler_info()["workers"]))
        # the work travels with every chunk: scattered once, it would be lost with the workers holding
        # it (measured: a run whose only worker died ended in FutureCancelledError, not a retry)
        futures = as_completed()
        owner = {}
        for chunk in todo:
            fut = self.client.submit(_on_worker, fn, chunk, pure=False)
            owner[fut.key] = chunk
            futures.add(fut)
            if futures.count() >= window:
                break
        for fut in futures:
            worker, result = fut.result()
            self._came_from(worker)
            yield owner.pop(fut.key), result
            fut.release()
            chunk = next(todo, None)
            if chunk is not None:
                nxt = self.client.submit(_on_worker, fn, chunk, pure=False)
                owner[nxt.key] = chunk
                futures.add(nxt)

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def make_executor(kind: str = "threads", workers: int | None = None,
                  address: str | None = None) -> LocalExecutor | DaskExecutor:
    """``threads`` (default), or ``dask`` (local cluster, or ``address`` of a running scheduler).

    Options that do not apply are refused, not ignored: a scheduler address with threads, a worker
    count with a scheduler (that cluster's workers are its own), and a worker count below 1."""
    if workers is not None:
        check_int("workers", workers, minimum=1)
    if kind == "threads":
        if address is not None:
            raise NNBiasError(f"scheduler={address!r} applies to the dask executor only; add "
                              "--executor dask (or leave --scheduler out)")
        return LocalExecutor(workers)
    if kind == "dask":
        if address is not None and workers is not None:
            raise NNBiasError(f"workers={workers} does not apply with scheduler={address!r}: the "
                              "cluster's own workers run the chunks; leave --workers out")
        return DaskExecutor(address, workers)
    raise NNBiasError(f"executor={kind!r} is not allowed; choose one of ['threads', 'dask']")


@contextlib.contextmanager
def progress(label: str, total: int, quiet: bool = False) -> Iterator[Callable[[], None]]:
    """A progress bar on stderr for ``total`` units of work; yields the function that advances it."""
    from rich.console import Console

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=Console(file=sys.stderr), disable=quiet or not total) as bar:
        task = bar.add_task(label, total=total)
        yield lambda: bar.advance(task)


def run_chunks(executor: LocalExecutor | DaskExecutor, fn: Callable[[int], Any],
               chunks: list[int], commit: Callable[[int, Any], None], label: str,
               quiet: bool = False) -> None:
    """Run ``fn`` on every chunk and ``commit`` each result here, with a progress bar on stderr."""
    with progress(label, len(chunks), quiet) as advance:
        for chunk, result in executor.map_unordered(fn, chunks):
            commit(chunk, result)
            advance()


@dataclass(frozen=True)
class CellWork:
    """Cell i of a sweep as a unit of work: ``fn(*before, *cells[i], *after)``. A module-level ``fn``
    and picklable arguments make it runnable on a Dask worker as well as in a thread."""

    fn: Callable[..., Any]
    cells: tuple[tuple, ...]
    before: tuple = ()
    after: tuple = ()

    def __call__(self, i: int) -> Any:
        return self.fn(*self.before, *self.cells[i], *self.after)


def run_cells(executor: LocalExecutor | DaskExecutor | None, fn: Callable[..., Any], cells: list[tuple],
              commit: Callable[[tuple, Any], None], label: str, quiet: bool = False,
              before: tuple = (), after: tuple = ()) -> None:
    """The cells of a sweep (task x width x seed ...) on Dask workers, or one after another in this
    thread with any other executor (cells train linearised models by torch's forward-mode AD, which
    is not thread-safe); each finished cell is committed here, by the store's only writer, in
    completion order. Each cell's seed comes from its key, so the stored results do not depend on
    that order."""
    work = CellWork(fn, tuple(cells), before, after)
    where = executor if isinstance(executor, DaskExecutor) else LocalExecutor(1)
    run_chunks(where, work, list(range(len(cells))),
               lambda i, result: commit(cells[i], result), label, quiet)


def run_sweep(store: Store, run_id: str, table: str, keys: list[str], cells: list[tuple],
              executor: LocalExecutor | DaskExecutor | None, fn: Callable[..., pd.DataFrame], label: str,
              quiet: bool = False, before: tuple = (), after: tuple = ()) -> pd.DataFrame:
    """A sweep whose cell ``fn(*before, *cell, *after)`` gives rows of ``table`` keyed by the ``keys``
    columns: run the ``cells`` (the whole sweep, in its order) that the run has not stored yet, each
    committed as it finishes, and return the run's rows in the sweep's order (``Store.sweep_table``)."""
    done = store.done_cells(table, run_id, keys)
    run_cells(executor, fn, [cell for cell in cells if cell not in done], store.appender(table, run_id),
              label, quiet, before, after)
    return store.sweep_table(table, run_id, keys, cells)
