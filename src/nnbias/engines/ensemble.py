"""K networks of one spec as stacked tensors, applied in one batched computation.

Layout: each layer's weights are stored transposed, ``(K, fan_out, fan_in)``,
and activations as ``(K, width, N)``. With that layout the per-layer product is
one ``baddbmm`` with the bias fused in, which on CPU runs several times faster
than the ``(K, N, width) @ (K, width, width)`` layout (measured on 40x40 layers).
The stored tensors are the raw unit-scale draws, i.e. the parameters of the
NTK parametrization; the weight scale sigma_w/sqrt(fan_in) is applied as the
``alpha`` of that ``baddbmm`` (so raw draws never need a separate scaling
pass) and the bias scale on the small bias tensor. The same stacked tensors
therefore serve the sampler, gradients (training, empirical NTKs) and
Monte-Carlo kernels.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from nnbias.engines.memory import check_fits, check_forward_fits
from nnbias.errors import check_int, require
from nnbias.spec import NetworkSpec

_OUT_OF_PLACE = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "erf": torch.erf,
    "gelu": torch.nn.functional.gelu,
    "sign": torch.sign,
    "step": lambda z: (z > 0).to(z.dtype),
    "linear": lambda z: z,
}
_IN_PLACE = {
    "relu": torch.Tensor.relu_,
    "tanh": torch.Tensor.tanh_,
    "erf": torch.Tensor.erf_,
    "sign": torch.Tensor.sign_,
    "step": lambda z: z.gt_(0),
}


def activation_derivative(name: str, z: torch.Tensor) -> torch.Tensor:
    """phi'(z) elementwise, by autograd (0 almost everywhere for sign and step)."""
    z = z.detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(_OUT_OF_PLACE[name](z).sum(), z, allow_unused=True)
    return torch.zeros_like(z) if grad is None else grad


def activation_fn(name: str, inplace: bool = False):
    """Elementwise activation by name; ``inplace`` overwrites its (fresh) argument to save a pass."""
    return _IN_PLACE.get(name, _OUT_OF_PLACE[name]) if inplace else _OUT_OF_PLACE[name]


@dataclass
class Ensemble:
    """Raw parameter draws of K networks plus the scales that turn them into the prior.

    ``weights[l]`` has shape (K, fan_out, fan_in) and ``biases[l]`` (K, fan_out);
    both hold unit-scale draws (standard normal, or U(-1, 1) for the uniform
    prior). ``scales[l]`` and ``bias_scales[l]`` are the multipliers that give
    the prior's weights and biases.
    """

    spec: NetworkSpec
    weights: list[torch.Tensor]
    biases: list[torch.Tensor | None]
    scales: list[float]
    bias_scales: list[float]

    @property
    def size(self) -> int:
        return self.weights[0].shape[0]

    def forward(self, x: torch.Tensor, inplace: bool = True,
                hidden: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Outputs (K, N) of all K networks on shared inputs x (N, input_dim), or on
        per-network inputs x (K, N, input_dim) such as each network's own minibatch.

        ``inplace=False`` keeps activations out of place, as autograd needs;
        ``hidden``, a list, receives each hidden layer's activations (K, width, N).
        """
        act = activation_fn(self.spec.activation, inplace)
        self.check_inputs(x)
        x = x.to(self.weights[0].dtype)
        h = x.transpose(1, 2) if x.ndim == 3 else x.T.unsqueeze(0).expand(self.size, -1, -1)
        spec = self.spec
        check_forward_fits(self.size, h.shape[2], spec.activations, spec.peak, spec.n_params,
                           self.weights[0].dtype, self.weights[0].device, spec.describe())
        last = len(self.weights) - 1
        layers = zip(self.weights, self.biases, self.scales, self.bias_scales, strict=True)
        for layer, (w, b, s, bs) in enumerate(layers):
            if b is None:
                z = torch.bmm(w, h) * s
            else:
                z = torch.baddbmm((b * bs).unsqueeze(2), w, h, alpha=s)
            h = z if layer == last else act(z)
            if hidden is not None and layer < last:
                hidden.append(h)
        return h[:, 0, :]

    def check_inputs(self, x: torch.Tensor) -> None:
        """Inputs (N, d) shared by the networks, or (K, N, d) one set per network, with d the spec's."""
        d = self.spec.input_dim
        shared = x.ndim == 2 and x.shape[1] == d
        require(shared or (x.ndim == 3 and x.shape[0] == self.size and x.shape[2] == d),
                f"inputs of shape {tuple(x.shape)} do not fit {self.size} networks of input_dim={d}; "
                f"expected (N, {d}) or ({self.size}, N, {d})")

    def check_room(self, n: int, per_input: int, per_net: int, what: str) -> None:
        """Refuse new buffers of ``per_input`` numbers per input (of ``n``) and ``per_net`` more, for
        each network, that exceed what the device has free: asked before the allocator, which may grant
        them and let the kernel's OOM killer end the process without a word as the pages are touched."""
        check_fits(self.size, n * per_input + per_net, self.weights[0].dtype, self.weights[0].device,
                   f"{self.spec.describe()}{f' on {n} inputs' if n else ''} ({what})")

    def to(self, device: str | torch.device) -> Ensemble:
        """The same networks with their tensors on ``device``."""
        return Ensemble(self.spec, [w.to(device) for w in self.weights],
                        [None if b is None else b.to(device) for b in self.biases], self.scales,
                        self.bias_scales)

    def functional(self):
        """(fn, params): the ensemble as a pure function of its parameters in the spec's parametrization.

        ``fn(params, x)`` gives the (K, N) outputs. The parameters are what the
        parametrization trains (raw unit-scale draws for NTK, the scaled weights and
        biases for standard, w ~ N(0, n^(-2b)) for muP and mean-field), so gradients
        (training, NTKs) are taken with respect to them.
        """
        self.check_room(0, 0, self.spec.n_params, "a copy of the parameters to train")
        params = [t * f for t, f in zip(self.tensors(), self.param_factors, strict=True)]

        def fn(p: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
            return self.from_params(p).forward(x, inplace=False)

        return fn, params

    def tensors(self) -> list[torch.Tensor]:
        """The raw draws in parameter order w0, b0, w1, b1, ... (no b without bias)."""
        return [t for w, b in zip(self.weights, self.biases, strict=True) for t in (w, b) if t is not None]

    @functools.cached_property
    def param_factors(self) -> list[float]:
        """Trained parameter = raw draw * factor, per tensor (see ``NetworkSpec.param_scales``);
        computed once, as ``fn`` of ``functional()`` needs them on every forward pass."""
        out = []
        for layer, (b, s, bs) in enumerate(zip(self.biases, self.scales, self.bias_scales, strict=True)):
            fw, fb = self.spec.param_scales(layer, s, bs)
            out += [fw] if b is None else [fw, fb]
        return out

    def from_params(self, params: list[torch.Tensor]) -> Ensemble:
        """The ensemble whose parameters (in the spec's parametrization) are ``params``."""
        raw = iter(t / f for t, f in zip(params, self.param_factors, strict=True))
        weights, biases = [], []
        for b in self.biases:
            weights.append(next(raw))
            biases.append(None if b is None else next(raw))
        return Ensemble(self.spec, weights, biases, self.scales, self.bias_scales)


def sample_ensemble(spec: NetworkSpec, k: int, generator: torch.Generator,
                    dtype: torch.dtype = torch.float32, device: str | None = None) -> Ensemble:
    """Draw K networks from the spec's prior with one RNG call, on the generator's device, and
    place them on ``device`` (default: the generator's).

    One flat buffer is filled by a single ``normal_``/``uniform_`` call and
    sliced into layers: at the sizes of the original experiments random-number
    generation costs as much as the matrix products, so it must not be split
    into many small calls. Drawing on the CPU's generator and moving the draws
    gives the same networks on every device.
    """
    k = check_int("k (networks)", k, minimum=1)
    sizes, per_net = spec.layer_sizes, spec.n_params
    check_fits(k, per_net, dtype, generator.device, spec.describe())
    flat = torch.empty(k * per_net, dtype=dtype, device=generator.device)
    if spec.prior == "gaussian":
        flat.normal_(generator=generator)
    else:
        flat.uniform_(-1.0, 1.0, generator=generator)
    flat = flat.to(device or generator.device).view(k, per_net)
    weights, biases = [], []
    offset = 0
    for fan_in, fan_out in sizes:
        weights.append(flat[:, offset: offset + fan_in * fan_out].view(k, fan_out, fan_in))
        offset += fan_in * fan_out
        if spec.bias:
            biases.append(flat[:, offset: offset + fan_out])
            offset += fan_out
        else:
            biases.append(None)
    return Ensemble(spec, weights, biases, *prior_scales(spec))


def prior_scales(spec: NetworkSpec) -> tuple[list[float], list[float]]:
    """The weight and the bias multipliers of every layer (``layer_scales``), as an Ensemble holds them."""
    weights, biases = zip(*layer_scales(spec), strict=True)
    return list(weights), list(biases)


def layer_scales(spec: NetworkSpec) -> list[tuple[float, float]]:
    """(weight, bias) multiplier per layer that turns a unit draw (N(0, 1) or U(-1, 1)) into the prior."""
    out = []
    for layer, (fan_in, _) in enumerate(spec.layer_sizes):
        readout = layer == len(spec.layer_sizes) - 1
        if spec.prior == "uniform":
            out.append(spec.uniform_half_widths(fan_in, readout))
        else:
            out.append((spec.weight_scale(fan_in, readout), spec.sigma_b))
    return out
