"""How much did training change a network's features? (Do hidden activations move?)

All functions take stacked activations of K networks, (K, width, N), as
``Ensemble.forward(x, hidden=...)`` collects them, and return one value per
network, so a width sweep measures K seeds at once.

* ``relative_change``: ||h_T - h_0|| / ||h_0|| (activations or weights);
* ``coordinate_size``: mean |entry|, the "typical coordinate" of microsoft/mup's
  coordinate check;
* ``kernel_distance``: 1 - <K0, K1>_F / (||K0|| ||K1||) between two NTKs
  (Fort et al. 2020's kernel velocity, integrated over training);
* ``kernel_alignment``: y^T K y / (||K||_F ||y||^2) (Cristianini et al.);
* ``linear_cka``: centred kernel alignment of two representations (Kornblith et al. 2019);
* ``principal_angles``: between the top-k principal subspaces of a layer before and after;
* ``gradient_fraction``: share of the activation change that lies in the span of the
  top-k output-gradient directions df/dh at initialisation (``output_gradients``);
* ``moved_variance``: share of the trained representation's variance that lies in the
  top-k principal directions of its change (how much of what the layer now represents
  is what moved).
"""

from __future__ import annotations

import torch
from scipy.linalg import subspace_angles

from nnbias.engines.ensemble import Ensemble


def relative_change(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """(K,) ||after - before|| / ||before|| over all but the first axis."""
    dims = tuple(range(1, before.ndim))
    return torch.linalg.vector_norm(after - before, dim=dims) / torch.linalg.vector_norm(before, dim=dims)


def coordinate_size(h: torch.Tensor) -> torch.Tensor:
    """(K,) mean absolute entry."""
    return h.abs().flatten(1).mean(1)


def kernel_distance(k0: torch.Tensor, k1: torch.Tensor) -> torch.Tensor:
    """(K,) 1 - cosine similarity of two (K, N, N) Gram matrices."""
    inner = (k0 * k1).flatten(1).sum(1)
    return 1 - inner / (k0.flatten(1).norm(dim=1) * k1.flatten(1).norm(dim=1))


def kernel_alignment(k: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(K,) y^T K y / (||K||_F ||y||^2) for (K, N, N) Gram matrices and targets y (N,)."""
    y = y.to(k.dtype)
    return torch.einsum("i,kij,j->k", y, k, y) / (k.flatten(1).norm(dim=1) * (y @ y))


def _centred(h: torch.Tensor) -> torch.Tensor:
    """(K, N, width) representations centred over the N inputs."""
    x = h.transpose(1, 2)
    return x - x.mean(1, keepdim=True)


def linear_cka(h0: torch.Tensor, h1: torch.Tensor) -> torch.Tensor:
    """(K,) linear CKA between representations (K, width0, N) and (K, width1, N) of the same inputs."""
    a, b = _centred(h0), _centred(h1)
    cross = torch.linalg.matrix_norm(b.transpose(1, 2) @ a) ** 2
    return cross / (torch.linalg.matrix_norm(a.transpose(1, 2) @ a)
                    * torch.linalg.matrix_norm(b.transpose(1, 2) @ b))


def _top_directions(x: torch.Tensor, k: int) -> torch.Tensor:
    """(width, k) orthonormal top-k right singular vectors of an (N, width) matrix."""
    return torch.linalg.svd(x, full_matrices=False)[2][:k].T


def principal_angles(h0: torch.Tensor, h1: torch.Tensor, k: int = 5) -> torch.Tensor:
    """(K, k) principal angles (radians, largest first) between the top-k PCA subspaces
    of a layer's activations before and after training."""
    a, b = _centred(h0), _centred(h1)
    return torch.stack([torch.as_tensor(subspace_angles(_top_directions(x, k).double().cpu().numpy(),
                                                        _top_directions(y, k).double().cpu().numpy()))
                        for x, y in zip(a, b, strict=True)])  # on the CPU: scipy's angles


def gradient_fraction(delta: torch.Tensor, grads: torch.Tensor, k: int = 5) -> torch.Tensor:
    """(K,) share of ||delta h||^2 inside the span of the top-k output-gradient directions.

    ``delta`` and ``grads`` are (K, width, N): the activation change and df/dh
    for each input. A kernel-regime net moves its features along a few such
    directions (the "linear combinations" view); 1 means entirely inside.
    """
    out = []
    for d, g in zip(delta, grads, strict=True):
        basis = _top_directions(g.T, k)  # (width, k)
        inside = basis.T @ d  # (k, N)
        out.append((inside.norm() ** 2) / (d.norm() ** 2))
    return torch.stack(out)


def moved_variance(h0: torch.Tensor, h1: torch.Tensor, k: int = 5) -> torch.Tensor:
    """(K,) share of the variance of h1 (over inputs) inside the span of the top-k principal
    directions of the change h1 - h0; both (K, width, N)."""
    out = []
    for a, d in zip(_centred(h1), _centred(h1 - h0), strict=True):  # (N, width) each
        basis = _top_directions(d, k)
        out.append((a @ basis).norm() ** 2 / a.norm() ** 2)
    return torch.stack(out)


def output_gradients(nets: Ensemble, x: torch.Tensor) -> list[torch.Tensor]:
    """df/dh for each hidden layer, (K, width, N): the directions the output is sensitive to."""
    hidden: list[torch.Tensor] = []
    with torch.enable_grad():
        weights = [w.detach().requires_grad_(True) for w in nets.weights]
        view = Ensemble(nets.spec, weights, nets.biases, nets.scales, nets.bias_scales)
        out = view.forward(x, inplace=False, hidden=hidden)
        return list(torch.autograd.grad(out.sum(), hidden))
