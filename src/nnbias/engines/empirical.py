"""Empirical NTK of finite networks (torch.func), and Monte-Carlo kernels of a spec.

Two strategies, both batched over inputs, chosen automatically by size:

* ``jacobian``: per-sample Jacobians J (N, O, P) by ``vmap(jacrev)``, each
  computed once, then Theta = J1 J2^T contracted over parameters. Fast when
  N * O * P fits memory (``MEMORY_BUDGET``).
* ``ntvp``: NTK-vector products: for each basis vector of the outputs on x2, a
  vjp (back to parameter space) then a jvp on x1. Memory O(P + N1 N2 O^2),
  for networks whose Jacobians do not fit.

For the spec's own MLPs, :func:`structured_ntk` uses the layer structure
instead: a dense layer's weight gradient is the outer product delta_l h_{l-1}^T,
so Theta = sum_l c_l (Delta_l Delta_l'^T) * (H_{l-1} H_{l-1}'^T) + bias terms,
from one batched forward and backward pass, without per-sample Jacobians
(the "structured derivatives" of Novak et al. 2022). It serves K networks at once.

``mode='full'`` gives (N1, N2, O, O); ``mode='trace'`` sums over outputs, (N1, N2).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.func import functional_call, jacrev, jvp, vjp, vmap

from nnbias.engines.ensemble import Ensemble, activation_derivative, activation_fn, sample_ensemble
from nnbias.errors import check_choice, check_int, require
from nnbias.spec import NetworkSpec

MEMORY_BUDGET = 2**32  # bytes of Jacobians the 'jacobian' strategy may hold (all inputs at once)


def _jacobians(fn, params, x, block):
    """Per-sample Jacobians of ``fn`` w.r.t. each parameter tensor, (N, O, P_l), in input blocks."""
    def one(p, xi):  # outputs of one input, (O,)
        return fn(p, xi.unsqueeze(0))[0]

    jac = vmap(jacrev(one), (None, 0))
    parts = [[j.flatten(2) for j in jac(params, x[i:i + block])] for i in range(0, x.shape[0], block)]
    return [torch.cat(layer) for layer in zip(*parts, strict=True)]


def _contract(j1, j2, trace):
    spec = "iop,jop->ij" if trace else "iop,jqp->ijoq"
    return sum(torch.einsum(spec, a, b) for a, b in zip(j1, j2, strict=True))


def _ntvp_ntk(fn, params, x1, x2, trace):
    out2, vjp_fn = vjp(lambda p: fn(p, x2), params)

    def column(vec):
        (cotangent,) = vjp_fn(vec.view_as(out2))
        return jvp(lambda p: fn(p, x1), (params,), (cotangent,))[1]

    basis = torch.eye(out2.numel(), dtype=out2.dtype, device=out2.device)
    cols = vmap(column, chunk_size=64)(basis)  # (N2*O, N1, O)
    n2, o = out2.shape
    full = cols.view(n2, o, x1.shape[0], o).permute(2, 0, 3, 1)  # (N1, N2, O, O)
    return full.diagonal(dim1=2, dim2=3).sum(-1) if trace else full


def ntk_of_function(fn: Callable, params: list[torch.Tensor], x1: torch.Tensor,
                    x2: torch.Tensor | None = None, mode: str = "trace", strategy: str = "auto",
                    block: int = 256) -> torch.Tensor:
    """Empirical NTK of ``fn(params, x) -> (N, O)`` with respect to ``params``, in blocks of inputs."""
    check_choice("mode", mode, ("trace", "full"))
    check_choice("strategy", strategy, ("auto", "jacobian", "ntvp"))
    block = check_int("block", block, minimum=1)
    x2_ = x1 if x2 is None else x2
    if strategy == "auto":
        n_params = sum(p.numel() for p in params)
        outputs = fn(params, x1[:1]).shape[1]
        inputs = x1.shape[0] + (0 if x2 is None else x2.shape[0])
        jac_bytes = inputs * outputs * n_params * params[0].element_size()
        strategy = "jacobian" if jac_bytes <= MEMORY_BUDGET else "ntvp"
    if strategy == "jacobian":  # every Jacobian is computed once, then contracted
        j1 = _jacobians(fn, params, x1, block)
        j2 = j1 if x2 is None else _jacobians(fn, params, x2, block)
        return _contract(j1, j2, mode == "trace").detach()
    rows = []
    for i in range(0, x1.shape[0], block):
        a = x1[i:i + block]
        cols = [_ntvp_ntk(fn, params, a, x2_[j:j + block], mode == "trace")
                for j in range(0, x2_.shape[0], block)]
        rows.append(torch.cat(cols, dim=1))
    return torch.cat(rows, dim=0).detach()


def empirical_ntk(model: torch.nn.Module, x1: torch.Tensor, x2: torch.Tensor | None = None,
                  mode: str = "trace", strategy: str = "auto", block: int = 256) -> torch.Tensor:
    """Empirical NTK of any ``torch.nn.Module`` mapping (N, ...) inputs to (N, O) outputs."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = [dict(model.named_parameters())[n].detach() for n in names]

    def fn(p, x):
        out = functional_call(model, dict(zip(names, p, strict=True)), (x,))
        return out.reshape(x.shape[0], -1)

    return ntk_of_function(fn, params, x1, x2, mode, strategy, block)


def structured_ntk(nets: Ensemble, x1: torch.Tensor, x2: torch.Tensor | None = None) -> torch.Tensor:
    """Empirical NTK of each of the K networks, (K, N1, N2), in the spec's parametrization."""
    spec = nets.spec
    factors = iter(nets.param_factors)  # d(effective)/d(param) = scale / factor

    def passes(x):
        """Inputs to each dense layer (K, fan_in, N) and deltas df/dz_l (K, fan_out, N)."""
        act = activation_fn(spec.activation)
        h = x.T.to(nets.weights[0].dtype).unsqueeze(0).expand(nets.size, -1, -1)
        inputs, pre = [], []
        layers = zip(nets.weights, nets.biases, nets.scales, nets.bias_scales, strict=True)
        for w, b, s, bs in layers:
            inputs.append(h)
            z = torch.bmm(w, h) * s + (0 if b is None else (b * bs).unsqueeze(2))
            pre.append(z)
            h = act(z)
        delta = torch.ones_like(pre[-1])
        deltas = [delta]
        for layer in range(len(pre) - 1, 0, -1):
            back = torch.bmm(nets.weights[layer].transpose(1, 2), delta) * nets.scales[layer]
            delta = back * activation_derivative(spec.activation, pre[layer - 1])
            deltas.append(delta)
        return inputs, deltas[::-1]

    for x in (x1, x2) if x2 is not None else (x1,):
        require(x.ndim == 2, f"inputs of shape {tuple(x.shape)} are not allowed; expected (N, d)")
        nets.check_inputs(x)
    n1, n2 = x1.shape[0], 0 if x2 is None else x2.shape[0]
    nets.check_room(n1 + n2, 3 * sum(w.shape[1] for w in nets.weights), n1 * (n2 or n1),
                    "the NTK's layer inputs, pre-activations and deltas")
    with torch.no_grad():
        h1, d1 = passes(x1)
        h2, d2 = (h1, d1) if x2 is None else passes(x2)
        theta = 0
        for layer, (a, b, da, db) in enumerate(zip(h1, h2, d1, d2, strict=True)):
            dd = torch.bmm(da.transpose(1, 2), db)  # (K, N1, N2)
            theta = theta + (nets.scales[layer] / next(factors)) ** 2 * dd * torch.bmm(a.transpose(1, 2), b)
            if nets.biases[layer] is not None:
                theta = theta + (nets.bias_scales[layer] / next(factors)) ** 2 * dd
    return theta


def spec_empirical_ntk(spec: NetworkSpec, x1: torch.Tensor, x2: torch.Tensor | None = None,
                       seed: int = 0, dtype: torch.dtype = torch.float64,
                       strategy: str = "structured", device: str = "cpu", **kwargs) -> torch.Tensor:
    """Empirical NTK (N1, N2) of one network drawn from the spec, in the spec's parametrization,
    computed on ``device`` (the network is drawn on the CPU: the same on every device).

    ``strategy``: ``structured`` (default, fastest) or any strategy of :func:`ntk_of_function`.
    """
    nets = sample_ensemble(spec, 1, torch.Generator().manual_seed(seed), dtype=dtype, device=device)
    x1 = x1.to(device, dtype)
    x2 = None if x2 is None else x2.to(device, dtype)
    if strategy == "structured":
        return structured_ntk(nets, x1, x2)[0]
    fn, params = nets.functional()
    return ntk_of_function(lambda p, x: fn(p, x).T, params, x1, x2, strategy=strategy, **kwargs)


def monte_carlo_kernels(spec: NetworkSpec, x1: torch.Tensor, x2: torch.Tensor | None = None,
                        networks: int = 256, seed: int = 0, dtype: torch.dtype = torch.float64,
                        ntk: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """NNGP (mean_k f_k(x) f_k(x')) and NTK (mean of the K empirical NTKs) of K networks drawn at once."""
    nets = sample_ensemble(spec, networks, torch.Generator().manual_seed(seed), dtype=dtype)
    x1 = x1.to(dtype)
    x2 = None if x2 is None else x2.to(dtype)
    with torch.no_grad():
        out1 = nets.forward(x1, inplace=False)
        out2 = out1 if x2 is None else nets.forward(x2, inplace=False)
    nngp = out1.T @ out2 / networks
    return nngp, structured_ntk(nets, x1, x2).mean(0) if ntk else None
