"""Huge pages for large CPU tensors: ``python benchmarks/bench_huge_pages.py [--width W]``.

One paper-scale ``posterior`` chunk (160 networks of 7-W-W-1 trained by SGD on S, 496 prior networks
measured; W = 1024 as in the paper) in two fresh processes on one thread, one after the other: with
the huge pages importing nnbias asks torch for (THP_MEM_ALLOC_ENABLE=1) and without (=0). Prints
each one's wall and system time, page faults and peak memory, their ratio, and whether the two cells'
numbers are identical (they must be: only where the memory comes from differs).
"""

import argparse
import json
import os
import subprocess
import sys

CELL = """
import dataclasses, json, resource, sys, time
import nnbias
import torch
from nnbias.experiments import posterior as P
torch.set_num_threads(1)
s = dataclasses.replace(P.settings_for("paper"), samples=160, prior_samples=496, methods=("sgd-ntk",))
task = P.load_task(s.task, s.seed)
start, t = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
cell = P.posterior_cell(task, int(sys.argv[1]), "sgd-ntk", s)
end = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"wall": time.perf_counter() - t, "system": end.ru_stime - start.ru_stime,
                  "faults": end.ru_minflt - start.ru_minflt, "peak_gib": end.ru_maxrss / 2**20,
                  "cell": cell.to_json()}))
"""


def run(width: int, huge_pages: bool) -> dict:
    """The chunk in a fresh process (torch reads the setting at its first allocation)."""
    env = os.environ | {"THP_MEM_ALLOC_ENABLE": "1" if huge_pages else "0"}
    out = subprocess.run([sys.executable, "-c", CELL, str(width)], env=env, capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=1024, help="hidden width (the paper's: 1024)")
    width = parser.parse_args().width
    with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
        print(f"transparent huge pages: {f.read().strip()}")
    small, huge = run(width, False), run(width, True)
    for name, r in [("4 KiB pages (THP_MEM_ALLOC_ENABLE=0)", small),
                    ("huge pages (THP_MEM_ALLOC_ENABLE=1)", huge)]:
        print(f"{name:36s} {r['wall']:6.1f} s wall, {r['system']:5.1f} s system, "
              f"{r['faults']:>10,} page faults, peak {r['peak_gib']:.2f} GiB")
    print(f"huge pages / 4 KiB pages: {huge['wall'] / small['wall']:.2f} of the time; "
          f"numbers identical: {huge['cell'] == small['cell']}")


if __name__ == "__main__":
    main()
