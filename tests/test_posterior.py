"""The posterior, Gibbs and PAC-Bayes-bound experiments: their pieces against independent references,
resumable cells, and verdicts that come out against their claims on synthetic data."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from nnbias.engines.ensemble import sample_ensemble
from nnbias.errors import NNBiasError
from nnbias.estimators import verdicts as v
from nnbias.estimators.energy import energy_test
from nnbias.estimators.scaling import weighted_power_law
from nnbias.experiments import bound, gibbs, posterior, routes
from nnbias.store import Store
from nnbias.tasks.boolean import hypercube


def test_pac_bayes_bound_on_a_worked_number():
    # ln 1/P(S) = 10, m = 100, delta = 0.1: exponent (10 + 9.21034 + 1 + 2.30259) / 100 = 0.225129,
    # bound 1 - e^-0.225129 = 0.201587
    assert bound.pac_bayes_bound(-10.0, 100, 0.1) == pytest.approx(0.201587, abs=1e-6)
    with pytest.raises(NNBiasError, match="log P"):
        bound.pac_bayes_bound(0.5, 100)


def test_corrupt_replaces_the_stated_fraction_by_coin_flips():
    y = torch.ones(1000)
    assert torch.equal(bound.corrupt(y, 0.0, 1), y)
    half = bound.corrupt(y, 0.5, 1)
    flipped = int((half != y).sum())
    assert flipped <= 500 and stats.binomtest(flipped, 500, 0.5).pvalue > 1e-3  # coin flips on 500
    assert stats.binomtest(int((bound.corrupt(y, 1.0, 2) == 0).sum()), 1000, 0.5).pvalue > 1e-3


def test_difference_interval_is_welchs():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.3, 1.0, 40), rng.normal(0.0, 2.0, 70)
    ci = v.difference_interval(a.mean(), a.std(ddof=1), len(a), b.mean(), b.std(ddof=1), len(b))
    ref = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (ci.lo, ci.hi) == pytest.approx((ref.low, ref.high), rel=1e-9)


def test_weighted_power_law_recovers_an_exponent_through_the_noise_floor():
    rng = np.random.default_rng(1)
    x = np.array([8, 16, 32, 64, 128, 256, 512.0])
    se = np.full(len(x), 2e-4)
    y = 0.05 * x**-1.0 + rng.normal(0, 1, len(x)) * se  # the widest gains are at the noise floor
    assert (y < 2 * se).any()
    _, b, half = weighted_power_law(x, y, se)
    assert abs(b + 1.0) < max(half, 0.05) and half < 0.5


def test_energy_test_has_its_null_and_sees_a_shift():
    """The weight-space test the experiment uses: uniform p-values under the null (prior against
    prior), rejection for a shift of a tenth of a standard deviation in every coordinate."""
    spec = posterior.cell_spec(posterior.load_task("bool7-0011-s8", 0), 16, "rejection",
                               posterior.PosteriorSettings())
    p_null = []
    for seed in range(20):
        a = sample_ensemble(spec, 200, torch.Generator().manual_seed(2 * seed))
        b = sample_ensemble(spec, 200, torch.Generator().manual_seed(2 * seed + 1))
        p_null.append(energy_test(posterior.incoming(a, 0), posterior.incoming(b, 0), 99, seed).p_value)
    assert stats.kstest(p_null, "uniform").pvalue > 1e-3
    a = sample_ensemble(spec, 400, torch.Generator().manual_seed(100))
    b = posterior.incoming(sample_ensemble(spec, 400, torch.Generator().manual_seed(101)), 0) + 0.25
    assert energy_test(posterior.incoming(a, 0), b, 99, 0).p_value < 0.02


def test_posterior_cells_fit_s_and_resume(tmp_path, monkeypatch):
    s = posterior.PosteriorSettings(widths=(8, 16, 32), samples=60, prior_samples=120, permutations=20,
                                    methods=("rejection", "langevin", "sgd-mup"), langevin_steps=20)
    with Store(tmp_path / "p.duckdb") as st:
        first = posterior.run_posterior(st, s, tmp_path / "out", quiet=True)
        cells = first["cells"]
        exact = cells[cells["method"] == "rejection"]
        assert (exact["fit_share"] == 1.0).all() and (exact["networks"] == 60).all()
        assert ((cells["test_error"] >= 0) & (cells["test_error"] <= 1)).all()
        assert any("Langevin at small T" in c["claim"] for c in first["claims"])
        assert set(cells["layer"]) == {"layer 1", "layer 2", "readout"}
        assert ((cells["energy_p"] > 0) & (cells["energy_p"] <= 1)).all()
        assert (tmp_path / "out" / "posterior_layers.png").stat().st_size > 0

        def refuse(*args, **kwargs):
            raise AssertionError("a finished cell was recomputed")

        monkeypatch.setattr(posterior, "posterior_cell", refuse)
        again = posterior.run_posterior(st, s, tmp_path / "out", quiet=True)
    pd.testing.assert_frame_equal(first["cells"], again["cells"])


def test_a_cell_in_chunks_of_networks_is_the_cell_in_one(monkeypatch):
    """A cell draws, trains and measures its networks in chunks (the paper's 2000 trained and 8000 prior
    networks of width 1024 in 24 GiB): the same numbers as in one chunk, since training a network does
    not depend on the others and the prior's chunks are the networks of one draw; the NNGP distances to
    float64 rounding, their Gram matrices being summed chunk by chunk."""
    s = posterior.PosteriorSettings(samples=100, prior_samples=250, permutations=20, sgd_epochs=200)
    task = posterior.load_task(s.task, s.seed)
    whole = posterior.posterior_cell(task, 32, "sgd-mup", s)
    monkeypatch.setattr(posterior, "CHUNK_BYTES", 2**20)
    spec = posterior.cell_spec(task, 32, "sgd-mup", s)
    assert posterior.chunk_size(4 * posterior.measured_numbers(spec, 128)) == 16  # really in chunks
    chunked = posterior.posterior_cell(task, 32, "sgd-mup", s)
    summed = ["kernel_distance", "kernel_distance_floor"]
    pd.testing.assert_frame_equal(whole.drop(columns=summed), chunked.drop(columns=summed))
    np.testing.assert_allclose(chunked[summed], whole[summed], rtol=1e-9)
    assert (whole["networks"] > 50).all() and np.isfinite(whole[summed]).all().all()


def test_a_measurement_keeps_the_first_networks_not_the_chunks_they_came_from():
    """The prior's first n representations are kept to pair with the posterior's; the rest of their chunks
    (and every later chunk) must be freed: a view, even an empty one, keeps its whole tensor alive (at
    the paper's width 1024, a gigabyte a chunk). 200 networks in chunks of 48, the first 40 kept."""
    s = posterior.PosteriorSettings()
    task = posterior.load_task(s.task, s.seed)
    spec = posterior.cell_spec(task, 32, "rejection", s)
    y = task.signed_targets(torch.tensor([float(c) for c in posterior.TARGET])).double()
    chunks = posterior._draws(spec, 200, s, 32, posterior.PRIOR_STREAM, 48)
    measured = posterior.measure(chunks, hypercube(7), y, [(0, 40), (40, 80)], 40, True, 40, None)
    held = sum(t.untyped_storage().nbytes() for layer in measured.kept for t in layer)
    assert held == 40 * (32 + 32 + 1) * 128 * 8  # the first 40 networks' float64 representations only
    assert [len(p) for p in measured.pairs] == [40] * 3 and measured.counts == [40, 40]


def test_a_paper_scale_cell_counts_what_a_24_gib_machine_holds():
    """The widest paper-scale cell (2000 trained and 8000 prior networks of 7-1024-1024-1) counts its
    posterior networks, the prior representations kept to pair with them and one chunk: under 20 GiB,
    where holding every network at once took 47.5 GiB for training alone."""
    s = posterior.settings_for("paper")
    task = posterior.load_task(s.task, s.seed)
    assert 4 * posterior.cell_numbers(task, max(s.widths), s) < 20 * 2**30


def test_posterior_cells_on_two_dask_workers_are_the_cells_of_one_thread(tmp_path):
    """The cells (energy tests included: dcor is warmed on one worker first) are the same bits
    whichever process computed them, and so are the verdicts."""
    from nnbias.executor import DaskExecutor

    s = posterior.PosteriorSettings(widths=(8, 16), samples=40, prior_samples=80, permutations=20,
                                    methods=("rejection", "sgd-mup"))

    def cells(name, executor=None):
        with Store(tmp_path / f"{name}.duckdb") as st:
            result = posterior.run_posterior(st, s, tmp_path / name, quiet=True, executor=executor)
        keys = ["width", "method", "layer"]
        return result["cells"].sort_values(keys, ignore_index=True), result["claims"]

    one = cells("one")
    dask = DaskExecutor(workers=2)
    try:
        two = cells("two", dask)
    finally:
        dask.close()
    pd.testing.assert_frame_equal(one[0], two[0])
    assert one[1] == two[1]


def _gains(exponent: dict[str, float], mup_at_widest: float = 0.0) -> pd.DataFrame:
    rows = []
    for method in ("rejection", "sgd-mup"):
        for layer, b in exponent.items():
            for w in (8, 16, 32, 64, 128):
                gain = 0.1 * (w / 8) ** b if method == "rejection" else mup_at_widest
                rows.append({"width": w, "method": method, "layer": layer, "networks": 1000,
                             "acceptance": 0.01, "fit_share": 1.0, "gain": gain, "gain_lo": gain - 1e-3,
                             "gain_hi": gain + 1e-3, "energy_p": 0.5})
    return pd.DataFrame(rows)


def test_posterior_claims_support_and_contradict():
    good = _gains({"layer 1": -1.0, "layer 2": -1.0, "readout": 0.0}, mup_at_widest=0.05)
    words = [c["verdict"] for c in posterior.posterior_claims(good, posterior.fit_exponents(good))]
    assert words[:2] == [v.SUPPORTED, v.SUPPORTED] and words[3] == v.SUPPORTED
    bad = _gains({"layer 1": 0.5, "layer 2": 0.5, "readout": -1.0}, mup_at_widest=-0.05)
    words = [c["verdict"] for c in posterior.posterior_claims(bad, posterior.fit_exponents(bad))]
    assert words[:2] == [v.CONTRADICTED, v.CONTRADICTED] and words[3] == v.CONTRADICTED


def test_langevin_check_against_rejection_can_say_no():
    def readouts(langevin_error: float) -> pd.DataFrame:
        return pd.DataFrame([{"width": w, "method": m, "layer": posterior.READOUT, "networks": 400,
                              "test_error": e, "test_error_sd": 0.05}
                             for w in (8, 32)
                             for m, e in (("rejection", 0.30), ("langevin", langevin_error))])
    assert posterior.langevin_check(readouts(0.301))[0]["verdict"] == v.SUPPORTED
    assert posterior.langevin_check(readouts(0.40))[0]["verdict"] == v.CONTRADICTED
    assert posterior.langevin_check(readouts(0.40)[lambda f: f["method"] == "rejection"]) == []


def test_gibbs_experiment_resumes_and_its_verdict_can_say_no(tmp_path):
    s = gibbs.GibbsSettings(draws=50_000, chains=500, steps=50, step_sizes=(0.1, 1.0), sgd_lrs=(0.1,),
                            sgd_batches=(6,), sgd_epochs=50, temperatures=(0.1, 1.0))
    with Store(tmp_path / "g.duckdb") as st:
        first = gibbs.run_gibbs(st, s, tmp_path / "out", quiet=True)
        again = gibbs.run_gibbs(st, s, tmp_path / "out", quiet=True)
    pd.testing.assert_frame_equal(first["langevin"], again["langevin"])
    refs = first["references"]
    probabilities = refs[[c for c in refs.columns if c.startswith("p")]].to_numpy()
    assert np.allclose(probabilities.sum(1), 1.0)
    off = pd.DataFrame([{"lr": 0.1, "tv": 0.2, "tv_upper": 0.25, "p_value": 1e-6}])
    assert gibbs.gibbs_claims(off, first["tempering"], refs, s)[0]["verdict"] == v.CONTRADICTED
    near = pd.DataFrame([{"lr": 0.1, "tv": 0.01, "tv_upper": 0.03, "p_value": 0.5}])
    assert gibbs.gibbs_claims(near, first["tempering"], refs, s)[0]["verdict"] == v.SUPPORTED


def test_bound_claims_can_come_out_against_the_bound():
    rows = [{"task": "t", "m": m, "corruption": c, "log_p_s": -5.0, "bound": bnd, "error": err,
             "error_sd": 0.01, "networks": 8, "converged": 8}
            for m, c, bnd, err in ((10, 0.0, 0.9, 0.1), (20, 0.0, 0.8, 0.2), (40, 0.0, 0.7, 0.3),
                                   (40, 0.5, 0.6, 0.4), (40, 1.0, 0.55, 0.5))]
    words = [c["verdict"] for c in bound.bound_claims(pd.DataFrame(rows))]
    # holds, but anti-tracks (rho = -1) and is above chance at the largest clean m
    assert words == [v.SUPPORTED, v.CONTRADICTED, v.CONTRADICTED]
    rows[0]["error"] = 0.95  # an error far above its bound
    assert bound.bound_claims(pd.DataFrame(rows))[0]["verdict"] == v.CONTRADICTED


def test_ep_against_rejection_can_say_no():
    def cells(log_p_ep: float, fitted: int = 400) -> pd.DataFrame:
        p = fitted / 100_000
        return pd.DataFrame([{"m": 16, "corruption": 0.0, "log_p_s": log_p_ep, "rejection_draws": 100_000,
                              "fitted": fitted, "log_p_rejection": math.log(p),
                              "log_p_rejection_lo": math.log(p * 0.9),
                              "log_p_rejection_hi": math.log(p * 1.1)}])
    assert bound.ep_against_rejection(cells(math.log(0.004)))[0]["verdict"] == v.SUPPORTED
    assert bound.ep_against_rejection(cells(math.log(0.004) - 5))[0]["verdict"] == v.CONTRADICTED
    assert bound.ep_against_rejection(cells(math.log(0.004), fitted=3))[0]["verdict"] == v.INCONCLUSIVE


def test_bound_cell_measures_what_it_says():
    s = bound.BoundSettings(networks=3, max_epochs=200, rejection_draws=20_000)
    cell = bound.bound_cell("bool7-0011", 16, 0.0, s).iloc[0]
    assert 0 < cell["fitted"] <= 20_000
    assert cell["log_p_rejection"] == pytest.approx(math.log(cell["fitted"] / 20_000))
    assert cell["log_p_rejection_lo"] < cell["log_p_rejection"] < cell["log_p_rejection_hi"] < 0
    assert cell["log_p_s"] < 0 and 0 < cell["bound"] < 1
    assert cell["bound"] == pytest.approx(bound.pac_bayes_bound(cell["log_p_s"], 16))
    assert 0 <= cell["error"] <= 1 and cell["converged"] == 3
    assert math.isfinite(cell["error_sd"])


def test_last_layer_sampling_keeps_only_readouts_that_fit():
    s = routes.RoutesSettings(samples=300, readouts=64)
    task = routes.load_task(s)
    nets = sample_ensemble(routes.spec_for(3), 300, torch.Generator().manual_seed(0))
    codes, share = routes.last_layer_samples(nets, task, 64, torch.Generator().manual_seed(1))
    assert ((codes == -1) == (share == 0)).all() and (share > 0).any() and (share == 0).any()
    assert codes.max() < 2**s.test


def test_readouts_drawn_chunk_by_chunk_are_those_of_one_draw(monkeypatch):
    """last-sample draws the readouts of READOUT_CHUNK networks at a time from one generator, so that the
    paper's 40 000 x 1024 readouts of width 1024 (168 GB at once) fit; the chunks (a last one shorter)
    give the functions and shares one draw of every readout gives, so the stored numbers stand."""
    # 7 readouts of width 5: 42 numbers a network and 12 600 in all, so neither a network nor the whole
    # draw is a multiple of 16 numbers (torch redraws the last 16 of such a call); chunks of 16 networks are
    s = routes.RoutesSettings(samples=300, readouts=7)
    task = routes.load_task(s)
    nets = sample_ensemble(routes.spec_for(5), 300, torch.Generator().manual_seed(0))

    def draw(chunk: int) -> tuple[np.ndarray, np.ndarray]:
        monkeypatch.setattr(routes, "READOUT_CHUNK", chunk)
        return routes.last_layer_samples(nets, task, 7, torch.Generator().manual_seed(1))

    used = routes.READOUT_CHUNK
    assert used % 16 == 0
    whole = draw(10**9)
    for chunk in (16, used):
        chunked = draw(chunk)
        assert np.array_equal(whole[0], chunked[0]) and np.array_equal(whole[1], chunked[1])
    assert len(set(whole[0].tolist())) > 3  # many functions, not one repeated


def test_routes_checks_one_chunk_of_readouts_not_every_network_at_once(tmp_path, monkeypatch):
    """The before-run check counts READOUT_CHUNK networks' readouts: 50 000 networks with 8192 readouts
    of width 128 (232 GB at once, 1.2 GB a chunk) get to the run, and a chunk too big for any machine
    is refused before one is written."""

    class RunStartedError(Exception):
        pass

    with Store(tmp_path / "s.duckdb") as st:
        monkeypatch.setattr(st, "start_run", lambda *a, **k: (_ for _ in ()).throw(RunStartedError()))
        with pytest.raises(RunStartedError):
            routes.run_routes(st, routes.RoutesSettings(widths=(128,), samples=50_000, readouts=8192),
                              tmp_path / "out", quiet=True)
        monkeypatch.undo()
        with pytest.raises(NNBiasError, match=r"256 networks of .* with 1000000000 readouts each"):
            routes.run_routes(st, routes.RoutesSettings(widths=(2,), readouts=10**9), tmp_path / "out",
                              quiet=True)
        assert st.runs().empty


def test_routes_resume_and_the_same_route_twice_is_the_same_posterior(tmp_path, monkeypatch):
    s = routes.RoutesSettings(widths=(2, 16), samples=400, readouts=64, max_epochs=100)
    cell = routes.route_cell
    with Store(tmp_path / "r.duckdb") as st:
        first = routes.run_routes(st, s, tmp_path / "out", quiet=True)
        monkeypatch.setattr(routes, "route_cell", lambda *a, **k: (_ for _ in ()).throw(AssertionError()))
        again = routes.run_routes(st, s, tmp_path / "out", quiet=True)
    pd.testing.assert_frame_equal(first["pairs"], again["pairs"])
    assert set(first["pairs"]["pair"]) == {" vs ".join(p) for p in routes.PAIRS}
    # the null: one route against an independent rerun of itself (another seed) is not rejected
    task = routes.load_task(s)
    a = cell(task, 16, "all-sample", s)
    b = cell(task, 16, "all-sample", routes.RoutesSettings(**{**s.to_dict(), "seed": 1}))
    same = pd.concat([a, b.assign(route="last-sample")])
    cmp = routes.compare_routes(same)
    assert cmp.iloc[0]["p_value"] > 0.01


def test_routes_claim_comes_out_against_a_visible_difference():
    cells = pd.DataFrame([{"width": 4, "route": "last-sample", "acceptance_cv": 0.5}])
    pairs = pd.DataFrame([{"width": 4, "pair": "last-sample vs all-sample", "samples_a": 5000,
                           "samples_b": 5000, "tv": 0.3, "tv_upper": 0.33, "p_value": 0.002}])
    assert routes.routes_claims(cells, pairs)[0]["verdict"] == v.CONTRADICTED
    pairs.loc[0, ["tv", "tv_upper", "p_value"]] = [0.02, 0.05, 0.6]
    assert routes.routes_claims(cells, pairs)[0]["verdict"] == v.SUPPORTED


def test_prior_spectrum_sits_at_the_marchenko_pastur_edge_and_the_kernel_floor_is_small():
    s = posterior.PosteriorSettings()
    task = posterior.load_task(s.task, 0)
    spec = posterior.cell_spec(task, 256, "rejection", s)
    prior = sample_ensemble(spec, 40, torch.Generator().manual_seed(0))
    # 256 x 256: the top eigenvalue sits within a few percent of the edge 4 (fluctuations ~ n^-2/3); the
    # 256 x 7 first layer is far from the asymptotic regime in p = 7 and sits below its edge
    for layer, q, tolerance in ((0, 7 / 256, 0.15), (1, 1.0, 0.05)):
        edge = posterior.mp_edge(prior, layer)
        assert edge == pytest.approx((1 + math.sqrt(q)) ** 2)
        assert abs(float(posterior.top_eigenvalue(prior.weights[layer]).mean()) / edge - 1) < tolerance
    cell = posterior.posterior_cell(task, 16, "rejection", posterior.PosteriorSettings(
        samples=50, prior_samples=200, permutations=10))
    assert cell["kernel_distance"].notna().all() and (cell["kernel_distance_floor"] >= 0).all()
    assert cell[["cka_with_prior", "cka_prior_pairs"]].apply(lambda c: c.between(0, 1)).all().all()
    assert cell.loc[cell["layer"] == "readout", "top_eig"].isna().all()
