"""Inside the kernel-regime solution: p* against linearised gradient descent run to convergence, the cells,
resuming, bad input, and claims that can come out against themselves."""

import pandas as pd
import pytest
import torch

from nnbias.engines.training import linearised_gd
from nnbias.errors import NNBiasError
from nnbias.estimators import verdicts as v
from nnbias.experiments import inside
from nnbias.experiments.inside import InsideSettings, kernel_solution, run_inside
from nnbias.store import Store
from nnbias.tasks.datasets import teacher_task


def test_kernel_solution_is_where_linearised_descent_converges():
    """p* = p0 + J^T Theta^-1 (y - f0) is the limit of gradient descent on the linearised network (which
    stays in the row space of J): an independent route to the same parameters and predictions."""
    task = teacher_task("single-index", d=6, train=12, test=30, link="he2", seed=2)
    s = InsideSettings(widths=(48,), networks=2)
    nets = inside._ensemble(task, "ntk", 48, s)
    y = task.signed_targets(task.y_train)
    p_star = kernel_solution(nets, task.x_train, y)
    lr = 0.5 / float(torch.linalg.eigvalsh(inside.structured_ntk(nets, task.x_train)).max())
    descent = linearised_gd(nets, task.x_train, y, lr, 60_000)
    for a, b in zip(p_star, descent.params, strict=True):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-5)
    fn, p0 = nets.functional()
    lin = inside.linearise(fn, p0)
    with torch.no_grad():
        assert torch.allclose(lin(p_star, task.x_train), y.expand(2, -1), atol=1e-8)  # interpolates S


def test_cells_resume_and_measure_both_solutions(tmp_path, monkeypatch):
    s = InsideSettings(widths=(16, 64), networks=2, steps=30)
    with Store(tmp_path / "i.duckdb") as st:
        first = run_inside(st, s, tmp_path / "out", quiet=True)

        def refuse(*args, **kwargs):
            raise AssertionError("a finished cell was recomputed")

        monkeypatch.setattr(inside, "solution_cell", refuse)
        again = run_inside(st, s, tmp_path / "out", quiet=True)
    cells = first["cells"]
    assert len(cells) == 2 * 2 * 2 * 2  # parametrizations x widths x solutions x seeds
    star = cells[cells["solution"] == inside.SOLUTION]
    assert (star["train_error_linear"] < 1e-12).all()  # the linear model at p* fits S exactly
    assert ((cells["grad_fraction"] >= 0) & (cells["grad_fraction"] <= 1 + 1e-9)).all()
    assert again["claims"] == first["claims"]
    assert first["figures"]["kernel_solution"].stat().st_size > 10_000


@pytest.mark.parametrize(("kwargs", "needle"), [({"task": "cifar"}, "task='cifar'"),
                                                 ({"parametrizations": ("sp",)}, "parametrization='sp'"),
                                                 ({"widths": (0,)}, "width=0")])
def test_bad_settings_name_the_value(kwargs, needle):
    with pytest.raises(NNBiasError, match=needle):
        InsideSettings(**kwargs)


def _cells(gap_slope: float, move_slope: float, share: float, noise: float = 0.0) -> pd.DataFrame:
    rows = []
    for w in (64, 256, 1024):
        for k in range(3):
            jitter = 1 + noise * (k - 1)
            for solution in (inside.SOLUTION, inside.TRAINED):
                rows.append({"task": "t", "parametrization": "ntk", "width": w, "solution": solution,
                             "seed": k, "test_error": 0.5, "train_error": 0.0, "test_error_linear": 0.5,
                             "output_gap": 0.3 * (w / 64) ** gap_slope * jitter,
                             "act_change": 0.3 * (w / 64) ** move_slope * jitter,
                             "max_angle": 0.5, "grad_fraction": share * jitter})
    return pd.DataFrame(rows)


@pytest.mark.parametrize(("cells", "words"), [
    (_cells(-0.5, -0.5, 0.8, 0.01), [v.SUPPORTED, v.SUPPORTED, v.SUPPORTED]),
    (_cells(0.0, -1.0, 0.05, 0.01), [v.CONTRADICTED, v.CONTRADICTED, v.CONTRADICTED]),
    (_cells(-0.5, -0.5, 0.5, 0.6), [v.INCONCLUSIVE, v.INCONCLUSIVE, v.INCONCLUSIVE]),
])
def test_inside_claims_can_say_no(cells, words):
    claims = inside.inside_claims(cells, inside.fit_exponents(cells))
    assert [c["verdict"] for c in claims] == words
