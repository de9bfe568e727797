"""A network as a sequence of layers, the way neural-tangents' ``stax.serial`` describes one.

Each layer kind is one class that holds every face of that layer, as each
``stax`` layer returns ``(init_fn, apply_fn, kernel_fn)`` together:

* ``out_shape``: what it maps an input of shape (channels, *spatial) to ((d,) when flat);
* ``param_shapes``/``fan_in``: its parameters per network and the fan-in their scale uses
  (channels x filter size for a convolution);
* ``forward``: its action on K stacked networks, activations laid out (B, K, C, *S);
* ``windows``: the scratch copy that action makes beside its output (a convolution's input
  windows), which the memory checks count;
* ``kernel``: its NNGP/NTK transform, in neural-tangents' conventions (NTK parametrization
  W_std/sqrt(fan_in) applied in the forward pass, ``Flatten`` averaging the spatial diagonal,
  ``GlobalAvgPool`` averaging all spatial pairs).

Engines (:mod:`nnbias.engines.serial`) walk the list and never switch on layer
kinds, so a new kind is one class here and its tests.

Kernel state: the NNGP and NTK of a block of input pairs, either "outer" (every
x of one block with every x' of another: leading dims (n1, n2)) or "aligned"
(each x with itself: leading dim (n,), which gives the variances the
activations need). Spatially they are "full", (*S, *S), when a global average
pool lies ahead (it needs covariances between positions), else "diagonal",
(*S,): a convolution maps the diagonal to itself, so a flatten readout never
needs the off-diagonal terms (N x N x P memory instead of N x N x P^2).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace

import torch

from nnbias.engines.ensemble import activation_fn
from nnbias.engines.kernels import NO_NTK, dual_fn
from nnbias.errors import NNBiasError, check_choice, check_int, check_positive, require
from nnbias.spec import ACTIVATIONS, PRIORS

PADDINGS = ("same", "valid", "circular")
LAYER_SYNTAX = (
    "dense:OUT, conv1d:CHANNELS:FILTER[:PADDING[:STRIDE]], conv2d:CHANNELS:FILTER[:PADDING"
    f"[:STRIDE]], flatten, gap, or an activation {list(ACTIVATIONS)}; PADDING is one of "
    f"{list(PADDINGS)} or a whole number of zeros on each side"
)
Shape = tuple[int, ...]


@dataclass
class KernelState:
    """NNGP (and NTK) of a block of input pairs; see the module docstring for the layout.

    A state fresh from the inputs keeps them (``inputs``) and builds x.x'/channels per
    position only when a layer asks for ``nngp``: a first convolution reads patch inner
    products straight from the inputs instead, never the (P, P) covariance of the raw input.
    """

    stored: torch.Tensor | None
    ntk: torch.Tensor | None  # a 0-d zero at the inputs
    spatial: int  # number of spatial dims left (0 once flat)
    full: bool  # spatial layout (*S, *S) rather than (*S,)
    outer: bool  # leading dims (n1, n2) rather than (n,)
    inputs: tuple[torch.Tensor, torch.Tensor | None] | None = None  # (n, C, *S) each

    @staticmethod
    def of_inputs(x1: torch.Tensor, x2: torch.Tensor | None, full: bool, ntk: bool) -> KernelState:
        """The state of the raw inputs: an outer one for (x1, x2), an aligned one for x2 None."""
        return KernelState(
            None, x1.new_zeros(()) if ntk else None, x1.ndim - 2, full, x2 is not None, (x1, x2)
        )

    @property
    def lead(self) -> int:
        return 2 if self.outer else 1

    @property
    def nngp(self) -> torch.Tensor:
        if self.stored is None:
            x1, x2 = self.inputs
            features = [
                None
                if x is None
                else x.reshape(*x.shape[:2], -1).transpose(1, 2)
                if x.ndim > 2
                else x.unsqueeze(1)
                for x in (x1, x2)
            ]
            self.stored = self.products(*features, x1.shape[2:])
        return self.stored

    def products(self, f1: torch.Tensor, f2: torch.Tensor | None, spatial: Shape) -> torch.Tensor:
        """Mean products of per-position feature vectors f (n, P, D) in this state's layout."""
        d = f1.shape[-1]
        if f2 is None:
            q = torch.einsum("aip,ajp->aij", f1, f1) if self.full else (f1 * f1).sum(-1)
        else:
            q = torch.einsum("aip,bjp->abij", f1, f2) if self.full else torch.einsum("aip,bip->abi", f1, f2)
        lead = q.shape[: self.lead]
        return (q / d).reshape(*lead, *(tuple(spatial) * (2 if self.full else 1)))

    def pin(self, variances: torch.Tensor) -> None:
        """Set K(x, x) at equal positions of an outer state of a block with itself to the aligned pass's
        ``variances`` (n, *S), so that rho = 1 exactly there (arccos near 1 amplifies rounding) and a
        diagonal entry does not depend on how the Gram matrix was cut into blocks."""
        n, p = variances.shape[0], variances[0].numel()
        flat = self.nngp.reshape(n, n, p, p) if self.full else self.nngp.reshape(n, n, p)
        same_input = flat.diagonal(dim1=0, dim2=1)  # a view: (p, p, n) full, (p, n) diagonal
        if self.full:
            same_input.diagonal(dim1=0, dim2=1).copy_(variances.reshape(n, p))  # (n, p)
        else:
            same_input.copy_(variances.reshape(n, p).T)

    def variances(self) -> torch.Tensor:
        """K(x, x) at each position, (n, *S): the diagonal of an aligned state."""
        require(not self.outer, "variances are read from an aligned state")
        if not (self.full and self.spatial):
            return self.nngp
        n, shape = self.nngp.shape[0], self.nngp.shape[1 : 1 + self.spatial]
        p = math.prod(shape)
        return self.nngp.reshape(n, p, p).diagonal(dim1=1, dim2=2).reshape(n, *shape)


class Layer:
    """One layer of a serial network (see the module docstring)."""

    token: str

    def out_shape(self, shape: Shape) -> Shape:
        return shape

    def param_shapes(self, shape: Shape) -> list[tuple[int, ...]]:
        return []

    def fan_in(self, shape: Shape) -> int:
        return 0

    def windows(self, shape: Shape) -> int:
        """Numbers per input of the scratch copy its forward pass builds from an input of ``shape``
        beside its output (a convolution's input windows)."""
        return 0

    def forward(
        self, h: torch.Tensor, params: list[torch.Tensor], scales: tuple[float, float]
    ) -> torch.Tensor:
        return h

    def kernel(
        self,
        state: KernelState,
        net: LayeredSpec,
        shape: Shape,
        variances: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> KernelState:
        return state

    @property
    def needs_variances(self) -> bool:
        return False


@dataclass(frozen=True)
class Dense(Layer):
    out: int
    token: str = field(default="", compare=False)

    def out_shape(self, shape: Shape) -> Shape:
        require(
            len(shape) == 1,
            f"{self.token} applies to flat inputs, not shape {shape}; put flatten or gap before it",
        )
        return (self.out,)

    def param_shapes(self, shape: Shape) -> list[tuple[int, ...]]:
        return [(self.out, shape[0]), (self.out,)]

    def fan_in(self, shape: Shape) -> int:
        return shape[0]

    def forward(self, h, params, scales):
        out = torch.einsum("bkd,kod->bko", h, params[0]) * scales[0]
        return out + scales[1] * params[1] if len(params) > 1 else out

    def kernel(self, state, net, shape, variances):
        return _affine(state, net, self.fan_in(shape), lambda t: t)


@dataclass(frozen=True)
class Conv(Layer):
    """A 1-D or 2-D convolution (cross-correlation, as torch and lax compute it). K networks at once:
    each network's input windows (unfold) times its filters, one batched matmul over networks (on
    CPU 1.6x faster than a grouped convolution with one group per network, forward and backward)."""

    dims: int
    channels: int
    filter: int
    padding: str | int = "same"
    stride: int = 1
    token: str = field(default="", compare=False)

    def _pads(self, size: int) -> tuple[int, int, str]:
        """(left, right, mode) for one spatial axis of length ``size``."""
        if isinstance(self.padding, int):
            return self.padding, self.padding, "constant"
        if self.padding == "valid":
            return 0, 0, "constant"
        total = max((-(-size // self.stride) - 1) * self.stride + self.filter - size, 0)  # lax 'SAME'
        return total // 2, total - total // 2, "circular" if self.padding == "circular" else "constant"

    def _pad(self, t: torch.Tensor, axis: int) -> torch.Tensor:
        """t padded along ``axis`` as this layer pads a spatial axis of that length."""
        left, right, mode = self._pads(t.shape[axis])
        if not (left or right):
            return t
        if mode == "circular":
            parts = [t.narrow(axis, t.shape[axis] - left, left), t, t.narrow(axis, 0, right)]
        else:
            parts = [
                t.new_zeros((*t.shape[:axis], left, *t.shape[axis + 1 :])),
                t,
                t.new_zeros((*t.shape[:axis], right, *t.shape[axis + 1 :])),
            ]
        return torch.cat(parts, axis)

    def out_shape(self, shape: Shape) -> Shape:
        require(
            len(shape) == self.dims + 1,
            f"{self.token} needs inputs of shape (channels, "
            f"{'length' if self.dims == 1 else 'height, width'}), "
            f"not {shape}; give --input-shape or use conv{len(shape) - 1}d",
        )
        out = []
        for size in shape[1:]:
            left, right, _ = self._pads(size)
            require(
                self.filter <= size + left + right,
                f"{self.token}: filter {self.filter} is larger than the input ({size}"
                f"{' padded to ' + str(size + left + right) if left + right else ''}); "
                "allowed: a filter no larger than the (padded) input",
            )
            out.append((size + left + right - self.filter) // self.stride + 1)
        return (self.channels, *out)

    def param_shapes(self, shape: Shape) -> list[tuple[int, ...]]:
        return [(self.channels, shape[0], *([self.filter] * self.dims)), (self.channels,)]

    def fan_in(self, shape: Shape) -> int:
        return shape[0] * self.filter**self.dims

    def windows(self, shape: Shape) -> int:
        return math.prod(self.out_shape(shape)[1:]) * self.fan_in(shape)

    def forward(self, h, params, scales):
        b, k = h.shape[:2]
        patches, out = self._patches(h.reshape(b * k, *h.shape[2:]))  # (B K, P', C f^d)
        patches = patches.reshape(b, k, *patches.shape[1:]).transpose(0, 1).reshape(k, -1, patches.shape[-1])
        z = torch.bmm(patches, params[0].reshape(k, self.channels, -1).transpose(1, 2)) * scales[0]
        z = z.reshape(k, b, -1, self.channels).permute(1, 0, 3, 2).reshape(b, k, self.channels, *out)
        if len(params) > 1:
            z = z + scales[1] * params[1].reshape(1, k, self.channels, *([1] * self.dims))
        return z

    def _patch_mean(self, t: torch.Tensor, spatial: int, full: bool) -> torch.Tensor:
        """Mean over each filter window of a kernel state: along each spatial axis of a diagonal
        layout, along the diagonal of each (axis, axis') pair of a full one (the box filter is
        separable), as a sum of ``filter`` strided slices (a one-channel convolution is slower).
        Zero padding is not materialised: each slice is clipped to the positions inside the input."""
        for axis in range(spatial):
            axes = (
                (t.ndim - 2 * spatial + axis, t.ndim - spatial + axis) if full else (t.ndim - spatial + axis,)
            )
            size = t.shape[axes[0]]
            left, right, mode = self._pads(size)
            if mode == "circular":
                for a in axes:
                    t = self._pad(t, a)
                left, size = 0, t.shape[axes[0]]
                right = 0
            out = (size + left + right - self.filter) // self.stride + 1
            total = t.new_zeros((*t.shape[: axes[0]], out, *t.shape[axes[0] + 1 :]))
            if full:
                total = (
                    total.narrow(axes[1], 0, 1)
                    .expand(*total.shape[: axes[1]], out, *total.shape[axes[1] + 1 :])
                    .clone()
                )
            for d in range(self.filter):
                first = max(0, -(-(left - d) // self.stride))  # first output whose input is inside
                last = min(out - 1, (size - 1 + left - d) // self.stride)
                if last < first:
                    continue
                src, dst = [slice(None)] * t.ndim, [slice(None)] * t.ndim
                for a in axes:
                    start = self.stride * first + d - left
                    src[a] = slice(start, start + self.stride * (last - first) + 1, self.stride)
                    dst[a] = slice(first, last + 1)
                total[tuple(dst)] += t[tuple(src)]
            t = total / self.filter
        return t

    def _patches(self, x: torch.Tensor) -> torch.Tensor:
        """(n, P_out, C * filter^dims): each output position's input window, flattened."""
        for axis in range(2, x.ndim):
            x = self._pad(x, axis)
        for axis in range(2, 2 + self.dims):
            x = x.unfold(axis, self.filter, self.stride)
        n, c = x.shape[:2]
        out = x.shape[2 : 2 + self.dims]
        x = x.permute(0, *range(2, 2 + self.dims), 1, *range(2 + self.dims, x.ndim))
        return x.reshape(n, math.prod(out), c * self.filter**self.dims), out

    def kernel(self, state, net, shape, variances):
        window = functools.partial(self._patch_mean, spatial=state.spatial, full=state.full)
        if state.stored is None and state.inputs is not None:  # first layer: patch inner products
            (p1, out), p2 = self._patches(state.inputs[0]), state.inputs[1]
            q = state.products(p1, None if p2 is None else self._patches(p2)[0], out)
            return _affine(state, net, self.fan_in(shape), window, q)
        return _affine(state, net, self.fan_in(shape), window)


@dataclass(frozen=True)
class Activation(Layer):
    name: str
    token: str = field(default="", compare=False)

    def forward(self, h, params, scales):
        return activation_fn(self.name)(h)

    @property
    def needs_variances(self) -> bool:
        return True

    def kernel(self, state, net, shape, variances):
        require(
            state.ntk is None or self.name not in NO_NTK,
            f"the NTK of activation={self.name!r} does not exist (its derivative is a delta); "
            "use kind='nngp'",
        )
        v1, v2 = variances
        s = state.spatial
        ones = (1,) * (len(shape) - 1)
        if state.outer:
            v1 = v1.reshape(v1.shape[0], 1, *v1.shape[1:], *(ones if state.full else ()))
            v2 = v2.reshape(1, v2.shape[0], *(ones if state.full else ()), *v2.shape[1:])
        elif state.full and s:
            v1 = v1.reshape(*v1.shape, *ones)
            v2 = v2.reshape(v2.shape[0], *ones, *v2.shape[1:])
        value, dot = dual_fn(self.name)(v1, v2, state.nngp, state.ntk is not None)
        return replace(state, stored=value, ntk=None if state.ntk is None else state.ntk * dot, inputs=None)


@dataclass(frozen=True)
class Flatten(Layer):
    token: str = field(default="flatten", compare=False)

    def out_shape(self, shape: Shape) -> Shape:
        require(len(shape) > 1, f"flatten needs a spatial input, not the flat shape {shape}")
        return (math.prod(shape),)

    def forward(self, h, params, scales):
        return h.reshape(*h.shape[:2], -1)

    def kernel(self, state, net, shape, variances):
        def mean(t: torch.Tensor) -> torch.Tensor:
            if not state.full:
                return t.flatten(state.lead).mean(-1)
            p = math.prod(shape[1:])
            return t.reshape(*t.shape[: state.lead], p, p).diagonal(dim1=-2, dim2=-1).mean(-1)

        return _reduced(state, mean)


@dataclass(frozen=True)
class GlobalAvgPool(Layer):
    token: str = field(default="gap", compare=False)

    def out_shape(self, shape: Shape) -> Shape:
        require(len(shape) > 1, f"gap needs a spatial input, not the flat shape {shape}")
        return (shape[0],)

    def forward(self, h, params, scales):
        return h.flatten(3).mean(-1)

    def kernel(self, state, net, shape, variances):
        require(state.full, "gap needs the full spatial covariance")
        return _reduced(state, lambda t: t.flatten(state.lead).mean(-1))


def _affine(
    state: KernelState, net: LayeredSpec, fan_in: int, window, q: torch.Tensor | None = None
) -> KernelState:
    """A dense or convolutional layer: K' = sigma_w^2 window(K) + sigma_b^2; NTK (ntk parametrization)
    Theta' = K' + sigma_w^2 window(Theta), (standard) fan_in window(K) + [1] + sigma_w^2 window(Theta).
    ``q``: window(K) when the layer computed it another way."""
    q = window(state.nngp) if q is None else q
    sb2 = net.sigma_b**2 if net.bias else 0.0
    nngp = net.sigma_w**2 * q + sb2
    ntk = None
    if state.ntk is not None:
        carried = net.sigma_w**2 * (window(state.ntk) if state.ntk.ndim else state.ntk)
        ntk = (
            nngp + carried
            if net.parametrization == "ntk"
            else fan_in * q + (1.0 if net.bias else 0.0) + carried
        )
    spatial = q.ndim - state.lead
    return replace(state, stored=nngp, ntk=ntk, spatial=spatial // 2 if state.full else spatial, inputs=None)


def _reduced(state: KernelState, reduce) -> KernelState:
    return replace(
        state,
        stored=reduce(state.nngp),
        ntk=None if state.ntk is None else reduce(state.ntk),
        spatial=0,
        full=False,
        inputs=None,
    )


def _int(token: str, part: str, what: str, minimum: int) -> int:
    try:
        value = int(part)
    except ValueError:
        raise NNBiasError(f"layer {token!r}: {what}={part!r} is not a whole number") from None
    return check_int(f"layer {token!r}: {what}", value, minimum=minimum)


def parse_layer(token: str) -> Layer:
    """One layer from its token, e.g. ``conv1d:25:5:1:2`` or ``relu`` (see ``LAYER_SYNTAX``)."""
    token = token.strip()
    kind, *args = token.split(":")
    kind = kind.lower()
    if kind in ACTIVATIONS and not args:
        return Activation(kind, token=token)
    if kind in ("flatten", "gap") and not args:
        return Flatten() if kind == "flatten" else GlobalAvgPool()
    if kind == "dense" and len(args) == 1:
        return Dense(_int(token, args[0], "outputs", 1), token=token)
    if kind in ("conv1d", "conv2d") and 2 <= len(args) <= 4:
        padding: str | int = args[2].lower() if len(args) > 2 else "same"
        if isinstance(padding, str) and padding not in PADDINGS:
            padding = _int(token, padding, "padding", 0)
        stride = _int(token, args[3], "stride", 1) if len(args) > 3 else 1
        return Conv(
            int(kind[4]),
            _int(token, args[0], "channels", 1),
            _int(token, args[1], "filter", 1),
            padding,
            stride,
            token=token,
        )
    raise NNBiasError(f"layer {token!r} is not allowed; expected {LAYER_SYNTAX}")


@dataclass(frozen=True)
class LayeredSpec:
    """A network as a layer string over inputs of ``input_shape``, with its Gaussian or uniform prior.

    ``layers`` is comma-separated, e.g. ``"conv1d:25:5:1:2,relu,flatten,dense:10"``; the last
    layer is the dense readout (``dense:1`` a scalar output, ``dense:k`` k classes).
    ``input_shape`` is (d,) for flat inputs, (channels, length) or (channels, height, width).
    Parametrizations: ``ntk`` (unit draws, sigma_w/sqrt(fan_in) in the forward pass) and
    ``standard`` (the scaled weights are the parameters); both share one prior over functions.
    """

    input_shape: tuple[int, ...]
    layers: str
    sigma_w: float = 1.0
    sigma_b: float = 1.0
    bias: bool = True
    prior: str = "gaussian"
    parametrization: str = "ntk"

    def __post_init__(self) -> None:
        require(
            isinstance(self.input_shape, tuple | list) and 1 <= len(self.input_shape) <= 3,
            f"input_shape={self.input_shape!r} is not allowed; expected (d,), (channels, length) "
            "or (channels, height, width)",
        )
        object.__setattr__(
            self, "input_shape", tuple(check_int("input_shape", s, minimum=1) for s in self.input_shape)
        )
        require(
            isinstance(self.layers, str) and self.layers.strip(),
            f"layers={self.layers!r} is not allowed; expected {LAYER_SYNTAX}, comma-separated",
        )
        object.__setattr__(self, "sigma_w", check_positive("sigma_w", self.sigma_w))
        object.__setattr__(self, "sigma_b", check_positive("sigma_b", self.sigma_b, allow_zero=True))
        check_choice("prior", self.prior, PRIORS)
        check_choice("parametrization", self.parametrization, ("ntk", "standard"))
        stack = tuple(parse_layer(t) for t in self.layers.split(","))
        object.__setattr__(self, "stack", stack)
        require(
            isinstance(stack[-1], Dense),
            f"the last layer is {stack[-1].token!r}; a network ends "
            "with its dense readout, dense:1 or dense:<classes>",
        )
        shapes = [self.input_shape]
        for layer in stack:
            shapes.append(layer.out_shape(shapes[-1]))
        object.__setattr__(self, "shapes", tuple(shapes))

    @property
    def outputs(self) -> int:
        return self.stack[-1].out

    @property
    def needs_full_covariance(self) -> bool:
        return any(isinstance(layer, GlobalAvgPool) for layer in self.stack)

    @property
    def n_params(self) -> int:
        return sum(math.prod(s) for s in self.param_shapes())

    @functools.cached_property
    def activations(self) -> int:
        """Numbers one input leaves in one network's forward pass with autograd: what autograd saves
        for the backward pass, counted under torch's saved-tensor hooks on two and on three inputs (on
        one, degenerate strides spare copies that more inputs need). Which tensor an op keeps is the
        op's choice (relu keeps its output and not its input, erf its input, a convolution the input
        windows it multiplies, a batched matmul at times a contiguous copy of its input), so it is
        read off the ops, not tabulated."""
        return (self._saved_numbers(3) - self._saved_numbers(2)) // 2

    def _saved_numbers(self, n: int) -> int:
        """Numbers autograd saves in a forward pass of two networks on ``n`` inputs, beyond the inputs
        and the parameters themselves (each storage once: relu's output is also the next layer's saved
        input). On the meta device, which allocates nothing and so counts networks of any size."""
        params = [torch.zeros(2, *shape, device="meta", requires_grad=True) for shape in self.param_shapes()]
        x = torch.zeros(n, 2, *self.input_shape, device="meta")
        own = {t.untyped_storage()._cdata for t in [x, *params]}  # a storage's identity, views included
        saved: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            storage = t.untyped_storage()
            if storage._cdata not in own:
                saved[storage._cdata] = storage.nbytes() // t.element_size()
            return t

        taken, h = iter(params), x
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            for layer, shape in zip(self.stack, self.shapes, strict=False):
                own_params = layer.param_shapes(shape)[: 2 if self.bias else 1]
                h = layer.forward(h, [next(taken) for _ in own_params], (1.0, 1.0))
        return sum(saved.values())  # h, still alive, keeps every saved storage alive and its identity unique

    @property
    def peak(self) -> int:
        """Numbers per input a forward pass without autograd holds at once at least, at its widest step:
        a layer's input, the windows a convolution copies from it and its output (a flatten's output is
        a view of its input; the network's own input is the caller's)."""
        sizes = [0, *(math.prod(shape) for shape in self.shapes[1:])]
        return max(
            sizes[i] + layer.windows(shape) + (0 if isinstance(layer, Flatten) else sizes[i + 1])
            for i, (layer, shape) in enumerate(zip(self.stack, self.shapes, strict=False))
        )

    def param_shapes(self) -> list[tuple[int, ...]]:
        """Per-network parameter shapes in order (weight, bias of each layer that has any)."""
        out = []
        for layer, shape in zip(self.stack, self.shapes, strict=False):
            out += layer.param_shapes(shape)[: 2 if self.bias else 1]
        return out

    def scales(self) -> list[tuple[float, float]]:
        """(weight, bias) prior scales of each parametrized layer: sigma_w/sqrt(fan_in), sigma_b."""
        return [
            (self.sigma_w / math.sqrt(layer.fan_in(shape)), self.sigma_b)
            for layer, shape in zip(self.stack, self.shapes, strict=False)
            if layer.param_shapes(shape)
        ]

    def to_dict(self) -> dict:
        return {
            "input_shape": list(self.input_shape),
            "layers": self.layers,
            "sigma_w": self.sigma_w,
            "sigma_b": self.sigma_b,
            "bias": self.bias,
            "prior": self.prior,
            "parametrization": self.parametrization,
        }

    def describe(self) -> str:
        shape = "x".join(map(str, self.input_shape))
        return f"{shape} -> {self.layers} ({self.parametrization}, sw={self.sigma_w:g}, sb={self.sigma_b:g})"


def mlp_layers(spec) -> LayeredSpec:
    """The layered form of a :class:`~nnbias.spec.NetworkSpec` MLP (its special case): same prior, same
    kernels; the MLP keeps its own spec (and stored run ids) and its compiled sampler."""
    require(
        spec.parametrization in ("ntk", "standard"),
        f"parametrization={spec.parametrization!r} has no layered form yet; use 'ntk' or 'standard'",
    )
    tokens = [t for w in spec.hidden for t in (f"dense:{w}", spec.activation)] + ["dense:1"]
    return LayeredSpec(
        (spec.input_dim,),
        ",".join(tokens),
        spec.sigma_w,
        spec.sigma_b,
        spec.bias,
        spec.prior,
        spec.parametrization,
    )
