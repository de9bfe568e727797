"""The transfer experiment: the tangent-space learner against its closed form, the sign-flip identity,
task pairs, resumable cells, bad input, and claims that can come out against themselves."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from nnbias.engines.empirical import structured_ntk
from nnbias.engines.training import linearised_gd
from nnbias.errors import NNBiasError
from nnbias.estimators import verdicts as v
from nnbias.experiments import transfer
from nnbias.experiments.transfer import TransferSettings, pretrain, run_transfer, transfer_cell
from nnbias.store import Store
from nnbias.tasks.pairs import task_pair

TINY = dict(pairs=("single-index-same", "single-index-flip"), sizes=(8, 24), claim_size=8, width=32,
            networks=3, steps=80)


def test_tangent_transfer_is_kernel_regression_on_the_pretrained_residual():
    """Closed form for MSE: after T steps on B from f_A, the centred tangent model predicts
    f_A(x) + Theta(x, X) Theta^-1 (I - (I - lr Theta)^T) (y - f_A(X)), Theta the empirical NTK at p0."""
    s = TransferSettings(**TINY)
    pair = task_pair("single-index-same", 0, 24)
    pre = pretrain(pair.a, s)
    b = pair.adapt(24)
    p0 = pre.ntk.functional()[1]
    moved = linearised_gd(pre.ntk, b.x_train, b.y_train, pre.lr, s.steps, start=pre.tangent_params, origin=p0)
    model = moved.fn
    with torch.no_grad():
        f_a_train, f_a_test = model(pre.tangent_params, b.x_train), model(pre.tangent_params, b.x_test)
        theta = structured_ntk(pre.ntk, b.x_train)
        cross = structured_ntk(pre.ntk, b.x_test, b.x_train)
    for k in range(s.networks):
        eye = torch.eye(len(b.y_train), dtype=torch.float64)
        decay = torch.linalg.matrix_power(eye - pre.lr * theta[k], s.steps)
        solve = torch.linalg.solve(theta[k], (eye - decay) @ (b.y_train - f_a_train[k]))
        closed = f_a_test[k] + cross[k] @ solve
        assert torch.allclose(moved.predict(b.x_test)[k], closed, atol=1e-7, rtol=1e-6)


def test_sign_flip_identity_holds_exactly():
    """gain(B = A) + gain(B = -A) = -2 E[r^2] / Var(y) for the centred tangent model with MSE, and
    the two adapted functions are each other's negation plus twice the residual."""
    s = TransferSettings(**TINY)
    same, flip = task_pair("single-index-same", 0, 24), task_pair("single-index-flip", 0, 24)
    assert torch.equal(same.b.x_train, flip.b.x_train) and torch.equal(same.b.y_test, -flip.b.y_test)
    pre = pretrain(same.a, s)
    cells = pd.concat([transfer_cell(same, 24, pre, s), transfer_cell(flip, 24, pre, s)])
    tangent = cells[cells["learner"] == "tangent-init"]
    g = {p: tangent[tangent["pair"] == p].sort_values("seed") for p in (same.name, flip.name)}
    total = g[same.name]["gain"].to_numpy() + g[flip.name]["gain"].to_numpy()
    assert np.allclose(total, -2 * g[same.name]["residual_sq"].to_numpy(), atol=1e-10)
    assert np.allclose(g[same.name]["residual_sq"], g[flip.name]["residual_sq"], atol=1e-12)
    assert (total < 0).all()  # the two gains cannot both be positive


def test_task_pairs_relate_as_named():
    same, flip, shared, other = (task_pair(f"single-index-{r}", 1, 50)
                                 for r in ("same", "flip", "shared", "unrelated"))
    assert torch.equal(same.a.x_train, other.a.x_train) and torch.equal(same.b.x_test, shared.b.x_test)
    assert torch.equal(same.b.y_train, -flip.b.y_train)
    # He3 of the same direction is uncorrelated with ReLU of it: correlation near 0 on 1000 points
    assert abs(float(np.corrcoef(same.b.y_test, shared.b.y_test)[0, 1])) < 0.1
    assert abs(float(np.corrcoef(same.b.y_test, other.b.y_test)[0, 1])) < 0.1
    digits = task_pair("digits-halves-parity", 0, 100)
    assert set(digits.a.y_train.tolist()) == {-1.0, 1.0} and len(digits.b.y_train) == 100
    assert len(digits.adapt(10).y_train) == 10
    one_d = task_pair("mnist1d-halves-parity", 0, 64)
    assert one_d.a.dim == one_d.b.dim == 40 and set(one_d.b.y_test.tolist()) == {-1.0, 1.0}


@pytest.mark.parametrize(("call", "needle"), [
    (lambda: TransferSettings(pairs=("nope",)), "pair='nope'"),
    (lambda: TransferSettings(width=0), "width=0"),
    (lambda: TransferSettings(sizes=(16, 32), claim_size=64), "claim_size=64"),
    (lambda: task_pair("single-index-same", 0, 8).adapt(9), "n_B=9"),
    (lambda: task_pair("digits-halves-parity", 0, 5000), "pool=5000"),
    (lambda: task_pair("mnist1d-halves-parity", 0, 5000), "pool=5000"),
])
def test_bad_input_names_the_value(call, needle):
    with pytest.raises(NNBiasError, match=needle.replace("(", r"\(")):
        call()


def test_transfer_run_resumes_and_stores_claims(tmp_path, monkeypatch):
    s = TransferSettings(**TINY)
    with Store(tmp_path / "t.duckdb") as st:
        first = run_transfer(st, s, tmp_path / "out")

        def refuse(*args, **kwargs):
            raise AssertionError("a finished cell was recomputed")

        monkeypatch.setattr(transfer, "transfer_cell", refuse)
        monkeypatch.setattr(transfer, "pretrain", refuse)
        again = run_transfer(st, s, tmp_path / "out")
        assert st.claims(first["run_id"]) == first["claims"]
    cells = first["cells"]
    assert len(cells) == 2 * 2 * (6 * 3 + 2)  # pairs x sizes x (learners x seeds + 2 kernels)
    assert again["claims"] == first["claims"]
    identity = next(c for c in first["claims"] if "exactly" in c["claim"])
    assert identity["verdict"] == v.SUPPORTED
    for f in first["figures"].values():
        assert f.exists() and f.stat().st_size > 10_000


def _cells(gains: dict[tuple[str, str], list[float]], residual: float = 0.0) -> pd.DataFrame:
    relation = {"single-index-same": "same", "single-index-flip": "flip", "single-index-shared": "shared",
                "single-index-unrelated": "unrelated"}
    rows = []
    for (pair, learner), values in gains.items():
        for k, gain in enumerate(values):
            rows.append({"pair": pair, "relation": relation[pair], "n": 64, "learner": learner, "seed": k,
                         "gain": gain, "error_scratch": 1.0, "error_transfer": 1.0 - gain,
                         "residual_sq": residual if learner == "tangent-init" else math.nan})
    return pd.DataFrame(rows)


def test_transfer_claims_can_be_contradicted_and_inconclusive():
    seeds = [0.0, 0.01, -0.01, 0.005]
    claims = transfer.transfer_claims(_cells({
        ("single-index-same", "tangent-init"): [x - 0.3 for x in seeds],  # pretraining hurts on B = A
        ("single-index-flip", "tangent-init"): [x + 0.1 for x in seeds],
        ("single-index-same", "mup-net"): [x + 0.3 for x in seeds],
        ("single-index-flip", "mup-net"): [x - 0.3 for x in seeds],  # muP's transfer flips too
        ("single-index-same", "tangent-init-f0"): [x + 0.2 for x in seeds],
        ("single-index-flip", "tangent-init-f0"): [x + 0.2 for x in seeds],  # helps on -A too
        ("single-index-same", "ntk-net"): [x + 0.4 for x in seeds],
        ("single-index-same", "tangent-pretrained"): [x + 0.0 for x in seeds],
        ("single-index-shared", "mup-net"): [0.0, 0.5, -0.5, 0.2],
        ("single-index-shared", "tangent-init"): [0.0] * 4,
        ("single-index-shared", "ntk-net"): [0.0, 0.5, -0.5, 0.2],
        ("single-index-shared", "tangent-pretrained"): [0.0] * 4,
        ("single-index-unrelated", "tangent-init"): [x - 0.2 for x in seeds],
    }, residual=0.05), 64)
    by = {key: next(c["verdict"] for c in claims if key in c["claim"]) for key in
          ("exactly", "transfer flips sign", "still flips sign", "same sign",
           "on single-index-shared (shared", "unrelated", "on single-index-same the linearisation",
           "on single-index-shared the linearisation")}
    assert by["exactly"] == v.CONTRADICTED  # -0.2 + 2 * 0.05 != 0
    assert by["transfer flips sign"] == v.CONTRADICTED and by["same sign"] == v.CONTRADICTED
    assert by["still flips sign"] == v.CONTRADICTED
    assert by["on single-index-shared (shared"] == v.INCONCLUSIVE
    assert by["unrelated"] == v.CONTRADICTED  # clearly harmful: not indistinguishable from 0
    assert by["on single-index-same the linearisation"] == v.CONTRADICTED
    assert by["on single-index-shared the linearisation"] == v.INCONCLUSIVE


def test_cli_transfer_json_and_bad_input(tmp_path):
    from test_cli import nnbias

    r = nnbias("transfer", "--pairs", "single-index-same,single-index-flip", "--sizes", "8,16",
               "--width", "16", "--networks", "2", "--steps", "20", "--out", str(tmp_path / "f"), "--json",
               cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert {c["verdict"] for c in doc["claims"]} <= set(v.VERDICTS) and len(doc["gains"]) == 2 * 2 * 6
    bad = nnbias("transfer", "--pairs", "cats-dogs", cwd=tmp_path)
    assert bad.returncode == 2 and "pair='cats-dogs'" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
