"""Tasks with a known difficulty ladder, generated or packaged (never downloaded).

Every task is a :class:`Dataset`: train/test inputs and targets, float64
tensors, with ``classes`` > 0 for classification (labels 0..classes-1) or 0
for regression. All randomness comes from the ``seed`` argument.

Ladder, easy to hard for kernels: linear teacher < single-index < multi-index
< k-sparse parity (kernels need about d^k samples, Barak et al. 2022;
Ghorbani et al. 2019); real data: sklearn's digits and MNIST-1D.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from dataclasses import dataclass

import numpy as np
import torch

from nnbias.errors import NNBiasError, check_choice, check_int, check_seed, require
from nnbias.tasks.boolean import check_n_bits, hypercube


@dataclass
class Dataset:
    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: int = 0  # 0: regression

    def __post_init__(self) -> None:
        for part in ("x_train", "y_train", "x_test", "y_test"):
            value = torch.as_tensor(getattr(self, part))
            as_float = part.startswith("x") or not self.classes
            setattr(self, part, value.double() if as_float else value.long())
        require(self.x_train.ndim == 2 and self.x_test.ndim == 2,
                f"{self.name}: inputs must be 2-D (N, d), got {tuple(self.x_train.shape)}")
        for x, y in ((self.x_train, self.y_train), (self.x_test, self.y_test)):
            require(x.shape[0] == y.shape[0], f"{self.name}: {x.shape[0]} inputs but {y.shape[0]} targets")
        require(self.x_train.shape[1] == self.x_test.shape[1],
                f"{self.name}: train inputs have {self.x_train.shape[1]} features, "
                f"test inputs {self.x_test.shape[1]}")
        for part in ("x_train", "x_test") + (() if self.classes else ("y_train", "y_test")):
            require(bool(torch.isfinite(getattr(self, part)).all()),
                    f"{self.name}: {part} contains NaN or inf")
        if self.classes:
            labels = torch.cat([self.y_train, self.y_test])
            require(int(labels.min()) >= 0 and int(labels.max()) < self.classes,
                    f"{self.name}: labels range {int(labels.min())}..{int(labels.max())}; "
                    f"allowed 0..{self.classes - 1}")

    def to(self, device: str) -> Dataset:
        """The same data set with its tensors on ``device`` (where an experiment's cell computes)."""
        if self.x_train.device == torch.device(device):
            return self
        return dataclasses.replace(self, **{part: getattr(self, part).to(device)
                                            for part in ("x_train", "y_train", "x_test", "y_test")})

    @property
    def dim(self) -> int:
        return self.x_train.shape[1]

    def signed_targets(self, y: torch.Tensor) -> torch.Tensor:
        """Scalar-output targets: +-1 for two classes (from 0/1 labels), the values for regression."""
        return 2.0 * y.double() - 1.0 if self.classes else y.double()

    def test_score(self, pred: torch.Tensor) -> torch.Tensor:
        """Test accuracy (sign of a scalar output) or MSE (regression), per row of ``pred``."""
        pred = pred.reshape(-1, self.y_test.shape[0])
        if self.classes:
            return ((pred > 0).long() == self.y_test).double().mean(1)
        return ((pred - self.y_test) ** 2).mean(1)

    def expected_test_score(self, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        """Expected ``test_score`` of a random predictor f(x) ~ N(mean(x), var(x)) on each test input,
        such as a network from a random initialisation in the infinite-width limit: accuracy
        mean_x P(sign f(x) right) = mean_x Phi(y mean / sd), or MSE mean_x (mean - y)^2 + var."""
        mean, var = mean.reshape(-1), var.reshape(-1).clamp_min(0)
        if self.classes:
            y = self.signed_targets(self.y_test)
            return torch.special.ndtr(y * mean / var.sqrt().clamp_min(1e-300)).mean().reshape(1)
        return (((mean - self.y_test) ** 2).mean() + var.mean()).reshape(1)

    def test_error(self, pred: torch.Tensor) -> torch.Tensor:
        """One error scale for every task, per row of ``pred``: 1 - accuracy for classes, MSE / Var(y_test)
        for regression (1 = no better than predicting the mean), so tasks can share one axis."""
        return self.error_of(self.test_score(pred))

    def error_of(self, score: torch.Tensor) -> torch.Tensor:
        """A ``test_score`` on the ``test_error`` scale."""
        return 1.0 - score if self.classes else score / self.y_test.var(correction=0)

    def test_in_training(self) -> torch.Tensor:
        """(N_test,) bool: which test inputs also occur, exactly, among the training inputs."""
        return (self.x_test[:, None, :] == self.x_train[None, :, :]).all(2).any(1)

    def describe(self) -> str:
        kind = f"{self.classes}-class" if self.classes else "regression"
        return f"{self.name} ({kind}, d={self.dim}, train {len(self.y_train)}, test {len(self.y_test)})"


def _rng(seed: int, stream: int = 0) -> np.random.Generator:
    """Generator for ``seed``; distinct ``stream``s are independent (a target and its split must be)."""
    return np.random.default_rng([check_seed(seed), stream])


def _split(name: str, x: np.ndarray, y: np.ndarray, train: int, rng: np.random.Generator,
           classes: int = 0, test: int | None = None) -> Dataset:
    train = check_int("train", train, minimum=1, maximum=len(x) - 1)
    order = rng.permutation(len(x))
    rest = order[train:] if test is None else order[train:train + check_int("test", test, minimum=1)]
    return Dataset(name, torch.from_numpy(x[order[:train]]), torch.from_numpy(y[order[:train]]),
                   torch.from_numpy(x[rest]), torch.from_numpy(y[rest]), classes)


# Boolean ---------------------------------------------------------------------
def boolean_target(n: int, target: str, seed: int = 0) -> str:
    """Truth table of a named Boolean target: parity, majority, random:<entropy>, or a 0/1 string."""
    n = check_n_bits(n)
    bits = hypercube(n).long()
    if target == "parity":
        out = bits.sum(1) % 2
    elif target == "majority":
        out = (2 * bits.sum(1) > n).long()
    elif target.startswith("random:"):
        try:
            h = float(target.split(":", 1)[1])
        except ValueError:
            raise NNBiasError(f"target={target!r} is not allowed; "
                              "expected random:<entropy in [0, 1]>") from None
        require(0 <= h <= 1, f"target={target!r}: entropy must lie in [0, 1]")
        # smallest ones-fraction p <= 1/2 with binary entropy >= h, rounded to whole inputs
        ps = np.arange(2**n + 1) / 2**n
        with np.errstate(divide="ignore", invalid="ignore"):
            ent = np.nan_to_num(-(ps * np.log2(ps) + (1 - ps) * np.log2(1 - ps)))
        ones = int(np.argmax(ent >= h - 1e-12))
        out = torch.zeros(2**n, dtype=torch.long)
        out[torch.from_numpy(_rng(seed, stream=1).permutation(2**n)[:ones])] = 1
    else:
        require(len(target) == 2**n and set(target) <= {"0", "1"},
                f"target={target!r} is not allowed; expected parity, majority, random:<entropy> "
                f"or a truth table of {2**n} 0/1 characters")
        return target
    return "".join(map(str, out.tolist()))


def boolean_task(n: int, target: str = "parity", train: int = 32, seed: int = 0,
                 encoding: str = "01", test: int | None = None) -> Dataset:
    """Learn a truth table from ``train`` of its 2**n inputs; test on ``test`` others (default: the rest)."""
    table = boolean_target(n, target, seed)
    x = hypercube(n, encoding, torch.float64).numpy()
    y = np.array([int(c) for c in table])
    if test is not None:
        check_int("train", train, minimum=1, maximum=2**n - 1)  # at least one input left to test on
        check_int("test", test, minimum=1, maximum=2**n - train)
    return _split(f"boolean n={n} {target if len(target) < 20 else 'table'}", x, y, train, _rng(seed), 2,
                  test)


# Teacher-student on Gaussian inputs --------------------------------------------
LINKS = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh, "he2": lambda z: (z**2 - 1) / math.sqrt(2),
         "he3": lambda z: (z**3 - 3 * z) / math.sqrt(6)}


def teacher_task(kind: str = "linear", d: int = 32, train: int = 256, test: int = 1000, k: int = 2,
                 link: str = "relu", noise: float = 0.0, seed: int = 0) -> Dataset:
    """Regression on x ~ N(0, I_d): linear w.x, single-index g(w.x), multi-index sum_j g(w_j.x)."""
    check_choice("kind", kind, ("linear", "single-index", "multi-index"))
    check_choice("link", link, list(LINKS))
    d = check_int("d", d, minimum=1)
    rng = _rng(seed)
    n = check_int("train", train, minimum=1) + check_int("test", test, minimum=1)
    x = rng.normal(size=(n, d))
    dirs = np.linalg.qr(rng.normal(size=(d, min(d, k if kind == "multi-index" else 1))))[0].T
    z = x @ dirs.T
    y = z[:, 0] if kind == "linear" else LINKS[link](z).sum(1) / math.sqrt(z.shape[1])
    y = y + noise * rng.normal(size=n)
    return Dataset(f"{kind} teacher d={d}" + ("" if kind == "linear" else f" {link}"),
                   torch.from_numpy(x[:train]), torch.from_numpy(y[:train]),
                   torch.from_numpy(x[train:]), torch.from_numpy(y[train:]))


def sparse_parity(d: int = 20, k: int = 2, train: int = 1000, test: int = 1000, seed: int = 0) -> Dataset:
    """x uniform on {-1, +1}^d, label = product of k fixed coordinates (as a 0/1 class)."""
    d = check_int("d", d, minimum=1)
    k = check_int("k", k, minimum=1, maximum=d)
    rng = _rng(seed)
    n = check_int("train", train, minimum=1) + check_int("test", test, minimum=1)
    x = rng.choice([-1.0, 1.0], size=(n, d))
    support = rng.choice(d, size=k, replace=False)
    y = (x[:, support].prod(1) > 0).astype(np.int64)
    return Dataset(f"{k}-sparse parity d={d}", torch.from_numpy(x[:train]), torch.from_numpy(y[:train]),
                   torch.from_numpy(x[train:]), torch.from_numpy(y[train:]), 2)


# Packaged real data -------------------------------------------------------------
def _keep_classes(x: np.ndarray, y: np.ndarray, classes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The examples of the chosen digits, relabelled 0..len(classes)-1 in increasing digit order."""
    require(len(set(classes)) >= 2 and all(0 <= c <= 9 for c in classes),
            f"classes={classes} is not allowed; expected two or more distinct digits 0..9")
    keep = np.isin(y, classes)
    return x[keep], np.searchsorted(sorted(classes), y[keep])


def digits(classes: tuple[int, ...] | None = (0, 1), train: int = 200, binarize: bool = False,
           seed: int = 0, test: int | None = None) -> Dataset:
    """scikit-learn's bundled 8x8 digits (1797 images), optionally a subset of classes, scaled to [0, 1].

    Binarised images can repeat; a test image equal to a training image is
    dropped, so the training and test sets stay disjoint as inputs.
    """
    from sklearn.datasets import load_digits

    data = load_digits()
    x, y = data.data / 16.0, data.target
    if classes is not None:
        x, y = _keep_classes(x, y, classes)
    if binarize:
        x = (x > 0.5).astype(np.float64)
    task = _split("digits" + (" binarised" if binarize else "") + (f" {tuple(classes)}" if classes else ""),
                  x, y, train, _rng(seed), len(classes) if classes else 10)
    fresh = ~task.test_in_training()
    keep = torch.nonzero(fresh).ravel()[:test] if test is not None else torch.nonzero(fresh).ravel()
    task.x_test, task.y_test = task.x_test[keep], task.y_test[keep]
    return task


_GLOBAL_RNG = threading.Lock()


def mnist1d(train: int = 4000, seed: int = 0, classes: tuple[int, ...] | None = None) -> Dataset:
    """MNIST-1D (Greydanus 2020) built by the ``mnist1d`` package's generator: no download.

    ``train`` counts examples of the kept ``classes`` (all ten by default) from
    the generator's 4000 training examples; the test set is its 1000 test
    examples of those classes. ``make_dataset`` reseeds numpy's global RNG, so
    its state is saved and restored.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    with _GLOBAL_RNG:  # cells in threads must not interleave their use of numpy's global generator
        state = np.random.get_state()
        try:
            args = get_dataset_args()
            args.seed = check_seed(seed)
            data = make_dataset(args)
        finally:
            np.random.set_state(state)
    parts = [(data["x"].astype(np.float64), data["y"].astype(np.int64)),
             (data["x_test"].astype(np.float64), data["y_test"].astype(np.int64))]
    if classes is not None:
        parts = [_keep_classes(x, y, classes) for x, y in parts]
    (x, y), (x_test, y_test) = parts
    n_train = check_int("train", train, minimum=1, maximum=len(x))
    return Dataset("mnist1d" + (f" {tuple(classes)}" if classes else ""), torch.from_numpy(x[:n_train]),
                   torch.from_numpy(y[:n_train]), torch.from_numpy(x_test), torch.from_numpy(y_test),
                   len(classes) if classes else 10)
