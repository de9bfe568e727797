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


class Room(NamedTuple):
    free: int  # bytes
    where: str  # which limit leaves them, for the one-line refusal


def _room(device: torch.device) -> Room:
    """The tightest of the limits on ``device`` now, and which one it is: a refusal that says "free on
    this machine" when it is a job's or a worker's limit that binds sends the user to the wrong knob."""
    if device.type == "cuda":
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return Room(torch.cuda.mem_get_info(device)[0] + cached, f"free on {device}")
    have = _total_bytes(device)  # no /proc (macOS): the total
    with contextlib.suppress(OSError, StopIteration, ValueError), open("/proc/meminfo") as f:
        have = 1024 * int(next(line for line in f if line.startswith("MemAvailable:")).split()[1])
    rooms = [Room(have, "free on this machine")]
    rooms += [Room(max(c.limit - c.used + c.reclaimable, 0),
                   f"left under this job's memory limit ({_gib(c.limit)} GiB, its cgroup)")
              for c in cgroup_memory()]
    worker = _dask_worker_limit()
    if worker:
        import psutil

        rooms.append(Room(max(int(0.95 * worker) - psutil.Process().memory_info().rss, 0),
                          f"left under this Dask worker's memory limit ({_gib(worker)} GiB; its nanny "
                          "restarts it past 95 %)"))
    return min(rooms)


def device_bytes(device: str | torch.device) -> int:
    """Memory ``device`` can give now: the GPU's free memory plus what torch's caching allocator holds
    unused, or this machine's available RAM (``MemAvailable``: free plus reclaimable caches), or less
    where a cgroup's limit or a Dask worker's leaves less. Not the total: a buffer near the total is
    granted by the allocator and then ends the process by the kernel's OOM killer as its pages are
    touched."""
    return _room(torch.device(device)).free


def _dask_worker_limit() -> int:
    """A Dask worker's memory limit when this process is one (0 otherwise): a local cluster of N
    workers gives each 1/N of the machine, so a cell within the machine's memory but over the
    worker's is redone until Dask gives up."""
    if "distributed" not in sys.modules:  # no cluster in this process: nothing to import
        return 0
    from distributed import get_worker

    try:
        return get_worker().memory_manager.memory_limit or 0
    except ValueError:  # not on a worker
        return 0


def _refused(need: int, device: str | torch.device) -> Room | None:
    """What is left if ``need`` exceeds it, else None. A request under 1/64 of the device's total (or of
    a Dask worker's limit, when that is less) is granted without asking (a forward pass asks at every
    training step; reading what is free costs about 160 us, a step of a small network not much more)."""
    device = torch.device(device)
    if need <= min(_total_bytes(device), _dask_worker_limit() or math.inf) // 64:
        return None
    room = _room(device)
    return room if need > room.free else None


def _gib(n: int) -> str:
    return f"{n / 2**30:.3g}"


def _where(room: Room) -> str:
    return f"the {_gib(room.free)} GiB {room.where}"


def _count(k: int) -> str:
    return f"{k:.3g}" if k >= 10**15 else str(k)


def check_fits(k: int, per_net: int, dtype: torch.dtype, device: str | torch.device, what: str) -> None:
    """Refuse ``k`` networks of ``per_net`` numbers each when their buffer alone exceeds the device."""
    each = per_net * dtype.itemsize
    room = _refused(k * each, device)
    if room is not None:
        fit = room.free // each
        raise NNBiasError(f"{_count(k)} networks of {what} ({per_net} numbers each) need "
                          f"{_gib(k * each)} GiB, more than {_where(room)}; "
                          + (f"at most {fit} fit at once, so ask for fewer networks or a smaller chunk" if fit
                             else "not even one fits, so ask for smaller widths or fewer inputs"))


def check_gram_fits(name: str, n: int, m: int, dtype: torch.dtype, device: str | torch.device) -> None:
    """Refuse an (n, m) Gram matrix (``name`` = n, the size asked for) that alone exceeds the device."""
    room = _refused(n * m * dtype.itemsize, device)
    if room is not None:
        raise NNBiasError(f"{name}={_count(n)} is not allowed: its {_count(n)} x {_count(m)} Gram matrix "
                          f"needs {_gib(n * m * dtype.itemsize)} GiB, more than {_where(room)} "
                          f"(a square one fits up to {math.isqrt(room.free // dtype.itemsize)} points)")


def forward_numbers(n: int, kept: int, peak: int, params: int, grad: bool) -> int:
    """Numbers per network a forward pass on ``n`` inputs surely holds: with autograd (``grad``), the
    ``kept`` numbers per input it saves for the backward pass (all held when the backward pass
    starts) or the ``peak`` numbers per input its widest step holds at once, whichever is more, and
    the gradients (``params``); without, the ``peak`` alone."""
    return n * max(kept, peak) + params if grad else n * peak


def check_forward_fits(k: int, n: int, kept: int, peak: int, params: int, dtype: torch.dtype,
                       device: str | torch.device, what: str) -> None:
    """Refuse a forward pass of ``k`` networks (``what``) on ``n`` inputs that cannot hold what
    ``forward_numbers`` counts."""
    grad = torch.is_grad_enabled()
    check_fits(k, forward_numbers(n, kept, peak, params, grad), dtype, device,
               f"{what} on {n} inputs (activations{' and gradients' if grad else ''})")


def training_copies(optimizer: str) -> int:
    """Parameter-sized buffers ``training.train`` holds per network beside the draws: the trained
    clone, the optimizer state (and Adam's second moments), the gradients and two update temporaries."""
    return 5 + (optimizer == "adam")


def training_numbers(spec: NetworkSpec | LayeredSpec, points: int, optimizer: str = "sgd",
                     evaluated: int = 0) -> int:
    """Numbers per network that training ``spec`` by ``optimizer`` on ``points`` inputs at once surely
    holds: the draw and its training state (``training_copies``) and a forward pass's activations on
    the ``points`` (as ``forward_numbers`` counts them with autograd) or, where the networks are also
    evaluated on ``evaluated`` inputs at once (a minibatch run's full training and test sets), its
    widest step on those if that is more. A lower bound (``benchmarks/bench_memory.py`` measures
    real peaks against it)."""
    held = max(points * spec.activations, max(points, evaluated) * spec.peak)
    return (1 + training_copies(optimizer)) * spec.n_params + held


def check_training_fits(spec: NetworkSpec | LayeredSpec, networks: int, points: int, dtype: torch.dtype,
                        device: str | torch.device, optimizer: str = "sgd", evaluated: int = 0) -> None:
    """Refuse, before a run is written, ``networks`` networks of ``spec`` that cannot hold what
    ``training_numbers`` counts: what passes may still be refused at an allocation, but what fails
    here would fail there, after the cells before it."""
    check_fits(networks, training_numbers(spec, points, optimizer, evaluated), dtype, device,
               f"{spec.describe()} trained by {optimizer} on {points} inputs"
               + (f" and evaluated on {evaluated}" if evaluated > points else "")
               + " (the draws, their training state and the activations)")
