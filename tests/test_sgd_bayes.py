"""P_SGD runner, the three P_B estimators and the sgd-vs-bayes experiment."""

import numpy as np
import pandas as pd
import pytest
import torch

from nnbias.engines.ensemble import sample_ensemble
from nnbias.engines.kernels import KernelFn
from nnbias.engines.training import TrainConfig, train
from nnbias.errors import NNBiasError
from nnbias.estimators.frequency import compare_distributions
from nnbias.estimators.posterior import cube_indices, ep_log_posterior, last_layer_mask
from nnbias.executor import LocalExecutor
from nnbias.experiments.sampling import SamplingConfig, run_sampling
from nnbias.experiments.sgd_bayes import (
    SgdBayesSettings,
    check_disjoint,
    parse_method,
    run_psgd,
    run_sgd_bayes,
)
from nnbias.spec import NetworkSpec
from nnbias.store import Store
from nnbias.tasks.boolean import hypercube
from nnbias.tasks.datasets import Dataset, boolean_task

SMALL = SgdBayesSettings(tasks=("bool5-0011",), methods=("sgd-b8",), runs=600, chunk_size=100)


def test_compare_distributions_tells_same_from_different():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(30))
    a, b = rng.multinomial(3000, p), rng.multinomial(2000, p)
    same = compare_distributions(a, b, seed=1)
    assert same["p_value"] > 0.01 and same["mass_outside"] < 0.05
    q = np.roll(p, 1)
    c = rng.multinomial(2000, q)
    different = compare_distributions(a, c, seed=1)
    assert different["p_value"] < 0.01
    assert different["tv"] == pytest.approx(0.5 * np.abs(a / 3000 - c / 2000).sum())
    assert different["tv"] > same["tv"]


def test_ep_posterior_matches_monte_carlo_of_the_nngp():
    # reference: sample the NNGP's latent function at S and E, keep draws whose signs
    # match the labels on S, and count the sign patterns on E
    task = boolean_task(4, "0011" * 4, train=5, test=3, seed=2)
    spec = NetworkSpec(4, (64,), "relu")
    functions = [format(i, "03b") for i in range(8)]
    log_p = ep_log_posterior(spec, task.x_train, task.y_train, task.x_test, functions)
    assert np.exp(log_p).sum() == pytest.approx(1.0, abs=0.05)  # a distribution over the 8 functions
    x = torch.cat([task.x_train, task.x_test])
    kernel = KernelFn(spec)(x, kind="nngp").numpy()
    draws = np.random.default_rng(0).multivariate_normal(np.zeros(8), kernel, size=400_000,
                                                         method="cholesky") > 0
    fit = draws[(draws[:, :5] == task.y_train.numpy().astype(bool)).all(1)]
    codes = fit[:, 5:] @ np.array([4, 2, 1])
    mc = np.bincount(codes, minlength=8) / len(fit)
    seen = mc > 0.02
    assert len(fit) > 2000 and seen.sum() >= 2
    assert np.allclose(np.exp(log_p)[seen], mc[seen], rtol=0.15, atol=0.01)


def test_rejection_query_agrees_with_filtering_in_numpy(tmp_path):
    spec = NetworkSpec(4, (16,), "relu")
    task = boolean_task(4, "0011" * 4, train=5, test=6, seed=0)
    with Store(tmp_path / "s.duckdb") as st:
        run_id = run_sampling(st, SamplingConfig(spec, 40_000, seed=3, chunk_size=10_000), quiet=True)
        found = st.consistent_functions(run_id, cube_indices(task.x_train), task.y_train.numpy(),
                                        cube_indices(task.x_test))
        every = st.function_counts(run_id)
    s_idx, e_idx = cube_indices(task.x_train), cube_indices(task.x_test)
    labels = "".join(str(int(v)) for v in task.y_train)
    fit = every[every["truth_table"].map(lambda t: "".join(t[i] for i in s_idx) == labels)]
    expected = fit.assign(function=fit["truth_table"].map(lambda t: "".join(t[i] for i in e_idx)))
    expected = expected.groupby("function")["count"].sum().sort_index()
    assert len(found) > 1
    assert found.set_index("function")["count"].sort_index().to_dict() == expected.to_dict()
    assert (cube_indices(hypercube(4, "pm1"), "pm1") == np.arange(16)).all()


def test_last_layer_training_leaves_hidden_layers_alone():
    spec = NetworkSpec(5, (20, 20), "relu")
    task = boolean_task(5, "0011" * 8, train=12, seed=0)
    nets = sample_ensemble(spec, 8, torch.Generator().manual_seed(0))
    fn, params = nets.functional()
    mask = last_layer_mask(spec)
    assert mask == [False, False, False, False, True, True]
    result = train(fn, params, task.x_train, task.y_train, TrainConfig("sgd", 0.1, 4, "ce", 50),
                   trainable=mask)
    for p0, p1, trained in zip(params, result.params, mask, strict=True):
        assert torch.equal(p0, p1) != trained


def test_psgd_run_resumes_and_does_not_depend_on_workers(tmp_path):
    with Store(tmp_path / "a.duckdb") as st:
        ref = run_psgd(st, "bool5-0011", "sgd-b8", SMALL, LocalExecutor(1), quiet=True)
        reference = st.function_counts(ref)
        ref_stats = st.table("psgd_chunks", ref)
    assert ref_stats["trained"].sum() == 600 and reference["count"].sum() == ref_stats["converged"].sum()

    class CrashError(Exception):
        pass

    with Store(tmp_path / "b.duckdb") as st:
        original = st.commit_function_chunk
        calls = []

        def crashing(*args, **kwargs):
            if len(calls) == 3:
                raise CrashError
            calls.append(args[1])
            original(*args, **kwargs)

        st.commit_function_chunk = crashing
        with pytest.raises(CrashError):
            run_psgd(st, "bool5-0011", "sgd-b8", SMALL, LocalExecutor(2), quiet=True)
        st.commit_function_chunk = original
        run_id = run_psgd(st, "bool5-0011", "sgd-b8", SMALL, LocalExecutor(2), quiet=True)
        resumed = st.function_counts(run_id)
        stats = st.table("psgd_chunks", run_id)
    assert run_id == ref and len(calls) == 3
    pd.testing.assert_frame_equal(resumed, reference)
    assert sorted(stats["chunk"]) == list(range(6))  # every chunk's stats once
    assert stats["converged"].sum() == ref_stats["converged"].sum()


def test_experiment_compares_sgd_with_rejection_and_ep(tmp_path):
    s = SgdBayesSettings(tasks=("bool5-0011",), methods=("sgd-b8", "last-sgd-b8"), runs=1000,
                         chunk_size=250, rejection_samples=1_000_000)
    with Store(tmp_path / "s.duckdb") as st:
        result = run_sgd_bayes(st, s, tmp_path / "out", quiet=True)
        again = run_sgd_bayes(st, s, tmp_path / "out", quiet=True)  # resumes: nothing redone
    summary = result["summary"].set_index("method")
    assert list(summary.index) == ["sgd-b8", "last-sgd-b8", "rejection"]
    assert summary.loc["rejection", "fit_s"] > 100  # ~3.5e-4 of the prior fits S
    # two independent estimates of P_B (rejection from the finite network, EP on its NNGP) agree
    assert summary.loc["rejection", "pearson_ep"] > 0.4
    assert summary.loc["sgd-b8", "pearson_ep"] > 0.4
    assert 0 <= summary.loc["sgd-b8", "tv_rejection"] <= 1
    assert result["figures"]["bool5-0011"].exists()
    pd.testing.assert_frame_equal(again["summary"], result["summary"])
    assert "A4" in result["claims"][0]["claim"]


def test_bad_input():
    with pytest.raises(NNBiasError, match="method='rmsprop-b8'"):
        parse_method("rmsprop-b8")
    with pytest.raises(NNBiasError, match="method='sgd-8'"):
        parse_method("sgd-8")
    assert parse_method("last-adam-full")[1] and parse_method("sgd-b4")[0].batch_size == 4
    with pytest.raises(NNBiasError, match="task='nope'"):
        SgdBayesSettings(tasks=("nope",))
    with pytest.raises(NNBiasError, match="runs=0"):
        SgdBayesSettings(runs=0)
    with pytest.raises(NNBiasError, match="lr=-1"):
        SgdBayesSettings(lr=-1)
    x = hypercube(3).double()
    overlapping = Dataset("overlap", x[:5], torch.tensor([0, 1, 0, 1, 1]), x[4:], torch.tensor([1, 0, 0, 1]),
                          2)
    with pytest.raises(NNBiasError, match="1 test inputs also occur in the training set"):
        check_disjoint(overlapping)


def test_unreachable_target_is_judged_inconclusive_and_says_what_to_change(tmp_path):
    """No run fits S within the epoch cap: the data cannot decide, and every claim says so (stored, as
    the claims of any run are), with the epoch cap or learning rate as what to change."""
    s = SgdBayesSettings(tasks=("bool7-random",), methods=("sgd-full",), runs=20, chunk_size=20,
                         max_epochs=1, rejection_samples=1000)
    with Store(tmp_path / "s.duckdb") as st:
        result = run_sgd_bayes(st, s, tmp_path / "out", quiet=True)
        stored = st.claims(result["run_id"])
    tracking = [c for c in result["claims"] if "sgd-full: log P(f|S) tracks" in c["claim"]]
    assert len(tracking) == 1 and tracking[0]["measured"] == "no run of 20 fit S within 1 epochs"
    assert tracking[0]["decide"] == "a higher epoch cap or learning rate"
    assert {c["verdict"] for c in result["claims"]} == {"inconclusive"}
    assert [c["verdict"] for c in stored] == [c["verdict"] for c in result["claims"]]
    # enough prior samples fit S for the rejection comparison, but every SGD run diverged
    diverging = SgdBayesSettings(tasks=("bool5-0011",), methods=("sgd-full",), runs=20, chunk_size=20,
                                 max_epochs=1, lr=1e40, rejection_samples=400_000)
    with Store(tmp_path / "d.duckdb") as st:
        claims = run_sgd_bayes(st, diverging, tmp_path / "out", quiet=True)["claims"]
    by_rejection = [c for c in claims if "sgd-full: P_SGD(f|S) = P_B(f|S) by rejection" in c["claim"]]
    assert len(by_rejection) == 1 and by_rejection[0]["verdict"] == "inconclusive"
    assert by_rejection[0]["measured"] == "no run of 20 fit S within 1 epochs (20 diverged)"
    with pytest.raises(NNBiasError, match="batch size 32 is larger than"), Store(tmp_path / "t.duckdb") as st:
        run_psgd(st, "bool5-0011", "sgd-b32", SMALL, quiet=True)
