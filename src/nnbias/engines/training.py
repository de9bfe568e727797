"""Train K networks of one spec at once (stacked weights, one batched computation).

Each network has its own initialisation, its own minibatch order and its own
fate: it stops (its parameters frozen) when it reaches 100 % training accuracy
or a loss threshold, is marked diverged (and frozen) when its loss becomes
NaN/inf, or runs into the epoch cap. The optimizers (SGD, heavy-ball momentum,
Adam, Langevin) are written over the stacked tensors because per-network
freezing is not something ``torch.optim`` can do: a frozen network's Adam
moments must not move it either.

Losses are per network, averaged over the minibatch: ``mse`` is
1/2 (f - t)^2 with t = 2y - 1 for 0/1 labels (or y for real targets), ``ce`` is
binary cross-entropy with logit f. Langevin dynamics
p <- p - lr (grad L + wd p) + sqrt(2 lr T) xi samples exp(-(L + wd |p|^2 / 2) / T).

``linearise(fn, params0)`` gives the first-order Taylor expansion of a network
in its parameters, f0 + J (p - p0), which the same optimizers train.
``centre(fn, origin)`` subtracts the function of fixed parameters (the
initialisation): a model whose initial function is zero, as the antisymmetric
"doubled" initialisation would make it, without its random initial function in
every prediction.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.func import jvp, vjp

from nnbias.engines.empirical import structured_ntk
from nnbias.engines.memory import check_fits, training_copies
from nnbias.errors import check_choice, check_int, check_positive, require

OPTIMIZERS = ("sgd", "momentum", "adam", "langevin")
CHECK_STEPS = 16  # on a GPU, optimizer steps between reads of whether any network still trains
LOSSES = ("mse", "ce")
STOPS = ("accuracy", "loss", "none")


@dataclass(frozen=True)
class TrainConfig:
    optimizer: str = "sgd"
    lr: float = 0.01
    batch_size: int | None = None  # None: full batch
    loss: str = "ce"
    max_epochs: int = 1000
    stop: str = "accuracy"
    loss_threshold: float = 1e-3
    momentum: float = 0.9
    beta2: float = 0.999
    weight_decay: float = 0.0
    temperature: float = 0.0

    def __post_init__(self) -> None:
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("loss", self.loss, LOSSES)
        check_choice("stop", self.stop, STOPS)
        check_positive("lr", self.lr)
        if self.batch_size is not None:
            check_int("batch_size", self.batch_size, minimum=1)
        check_int("max_epochs", self.max_epochs, minimum=1)
        check_positive("loss_threshold", self.loss_threshold)
        require(0 <= self.momentum < 1, f"momentum={self.momentum} is not allowed; expected 0 <= m < 1")
        require(0 <= self.beta2 < 1, f"beta2={self.beta2} is not allowed; expected 0 <= b < 1")
        check_positive("weight_decay", self.weight_decay, allow_zero=True)
        check_positive("temperature", self.temperature, allow_zero=True)

    def label(self) -> str:
        batch = "full" if self.batch_size is None else str(self.batch_size)
        return f"{self.optimizer} lr={self.lr:g} batch={batch} {self.loss}"


@dataclass
class TrainResult:
    """Trained parameters and per-network summaries, on the networks' device."""

    params: list[torch.Tensor]
    fn: Callable
    losses: torch.Tensor  # (K,) final full-training-set loss
    accuracy: torch.Tensor  # (K,) final training accuracy (classification) or nan
    epochs: torch.Tensor  # (K,) epochs run before stopping
    converged: torch.Tensor  # (K,) bool: met the stopping criterion
    diverged: torch.Tensor  # (K,) bool

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """(K, N) outputs of the trained networks on x, on their device."""
        with torch.no_grad():
            return self.fn(self.params, x.to(self.params[0].device))


def linearise(fn: Callable, params0: list[torch.Tensor]) -> Callable:
    """The network's first-order Taylor expansion in its parameters around ``params0``."""
    base = [p.detach() for p in params0]

    def fn_lin(params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        f0, df = jvp(lambda q: fn(q, x), (base,), ([p - b for p, b in zip(params, base, strict=True)],))
        return f0 + df

    return fn_lin


def centre(fn: Callable, origin: list[torch.Tensor] | None) -> Callable:
    """``fn`` minus the (fixed) function of the parameters ``origin``; ``fn`` itself for None."""
    if origin is None:
        return fn
    base = [p.detach() for p in origin]
    last: list = [None, None]  # full-batch descent asks for the same inputs every step: keep one

    def fn_centred(params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        if last[0] is not x:
            with torch.no_grad():
                last[:] = [x, fn(base, x)]
        return fn(params, x) - last[1]

    return fn_centred


def per_network_loss(out: torch.Tensor, y: torch.Tensor, loss: str, classification: bool) -> torch.Tensor:
    """(K,) mean loss over each network's batch; out and y are (K, B), or out (K, B, k) for k classes
    (softmax cross-entropy, or 1/2 |f - onehot|^2 for mse) with y the labels 0..k-1."""
    if out.ndim == 3:
        labels = y.long()
        if loss == "ce":
            return torch.nn.functional.cross_entropy(out.transpose(1, 2), labels, reduction="none").mean(1)
        target = torch.nn.functional.one_hot(labels, out.shape[2]).to(out.dtype)
        return 0.5 * ((out - target) ** 2).sum(2).mean(1)
    if loss == "ce":
        return torch.nn.functional.binary_cross_entropy_with_logits(out, y, reduction="none").mean(1)
    target = 2 * y - 1 if classification else y
    return 0.5 * ((out - target) ** 2).mean(1)


def train(fn: Callable, params: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor,
          config: TrainConfig, generator: torch.Generator | None = None,
          trainable: list[bool] | None = None) -> TrainResult:
    """Train the K networks ``fn(params, x) -> (K, N)`` on (x, y); see the module docstring."""
    n = x.shape[0]
    y = y.reshape(-1)
    require(n > 0, "the training set S is empty; give at least one example")
    require(y.shape[0] == n, f"{n} training inputs but {y.shape[0]} targets")
    batch = n if config.batch_size is None else config.batch_size
    require(batch <= n, f"batch_size={batch} is larger than the training set ({n}); "
                        f"allowed 1..{n}")
    # 0/1 labels are classes only when the loss or the stopping rule asks for classes;
    # otherwise MSE regresses on y as given
    device = params[0].device  # the networks' device: where they train
    x, y = x.to(device), y.to(device)
    with torch.no_grad():
        probe = fn(params, x[:1])
    k = params[0].shape[0]
    require(probe.shape[0] == k, f"fn gives {probe.shape[0]} network outputs but the parameters hold {k} "
                                 "networks; they must match")
    classes = probe.shape[2] if probe.ndim == 3 else 2  # a k-output readout: k classes
    labels = bool(((y >= 0) & (y < classes) & (y == y.round())).all())
    require(probe.ndim < 3 or labels, f"a {classes}-output network needs labels 0..{classes - 1}")
    wants_classes = config.loss == "ce" or config.stop == "accuracy" or probe.ndim == 3
    classification = wants_classes and labels
    require(config.loss == "mse" or classification,
            "loss='ce' needs 0/1 labels; use loss='mse' for real-valued targets")
    if config.stop == "accuracy":
        require(classification, "stop='accuracy' needs 0/1 labels; use stop='loss' or 'none'")
    generator = on_device(generator or torch.Generator().manual_seed(0), device)
    dtype = params[0].dtype
    x, y = x.to(dtype), y.to(dtype)
    trainable = trainable or [True] * len(params)
    require(len(trainable) == len(params), f"trainable has {len(trainable)} entries for {len(params)} "
                                           "parameter tensors; give one per tensor")
    per_net = sum(p[0].numel() for p in params)
    check_fits(k, training_copies(config.optimizer) * per_net, dtype, device,
               f"{per_net} parameters (training: a clone, gradients, optimizer state, update temporaries)")
    # frozen tensors need no gradient: autograd then does not backpropagate into them
    params = [p.detach().clone().requires_grad_(t) for p, t in zip(params, trainable, strict=True)]
    learned = [p for p, t in zip(params, trainable, strict=True) if t]
    state = [torch.zeros_like(p) for p in params]
    second = [torch.zeros_like(p) for p in params] if config.optimizer == "adam" else None
    active = torch.ones(k, dtype=torch.bool, device=device)
    diverged = torch.zeros(k, dtype=torch.bool, device=device)
    epochs = torch.zeros(k, dtype=torch.long, device=device)
    step = 0

    def evaluate():
        with torch.no_grad():
            out = fn(params, x)
            loss = per_network_loss(out, y.expand(k, n), config.loss, classification)
            guess = out.argmax(2) if out.ndim == 3 else (out > 0)
            acc = (guess.to(dtype) == y).to(dtype).mean(1) if classification else \
                torch.full((k,), math.nan, dtype=dtype, device=device)
        return loss, acc

    def met(loss, acc):
        if config.stop == "accuracy":
            return acc == 1
        if config.stop == "loss":
            return loss <= config.loss_threshold
        return torch.zeros_like(active)

    loss, acc = evaluate()
    active &= ~met(loss, acc)
    # whether any network still trains is read on the host, which waits for the device's queue to
    # drain: on a GPU only every CHECK_STEPS steps, as extra epochs leave frozen networks as they are
    # (their updates are masked) and draw only from the device's own generator
    steps_per_epoch = n // batch
    check_every = 1 if device.type == "cpu" else max(1, CHECK_STEPS // steps_per_epoch)
    for _epoch in range(config.max_epochs):
        if _epoch % check_every == 0 and not active.any():
            if config.stop == "none":  # evaluated only at the end: the losses they ended with
                loss, acc = evaluate()
            break
        # full batch needs no order (and draws none, so a Langevin run's noise is the generator's next)
        order = (torch.argsort(torch.rand(k, n, generator=generator, device=device), dim=1) if batch < n
                 else None)
        for start in range(0, n - batch + 1, batch):
            if order is None:
                xb, yb = x, y.expand(k, n)
            else:
                idx = order[:, start:start + batch]  # each network's own minibatch
                xb, yb = x[idx], torch.gather(y.expand(k, n), 1, idx)
            out = fn(params, xb)
            batch_loss = per_network_loss(out, yb, config.loss, classification)
            bad = ~torch.isfinite(batch_loss)
            diverged |= bad & active
            active &= ~bad
            learned_grads = iter(torch.autograd.grad(torch.where(active, batch_loss, 0.0).sum(), learned,
                                                     allow_unused=True))
            grads = [next(learned_grads) if t else None for t in trainable]
            step += 1
            with torch.no_grad():
                _update(params, grads, state, second, active, trainable, config, step, generator)
        epochs += active.long()
        if config.stop == "none" and _epoch < config.max_epochs - 1:
            continue  # nothing to stop on: the full-set loss is needed once, at the end
        loss, acc = evaluate()
        bad = ~torch.isfinite(loss)
        diverged |= bad & active
        active &= ~bad & ~met(loss, acc)
    converged = met(loss, acc) & ~diverged
    return TrainResult([p.detach() for p in params], fn, loss, acc, epochs, converged, diverged)


def on_device(generator: torch.Generator, device: torch.device) -> torch.Generator:
    """The generator of a training run's minibatch orders and Langevin noise: the given one on the
    CPU; on another device, that device's own, seeded by one draw from the given one. A host draw and
    copy at every step (the noise of every parameter of every network) would leave a GPU waiting on
    the CPU's generator, so a GPU run draws other minibatches and noise than a CPU run of the same
    seed: reproducible on one kind of device, as the sampler's draws are."""
    if device.type == "cpu":
        return generator
    seed = int(torch.randint(2**62, (1,), generator=generator))
    return torch.Generator(device=device).manual_seed(seed)


def _update(params, grads, state, second, active, trainable, config: TrainConfig, step: int,
            generator: torch.Generator) -> None:
    """One optimizer step for the networks still active (others keep parameters and state)."""
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        if not trainable[i] or g is None:
            continue
        mask = active.view(-1, *([1] * (p.ndim - 1))).to(p.dtype)
        g = torch.nan_to_num(g) + config.weight_decay * p
        if config.optimizer == "sgd":
            delta = g
        elif config.optimizer == "momentum":
            state[i].mul_(1 - mask * (1 - config.momentum)).add_(mask * g)
            delta = state[i]
        elif config.optimizer == "adam":
            b1, b2 = config.momentum, config.beta2
            state[i].add_(mask * (1 - b1) * (g - state[i]))
            second[i].add_(mask * (1 - b2) * (g * g - second[i]))
            m_hat = state[i] / (1 - b1**step)
            v_hat = second[i] / (1 - b2**step)
            delta = m_hat / (v_hat.sqrt() + 1e-8)
        else:  # langevin
            noise = torch.randn(p.shape, generator=generator, dtype=p.dtype, device=p.device)
            delta = g - math.sqrt(2 * config.temperature / config.lr) * noise
        p -= config.lr * mask * delta


def train_gd(nets, x: torch.Tensor, y: torch.Tensor, lr: float, steps: int,
             linearised: bool = False, trainable: list[bool] | None = None,
             origin: list[torch.Tensor] | None = None) -> TrainResult:
    """Full-batch gradient descent on L = 1/2 sum_i (f(x_i) - y_i)^2 (sum, not mean) for ``steps`` steps.

    The discrete version of the gradient flow whose infinite-width limit is
    ``nnbias.estimators.gp.ntk_predict`` with the same lr and t = steps * lr.
    ``linearised=True`` trains the networks' linearisations around their
    initialisation instead (same lr, same steps; see :func:`linearised_gd`);
    ``trainable`` freezes parameter tensors (e.g. all but the readout);
    ``origin`` subtracts the function of those parameters (see :func:`centre`).
    """
    steps = check_int("steps", steps, minimum=1)
    lr = check_positive("lr", lr)
    if linearised:
        require(trainable is None, "trainable does not apply to linearised training; leave it out")
        return linearised_gd(nets, x, y.double(), lr, steps, origin=origin)
    n = x.shape[0]
    fn, params = nets.functional()
    # mean-loss SGD with lr * n is sum-loss gradient descent with lr
    config = TrainConfig("sgd", lr * n, None, "mse", steps, "none")
    return train(centre(fn, origin), params, x, y.double(), config, trainable=trainable)


def mup_gd(nets, x: torch.Tensor, y: torch.Tensor, eta: float, steps: int, base_width: int,
           start: list[torch.Tensor] | None = None, origin: list[torch.Tensor] | None = None) -> TrainResult:
    """Full-batch gradient descent on the mean squared error with lr = eta (n / base_width)^-c: the
    width scaling that carries a learning rate tuned at ``base_width`` to other widths (muTransfer),
    for muP and mean-field networks. ``start``: where descent begins (default the initialisation);
    ``origin``: see :func:`centre`."""
    fn, p0 = nets.functional()
    config = TrainConfig("sgd", check_positive("eta", eta) * nets.spec.lr_scale(base_width), None, "mse",
                         check_int("steps", steps, minimum=1), "none")
    return train(centre(fn, origin), p0 if start is None else start, x, y.double(), config)


def linearised_gd(nets, x: torch.Tensor, y: torch.Tensor, lr: float, steps: int,
                  start: list[torch.Tensor] | None = None,
                  origin: list[torch.Tensor] | None = None) -> TrainResult:
    """Sum-loss gradient descent on the linearisations f0 + J (p - p0), done in function space.

    For a model linear in its parameters, p_{t+1} = p_t - lr J^T r_t gives the
    residuals r_{t+1} = (I - lr Theta) r_t with Theta = J J^T the empirical NTK at
    initialisation, and p_T = p0 - lr J^T sum_{t<T} r_t. So T steps cost T
    (N x N) products and one vector-Jacobian product, not T jvp-and-backward
    passes: the same iterates as ``train(linearise(fn, p0), ...)`` (a test
    checks that), 7x faster at width 1024 (benchmarks/bench_linearised.py). A
    network whose residual becomes NaN or inf is marked diverged and keeps its
    last finite iterate.

    ``start`` (parameters in the same tangent space, e.g. after pretraining on
    another task there) is where descent begins instead of p0; the kernel stays
    Theta at p0, which is what "training in the tangent space" means.
    ``origin`` subtracts the function of those parameters (see :func:`centre`;
    origin = p0 gives the tangent model J (p - p0) with a zero initial function).
    """
    fn, p0 = nets.functional()
    x, y = x.to(p0[0]), y.reshape(-1).to(p0[0])  # the networks' device and dtype
    k = nets.size
    model = centre(linearise(fn, p0), origin)
    start = p0 if start is None else start
    with torch.no_grad():
        theta = structured_ntk(nets, x)  # (K, N, N)
        r = model(start, x) - y
    total = torch.zeros_like(r)
    active = torch.ones(k, dtype=torch.bool, device=r.device)
    for _ in range(steps):
        nxt = r - lr * torch.bmm(theta, r.unsqueeze(2)).squeeze(2)
        active &= torch.isfinite(nxt).all(1)
        total += torch.where(active.unsqueeze(1), r, 0.0)
        r = torch.where(active.unsqueeze(1), nxt, r)
    _, pull = vjp(lambda q: fn(q, x), p0)
    (pulled,) = pull(total)
    params = [p - lr * d for p, d in zip(start, pulled, strict=True)]
    nan = torch.full((k,), math.nan, dtype=r.dtype, device=r.device)
    return TrainResult(params, model, 0.5 * (r**2).mean(1), nan,
                       torch.full((k,), steps, dtype=torch.long, device=r.device),
                       torch.zeros(k, dtype=torch.bool, device=r.device), ~active)
