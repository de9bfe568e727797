"""Empirical NTK of finite networks (torch.func), and Monte-Carlo kernels of a spec.

Two strategies, both batched over inputs, chosen automatically by size:

* ``jacobian``: per-sample Jacobians J (N, O, P) by ``vmap(jacrev)``, each
  computed once, then Theta = J1 J2^T contracted over parameters. Fast when
  N * O * P fits memory (``MEMORY_BUDGET``).
* ``ntvp``: NTK-vector products: for each basis vector of the outputs on x2, a
  vjp (back to parameter space) then a jvp on x1. Memory O(P + N1 N2 O^2),
  for networks whose Jacobians do not fit.

``mode='full'`` gives (N1, N2, O, O); ``mode='trace'`` sums over outputs, (N1, N2).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.func import functional_call, jacrev, jvp, vjp, vmap

from nnbias.engines.ensemble import sample_ensemble
from nnbias.errors import check_choice, check_int
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


def spec_empirical_ntk(spec: NetworkSpec, x1: torch.Tensor, x2: torch.Tensor | None = None,
                       seed: int = 0, dtype: torch.dtype = torch.float64, **kwargs) -> torch.Tensor:
    """Empirical NTK (N1, N2) of one network drawn from the spec, in the spec's parametrization."""
    nets = sample_ensemble(spec, 1, torch.Generator().manual_seed(seed), dtype=dtype)
    fn, params = nets.functional()
    return ntk_of_function(lambda p, x: fn(p, x).T, params, x1.to(dtype),
                           None if x2 is None else x2.to(dtype), **kwargs)


def monte_carlo_kernels(spec: NetworkSpec, x1: torch.Tensor, x2: torch.Tensor | None = None,
                        networks: int = 256, seed: int = 0, dtype: torch.dtype = torch.float64,
                        ntk: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """NNGP and NTK estimated from ``networks`` finite networks drawn at once.

    NNGP = mean_k f_k(x) f_k(x'). For the NTK, the Jacobian of sum_k f_k(x)
    holds each network's gradient in that network's own parameters, so
    J J^T / K is the mean of the K empirical NTKs, in one pass.
    """
    nets = sample_ensemble(spec, networks, torch.Generator().manual_seed(seed), dtype=dtype)
    x1 = x1.to(dtype)
    x2 = x1 if x2 is None else x2.to(dtype)
    with torch.no_grad():
        nngp = nets.forward(x1, inplace=False).T @ nets.forward(x2, inplace=False) / networks
    if not ntk:
        return nngp, None
    fn, params = nets.functional()
    summed = ntk_of_function(lambda p, x: fn(p, x).sum(0, keepdim=True).T, params, x1,
                             None if x2 is x1 else x2, strategy="jacobian", block=64)
    return nngp, summed / networks


def per_network_ntk_diagonal(nets, x: torch.Tensor) -> torch.Tensor:
    """Theta_k(x, x) of each of the K networks (K, N), from one Jacobian of sum_k f_k.

    Every parameter tensor has the network index first, so summing the squared
    gradient over the other axes separates the networks.
    """
    fn, params = nets.functional()
    params = [p.detach().requires_grad_(True) for p in params]
    out = []
    for xi in x:
        grads = torch.autograd.grad(fn(params, xi.unsqueeze(0)).sum(), params)
        out.append(sum(g.flatten(1).pow(2).sum(1) for g in grads))
    return torch.stack(out, dim=1).detach()
