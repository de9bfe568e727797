"""The network specification: one description, many faces.

A :class:`NetworkSpec` fixes architecture (input dimension, hidden widths,
activation, bias), prior (Gaussian or uniform, sigma_w, sigma_b) and input
encoding. The sampler, the exact-volume calculator, and later the trainer and
the kernels all read this one object, so a finding about one face can be
checked against another face of the same network.

Parametrization only changes training and the NTK, never the prior over
functions: ``standard`` trains the weights w ~ N(0, sigma_w^2/fan_in) directly;
``ntk`` (Jacot et al.; neural-tangents' ``stax.Dense`` default) trains unit
Gaussians W and applies sigma_w/sqrt(fan_in) W h + sigma_b b in the forward pass.

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
PARAMETRIZATIONS = ("standard", "ntk")
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

    def weight_scale(self, fan_in: int) -> float:
        """Standard deviation of one weight entry of a layer with this fan-in."""
        return self.sigma_w / math.sqrt(fan_in)

    def uniform_half_widths(self, fan_in: int) -> tuple[float, float]:
        """(a_w, a_b): half-widths of the uniform weight and bias ranges."""
        return self.weight_scale(fan_in) * math.sqrt(3.0), self.sigma_b * math.sqrt(3.0)

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
