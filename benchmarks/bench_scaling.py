"""Scaling efficiency of the executors: ``python benchmarks/bench_scaling.py [samples]``.

1. The same sampling run (7-40-40-1 ReLU on all 128 inputs, chunks of 65536
   networks) with 1 thread, 2 threads, a local Dask cluster of 1 process and
   one of 2 processes, each into a fresh store, in this run. Prints networks/s
   (sampling and committing, not the cluster's start-up) and the efficiency
   rate(N) / (N * rate(1 thread)); the stores' counts must agree, since chunks
   depend on the seed alone.
2. A training run (P_SGD of ``sgd-vs-bayes``: 8 chunks of 250 64-40-40-1 ReLU
   networks trained by SGD, batches of 8, on the binarised digits 3 and 5) the
   same four ways: networks/s, efficiency, and whether the stored functions are
   identical.
3. A sweep experiment (``bound`` on the Boolean task: 12 cells, each EP on the
   NNGP, a rejection count and 8 networks trained by Adam) the same four ways:
   cells/s, efficiency, and whether the stored cells are identical.
"""

import sys
import tempfile
import time
from pathlib import Path

from nnbias.executor import DaskExecutor, LocalExecutor
from nnbias.experiments.bound import SIZES, BoundSettings, run_bound
from nnbias.experiments.sampling import SamplingConfig, run_sampling
from nnbias.experiments.sgd_bayes import SgdBayesSettings, run_psgd
from nnbias.spec import NetworkSpec
from nnbias.store import Store

EXECUTORS = (("1 thread", lambda: LocalExecutor(1)), ("2 threads", lambda: LocalExecutor(2)),
             ("dask, 1 worker", lambda: DaskExecutor(workers=1)),
             ("dask, 2 workers", lambda: DaskExecutor(workers=2)))


def measure(run, units: int, unit: str) -> None:
    """``run(store, executor, folder)`` (returning a comparable table) with each executor into a fresh
    store: its rate in ``unit``/s, the efficiency rate(N) / (N rate(1 thread)), and whether every
    store holds the same table."""
    rates, tables = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, make in EXECUTORS:
            executor = make()
            try:
                with Store(Path(tmp) / f"{label}.duckdb") as st:
                    start = time.perf_counter()
                    tables[label] = run(st, executor, Path(tmp) / label)
                    rates[label] = units / (time.perf_counter() - start)
            finally:
                getattr(executor, "close", lambda: None)()
    for label, rate in rates.items():
        n = 1 if label.startswith(("1 ", "dask, 1")) else 2
        print(f"{label:16s} {rate:12,.2f} {unit}   efficiency {rate / (n * rates['1 thread']):5.2f}")
    print(f"identical results in every store: {all(t.equals(tables['1 thread']) for t in tables.values())}")


def main(samples: int = 2_000_000) -> None:
    config = SamplingConfig(NetworkSpec(7, (40, 40)), samples=samples, seed=3, chunk_size=65536)

    def sample(st, executor, _folder):
        run_id = run_sampling(st, config, executor, quiet=True)
        return st.function_counts(run_id).sort_values("truth_table", ignore_index=True)

    print(f"{samples:,} networks 7-40-40-1, chunks of 65536")
    measure(sample, samples, "networks/s")
    training = SgdBayesSettings(tasks=("digits-3-5",), methods=("sgd-b8",))  # reproduce's 8 chunks of 250

    def train(st, executor, _folder):
        run_id = run_psgd(st, "digits-3-5", "sgd-b8", training, executor, quiet=True)
        return st.function_counts(run_id).sort_values("truth_table", ignore_index=True)

    print(f"training: P_SGD of sgd-b8 on digits-3-5, {training.runs} networks, {training.chunk_size} a chunk")
    measure(train, training.runs, "networks/s")
    settings = BoundSettings(tasks=("bool7-0011",), networks=8)

    def sweep(st, executor, folder):
        cells = run_bound(st, settings, folder, quiet=True, executor=executor)["cells"]
        return cells.sort_values(["m", "corruption"], ignore_index=True)

    cells = len(settings.corruptions) * len(SIZES["bool7-0011"])
    print(f"sweep: nnbias bound, {cells} cells (EP, a rejection count, 8 networks trained by Adam each)")
    measure(sweep, cells, "cells/s   ")


if __name__ == "__main__":
    main(*(int(float(a)) for a in sys.argv[1:]))
