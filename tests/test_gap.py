"""The gap experiment: full vs linearised vs muP networks against NNGP/NTK, and parity sample complexity."""

import math

import pytest
import torch

from nnbias.errors import NNBiasError
from nnbias.experiments import gap
from nnbias.experiments.gap import GapSettings, curve_task, prefix, run_gap
from nnbias.store import Store
from nnbias.tasks.datasets import sparse_parity, teacher_task

TINY = dict(tasks=("linear", "parity-k2"), widths=(16, 64), networks=2, steps=60, etas=(0.5, 1.0),
            curve_tasks=("parity-k2",), curve_sizes=(40, 80), curve_width=32)


def test_full_training_approaches_its_linearisation_as_width_grows():
    task = teacher_task("linear", d=8, train=64, test=200, seed=1)
    s = GapSettings(tasks=("linear",), widths=(16, 1024), networks=3, steps=200)
    kernels = gap.kernel_cell("linear", task, s)
    lr = float(kernels["lr"].iloc[0])
    narrow, wide = (gap.ladder_cell("linear", task, w, lr, 0.5, s) for w in s.widths)
    div = [c[c["model"] == "network"]["weight_divergence"].mean() for c in (narrow, wide)]
    out = [c[c["model"] == "network"]["output_divergence"].mean() for c in (narrow, wide)]
    assert div[1] < 0.5 * div[0] and out[1] < 0.5 * out[0]  # 64x the width: ~1/8 in theory
    # wide, lazy: the network, its linearisation and the NTK limit for the same time agree
    limit = float(kernels.set_index("model").loc["NTK net t=train", "error"])
    errors = wide.groupby("model")["error"].mean()
    assert abs(errors["network"] - limit) < 0.05 and abs(errors["linearised"] - limit) < 0.05


def test_mup_network_learns_3_sparse_parity_where_kernels_fail():
    """Kernels need about d^k examples (Ghorbani et al. 2019): at d = 16, |S| = 400 << 16^3 they are near
    chance; a network that learns features finds the 3 relevant bits."""
    task = sparse_parity(16, 3, train=400, test=500, seed=0)
    s = GapSettings(networks=2, steps=1000, curve_width=128)
    cell = gap.curve_cell("parity-k3", task, 400, 2.0, s)
    errors = cell.groupby("model")["error"].mean()
    assert errors["NNGP"] > 0.35 and errors["NTK t=inf"] > 0.35
    assert errors["muP network"] < 0.1


def test_gap_run_resumes_without_recomputing_and_claims_follow_the_table(tmp_path, monkeypatch):
    s = GapSettings(**TINY)
    with Store(tmp_path / "g.duckdb") as st:
        first = run_gap(st, s, tmp_path / "out")
        cells = len(st.table("gap_cells", first["run_id"]))

        def refuse(*args, **kwargs):
            raise AssertionError("a finished cell was recomputed")

        for name in ("ladder_cell", "curve_cell", "kernel_cell", "tune_mup"):
            monkeypatch.setattr(gap, name, refuse)
        again = run_gap(st, s, tmp_path / "out")
        assert again["run_id"] == first["run_id"] and len(st.table("gap_cells", first["run_id"])) == cells
    assert cells == 2 * 2 * 3 * 2  # tasks x widths x models x seeds
    assert again["claims"] == first["claims"]
    summary = first["summary"]
    assert list(summary["task"]) == ["linear", "parity-k2"]
    for r in summary.itertuples():
        assert r.mup_gap == pytest.approx(r.kernel_error - r.mup_error)
        # the claim's 95 % interval over the 2 seeds: Student t with 1 degree of freedom
        assert r.mup_ci95 == pytest.approx(12.7062047 * r.mup_sd / math.sqrt(2))
    lr = first["learning_rates"]
    assert lr.groupby("task")["chosen"].sum().eq(1).all()  # one chosen rate per task
    assert set(first["learned"]["model"]) == {"NNGP", "NTK t=inf", "muP network"}
    for f in first["figures"].values():
        assert f.exists() and f.stat().st_size > 10_000


def test_curve_tasks_are_nested():
    task = curve_task("parity-k2", (40, 80), seed=3)
    small = prefix(task, 40)
    assert torch.equal(small.x_train, task.x_train[:40]) and torch.equal(small.x_test, task.x_test)
    assert len(task.y_train) == 80


def test_gap_bad_input():
    for kwargs, message in ((dict(tasks=("mnist",)), "task='mnist' is not allowed"),
                            (dict(curve_tasks=("linear",)), "task='linear' is not allowed"),
                            (dict(widths=(0, 64)), "width=0"),
                            (dict(etas=(0.5, -1.0)), "eta=-1.0"),
                            (dict(steps=0), "steps=0")):
        with pytest.raises(NNBiasError, match=message):
            GapSettings(**kwargs)
    with pytest.raises(NNBiasError, match="scale='huge' is not allowed"):
        gap.settings_for("huge")
    assert gap.settings_for("paper").widths[-1] == 4096


def test_test_error_is_one_scale_for_classes_and_regression():
    reg = teacher_task("single-index", d=4, train=10, test=400, link="he2", seed=0)
    assert float(reg.test_error(reg.y_test)[0]) == 0.0
    mean = torch.full_like(reg.y_test, float(reg.y_test.mean()))
    assert float(reg.test_error(mean)[0]) == pytest.approx(1.0, abs=1e-9)
    par = sparse_parity(6, 2, train=10, test=100, seed=0)
    assert float(par.test_error(2.0 * par.y_test - 1)[0]) == 0.0
    assert math.isclose(float(par.test_error(1 - 2.0 * par.y_test)[0]), 1.0)
