"""Where a number was computed: the machine and software of the process that ran a piece of a run.

Runs are bit-for-bit reproducible from their seed on one kind of machine, but not across CPUs
whose vector units differ (AVX-512 against AVX2, Intel against AMD): torch's and MKL's kernels
then add in another order, and training amplifies the last bits into visibly different accuracies.
So the store records, for every process that started or resumed a run, what it ran on; a number
that differs from a published one can then be traced to the machine before anyone suspects the
code.
"""

from __future__ import annotations

import functools
import platform
from importlib import metadata
from pathlib import Path

from nnbias import __version__

DEPENDENCIES = ("torch", "numpy", "scipy", "duckdb", "pandas", "matplotlib", "dask", "sympy",
                "scikit-learn", "numba", "mnist1d")
MACHINE = ("cpu", "cpu_capability", "gpu")


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo; elsewhere what ``platform`` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, str]:
    """This process's machine (CPU, the vector instructions torch dispatches to, GPU) and software
    (Python, platform, nnbias and its dependencies' versions). Not the thread count: every unit of
    work runs on one intra-op thread (``executor``), however many the process has."""
    return dict(_environment())  # a copy: callers may extend it


@functools.cache
def _environment() -> dict[str, str]:
    """Looked up once per process (every run a process starts records it; none of it changes)."""
    import torch

    out = {"nnbias": __version__, "python": platform.python_version(), "platform": platform.platform(),
           "cpu": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"}
    for name in DEPENDENCIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def describe(env: dict[str, str]) -> str:
    """One line: the machine first (what makes last bits differ), then the versions."""
    machine = f"{env.get('cpu', '?')} ({env.get('cpu_capability', '?')}); GPU {env.get('gpu', '?')}"
    rest = ", ".join(f"{k} {env[k]}" for k in sorted(env) if k not in MACHINE)
    return f"{machine}; {rest}"


def computed_on_lines(environments: list[dict[str, str]]) -> list[str]:
    """What a run (or a report's runs) was computed on, one line per recorded environment."""
    return ([f"Computed on {describe(e)}" for e in environments]
            or ["Machine not recorded (a store written before nnbias recorded it)."])
