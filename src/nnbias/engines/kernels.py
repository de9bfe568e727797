"""Analytic NNGP and NTK of a spec's MLP (the infinite-width face).

Recursion (Neal; Lee et al. 2018; Jacot et al. 2018), written as in
neural-tangents' ``stax.Dense(W_std=sigma_w, b_std=sigma_b)`` so values can be
compared with that library. With q the kernel of a layer's inputs (x.x'/n_0 for
the network input, E[phi(u) phi(v)] after an activation):

* dense layer: K = sigma_w^2 q + sigma_b^2;
  NTK parametrization:      Theta = K + sigma_w^2 Theta,
  standard parametrization: Theta = fan_in * q + 1 + sigma_w^2 Theta
  (the "+1" only with biases; Theta starts at 0);
* activation: q = E[phi(u) phi(v)], Theta = Theta * E[phi'(u) phi'(v)], with
  (u, v) ~ N(0, [[K(x,x), K(x,x')], [K(x,x'), K(x',x')]]).

``depth`` hidden layers each apply a dense layer and the activation; a dense
readout with the same sigma_w, sigma_b comes on top; the kernel is that of the
scalar output. Closed forms: relu (arc-cosine), erf (Williams), gelu
(Tsuchida et al. 2020, as neural-tangents' ``stax.Gelu``), linear, and for the
NNGP also step and sign; tanh as a sum of erfs (``_ErfMixture``), exact at every
variance, where 2-D Gauss-Hermite quadrature (``method="quadrature"``, any
activation) loses accuracy as the variance grows (tanh's poles at +-i pi/2).
The Gram matrix is computed in blocks, so memory stays bounded, and of a symmetric one
(no second input set) only the blocks on and above the diagonal.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from nnbias.engines.ensemble import activation_derivative, activation_fn
from nnbias.engines.memory import check_gram_fits
from nnbias.errors import NNBiasError, check_choice, check_int, require
from nnbias.spec import NetworkSpec

CLOSED_FORMS = {"relu", "erf", "gelu", "linear", "step", "sign"}
NO_NTK = {"step", "sign"}  # derivative is a delta: the NTK does not exist
CPU_BLOCK = 256  # inputs per Gram block on a CPU (measured at N = 4000: 128-256 alike, 1024 1.8x slower)
DEVICE_BLOCK = 4096  # on a GPU, where small blocks would leave it idle between launches
# bytes of one (block, block, terms) temporary of a dual that sums terms per pair (quadrature: 96 nodes,
# tanh: 32 erfs), so a block shrinks as its terms grow. On a CPU 1 MiB, a core's L2 cache: measured
# (1 thread, depth-3 NTK, best block) tanh float64 64 (5.7 s against 7.5 s at 32 and 6.3 s at 90),
# float32 64-90, 96-node quadrature float64 32 (18.9 s against 69 s at 90), float32 64; blocks of
# 256 (the old cap) were 1.5-4x slower. On a GPU 16 MiB: tanh float64 keeps its 256 (not measured there).
STACKED_BYTES = {"cpu": 2**20, "device": 2**24}


def default_block(device: torch.device, dtype: torch.dtype, terms: int = 1) -> int:
    """Inputs per side of a Gram block: ``CPU_BLOCK``/``DEVICE_BLOCK``, smaller for a dual whose
    temporaries carry ``terms`` values per pair."""
    where = "cpu" if device.type == "cpu" else "device"
    block = CPU_BLOCK if where == "cpu" else DEVICE_BLOCK
    if terms == 1:
        return block
    return max(1, min(block, math.isqrt(STACKED_BYTES[where] // (dtype.itemsize * terms))))


def _closed_form(name: str, k11: torch.Tensor, k22: torch.Tensor, k12: torch.Tensor,
                 derivative: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """E[phi(u)phi(v)] and E[phi'(u)phi'(v)] in closed form."""
    if name == "linear":
        return k12, torch.ones_like(k12) if derivative else None
    if name == "erf":
        a = (1 + 2 * k11) * (1 + 2 * k22)
        value = (2 / math.pi) * torch.asin((2 * k12 / torch.sqrt(a)).clamp(-1, 1))
        # a - 4 k12^2 as 1 + 2 k11 + 2 k22 + 4 (k11 k22 - k12^2) >= 1: no cancellation on a diagonal
        deriv = ((4 / math.pi) * torch.rsqrt(1 + 2 * (k11 + k22) + 4 * (k11 * k22 - k12**2).clamp(min=0))
                 if derivative else None)
        return value, deriv
    if name == "gelu":  # E[gelu(u) gelu(v)] (Tsuchida et al. 2020) and E[gelu'(u) gelu'(v)]
        prod, prod_plus_1 = k11 * k22, (k11 + 1) * (k22 + 1)
        delta_sq = prod_plus_1 - k12**2  # >= k11 + k22 + 1 > 0
        delta = torch.sqrt(delta_sq)
        angle = torch.atan2(k12, delta)
        value = k12 / 4 + ((k12**2 + prod * delta_sq) / (prod_plus_1 * delta) + k12 * angle) / (2 * math.pi)
        deriv = (0.25 + angle / (2 * math.pi) + k12 / delta / (2 * math.pi)
                 * (1 / delta_sq + (1 - prod) / prod_plus_1 + 1)) if derivative else None
        return value, deriv
    norm = torch.sqrt(k11 * k22)
    rho = (k12 / norm).clamp_(-1, 1)  # exactly 1 on a pinned diagonal (k12 = k11 = k22), in any dtype
    theta = torch.acos(rho)
    if name == "relu":  # in place where it can: memory passes, not flops, set the time of a block
        slope = torch.add(0.5, theta, alpha=-1 / (2 * math.pi))  # (pi - theta) / (2 pi)
        sine = torch.addcmul(torch.ones_like(rho), rho, rho, value=-1).clamp_(min=0).sqrt_()  # sin(theta)
        value = torch.addcmul(sine.mul_(1 / (2 * math.pi)), slope, rho).mul_(norm)
        return value, slope if derivative else None
    if name == "step":
        return (math.pi - theta) / (2 * math.pi), None
    return 1 - 2 * theta / math.pi, None  # sign


class _Quadrature:
    """E[phi(u)phi(v)] and E[phi'(u)phi'(v)] by 2-D Gauss-Hermite quadrature."""

    def __init__(self, name: str, nodes: int):
        z, w = np.polynomial.hermite_e.hermegauss(nodes)
        self.z = torch.from_numpy(z)
        self.w = torch.from_numpy(w / math.sqrt(2 * math.pi))
        self.name = name
        self.phi = activation_fn(name)
        self.terms = nodes  # a block's temporaries carry this many values per pair

    def dphi(self, x: torch.Tensor) -> torch.Tensor:
        return activation_derivative(self.name, x)

    def __call__(self, k11, k22, k12, derivative):
        nodes = self.z.to(k12.dtype).to(k12.device)
        weights = self.w.to(k12.dtype).to(k12.device)
        s1, s2 = torch.sqrt(k11), torch.sqrt(k22)
        rho = (k12 / (s1 * s2)).clamp(-1, 1)
        perp = torch.sqrt(1 - rho**2)
        value = torch.zeros_like(k12)
        deriv = torch.zeros_like(k12) if derivative else None
        for zi, wi in zip(nodes, weights, strict=True):  # one node of u at a time: bounded memory
            u = (s1 * zi).expand_as(k12).unsqueeze(-1)
            v = s2.unsqueeze(-1) * (rho.unsqueeze(-1) * zi + perp.unsqueeze(-1) * nodes)
            value += wi * (self.phi(u) * self.phi(v)) @ weights
            if derivative:
                deriv += wi * (self.dphi(u) * self.dphi(v)) @ weights
        return value, deriv


@functools.cache
def tanh_as_erfs() -> tuple[np.ndarray, np.ndarray]:
    """(a, b) with tanh(x) = sum_i a_i erf(b_i x) to 3e-12 and tanh'(x) to 3e-11 for every real x.

    Least squares on both at once over [0, 2000] (both sides odd; beyond, every erf is 1 and
    sum a = 1 to 5e-15), 32 widths b geometric in [0.03, 6]; the coefficients stay below 0.25, so
    nothing cancels. An erf has closed-form kernels, so tanh's inherit them at every variance.
    """
    from scipy.special import erf

    x = np.concatenate([np.linspace(0, 10, 4001), np.linspace(10, 100, 3001)[1:],
                        np.linspace(100, 2000, 500)[1:]])
    b = np.geomspace(0.03, 6.0, 32)
    design = np.concatenate([erf(np.outer(x, b)), 2 / math.sqrt(math.pi) * b * np.exp(-np.outer(x, b) ** 2)])
    target = np.concatenate([np.tanh(x), 1 - np.tanh(x) ** 2])
    return np.linalg.lstsq(design, target, rcond=None)[0], b


ERF_MIXTURES = {"tanh": tanh_as_erfs}  # activations computed as sums of erfs: the fit of their terms


class _ErfMixture:
    """E[phi(u)phi(v)] and E[phi'(u)phi'(v)] of phi = sum_i a_i erf(b_i x) (tanh, ``tanh_as_erfs``) in
    closed form, term by term: (2/pi) asin(2 b_i b_j k12 / sqrt(s_i s_j)) with s_i = 1 + 2 b_i^2 k11,
    s_j = 1 + 2 b_j^2 k22, and (4/pi) b_i b_j / sqrt(D_ij), where D_ij = s_i s_j - 4 b_i^2 b_j^2 k12^2 is
    written as 1 + 2 b_i^2 k11 + 2 b_j^2 k22 + 4 b_i^2 b_j^2 (k11 k22 - k12^2) >= 1: no cancellation,
    even on a diagonal (k12^2 = k11 k22) at large variance in float32.

    Gauss-Hermite converges only like exp(-c sqrt(nodes) / std) for tanh (poles at +-i pi/2): with
    96 nodes its NTK factor was 1e-3 off at variance 8 and 78 % at 128; this is exact to the
    expansion's 3e-11 at any variance, and 20-27x faster than those 96 x 96 nodes (one 256 x 256 block)."""

    def __init__(self, coefficients: np.ndarray, widths: np.ndarray):
        self.a, self.b = torch.from_numpy(coefficients), torch.from_numpy(widths)
        self.terms = len(widths)  # a block's temporaries carry this many values per pair

    def __call__(self, k11, k22, k12, derivative):
        a, b = self.a.to(k12), self.b.to(k12)
        b2 = b**2
        s_j = 1 + 2 * b2 * k22.unsqueeze(-1)  # (..., M): the j terms on a last axis
        bw, ab = b * torch.rsqrt(s_j), a * b
        det = (k11 * k22 - k12**2).clamp(min=0).unsqueeze(-1) if derivative else None
        value = torch.zeros(torch.broadcast_shapes(k11.shape, k22.shape, k12.shape), dtype=k12.dtype,
                            device=k12.device)
        deriv = torch.zeros_like(value) if derivative else None
        for a_i, b_i in zip(a, b, strict=True):  # one i at a time: temporaries (block, M), not (block, M, M)
            s_i = 1 + 2 * b_i**2 * k11
            arg = ((2 * b_i) * k12 * torch.rsqrt(s_i)).unsqueeze(-1) * bw  # |arg| < 1 (Cauchy-Schwarz)
            value += a_i * (torch.asin(arg.clamp(-1, 1)) @ a)
            if derivative:
                d_ij = (s_i.unsqueeze(-1) + s_j - 1) + (4 * b_i**2) * det * b2
                deriv += (a_i * b_i) * (torch.rsqrt(d_ij) @ ab)
        value *= 2 / math.pi
        if derivative:
            deriv *= 4 / math.pi
        return value, deriv


def adaptive_expectation(fn, variance: float, rho: float) -> float:
    """E[fn(u) fn(v)] for (u, v) of equal ``variance`` and correlation ``rho``, by scipy's adaptive
    ``dblquad`` to 1e-13: far too slow for a Gram matrix, but independent of both the closed forms
    and Gauss-Hermite, so it is the reference they are checked against (tests, benchmarks)."""
    from scipy import integrate

    s, perp = math.sqrt(variance), math.sqrt(max(0.0, 1 - rho * rho))

    def integrand(z2: float, z1: float) -> float:
        density = math.exp(-(z1 * z1 + z2 * z2) / 2) / (2 * math.pi)
        return fn(s * z1) * fn(s * (rho * z1 + perp * z2)) * density

    return integrate.dblquad(integrand, -12, 12, -12, 12, epsabs=1e-15, epsrel=1e-13)[0]


@functools.lru_cache(maxsize=32)
def dual_fn(activation: str, method: str = "auto", quadrature_nodes: int = 96):
    """The activation's dual ``(k11, k22, k12, derivative) -> (E[phi phi'], E[dphi dphi'] or None)``,
    elementwise over broadcastable tensors: a closed form where one exists (``auto``), else quadrature.
    Built once per arguments: the layered kernels ask for it at every activation of every block."""
    check_choice("method", method, ("auto", "closed_form", "quadrature"))
    if method == "closed_form":
        require(activation in CLOSED_FORMS, f"activation={activation!r} has no closed-form kernel; "
                                            f"closed forms exist for {sorted(CLOSED_FORMS)}")
    if method == "auto" and activation in ERF_MIXTURES:
        return _ErfMixture(*ERF_MIXTURES[activation]())
    if method == "quadrature" or (method == "auto" and activation not in CLOSED_FORMS):
        return _Quadrature(activation, quadrature_nodes)
    return functools.partial(_closed_form, activation)


def assemble_gram(n1: int, n2: int, block: int, symmetric: bool, compute, dtype: torch.dtype
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(NNGP, NTK or None) Gram matrices (n1, n2) on the CPU from ``compute(rows, cols, same)`` ->
    (nngp block, ntk block or None), blocks of ``block`` inputs; of a ``symmetric`` one only the blocks
    on and above the diagonal (``same``: a diagonal block), the rest by transposition."""
    check_gram_fits("inputs", n1, n2, dtype, "cpu")
    outs: list[torch.Tensor | None] = [torch.empty(n1, n2, dtype=dtype), None]
    for i in range(0, n1, block):
        for j in range(i if symmetric else 0, n2, block):
            si, sj = slice(i, i + block), slice(j, j + block)
            for slot, value in enumerate(compute(si, sj, symmetric and i == j)):
                if value is None:
                    continue
                if outs[slot] is None:
                    outs[slot] = torch.empty(n1, n2, dtype=dtype)
                value = value.cpu()
                outs[slot][si, sj] = value
                if symmetric and j != i:
                    outs[slot][sj, si] = value.T
    return outs[0], outs[1]


def _widths(spec: NetworkSpec) -> list[int]:
    return [spec.input_dim, *spec.hidden]


class KernelFn:
    """The analytic kernel function of one spec: ``KernelFn(spec)(x1, x2, "ntk")``."""

    def __init__(self, spec: NetworkSpec, method: str = "auto", quadrature_nodes: int = 96):
        require(spec.parametrization in ("standard", "ntk"),
                f"parametrization={spec.parametrization!r} has a degenerate infinite-width kernel "
                "(its readout scales as 1/width); analytic kernels exist for 'standard' and 'ntk'")
        self.spec = spec
        self.dual = dual_fn(spec.activation, method, quadrature_nodes)
        self.terms = getattr(self.dual, "terms", 1)  # values per pair in a block's temporaries

    def _diagonal(self, x: torch.Tensor) -> list[torch.Tensor]:
        """K(x, x) before each activation, for every hidden layer."""
        q = (x * x).sum(1) / x.shape[1]
        out = []
        for _ in self.spec.hidden:
            k = self.spec.sigma_w**2 * q + (self.spec.sigma_b**2 if self.spec.bias else 0.0)
            out.append(k)
            q = self.dual(k, k, k, False)[0]
        return out

    def _block(self, x1, x2, d1, d2, ntk: bool, same: bool):
        """One Gram block. ``same``: a diagonal block of K(x, x), whose diagonal is pinned to the
        propagated K(x, x) so that rho = 1 exactly there (arccos near 1 would amplify rounding)."""
        spec = self.spec
        sb2 = spec.sigma_b**2 if spec.bias else 0.0
        q = x1 @ x2.T / x1.shape[1]
        theta = torch.zeros_like(q) if ntk else None
        for layer, fan_in in enumerate(_widths(spec)):
            k = spec.sigma_w**2 * q + sb2
            if same and layer < spec.depth:
                k.diagonal().copy_(d1[layer])
            if ntk:
                if spec.parametrization == "ntk":
                    theta = k + spec.sigma_w**2 * theta
                else:
                    theta = fan_in * q + (1.0 if spec.bias else 0.0) + spec.sigma_w**2 * theta
            if layer == spec.depth:
                return k, theta
            q, dot = self.dual(d1[layer].unsqueeze(1), d2[layer].unsqueeze(0), k, ntk)
            if ntk:
                theta = theta * dot
        raise AssertionError("unreachable")

    def __call__(self, x1, x2=None, kind: str = "nngp", block: int | None = None,
                 dtype: torch.dtype = torch.float64,
                 device: str | torch.device = "cpu") -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Gram matrix (N1, N2) of ``kind`` nngp, ntk, or both (a tuple), computed in blocks of ``block``
        inputs (default: ``default_block``) on ``device`` (each block stays there until it is done); the
        result is on the CPU."""
        check_choice("kind", kind, ("nngp", "ntk", "both"))
        if kind != "nngp" and self.spec.activation in NO_NTK:
            raise NNBiasError(f"the NTK of activation={self.spec.activation!r} does not exist "
                              "(its derivative is a delta); use kind='nngp'")
        x2_is_x1 = x2 is None
        x1 = torch.as_tensor(x1).to(dtype=dtype, device=device)
        x2 = x1 if x2 is None else torch.as_tensor(x2).to(dtype=dtype, device=device)
        require(x1.ndim == 2 and x2.ndim == 2 and x1.shape[1] == x2.shape[1] == self.spec.input_dim,
                f"inputs of shape {tuple(x1.shape)} and {tuple(x2.shape)} do not match "
                f"input_dim={self.spec.input_dim}; expected (N, {self.spec.input_dim})")
        require(bool(torch.isfinite(x1).all() and torch.isfinite(x2).all()),
                "inputs contain NaN or inf; clean the data first")
        if block is None:  # on a CPU a block's ~10 temporaries then stay in cache
            block = default_block(x1.device, dtype, self.terms)
        block = check_int("block", block, minimum=1)
        d1, d2 = self._diagonal(x1), self._diagonal(x2)

        def compute(si: slice, sj: slice, same: bool):
            return self._block(x1[si], x2[sj], [d[si] for d in d1], [d[sj] for d in d2], kind != "nngp", same)

        nngp, ntk = assemble_gram(x1.shape[0], x2.shape[0], block, x2_is_x1, compute, dtype)
        return {"nngp": nngp, "ntk": ntk, "both": (nngp, ntk)}[kind]
