"""The faces of a :class:`~nnbias.layers.LayeredSpec`: K stacked networks, their analytic NNGP/NTK
(CNN-GP and CNTK for convolutional specs), Monte-Carlo kernels and empirical NTKs.

Every function here walks the spec's layer list; none knows a layer kind. Inputs are
flat rows, (N, prod(input_shape)) as a :class:`~nnbias.tasks.datasets.Dataset` holds
them, or (K, N, prod(input_shape)) for each network's own minibatch, and are shaped
to (channels, *spatial) on the way in.

Analytic kernels are computed in blocks of input pairs sized to a memory budget, so
the (N, N, P, P) tensor of a pooled CNN kernel never exists at once (neural-tangents'
users ran out of memory exactly there); a symmetric Gram matrix computes only the
blocks on and above the diagonal.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from nnbias.engines.empirical import ntk_of_function
from nnbias.engines.kernels import assemble_gram, dual_fn
from nnbias.engines.memory import check_fits, check_forward_fits
from nnbias.engines.sampler import FunctionCounts, chunk_seed
from nnbias.errors import check_choice, check_positive, require
from nnbias.layers import Activation, KernelState, LayeredSpec

# bytes one kernel block may use: on a CPU small enough to stay in cache (measured, 1 thread: a
# MNIST-1D CNTK of 1000 inputs 0.88 s at 2**28, 0.30 s at 2**24; a depth-3 MLP's NTK of 4000
# 1.53 s against 0.47 s), on a GPU large enough to keep it busy
DEFAULT_MEMORY = {"cpu": 2**24, "device": 2**28}
_TEMPORARIES = 8  # live tensors of a block's size while a layer transforms it


def _factors(spec: LayeredSpec) -> list[tuple[float, float]]:
    """(weight, bias) multipliers from a unit draw (N(0,1) or U(-1,1)) to the prior's parameter."""
    root3 = math.sqrt(3.0) if spec.prior == "uniform" else 1.0
    return [(w * root3, b * root3) for w, b in spec.scales()]


@dataclass
class SerialNets:
    """K networks of one layered spec; ``params`` are what its parametrization trains, each (K, *shape)."""

    spec: LayeredSpec
    params: list[torch.Tensor]

    @property
    def size(self) -> int:
        return self.params[0].shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(K, N) outputs of a scalar readout, (K, N, k) of a k-output one."""
        return network_fn(self.spec)(self.params, x)

    def functional(self) -> tuple[Callable, list[torch.Tensor]]:
        return network_fn(self.spec), self.params


def network_fn(spec: LayeredSpec) -> Callable[[list[torch.Tensor], torch.Tensor], torch.Tensor]:
    """``fn(params, x)``: the spec's K networks as a pure function of their parameters (for training,
    empirical NTKs and linearisation)."""
    per_layer = [
        len(layer.param_shapes(shape)[: 2 if spec.bias else 1])
        for layer, shape in zip(spec.stack, spec.shapes, strict=False)
    ]
    forward_scales = iter(
        _factors(spec) if spec.parametrization == "ntk" else [(1.0, 1.0)] * sum(1 for n in per_layer if n)
    )
    scales = [next(forward_scales) if n else (1.0, 1.0) for n in per_layer]
    width = math.prod(spec.input_shape)
    kept = spec.activations  # read here, not first inside a torch.func transform

    def fn(params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        k = params[0].shape[0]
        require(
            x.shape[-1] == width and x.ndim in (2, 3),
            f"inputs of shape {tuple(x.shape)} do not match input_shape={spec.input_shape}; "
            f"expected flat rows (N, {width}) or (K, N, {width})",
        )
        check_forward_fits(k, x.shape[-2], kept, spec.peak, spec.n_params, params[0].dtype,
                           params[0].device, spec.describe())
        x = x.to(dtype=params[0].dtype, device=params[0].device)
        if x.ndim == 2:
            h = x.reshape(x.shape[0], 1, *spec.input_shape).expand(-1, k, *spec.input_shape)
        else:
            h = x.transpose(0, 1).reshape(x.shape[1], k, *spec.input_shape)
        taken = iter(params)
        for layer, n, s in zip(spec.stack, per_layer, scales, strict=True):
            h = layer.forward(h, [next(taken) for _ in range(n)], s)
        out = h.transpose(0, 1)  # (K, N, outputs)
        return out[..., 0] if spec.outputs == 1 else out

    return fn


def sample_serial(
    spec: LayeredSpec, k: int, generator: torch.Generator, dtype: torch.dtype = torch.float32
) -> SerialNets:
    """K networks from the spec's prior, from one RNG call (as ``ensemble.sample_ensemble``)."""
    shapes = spec.param_shapes()
    sizes = [math.prod(s) for s in shapes]
    check_fits(k, sum(sizes), dtype, generator.device, spec.describe())
    flat = torch.empty(k, sum(sizes), dtype=dtype, device=generator.device)
    if spec.prior == "gaussian":
        flat.normal_(generator=generator)
    else:
        flat.uniform_(-1.0, 1.0, generator=generator)
    draws = [t.reshape(k, *s) for t, s in zip(flat.split(sizes, dim=1), shapes, strict=True)]
    if spec.parametrization == "standard":
        factors = [f for pair in _factors(spec) for f in pair[: 2 if spec.bias else 1]]
        draws = [d * f for d, f in zip(draws, factors, strict=True)]
    return SerialNets(spec, draws)


# analytic kernels ---------------------------------------------------------------
def _shaped(spec: LayeredSpec, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    width = math.prod(spec.input_shape)
    x = torch.as_tensor(x)
    require(
        x.ndim == 2 and x.shape[1] == width,
        f"inputs of shape {tuple(x.shape)} do not match input_shape={spec.input_shape}; "
        f"expected (N, {width})",
    )
    require(x.shape[0] > 0, "no inputs: give at least one row")
    require(not x.is_complex(), "inputs are complex; give real numbers")
    x = x.to(dtype)
    require(bool(torch.isfinite(x).all()), "inputs contain NaN or inf; clean the data first")
    return x.reshape(-1, *spec.input_shape)


class SerialKernelFn:
    """Analytic NNGP/NTK of a layered spec: ``SerialKernelFn(spec)(x1, x2, "ntk")``."""

    def __init__(self, spec: LayeredSpec):
        self.spec = spec

    def _walk(
        self,
        state: KernelState,
        variances: Iterator[tuple[torch.Tensor, torch.Tensor]] | None,
        record: list[torch.Tensor] | None = None,
        same: bool = False,
    ) -> KernelState:
        """Every layer's transform; ``variances`` None: an aligned pass that records them; ``same``: a
        block of inputs with itself (see ``KernelState.pin``)."""
        for layer, shape in zip(self.spec.stack, self.spec.shapes, strict=False):
            pair = None
            if layer.needs_variances:
                if variances is None:
                    v = state.variances()
                    record.append(v)
                    pair = (v, v)
                else:
                    pair = next(variances)
                    if same:
                        state.pin(pair[0])
            state = layer.kernel(state, self.spec, shape, pair)
        return state

    def _pair_bytes(self, itemsize: int) -> int:
        """Bytes one input pair's largest layer state needs (with temporaries)."""
        full = self.spec.needs_full_covariance
        rep = max(math.prod(s[1:]) ** (2 if full else 1) for s in self.spec.shapes)
        terms = max((getattr(dual_fn(layer.name), "terms", 1) for layer in self.spec.stack
                     if isinstance(layer, Activation)), default=1)  # tanh: 32 values per pair at once
        return rep * itemsize * _TEMPORARIES * terms

    def variances(self, x: torch.Tensor, ntk: bool, memory: int) -> list[torch.Tensor]:
        """K(x, x) at every position before each activation (aligned passes in row blocks)."""
        rows = max(1, memory // self._pair_bytes(x.element_size()))
        parts: list[list[torch.Tensor]] = []
        for i in range(0, x.shape[0], rows):
            parts.append([])
            self._walk(
                KernelState.of_inputs(x[i : i + rows], None, self.spec.needs_full_covariance, ntk),
                None,
                parts[-1],
            )
        return [torch.cat(layer) for layer in zip(*parts, strict=True)]

    def __call__(
        self, x1, x2=None, kind: str = "nngp", memory: int | None = None, dtype: torch.dtype = torch.float64,
        device: str | torch.device = "cpu",
    ):
        """Gram matrix (N1, N2) of ``kind`` nngp, ntk or both (a tuple), in blocks of ``memory`` bytes
        computed on ``device`` (the result is on the CPU)."""
        check_choice("kind", kind, ("nngp", "ntk", "both"))
        if memory is None:
            memory = DEFAULT_MEMORY["cpu" if torch.device(device).type == "cpu" else "device"]
        memory = int(check_positive("memory", memory))
        ntk = kind != "nngp"
        symmetric = x2 is None
        x1 = _shaped(self.spec, x1, dtype).to(device)
        x2 = x1 if symmetric else _shaped(self.spec, x2, dtype).to(device)
        v1 = self.variances(x1, False, memory)
        v2 = v1 if symmetric else self.variances(x2, False, memory)
        block = max(1, math.isqrt(max(1, memory // self._pair_bytes(x1.element_size()))))

        def compute(si: slice, sj: slice, same: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
            pairs = iter([(a[si], b[sj]) for a, b in zip(v1, v2, strict=True)])
            full = self.spec.needs_full_covariance
            state = self._walk(KernelState.of_inputs(x1[si], x2[sj], full, ntk), pairs, same=same)
            return state.nngp, state.ntk

        nngp, theta = assemble_gram(x1.shape[0], x2.shape[0], block, symmetric, compute, dtype)
        return {"nngp": nngp, "ntk": theta, "both": (nngp, theta)}[kind]


# finite-network kernels -----------------------------------------------------------
def serial_empirical_ntk(
    spec: LayeredSpec,
    x1: torch.Tensor,
    x2: torch.Tensor | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    mode: str = "trace",
) -> torch.Tensor:
    """Empirical NTK of one network drawn from the spec (torch.func Jacobians), summed over outputs
    (``mode='trace'``) or (N1, N2, k, k) (``'full'``)."""
    nets = sample_serial(spec, 1, torch.Generator().manual_seed(seed), dtype)
    fn, params = nets.functional()

    def one(p, x):
        out = fn(p, x)[0]
        return out.reshape(x.shape[0], -1)

    return ntk_of_function(one, params, x1.to(dtype), None if x2 is None else x2.to(dtype), mode)


def serial_monte_carlo_nngp(
    spec: LayeredSpec,
    x1: torch.Tensor,
    x2: torch.Tensor | None = None,
    networks: int = 256,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    chunk: int = 64,
) -> torch.Tensor:
    """mean_k f_k(x) f_k(x') over K networks from the prior (per output, averaged over outputs)."""
    total = None
    x2_ = x1 if x2 is None else x2
    gen = torch.Generator().manual_seed(seed)
    for start in range(0, networks, chunk):
        nets = sample_serial(spec, min(chunk, networks - start), gen, dtype)
        with torch.no_grad():
            a = nets.forward(x1.to(dtype)).reshape(nets.size, x1.shape[0], -1)
            b = a if x2 is None else nets.forward(x2_.to(dtype)).reshape(nets.size, x2_.shape[0], -1)
        part = torch.einsum("kio,kjo->ij", a, b) / a.shape[-1]
        total = part if total is None else total + part
    return total / networks


def serial_function_counts(
    spec: LayeredSpec, x: torch.Tensor, samples: int, seed: int, chunk: int = 4096, device: str = "cpu"
) -> FunctionCounts:
    """The parameter-function map of a layered spec with a scalar readout: ``samples`` networks from
    the prior, each counted by the signs of its outputs on the rows of ``x`` (a truth table when x
    is every input of a cube). Chunk c is drawn from seed (seed, c) on the CPU and evaluated on
    ``device``: the counts depend on the seed alone, whatever the chunk order or device."""
    require(spec.outputs == 1, f"a truth table needs a scalar readout (dense:1), not dense:{spec.outputs}")
    parts = []
    for c, start in enumerate(range(0, samples, chunk)):
        nets = sample_serial(
            spec, min(chunk, samples - start), torch.Generator().manual_seed(chunk_seed(seed, c))
        )
        nets = SerialNets(spec, [p.to(device) for p in nets.params])
        with torch.no_grad():
            parts.append(FunctionCounts.from_signs(nets.forward(x.float().to(device)) > 0))
    return FunctionCounts.merge(parts)
