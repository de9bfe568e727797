"""How much a device can hold, asked before a buffer is allocated.

Why: every engine holds a chunk (or a whole ensemble) of networks as one stacked
tensor, and every kernel predictor an N x N Gram matrix, so a count such as
``--draws 1e40``, ``--networks 1e11`` or ``--sizes 1e8`` would otherwise end in an
integer overflow inside torch, an allocator failure, or the kernel's OOM killer,
after minutes of other work; asked here first, it is one line that names the
count and what fits.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import torch

from nnbias.errors import NNBiasError
from nnbias.spec import NetworkSpec

if TYPE_CHECKING:  # layers imports the engines, which import this module
    from nnbias.layers import LayeredSpec


PROC_CGROUP = Path("/proc/self/cgroup")
CGROUP_ROOT = Path("/sys/fs/cgroup")
UNLIMITED = 2**60  # cgroup v1 writes "no limit" as the largest page-aligned int64


class CgroupMemory(NamedTuple):
    limit: int
    used: int  # bytes charged to the cgroup, its page cache included
    reclaimable: int  # inactive page cache, which the kernel drops before it kills


def cgroup_memory() -> list[CgroupMemory]:
    """The memory limit of this process's cgroup and of each cgroup above it (v1 and v2), the limit a
    container, a Kubernetes pod or a batch job (SLURM) sets, which ``/proc/meminfo`` does not show:
    there a request within the machine's memory but over the job's ends in the OOM killer. Empty
    where no limit is set or nothing can be read."""
    try:
        lines = PROC_CGROUP.read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "":
            base, files = CGROUP_ROOT, ("memory.max", "memory.current", "inactive_file")
        elif "memory" in controllers.split(","):
            base, files = CGROUP_ROOT / "memory", ("memory.limit_in_bytes", "memory.usage_in_bytes",
                                                   "total_inactive_file")
        else:
            continue
        folder = base / path.strip().lstrip("/")
        while True:  # a path that is not mounted here (a container's view of the host's) ends at base
            with contextlib.suppress(OSError, ValueError):
                limit = (folder / files[0]).read_text().strip()
                if limit != "max" and int(limit) < UNLIMITED:
                    stat = dict(row.split()[:2] for row in (folder / "memory.stat").read_text().splitlines())
                    found.append(CgroupMemory(int(limit), int((folder / files[1]).read_text()),
                                              int(stat.get(files[2], 0))))
            if folder == base or base not in folder.parents:
                break
            folder = folder.parent
    return found


@functools.cache
def _total_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return min([physical, *(c.limit for c in cgroup_memory())])


def device_bytes(device: str | torch.device) -> int:
    """Memory ``device`` can give now: the GPU's free memory plus what torch's caching allocator holds
    unused, or this machine's available RAM (``MemAvailable``: free plus reclaimable caches), or less
    where a cgroup's limit or a Dask worker's leaves less. Not the total: a buffer near the total is
    granted by the allocator and then ends the process by the kernel's OOM killer as its pages are
    touched."""
    device = torch.device(device)
    if device.type == "cuda":
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return torch.cuda.mem_get_info(device)[0] + cached
    have = _total_bytes(device)  # no /proc (macOS): the total
    with contextlib.suppress(OSError, StopIteration, ValueError), open("/proc/meminfo") as f:
        have = 1024 * int(next(line for line in f if line.startswith("MemAvailable:")).split()[1])
    rooms = [max(c.limit - c.used + c.reclaimable, 0) for c in cgroup_memory()]
    return min([have, *rooms, *_dask_worker_room()])


def _dask_worker_room() -> list[int]:
    """What a Dask worker's memory limit leaves this process, when it is one: its nanny restarts the
    worker past 95 % of the limit (a local cluster of N workers gives each 1/N of the machine), so a
    cell within the machine's memory but over the worker's is redone until Dask gives up."""
    if "distributed" not in sys.modules:  # no cluster in this process: nothing to import
        return []
    import psutil
    from distributed import get_worker

    try:
        limit = get_worker().memory_manager.memory_limit
    except ValueError:  # not on a worker
        return []
    return [max(int(0.95 * limit) - psutil.Process().memory_info().rss, 0)] if limit else []


def _refused(need: int, device: str | torch.device) -> int | None:
    """The bytes free if ``need`` exceeds them, else None. A request under 1/64 of the device's total is
    granted without asking (a forward pass asks at every training step; reading what is free costs
    about 10 us, a step of a small network not much more)."""
    device = torch.device(device)
    if need <= _total_bytes(device) // 64:
        return None
    have = device_bytes(device)
    return have if need > have else None


def _where(have: int, device: str | torch.device) -> str:
    device = torch.device(device)
    return f"the {have / 2**30:.3g} GiB free on " + ("this machine" if device.type == "cpu" else str(device))


def _count(k: int) -> str:
    return f"{k:.3g}" if k >= 10**15 else str(k)


def check_fits(k: int, per_net: int, dtype: torch.dtype, device: str | torch.device, what: str) -> None:
    """Refuse ``k`` networks of ``per_net`` numbers each when their buffer alone exceeds the device."""
    each = per_net * dtype.itemsize
    have = _refused(k * each, device)
    if have is not None:
        fit = have // each
        raise NNBiasError(f"{_count(k)} networks of {what} ({per_net} numbers each) need "
                          f"{k * each / 2**30:.3g} GiB, more than {_where(have, device)}; "
                          + (f"at most {fit} fit at once, so ask for fewer networks or a smaller chunk" if fit
                             else "not even one fits, so ask for smaller widths or fewer inputs"))


def check_gram_fits(name: str, n: int, m: int, dtype: torch.dtype, device: str | torch.device) -> None:
    """Refuse an (n, m) Gram matrix (``name`` = n, the size asked for) that alone exceeds the device."""
    have = _refused(n * m * dtype.itemsize, device)
    if have is not None:
        raise NNBiasError(f"{name}={_count(n)} is not allowed: its {_count(n)} x {_count(m)} Gram matrix "
                          f"needs {n * m * dtype.itemsize / 2**30:.3g} GiB, more than {_where(have, device)} "
                          f"(a square one fits up to {math.isqrt(have // dtype.itemsize)} points)")


def check_training_fits(spec: NetworkSpec | LayeredSpec, networks: int, points: int, dtype: torch.dtype,
                        device: str | torch.device) -> None:
    """Refuse, before a run is written, ``networks`` networks of ``spec`` that cannot hold what training
    them on ``points`` inputs at once surely needs: the parameters twice (the draws and the trained
    copy) and each hidden layer's activations (``spec.activations`` per input). A lower bound: what
    passes may still be refused at an allocation, but what fails here would fail there, after the
    cells before it."""
    check_fits(networks, 2 * spec.n_params + points * spec.activations, dtype, device,
               f"{spec.describe()} trained on {points} inputs (the parameters twice and the activations)")
