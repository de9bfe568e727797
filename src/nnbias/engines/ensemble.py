"""K networks of one spec as stacked tensors, applied in one batched computation.

Layout: each layer's weights are stored transposed, ``(K, fan_out, fan_in)``,
and activations as ``(K, width, N)``. With that layout the per-layer product is
one ``baddbmm`` with the bias fused in, which on CPU runs several times faster
than the ``(K, N, width) @ (K, width, width)`` layout (measured on 40x40 layers).
The weight scale sigma_w/sqrt(fan_in) is applied as the ``alpha`` of that
``baddbmm``, so raw draws never need a separate scaling pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nnbias.spec import NetworkSpec


def activation_fn(name: str):
    """Elementwise activation by name, applied in place (the tensor is a fresh product)."""
    return {
        "relu": torch.Tensor.relu_,
        "tanh": torch.Tensor.tanh_,
        "erf": torch.Tensor.erf_,
        "sign": torch.Tensor.sign_,
        "step": lambda z: z.gt_(0),
        "linear": lambda z: z,
    }[name]


@dataclass
class Ensemble:
    """Raw parameter draws of K networks plus the scales that turn them into the prior.

    ``weights[l]`` has shape (K, fan_out, fan_in) and holds unit-scale draws
    (standard normal, or U(-1, 1) for the uniform prior); ``scales[l]`` is the
    multiplier that gives the prior's weights. Biases are stored already scaled.
    """

    spec: NetworkSpec
    weights: list[torch.Tensor]
    biases: list[torch.Tensor | None]
    scales: list[float]

    @property
    def size(self) -> int:
        return self.weights[0].shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs (K, N) of all K networks on inputs x of shape (N, input_dim)."""
        act = activation_fn(self.spec.activation)
        h = x.T.to(self.weights[0].dtype).unsqueeze(0).expand(self.size, -1, -1)
        last = len(self.weights) - 1
        for layer, (w, b, s) in enumerate(zip(self.weights, self.biases, self.scales, strict=True)):
            if b is None:
                z = torch.bmm(w, h).mul_(s)
            else:
                z = torch.baddbmm(b.unsqueeze(2), w, h, alpha=s)
            h = z if layer == last else act(z)
        return h[:, 0, :]


def sample_ensemble(spec: NetworkSpec, k: int, generator: torch.Generator,
                    dtype: torch.dtype = torch.float32) -> Ensemble:
    """Draw K networks from the spec's prior with one RNG call.

    One flat buffer is filled by a single ``normal_``/``uniform_`` call and
    sliced into layers: at the sizes of the original experiments random-number
    generation costs as much as the matrix products, so it must not be split
    into many small calls.
    """
    device = generator.device
    sizes = spec.layer_sizes
    per_net = sum(fo * fi + (fo if spec.bias else 0) for fi, fo in sizes)
    flat = torch.empty(k * per_net, dtype=dtype, device=device)
    if spec.prior == "gaussian":
        flat.normal_(generator=generator)
    else:
        flat.uniform_(-1.0, 1.0, generator=generator)
    flat = flat.view(k, per_net)
    weights, biases, scales = [], [], []
    offset = 0
    for fan_in, fan_out in sizes:
        weights.append(flat[:, offset: offset + fan_in * fan_out].view(k, fan_out, fan_in))
        offset += fan_in * fan_out
        w_scale = spec.weight_scale(fan_in)
        b_scale = spec.sigma_b
        if spec.prior == "uniform":
            w_scale, b_scale = spec.uniform_half_widths(fan_in)
        scales.append(w_scale)
        if spec.bias:
            biases.append(flat[:, offset: offset + fan_out].mul_(b_scale))
            offset += fan_out
        else:
            biases.append(None)
    return Ensemble(spec, weights, biases, scales)
