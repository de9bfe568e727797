"""Experiment ``architectures``: a tiny run end to end (and resumed), and each verdict rule coming out
against its claim."""

import pandas as pd
import pytest

from nnbias.estimators.verdicts import CONTRADICTED, INCONCLUSIVE, SUPPORTED
from nnbias.experiments import architectures as arch
from nnbias.store import Store

TINY = arch.ArchitecturesSettings(
    tasks=("digits-10",),
    mlp_widths=(16,),
    cnn_widths=(4,),
    networks=2,
    epochs=6,
    kernel_train=200,
    kernel_test=150,
    pooled_train=80,
    pooled_test=60,
    boolean_samples=600,
)


def test_a_tiny_run_stores_every_cell_and_resumes_to_the_same_tables(tmp_path):
    with Store(tmp_path / "s.duckdb") as st:
        first = arch.run_architectures(st, TINY, tmp_path, quiet=True)
        again = arch.run_architectures(st, TINY, tmp_path, quiet=True)  # every cell done: nothing recomputed
        assert len(st.table("architecture_nets", first["run_id"])) == 3 * TINY.networks
    assert first["run_id"] == again["run_id"]
    pd.testing.assert_frame_equal(first["accuracy"], again["accuracy"])
    kernels = first["kernels"]
    assert set(kernels["kernel"]) == {"mlp", "cnn-flatten", "cnn-gap"}
    assert kernels.set_index("kernel").loc["cnn-gap", "train"].max() == 80  # the pooled cap
    assert (kernels["test_acc"] > 0.5).all()  # ten classes: chance is 0.1
    acc = first["accuracy"].set_index("model")["test_acc"]
    assert acc.min() > 0.3
    assert set(first["gaps"]["architecture"]) == {"mlp", "cnn"}
    gaps = first["gaps"]
    assert all(k.startswith(a) for k, a in zip(gaps["best_kernel"], gaps["architecture"], strict=True))
    boolean = first["boolean"].set_index("architecture")
    assert boolean.loc["cnn", "params"] == 153 and boolean.loc["fcn", "params"] == 155
    assert (boolean["samples"] == 600).all() and (boolean["distinct"] <= 600).all()
    assert all(c["verdict"] in (SUPPORTED, CONTRADICTED, INCONCLUSIVE, "measured") for c in first["claims"])
    assert all(p.exists() for p in first["figures"].values())


def _accuracy(cnn: float, mlp: float, logistic: float, sd: float = 0.005, seeds: int = 8) -> pd.DataFrame:
    rows = []
    for model, value in (("logistic", logistic), ("mlp", mlp), ("cnn", cnn)):
        half = 2.4 * sd / seeds**0.5
        rows.append(
            {
                "task": "mnist1d-10",
                "model": model,
                "width": 25,
                "params": 1,
                "seeds": seeds,
                "test_acc": value,
                "lo": value - half,
                "hi": value + half,
                "sd": sd,
                "train_acc": 1.0,
            }
        )
    return pd.DataFrame(rows)


def _gaps(gap: float) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "task": "mnist1d-10",
                "architecture": "cnn",
                "width": 25,
                "net_acc": 0.9,
                "best_kernel": "cnn-flatten nngp",
                "kernel_acc": 0.9 - gap,
                "gap": gap,
                "gap_lo": gap - 0.01,
                "gap_hi": gap + 0.01,
            }
        ]
    )


def _boolean(cnn_lz: float, fcn_lz: float) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "architecture": a,
                "params": 150,
                "samples": 10_000,
                "lz_mean": lz,
                "lz_sd": 10.0,
                "invariant_share": 0.5,
                "constant_share": 0.5,
            }
            for a, lz in (("cnn", cnn_lz), ("fcn", fcn_lz))
        ]
    )


@pytest.mark.parametrize(
    "cnn, mlp, gap, cnn_lz, expected",
    [
        (0.94, 0.68, 0.03, 80.0, SUPPORTED),  # the claims as stated
        (0.70, 0.68, -0.03, 95.0, CONTRADICTED),  # CNN barely ahead, kernel ahead, CNN functions more complex
    ],
)
def test_architecture_verdicts_come_out_for_and_against(cnn, mlp, gap, cnn_lz, expected):
    claims = arch.architecture_claims(_accuracy(cnn, mlp, 0.32), _gaps(gap), _boolean(cnn_lz, 90.0))
    words = {c["claim"]: c["verdict"] for c in claims}
    beats = [w for c, w in words.items() if "a CNN beats an MLP" in c]
    kernel = [w for c, w in words.items() if "beats its best" in c]
    simpler = [w for c, w in words.items() if "simpler functions" in c]
    assert beats == [expected] and kernel == [expected] and simpler == [expected]


def test_published_accuracy_rule_is_an_equivalence_test():
    claims = arch.architecture_claims(_accuracy(0.80, 0.68, 0.32), _gaps(0.0), _boolean(80.0, 90.0))
    published = {
        c["claim"].split("'s ")[1].split()[0]: c["verdict"] for c in claims if "published" in c["claim"]
    }
    assert published == {
        "logistic": SUPPORTED,
        "mlp": SUPPORTED,
        "cnn": CONTRADICTED,
    }  # 0.80 is far from 0.94
    wide = arch.architecture_claims(
        _accuracy(0.94, 0.68, 0.32, sd=0.05, seeds=3), _gaps(0.0), _boolean(80, 90)
    )
    assert {c["verdict"] for c in wide if "published" in c["claim"]} == {INCONCLUSIVE}  # too few seeds to say
