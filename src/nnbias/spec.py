"""The network specification: one description, many faces.

A :class:`NetworkSpec` fixes architecture (input dimension, hidden widths,
activation, bias), prior (Gaussian or uniform, sigma_w, sigma_b) and input
encoding. The sampler, the exact-volume calculator, and later the trainer and
the kernels all read this one object, so a finding about one face can be
checked against another face of the same network.

Parametrizations are the abc-parametrizations of Yang & Hu 2021 (Tensor
Programs IV, Table 1, SGD): layer l's effective weights are
W^l = n^(-a_l) w^l with trained w^l ~ N(0, n^(-2 b_l)) and learning rate
eta n^(-c), n the width, constants (sigma_w, 1/sqrt(input_dim)) aside:

=============  ================  ==============  =====
preset          a (in, hid, out)  b (in, hid, out)  c
=============  ================  ==============  =====
standard        0, 0, 0           0, 1/2, 1/2       1
ntk             0, 1/2, 1/2       0, 0, 0           0
mup             -1/2, 0, 1/2      1/2, 1/2, 1/2     0
mean-field      0, -, 1           0, -, 0           -1   (one hidden layer)
=============  ================  ==============  =====

``standard`` trains the weights w ~ N(0, sigma_w^2/fan_in) directly; ``ntk``
(Jacot et al.; neural-tangents' ``stax.Dense`` default) trains unit Gaussians W
and applies sigma_w/sqrt(fan_in) W h + sigma_b b in the forward pass. Standard
and NTK share the prior over functions; ``mup`` and ``mean-field`` have
a_out + b_out = 1, a readout of scale sigma_w/n (outputs vanish at init as
n grows), so their infinite-width kernels are degenerate. Hidden biases scale
like input weights, the readout bias is O(1). Feature updates per coordinate
scale as n^-1/2 under ``ntk`` and ``standard`` (at c = 1), as n^0 under
``mup`` and ``mean-field``.

Prior conventions (those of Valle-Pérez et al. 2018 and Mingard et al.):

* ``gaussian``: weights ~ N(0, sigma_w**2 / fan_in), biases ~ N(0, sigma_b**2).
* ``uniform``: weights ~ U(-a, a) with a = sigma_w * sqrt(3 / fan_in) and biases
  ~ U(-sigma_b*sqrt(3), sigma_b*sqrt(3)), i.e. the same variances as the
  Gaussian. The original papers' U(+-sqrt(6/fan_in)) hidden layers are
  sigma_w = sqrt(2); their U(+-sqrt(3/fan_in)) readout is sigma_w = 1.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

from nnbias.errors import NNBiasError, check_choice, check_int, check_positive, require

ACTIVATIONS = ("relu", "tanh", "erf", "gelu", "sign", "step", "linear")
DERIVATIVE_READS_INPUT = ("erf", "gelu")  # what autograd saves of them: the input, not the output
PARAMETRIZATIONS = ("standard", "ntk", "mup", "mean-field")
# (a, b) for the input, hidden and readout layers, and c (Yang & Hu 2021, Table 1)
ABC = {
    "standard": ((0.0, 0.0, 0.0), (0.0, 0.5, 0.5), 1.0),
    "ntk": ((0.0, 0.5, 0.5), (0.0, 0.0, 0.0), 0.0),
    "mup": ((-0.5, 0.0, 0.5), (0.5, 0.5, 0.5), 0.0),
    "mean-field": ((0.0, 0.0, 1.0), (0.0, 0.0, 0.0), -1.0),
}
PRIORS = ("gaussian", "uniform")
ENCODINGS = ("01", "pm1")


@dataclass(frozen=True)
class NetworkSpec:
    """A fully connected network with a scalar output and its prior.

    ``hidden=()`` is a perceptron: one dense layer straight to the output.
    """

    input_dim: int
    hidden: tuple[int, ...] = ()
    activation: str = "relu"
    bias: bool = True
    prior: str = "gaussian"
    sigma_w: float = 1.0
    sigma_b: float = 1.0
    encoding: str = "01"
    parametrization: str = "standard"

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_dim", check_int("input_dim", self.input_dim, minimum=1))
        require(isinstance(self.hidden, tuple | list),
                f"hidden={self.hidden!r} is not allowed; expected a list of widths")
        widths = tuple(check_int("width", w, minimum=1) for w in self.hidden)
        object.__setattr__(self, "hidden", widths)
        check_choice("activation", self.activation, ACTIVATIONS)
        check_choice("prior", self.prior, PRIORS)
        check_choice("encoding", self.encoding, ENCODINGS)
        check_choice("parametrization", self.parametrization, PARAMETRIZATIONS)
        require(isinstance(self.bias, bool), f"bias={self.bias!r} is not allowed; expected true or false")
        object.__setattr__(self, "sigma_w", check_positive("sigma_w", self.sigma_w))
        object.__setattr__(self, "sigma_b", check_positive("sigma_b", self.sigma_b, allow_zero=True))
        require(self.parametrization != "mean-field" or self.depth == 1,
                f"parametrization='mean-field' is defined for one hidden layer, not {self.depth}; "
                "use mup for deeper networks")

    @property
    def layer_sizes(self) -> list[tuple[int, int]]:
        """(fan_in, fan_out) of each dense layer, readout last."""
        dims = [self.input_dim, *self.hidden, 1]
        return list(zip(dims[:-1], dims[1:], strict=True))

    @property
    def depth(self) -> int:
        """Number of hidden layers."""
        return len(self.hidden)

    @property
    def n_params(self) -> int:
        return sum(i * o + (o if self.bias else 0) for i, o in self.layer_sizes)

    @property
    def activations(self) -> int:
        """Numbers one input leaves in one network's forward pass with autograd: each hidden layer's
        output, which the next layer's matmul saves, and its pre-activation where the activation's
        derivative reads its input (erf, gelu; relu and tanh read their output). The layered form
        counts these by torch's saved-tensor hooks, and a test holds the two to each other."""
        return sum(self.hidden) * (2 if self.activation in DERIVATIVE_READS_INPUT else 1)

    @property
    def peak(self) -> int:
        """Numbers per input a forward pass without autograd holds at once at least: the widest layer's
        pre- and post-activation (or the output)."""
        return 2 * max([*self.hidden, 1])

    def weight_scale(self, fan_in: int, readout: bool = False) -> float:
        """Standard deviation of one effective weight entry of a layer with this fan-in
        (sigma_w/fan_in for the readout of ``mup`` and ``mean-field``)."""
        if readout and self.depth and sum(self.layer_abc(self.depth)[:2]) == 1.0:
            return self.sigma_w / fan_in
        return self.sigma_w / math.sqrt(fan_in)

    def uniform_half_widths(self, fan_in: int, readout: bool = False) -> tuple[float, float]:
        """(a_w, a_b): half-widths of the uniform weight and bias ranges."""
        return self.weight_scale(fan_in, readout) * math.sqrt(3.0), self.sigma_b * math.sqrt(3.0)

    def layer_abc(self, layer: int) -> tuple[float, float, float]:
        """(a, b, n) of dense layer ``layer`` (0 = input): its exponents and the width n they apply to."""
        a, b, _ = ABC[self.parametrization]
        fan_in, fan_out = self.layer_sizes[layer]
        if layer == 0:
            return (a[0], b[0], fan_out) if self.depth else (0.0, 0.0, 1)  # a perceptron has no width
        kind = 2 if layer == self.depth else 1
        return a[kind], b[kind], fan_in

    def param_scales(self, layer: int, scale: float, bias_scale: float) -> tuple[float, float]:
        """(weight, bias) factors from unit draws to trained parameters: p = draw * factor.

        ``standard`` trains the effective weights themselves (factor = the prior
        scale); the other presets train w ~ N(0, n^(-2b)) (factor n^(-b)); hidden
        biases follow the input layer's b, the readout bias is trained at unit scale.
        """
        if self.parametrization == "standard":
            return scale, bias_scale
        _, b, n = self.layer_abc(layer)
        b_in, n_in = self.layer_abc(0)[1:]
        return n ** -b, (n_in ** -b_in if layer < self.depth else 1.0)

    def lr_scale(self, base_width: int = 1) -> float:
        """(n / base_width)^(-c): the factor that keeps SGD's learning rate stable as the width n
        grows, so that a learning rate tuned at ``base_width`` carries over (muTransfer)."""
        return (max(self.hidden, default=1) / base_width) ** -ABC[self.parametrization][2]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NetworkSpec:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise NNBiasError(f"unknown spec field(s) {unknown}; allowed: {sorted(known)}")
        d = dict(d)
        if "hidden" in d:
            d["hidden"] = tuple(d["hidden"])
        return cls(**d)

    def describe(self) -> str:
        """Short human label, e.g. ``7-40-40-1 relu gaussian(1,1) {0,1}``."""
        arch = "-".join(str(d) for d in (self.input_dim, *self.hidden, 1))
        return (f"{arch} {self.activation} {self.prior}(sw={self.sigma_w:g}, "
                f"sb={self.sigma_b:g}{'' if self.bias else ', no bias'}) "
                f"{'{0,1}' if self.encoding == '01' else '{-1,+1}'}")

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)
