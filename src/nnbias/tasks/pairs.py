"""Task pairs for transfer: pretrain on A, adapt on B, where B relates to A in a known way.

Relations (``TaskPair.relation``):

* ``same``: B is A's target on a fresh sample of inputs;
* ``flip``: B is -A on that same fresh sample (the tangent-space model's transfer
  changes sign; shared features do not care);
* ``shared``: B shares A's features but reads them out otherwise, with targets
  uncorrelated with A's (the same single-index direction under a He3 link,
  orthogonal to a ReLU link; parities sharing bits; another pairing of the
  same digits or MNIST-1D classes);
* ``unrelated``: B shares nothing with A (an orthogonal direction).

Targets are real numbers (classes become +-1) and every learner is trained and
scored on the squared error, so that the tangent-space model's transfer is an
exact linear identity (see ``experiments.transfer``). The registry ``PAIRS``
maps a name to a builder ``(seed, pool) -> TaskPair``; add your own there.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from nnbias.errors import check_int, check_seed, require
from nnbias.tasks.datasets import LINKS, Dataset, digits, mnist1d

INPUT_DIM = 16
TRAIN_A = 512
TEST_B = 1000


@dataclass(frozen=True)
class TaskPair:
    name: str
    relation: str  # same | flip | shared | unrelated
    a: Dataset  # pretraining task
    b: Dataset  # adaptation task: a pool of training examples (prefixes give smaller n_B) and a test set

    def adapt(self, n: int) -> Dataset:
        """B with its first ``n`` training examples (nested: the same test set for every n)."""
        require(1 <= n <= len(self.b.y_train), f"n_B={n} is not allowed for pair {self.name!r}; its pool "
                                               f"holds 1..{len(self.b.y_train)} examples")
        return Dataset(self.b.name, self.b.x_train[:n], self.b.y_train[:n], self.b.x_test, self.b.y_test)


def _gaussian(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.normal(size=(n, INPUT_DIM))


def single_index_pair(relation: str, seed: int, pool: int) -> TaskPair:
    """A: ReLU(w.x) on N(0, I_16); B per relation, on inputs drawn apart from A's (shared by every
    relation of one seed, so B = A and B = -A differ only in the sign of the targets)."""
    rng = np.random.default_rng([check_seed(seed), 17])
    w, w_other = np.linalg.qr(rng.normal(size=(INPUT_DIM, 2)))[0].T
    x_a, x_b = _gaussian(rng, TRAIN_A + TEST_B), _gaussian(rng, pool + TEST_B)
    relu, he3 = LINKS["relu"], LINKS["he3"]
    target_b = {"same": lambda x: relu(x @ w), "flip": lambda x: -relu(x @ w),
                "shared": lambda x: he3(x @ w), "unrelated": lambda x: relu(x @ w_other)}[relation]

    def task(name: str, x: np.ndarray, y: np.ndarray, train: int) -> Dataset:
        return Dataset(name, torch.from_numpy(x[:train]), torch.from_numpy(y[:train]),
                       torch.from_numpy(x[train:]), torch.from_numpy(y[train:]))

    return TaskPair(f"single-index-{relation}", relation,
                    task("single-index relu", x_a, relu(x_a @ w), TRAIN_A),
                    task(f"single-index {relation}", x_b, target_b(x_b), pool))


def parity_pair(seed: int, pool: int) -> TaskPair:
    """A: parity of bits {0, 1, 2}, B: parity of bits {0, 1, 3} of x in {-1, +1}^16 (shared bits,
    uncorrelated targets)."""
    rng = np.random.default_rng([check_seed(seed), 18])
    x_a = rng.choice([-1.0, 1.0], size=(TRAIN_A + TEST_B, INPUT_DIM))
    x_b = rng.choice([-1.0, 1.0], size=(pool + TEST_B, INPUT_DIM))

    def task(name: str, x: np.ndarray, bits: list[int], train: int) -> Dataset:
        y = x[:, bits].prod(1)
        return Dataset(name, torch.from_numpy(x[:train]), torch.from_numpy(y[:train]),
                       torch.from_numpy(x[train:]), torch.from_numpy(y[train:]))

    return TaskPair("parity-shared", "shared", task("parity {0,1,2}", x_a, [0, 1, 2], TRAIN_A),
                    task("parity {0,1,3}", x_b, [0, 1, 3], pool))


def digits_pair(seed: int, pool: int) -> TaskPair:
    """A: digits 0-4 against 5-9, B: even against odd digits, on disjoint images (the same strokes,
    another readout; +-1 targets)."""
    full = digits(None, train=900, seed=seed)
    x = torch.cat([full.x_train, full.x_test])
    y = torch.cat([full.y_train, full.y_test])
    require(pool <= len(y) - 900 - 300, f"pool={pool} is larger than the digits B pool allows "
                                         f"({len(y) - 1200})")
    high, odd = 2.0 * (y >= 5).double() - 1, 2.0 * (y % 2).double() - 1
    n_a = 600  # A: 600 train + 300 test; B: the rest
    a = Dataset("digits 0-4 vs 5-9", x[:n_a], high[:n_a], x[n_a:900], high[n_a:900])
    rest = slice(900, len(y))
    b = Dataset("digits even vs odd", x[rest][:pool], odd[rest][:pool], x[rest][pool:], odd[rest][pool:])
    return TaskPair("digits-halves-parity", "shared", a, b)


def mnist1d_pair(seed: int, pool: int) -> TaskPair:
    """MNIST-1D (all ten classes, generated offline): A: classes 0-4 against 5-9 on the first 2000
    training sequences, B: even against odd classes on the other 2000 (+-1 targets); the 1000 test
    sequences split in two."""
    full = mnist1d(train=4000, seed=seed)
    require(pool <= 2000, f"pool={pool} is larger than the MNIST-1D B pool allows (2000)")
    (x, y), (xt, yt) = (full.x_train, full.y_train), (full.x_test, full.y_test)

    def high(labels: torch.Tensor) -> torch.Tensor:
        return 2.0 * (labels >= 5).double() - 1

    def odd(labels: torch.Tensor) -> torch.Tensor:
        return 2.0 * (labels % 2).double() - 1

    a = Dataset("mnist1d 0-4 vs 5-9", x[:2000], high(y[:2000]), xt[:500], high(yt[:500]))
    b = Dataset("mnist1d even vs odd", x[2000:2000 + pool], odd(y[2000:2000 + pool]), xt[500:], odd(yt[500:]))
    return TaskPair("mnist1d-halves-parity", "shared", a, b)


PAIRS: dict[str, Callable[[int, int], TaskPair]] = {
    **{f"single-index-{r}": functools.partial(single_index_pair, r) for r in ("same", "flip", "shared",
                                                                               "unrelated")},
    "parity-shared": parity_pair,
    "digits-halves-parity": digits_pair,
    "mnist1d-halves-parity": mnist1d_pair,
}


def task_pair(name: str, seed: int, pool: int) -> TaskPair:
    """Build pair ``name`` of the registry with a B pool of ``pool`` training examples."""
    require(name in PAIRS, f"pair={name!r} is not allowed; choose one of {sorted(PAIRS)}")
    return PAIRS[name](seed, check_int("pool", pool, minimum=1))


def normalised_mse(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per row of ``pred``: mean squared error / Var(y) (1 = no better than predicting the mean)."""
    return ((pred - y) ** 2).mean(-1) / y.var(correction=0).clamp_min(math.ulp(1.0))
