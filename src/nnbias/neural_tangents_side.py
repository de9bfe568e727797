"""neural-tangents' side of the kernel comparisons: runs under an interpreter that has JAX and
``neural_tangents`` (not nnbias, whose torch it does not need), so the second implementation
never becomes a dependency.

* ``python neural_tangents_side.py reference OUT.npz``: the NNGP and NTK of ``CASES`` (layer
  strings in nnbias' syntax, translated to ``stax``) in float64, with their inputs: the fixture
  ``tests/data/neural_tangents_reference.npz`` that the tests compare nnbias' kernels with.
* ``python neural_tangents_side.py time X.npy DEPTH WIDTH SIGMA_W SIGMA_B OUT.npy``: times the
  jitted NTK of that ReLU MLP on X (compilation apart), writes the Gram matrix and prints one
  JSON line; ``nnbias bench kernels --neural-tangents PYTHON`` runs it beside its own rows.
"""

from __future__ import annotations

import json
import resource
import sys
import time

import numpy as np

# (name, input shape (channels, *spatial) or (d,), layers, sigma_w, sigma_b, parametrization, inputs):
# every layer kind, padding, stride, both spatial layouts (flatten: diagonal, gap: full), both
# parametrizations and each activation neural-tangents computes in closed form, plus tanh by its
# quadrature
CASES = (
    ("mlp-relu-3", (7,), "dense:64,relu,dense:64,relu,dense:64,relu,dense:1", 1.5, 0.1, "ntk", 9),
    ("mlp-relu-2-standard", (7,), "dense:64,relu,dense:48,relu,dense:1", 1.3, 0.4, "standard", 7),
    ("mlp-erf-2", (5,), "dense:32,erf,dense:32,erf,dense:1", 1.3, 0.5, "ntk", 8),
    ("mlp-gelu-2", (5,), "dense:32,gelu,dense:32,gelu,dense:1", 1.2, 0.3, "ntk", 8),
    ("mlp-tanh-1", (4,), "dense:32,tanh,dense:1", 2.5, 0.2, "ntk", 6),  # variances ~6: see the tests
    ("mlp-sign-1", (6,), "dense:32,sign,dense:1", 1.0, 0.4, "ntk", 7),
    ("mlp-linear-nobias", (6,), "dense:16,linear,dense:16,linear,dense:1", 0.9, 0.0, "ntk", 6),
    ("cnn1d-flatten", (2, 10), "conv1d:8:3,relu,conv1d:8:3:valid:2,relu,flatten,dense:1", 1.4, 0.2,
     "ntk", 6),
    ("cnn1d-circular-gap", (3, 9), "conv1d:8:4:circular,erf,conv1d:8:3,relu,gap,dense:1", 1.2, 0.1,
     "ntk", 5),
    ("cnn2d-flatten-stride", (2, 6, 6), "conv2d:4:3:same:2,relu,conv2d:4:2:valid,relu,flatten,dense:1",
     1.5, 0.3, "ntk", 5),
    ("cnn2d-gap", (3, 5, 5), "conv2d:4:3,relu,conv2d:4:3:circular,gelu,gap,dense:1", 1.3, 0.2, "ntk", 4),
    ("cnn2d-gap-standard", (2, 5, 5), "conv2d:6:3,relu,conv2d:5:3,erf,gap,dense:1", 1.4, 0.3,
     "standard", 4),
)
TANH_DEGREE = 300  # Gauss-Hermite nodes of stax.ElementwiseNumerical for tanh


def _stax_layers(layers: str, sigma_w: float, sigma_b: float, parametrization: str = "ntk"):
    import jax.numpy as jnp
    from neural_tangents import stax

    b_std = sigma_b or None
    out = []
    for token in layers.split(","):
        kind, *args = token.split(":")
        if kind == "dense":
            out.append(stax.Dense(int(args[0]), W_std=sigma_w, b_std=b_std, parameterization=parametrization))
        elif kind in ("conv1d", "conv2d"):
            dims = int(kind[4])
            padding = (args[2] if len(args) > 2 else "same").upper()
            stride = int(args[3]) if len(args) > 3 else 1
            out.append(stax.Conv(int(args[0]), (int(args[1]),) * dims, strides=(stride,) * dims,
                                 padding=padding, W_std=sigma_w, b_std=b_std,
                                 parameterization=parametrization))
        else:
            out.append({"relu": stax.Relu, "erf": stax.Erf, "gelu": stax.Gelu, "sign": stax.Sign,
                        "linear": stax.Identity, "flatten": stax.Flatten, "gap": stax.GlobalAvgPool,
                        "tanh": lambda: stax.ElementwiseNumerical(jnp.tanh, TANH_DEGREE)}[kind]())
    return stax.serial(*out)[2]


def _channels_last(x: np.ndarray) -> np.ndarray:
    """nnbias' (N, C, *S) inputs in neural-tangents' (N, *S, C) layout."""
    return np.moveaxis(x, 1, -1) if x.ndim > 2 else x


def reference(path: str) -> None:
    import jax
    import neural_tangents

    rng = np.random.default_rng(2026)
    arrays, cases = {}, []
    for name, shape, layers, sigma_w, sigma_b, parametrization, n in CASES:
        x = rng.normal(size=(n, *shape))
        kernel_fn = _stax_layers(layers, sigma_w, sigma_b, parametrization)
        kernel = kernel_fn(_channels_last(x), None, ("nngp", "ntk"))
        arrays[f"{name}/x"] = x
        arrays[f"{name}/nngp"] = np.asarray(kernel.nngp)
        arrays[f"{name}/ntk"] = np.asarray(kernel.ntk)
        cases.append({"name": name, "input_shape": list(shape), "layers": layers,
                      "sigma_w": sigma_w, "sigma_b": sigma_b, "parametrization": parametrization})
    meta = {"cases": cases, "neural_tangents": neural_tangents.__version__, "jax": jax.__version__,
            "tanh_quadrature_degree": TANH_DEGREE}
    np.savez(path, meta=np.array(json.dumps(meta)), **arrays)


def time_ntk(x_path: str, depth: int, width: int, sigma_w: float, sigma_b: float, out: str) -> None:
    import jax
    import neural_tangents

    x = np.load(x_path)
    layers = ",".join([f"dense:{width},relu"] * depth + ["dense:1"])
    kernel_fn = jax.jit(_stax_layers(layers, sigma_w, sigma_b), static_argnames="get")
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    kernel_fn(x, None, get="ntk").block_until_ready()
    first = time.perf_counter() - start
    start = time.perf_counter()
    gram = kernel_fn(x, None, get="ntk").block_until_ready()
    seconds = time.perf_counter() - start
    np.save(out, np.asarray(gram))
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    print(json.dumps({"seconds": seconds, "first_call_seconds": first, "peak_mib": peak,
                      "neural_tangents": neural_tangents.__version__, "jax": jax.__version__,
                      "x64": bool(jax.config.jax_enable_x64)}))


if __name__ == "__main__":
    import jax

    jax.config.update("jax_enable_x64", True)
    command, *rest = sys.argv[1:]
    if command == "reference":
        reference(*rest)
    else:
        depth, width, sigma_w, sigma_b = int(rest[1]), int(rest[2]), float(rest[3]), float(rest[4])
        time_ntk(rest[0], depth, width, sigma_w, sigma_b, rest[5])
