"""A CUDA device simulated on the CPU: device bugs show up where no GPU is lent.

Running a device path with ``device="cpu"`` cannot catch a tensor left on the host, a CPU generator
drawing device tensors, or ``.numpy()`` of a device tensor: every tensor is on the CPU anyway. Inside
``simulated_cuda()``, ``"cuda"`` names a second device (PyTorch's PrivateUse1 backend, renamed
``simcuda``) whose tensors wrap CPU tensors: every aten op on them runs on the wrapped data, so the
numbers are the CPU's, but the rules CUDA enforces hold, and breaking one raises as it would on a GPU:

* an op mixing device tensors with CPU tensors of one or more dimensions (allowed, as on CUDA: 0-dim
  CPU tensors, CPU index tensors indexing a device tensor, and copies between the devices);
* a generator of one device drawing tensors on the other;
* ``.numpy()`` of a device tensor (its device is not the CPU).

Triton kernels launched on the simulated device run in Triton's interpreter (``TRITON_INTERPRET=1``,
set by importing this module, before any kernel is defined) on the wrapped data; a kernel given a CPU
tensor raises, as a launch on a GPU does.

``traffic`` counts what a GPU would wait on: copies between host and device, and reads of device
values by the host (``.item()``, a ``nonzero`` or ``unique`` whose size depends on the values), so a
test can hold a loop to none per step.

``torch.cuda.is_available`` says True, and the few ``torch.cuda`` queries nnbias makes answer for an
80 GiB device. Forward- and reverse-mode AD and torch.func transforms work on the simulated tensors;
Dask workers (other processes) do not see the simulation. Importing this module renames the backend for
the process's lifetime, so tests run it in a subprocess:

    python tests/simulated_cuda.py [gpu_check options]

runs ``benchmarks/gpu_check.py --device cuda`` on the simulated device: the GPU session's script, dry.
"""

import contextlib
import importlib.util
import os
import threading
from collections import Counter
from collections.abc import Iterator
from unittest import mock

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves, tree_map
from torch.utils.backend_registration import _setup_privateuseone_for_python_backend

os.environ["TRITON_INTERPRET"] = "1"  # read where a kernel is defined: before anything imports one
NAME = "simcuda"
_setup_privateuseone_for_python_backend(rename=NAME)  # once per process: importing this module does it
DEVICE = torch.device(NAME, 0)
TOTAL_MEMORY = 80 * 2**30
COPIES = {"_to_copy", "copy_", "copy", "lift_fresh", "lift_fresh_copy"}  # may take either device's tensors
INDEXING = {"index", "index_put", "index_put_", "_index_put_impl_", "_unsafe_index", "_unsafe_index_put"}

# ops after which CUDA waits for the device: a number read by the host, or a shape that depends on values
SYNCS = {"_local_scalar_dense", "nonzero", "masked_select"}  # and every unique

traffic: Counter[str] = Counter()  # copies "to device" and "to host", and "syncs": what a GPU waits on


class DeviceTensor(torch.Tensor):
    """A tensor on the simulated device: a CPU tensor (``data_``) that says it lives elsewhere."""

    data_: torch.Tensor

    @staticmethod
    def __new__(cls, data: torch.Tensor) -> "DeviceTensor":
        return torch.Tensor._make_wrapper_subclass(cls, data.shape, strides=data.stride(),
                                                   storage_offset=data.storage_offset(), dtype=data.dtype,
                                                   device=DEVICE, requires_grad=data.requires_grad)

    def __init__(self, data: torch.Tensor):
        self.data_ = data

    def __repr__(self) -> str:
        return f"DeviceTensor({self.data_!r})"

    @property
    def is_cuda(self) -> bool:
        return True

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        return _run(func, args, kwargs or {})


def _is_device(device: object) -> bool:
    return device is not None and torch.device(device).type in ("cuda", NAME)


def _run(func, args: tuple, kwargs: dict):
    """One aten op with a device tensor among its arguments: checked as CUDA checks it, then run on
    the wrapped CPU data, its tensor results wrapped again (in place: the device tensor it changed)."""
    name = func._schema.name.split("::")[-1]
    if name not in COPIES:
        # CUDA moves CPU index tensors to the indexed tensor's device, and takes 0-dim CPU tensors
        checked = (args[0], *args[2:]) if name in INDEXING else args
        host = [t for t in tree_leaves((checked, kwargs)) if isinstance(t, torch.Tensor)
                and t.device.type == "cpu" and t.dim() > 0]
        if host:
            raise RuntimeError(f"{func}: Expected all tensors to be on the same device, but found at least "
                               f"two devices, cuda:0 and cpu! (a CPU tensor of shape {tuple(host[0].shape)})")
    to_host = name == "_to_copy" and kwargs.get("device") is not None and not _is_device(kwargs["device"])
    if to_host or (name in COPIES and not isinstance(args[0], DeviceTensor)):
        traffic["to host"] += 1
    elif name in COPIES and any(isinstance(t, torch.Tensor) and t.device.type == "cpu" and t.dim() > 0
                                for t in tree_leaves(args[1:])):
        traffic["to device"] += 1
    if name in SYNCS or "unique" in name:
        traffic["syncs"] += 1
    if _is_device(kwargs.get("device")):
        kwargs = {**kwargs, "device": torch.device("cpu")}
    out = func(*tree_map(_data, args), **tree_map(_data, kwargs))
    first = func._schema.arguments[0] if func._schema.arguments else None
    if first is not None and first.alias_info is not None and first.alias_info.is_write:
        return args[0]
    return out if to_host else tree_map(lambda t: DeviceTensor(t) if isinstance(t, torch.Tensor) else t, out)


def _data(t: torch.Tensor) -> torch.Tensor:
    return t.data_ if isinstance(t, DeviceTensor) else t


def _to_device(value: object) -> object:
    """``"cuda"`` (or a cuda torch.device) as the simulated device; anything else as it is."""
    if isinstance(value, str | torch.device) and torch.device(value).type == "cuda":
        return DEVICE
    return value


class _CudaIsSimulated(TorchFunctionMode):
    """Reads ``device="cuda"`` (keyword or ``Tensor.to``'s positional) as the simulated device before
    PyTorch would try, and fail, to initialise CUDA."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.tolist and isinstance(args[0], DeviceTensor):
            return args[0].data_.tolist()  # what CUDA does: a copy to the host (PyTorch refuses subclasses)
        if "device" in kwargs:
            kwargs = {**kwargs, "device": _to_device(kwargs["device"])}
        generator = kwargs.get("generator")
        if generator is not None:  # checked here: below, PyTorch hands over a plain generator
            on_device = (any(isinstance(t, DeviceTensor) for t in tree_leaves(args))
                         or _is_device(kwargs.get("device")))
            if isinstance(generator, DeviceGenerator) != on_device:
                raise RuntimeError(f"{func.__name__}: Expected a '{'cuda' if on_device else 'cpu'}' device "
                                   f"type for generator but found '{'cpu' if on_device else 'cuda'}'")
        if func in (torch.Tensor.to, torch.Tensor.cuda):
            if func is torch.Tensor.cuda:
                func, args = torch.Tensor.to, (args[0], DEVICE)
            args = (args[0], *map(_to_device, args[1:]))
        return func(*args, **kwargs)


class DeviceGenerator(torch._C.Generator):
    """The simulated device's generator: a CPU generator that says it belongs to the device."""

    @property
    def device(self) -> torch.device:
        return DEVICE


class _Generator(torch.Generator):
    """``torch.Generator(device=...)`` while the simulation is on."""

    def __new__(cls, device: object = "cpu") -> torch.Generator:
        return DeviceGenerator() if _is_device(device) else torch._C.Generator()


_backend = torch.library.Library("aten", "IMPL")
_backend.impl("empty.memory_format", lambda *a, **k: DeviceTensor(torch.ops.aten.empty.memory_format(
    *a, **{**k, "device": torch.device("cpu")})), "PrivateUse1")
_backend.impl("empty_strided", lambda *a, **k: DeviceTensor(torch.ops.aten.empty_strided(
    *a, **{**k, "device": torch.device("cpu")})), "PrivateUse1")
def _copy_from(src: torch.Tensor, dst: DeviceTensor, non_blocking: bool = False) -> DeviceTensor:
    """Where copies into a device tensor end below Python's dispatch (``.to(device)`` of a CPU tensor)."""
    if not isinstance(src, DeviceTensor) and src.dim() > 0:
        traffic["to device"] += 1
    dst.data_.copy_(_data(src))
    return dst


_backend.impl("_copy_from", _copy_from, "PrivateUse1")
# forward-mode AD (torch.func.jvp) starts tangents from zero tensors
_backend.impl("_efficientzerotensor", lambda size, **k: DeviceTensor(torch.zeros(
    size, dtype=k.get("dtype"))), "PrivateUse1")


@contextlib.contextmanager
def simulated_cuda() -> Iterator[None]:
    """Within: ``"cuda"`` is the simulated device, and ``torch.cuda`` says one is there."""
    properties = mock.Mock(total_memory=TOTAL_MEMORY, name="simulated CUDA device")
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch("torch.cuda.is_available", lambda: True))
        stack.enter_context(mock.patch("torch.cuda.synchronize", lambda *a, **k: None))
        stack.enter_context(mock.patch("torch.cuda.get_device_name", lambda *a, **k: "simulated CUDA"))
        stack.enter_context(mock.patch("torch.cuda.get_device_properties", lambda *a, **k: properties))
        stack.enter_context(mock.patch("torch.cuda.memory_reserved", lambda *a, **k: 0))
        stack.enter_context(mock.patch("torch.cuda.memory_allocated", lambda *a, **k: 0))
        stack.enter_context(mock.patch("torch.cuda.mem_get_info",
                                       lambda *a, **k: (TOTAL_MEMORY, TOTAL_MEMORY)))
        stack.enter_context(mock.patch("torch.Generator", _Generator))
        stack.enter_context(mock.patch("threading.Thread.run", _simulated_in_thread(threading.Thread.run)))
        if importlib.util.find_spec("triton"):
            from triton.runtime import interpreter

            stack.enter_context(mock.patch.object(interpreter, "_unwrap_tensor", _kernel_data))
            stack.enter_context(mock.patch.object(interpreter.GridExecutor, "_init_args_hst",
                                                  _device_arguments(interpreter.GridExecutor._init_args_hst)))
        stack.enter_context(_CudaIsSimulated())
        yield


def _kernel_data(arg: object) -> object:
    """What Triton's interpreter reads and writes for a kernel's tensor argument: a device tensor's data."""
    return arg.data_ if isinstance(arg, DeviceTensor) else arg


def _device_arguments(init_args):
    """The interpreter's launch, refusing a CPU tensor as a GPU's launch refuses a pointer it cannot
    reach."""

    def checked(self, args: list, kwargs: dict):
        for arg in [*args, *kwargs.values()]:
            if isinstance(arg, torch.Tensor) and not isinstance(arg, DeviceTensor):
                raise RuntimeError(f"a Triton kernel was given a tensor on {arg.device}, not on the device")
        return init_args(self, args, kwargs)

    return checked


def _simulated_in_thread(run):
    """A thread's body with the simulation on: PyTorch's modes are per thread, and executors run units
    on pools of threads."""

    def simulated(self: threading.Thread) -> None:
        with _CudaIsSimulated():
            run(self)

    return simulated


if __name__ == "__main__":
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    sys.path[:0] = [str(root / "benchmarks"), str(root / "src")]
    import gpu_check

    sys.argv = [gpu_check.__file__, "--device", "cuda", *sys.argv[1:]]
    # Triton's interpreter runs the sampler's kernel at tens of networks a second, so sampling on the
    # simulated device draws a few hundred networks (what this run checks is where tensors live)
    module, runner, overrides = gpu_check.EXPERIMENTS["sgd-vs-bayes"]
    gpu_check.EXPERIMENTS["sgd-vs-bayes"] = (module, runner, {**overrides, "rejection_samples": 256})
    # speed on the simulated device is the CPU's behind Python wrappers (its 8192^3 matmuls: a minute)
    unmeasured = "sampler on the simulated device: speed not measured"
    with simulated_cuda(), mock.patch.object(gpu_check, "sampler_speed", lambda *a: unmeasured):
        sys.exit(gpu_check.main())
