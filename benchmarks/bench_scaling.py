"""Scaling efficiency of the executors: ``python benchmarks/bench_scaling.py [samples]``.

The same sampling run (7-40-40-1 ReLU on all 128 inputs, chunks of 65536
networks) with 1 thread, 2 threads, a local Dask cluster of 1 process and
one of 2 processes, each into a fresh store, in this run. Prints networks/s
(sampling and committing, not the cluster's start-up) and the efficiency
rate(N) / (N * rate(1 thread)); the stores' counts must agree, since chunks
depend on the seed alone.
"""

import sys
import tempfile
import time
from pathlib import Path

from nnbias.executor import DaskExecutor, LocalExecutor
from nnbias.experiments.sampling import SamplingConfig, run_sampling
from nnbias.spec import NetworkSpec
from nnbias.store import Store


def main(samples: int = 2_000_000) -> None:
    config = SamplingConfig(NetworkSpec(7, (40, 40)), samples=samples, seed=3, chunk_size=65536)
    rates, counts = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, make in (("1 thread", lambda: LocalExecutor(1)), ("2 threads", lambda: LocalExecutor(2)),
                            ("dask, 1 worker", lambda: DaskExecutor(workers=1)),
                            ("dask, 2 workers", lambda: DaskExecutor(workers=2))):
            executor = make()
            try:
                with Store(Path(tmp) / f"{label}.duckdb") as st:
                    start = time.perf_counter()
                    run_id = run_sampling(st, config, executor, quiet=True)
                    rates[label] = samples / (time.perf_counter() - start)
                    counts[label] = st.function_counts(run_id).sort_values("truth_table", ignore_index=True)
            finally:
                getattr(executor, "close", lambda: None)()
    base = rates["1 thread"]
    print(f"{samples:,} networks 7-40-40-1, chunks of 65536")
    for label, rate in rates.items():
        n = 1 if label.startswith(("1 ", "dask, 1")) else 2
        print(f"{label:16s} {rate:12,.0f} networks/s   efficiency {rate / (n * base):5.2f}")
    same = all(c.equals(counts["1 thread"]) for c in counts.values())
    print(f"identical counts in every store: {same}")


if __name__ == "__main__":
    main(*(int(float(a)) for a in sys.argv[1:]))
