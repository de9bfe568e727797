import math

import numpy as np
import pytest
import torch
from scipy import stats

from nnbias.engines.ensemble import sample_ensemble
from nnbias.engines.training import TrainConfig, linearise, train, train_gd
from nnbias.engines.volumes import orthant_probability
from nnbias.errors import NNBiasError
from nnbias.estimators.ep import ep_log_probability
from nnbias.spec import NetworkSpec
from nnbias.tasks.boolean import hypercube

X = hypercube(5, dtype=torch.float64)
Y = torch.tensor([int(c) for c in "0011" * 8], dtype=torch.float64)


def nets(k=6, seed=0):
    return sample_ensemble(NetworkSpec(5, (32, 32)), k, torch.Generator().manual_seed(seed),
                           dtype=torch.float64)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_networks_reach_full_accuracy_and_stop(optimizer):
    fn, params = nets().functional()
    lr = {"sgd": 0.5, "momentum": 0.1, "adam": 0.01}[optimizer]
    result = train(fn, params, X, Y, TrainConfig(optimizer, lr, batch_size=4, max_epochs=500))
    assert result.converged.all() and (result.accuracy == 1).all()
    assert (result.predict(X) > 0).double().eq(Y).all()


@pytest.mark.parametrize("optimizer, lr", [("momentum", 0.05), ("adam", 0.01)])
def test_batched_training_equals_one_network_at_a_time(optimizer, lr):
    fn, params = nets(3).functional()
    config = TrainConfig(optimizer, lr, None, "mse", 40, "accuracy")
    together = train(fn, params, X, Y, config)
    for k in range(3):
        alone = train(fn, [p[k:k + 1] for p in params], X, Y, config)
        assert torch.allclose(together.predict(X)[k], alone.predict(X)[0], atol=1e-10)
        assert together.epochs[k] == alone.epochs[0]
    with pytest.raises(NNBiasError, match="must match"):
        train(lambda p, x: fn(p, x)[:1], params, X, Y, config)


def test_stopped_networks_are_frozen():
    fn, params = nets(8).functional()
    config = TrainConfig("sgd", 0.3, 4, max_epochs=300)
    result = train(fn, params, X, Y, config)
    assert len(set(result.epochs.tolist())) > 1  # they stop at different epochs
    k = int(result.epochs.argmin())
    again = train(fn, params, X, Y, TrainConfig("sgd", 0.3, 4, max_epochs=int(result.epochs[k])))
    # same draws of minibatch order up to that epoch, so the early stopper's weights match
    assert torch.allclose(again.params[0][k], result.params[0][k])


def test_divergence_is_marked():
    fn, params = nets(3).functional()
    result = train(fn, params, X, Y * 1e6 + 0.5, TrainConfig("sgd", 50.0, None, "mse", 1000, "none"))
    assert result.diverged.all() and not result.converged.any()
    # training stopped early, when every network had diverged: the losses are those they ended with,
    # not those they began with (with stop='none' the loss is otherwise taken after the last epoch)
    assert not torch.isfinite(result.losses).any() and (result.epochs < 1000).all()


def test_langevin_samples_the_boltzmann_distribution():
    """f = w x on one point, L = (w - 0.3)^2 / 2, wd = 1: stationary w ~ N(0.15, T / 2)."""
    k, temp = 4000, 0.2
    params = [torch.zeros(k, 1, dtype=torch.float64)]

    def fn(p, x):
        return p[0] * x[:, 0]

    config = TrainConfig("langevin", 0.01, None, "mse", 3000, "none", weight_decay=1.0, temperature=temp)
    w = train(fn, params, torch.ones(1, 1), torch.tensor([0.3]), config).params[0][:, 0].numpy()
    assert abs(w.mean() - 0.15) < 4 * math.sqrt(temp / 2 / k)
    assert w.var() == pytest.approx(temp / 2, rel=0.1)


def test_linearised_network_is_linear_in_its_parameters():
    fn, params = nets(2).functional()
    lin = linearise(fn, params)
    assert torch.allclose(lin(params, X), fn(params, X))
    direction = [torch.randn_like(p) * 1e-2 for p in params]
    one = lin([p + d for p, d in zip(params, direction, strict=True)], X) - fn(params, X)
    two = lin([p + 2 * d for p, d in zip(params, direction, strict=True)], X) - fn(params, X)
    assert torch.allclose(two, 2 * one, atol=1e-12)
    result = train(lin, params, X, Y, TrainConfig("sgd", 0.5, None, max_epochs=500))
    assert result.converged.all()


@pytest.mark.parametrize("parametrization", ["ntk", "standard", "mup"])
def test_function_space_linearised_gd_matches_training_the_linearisation(parametrization):
    """Two implementations of one trajectory: T residual updates with the empirical NTK plus one vjp,
    and T optimizer steps on the jvp-linearised network."""
    spec = NetworkSpec(5, (24, 24), "tanh", sigma_b=0.2, parametrization=parametrization)
    ensemble = sample_ensemble(spec, 3, torch.Generator().manual_seed(1), dtype=torch.float64)
    target = 2 * Y - 1
    lr, steps = 0.02 if parametrization == "standard" else 0.05, 40
    fast = train_gd(ensemble, X, target, lr, steps, linearised=True)
    fn, params = ensemble.functional()
    slow = train(linearise(fn, params), params, X, target,
                 TrainConfig("sgd", lr * len(X), None, "mse", steps, "none"))
    moved = sum(float((a - b).norm()) for a, b in zip(fast.params, params, strict=True))
    assert moved > 0.1  # the networks did move
    for a, b in zip(fast.params, slow.params, strict=True):
        assert torch.allclose(a, b, atol=1e-9, rtol=1e-7)
    assert torch.allclose(fast.losses, slow.losses, rtol=1e-7)
    assert torch.allclose(fast.predict(X[:7]), slow.predict(X[:7]), atol=1e-9)
    assert not fast.diverged.any()
    assert train_gd(ensemble, X, target, 50.0, 1000, linearised=True).diverged.all()


def test_training_bad_input():
    fn, params = nets(2).functional()
    with pytest.raises(NNBiasError, match="lr=0"):
        TrainConfig("sgd", 0.0)
    with pytest.raises(NNBiasError, match="batch_size=64 is larger"):
        train(fn, params, X, Y, TrainConfig("sgd", 0.1, 64))
    with pytest.raises(NNBiasError, match="empty"):
        train(fn, params, X[:0], Y[:0], TrainConfig("sgd", 0.1))


def test_ep_matches_exact_orthant_probabilities():
    rng = np.random.default_rng(0)
    for d in (1, 2, 3, 4, 8):
        a = rng.normal(size=(d, d))
        k = a @ a.T + 0.5 * np.eye(d)
        y = rng.choice([-1.0, 1.0], d)
        c = np.diag(y) @ k @ np.diag(y)
        sd = np.sqrt(np.diag(c))
        corr = c / np.outer(sd, sd)
        exact = orthant_probability(corr) if d <= 4 else stats.multivariate_normal.cdf(
            np.zeros(d), np.zeros(d), corr, abseps=1e-8, releps=1e-6, maxpts=10**7)
        assert ep_log_probability(k, y) == pytest.approx(math.log(exact), abs=0.02 + 0.005 * d)


def test_ep_batches_give_each_labelling_its_own_answer():
    """Batched EP (labellings leave the batch as they converge) against each labelling alone, with
    batches of one and of all: the same log probabilities."""
    from nnbias.estimators.ep import ep_log_probabilities

    rng = np.random.default_rng(3)
    a = rng.normal(size=(12, 15))
    k = a @ a.T / 12 + 0.2
    ys = np.where(rng.random((9, 12)) < 0.5, -1.0, 1.0)
    alone = np.array([ep_log_probability(k, y) for y in ys])
    assert np.allclose(ep_log_probabilities(k, ys), alone, rtol=0, atol=1e-10)
    assert np.allclose(ep_log_probabilities(k, ys, memory=1), alone, rtol=0, atol=1e-10)
    assert len(set(np.round(alone, 6))) > 1  # different labellings, different answers
