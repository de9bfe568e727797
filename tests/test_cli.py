import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch


def nnbias(*args, cwd=None):
    env = {**os.environ, "NNBIAS_STORE": str(Path(cwd or ".") / "store.duckdb")}
    return subprocess.run([sys.executable, "-m", "nnbias", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


def test_volumes_json():
    r = nnbias("volumes", "--inputs", "2", "--prior", "uniform", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    by = {f["truth_table"]: f for f in doc["functions"]}
    assert by["0001"]["exact"] == "1/48" and by["0001"]["probability"] == pytest.approx(1 / 48)
    assert by["0110"]["exact"] == "0"
    assert "polytope" in doc["method"]
    g = json.loads(nnbias("volumes", "-n", "3", "--prior", "gaussian", "--json").stdout)
    assert g["nonzero"] == 104 and "orthant" in g["method"]


def test_pfmap_json_and_runs(tmp_path):
    r = nnbias("pfmap", "-n", "5", "--hidden", "16", "--samples", "2e4", "--theorem-samples",
               "2e4", "--exact-samples", "2e4", "--out", str(tmp_path / "figs"), "--json",
               cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["samples"] == 20000 and len(doc["top"]) == 20
    assert {c["verdict"] for c in doc["claims"]}
    assert (tmp_path / "figs" / "p_vs_lz.png").stat().st_size > 1000
    runs = json.loads(nnbias("runs", "--json", cwd=tmp_path).stdout)
    assert len(runs) == 4 and all(run["status"] == "done" for run in runs)
    # the claim table is read back from the store, as the run judged it
    table = nnbias("claims", "--run", doc["run_id"], "--markdown", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert table.stdout.startswith("| claim | measured | verdict | rule |")
    assert table.stdout.count("\n") == len(doc["claims"]) + 2
    stored = json.loads(nnbias("claims", "--run", doc["run_id"], "--json", cwd=tmp_path).stdout)
    assert [c["verdict"] for c in stored["claims"]] == [c["verdict"] for c in doc["claims"]]
    none = nnbias("claims", cwd=tmp_path)
    assert none.returncode == 2 and "no finished reproduce run" in none.stderr
    not_reproduce = nnbias("report", "--run", doc["run_id"], "--out", str(tmp_path / "rep"), cwd=tmp_path)
    assert not_reproduce.returncode == 2 and not_reproduce.stderr.strip().splitlines() == [
        f"error: run={doc['run_id']!r} has no stored report (only reproduce runs have one)"]

    # against its own export every row is identical; against an edited one the edits are found
    export = tmp_path / "claims.json"
    export.write_text(nnbias("claims", "--run", doc["run_id"], "--json", cwd=tmp_path).stdout)
    same = json.loads(nnbias("claims", "--run", doc["run_id"], "--against", str(export), "--json",
                             cwd=tmp_path).stdout)
    assert {r["change"] for r in same["rows"]} == {"same"} and len(same["rows"]) == len(doc["claims"])
    edited = json.loads(export.read_text())
    first = edited["claims"][0]
    first["verdict"] = "contradicted" if first["verdict"] != "contradicted" else "supported"
    edited["claims"][1]["measured"] += " (elsewhere)"
    dropped = edited["claims"].pop()
    export.write_text(json.dumps(edited))
    r = nnbias("claims", "--run", doc["run_id"], "--against", str(export), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    n = len(doc["claims"])
    assert (f"{n - 3} of {n - 1} claims in both tables identical, 1 measured differently with the same "
            "verdict, 1 with another verdict or rule; 1 only here, 0 only there") in r.stdout
    assert f"- [only here] {dropped['claim']}" in r.stdout and "(elsewhere) =>" in r.stdout
    refused = nnbias("claims", "--run", doc["run_id"], "--against", str(export), "--markdown", cwd=tmp_path)
    assert refused.returncode == 2 and "--markdown does not apply with --against" in refused.stderr
    (tmp_path / "bad.json").write_text('{"claims": [{"claim": "x"}]}')
    bad = nnbias("claims", "--run", doc["run_id"], "--against", str(tmp_path / "bad.json"), cwd=tmp_path)
    assert bad.returncode == 2 and "holds no claim table" in bad.stderr and len(bad.stderr.splitlines()) == 1


def test_a_claim_stated_twice_is_matched_in_order():
    from nnbias.report.claims import compare_claims

    row = {"claim": "c", "measured": "1", "verdict": "supported", "rule": "r"}
    here = [row, {**row, "measured": "2"}, {**row, "claim": "d"}]
    there = [row, {**row, "measured": "3"}, {**row, "claim": "e"}]
    changes = [r["change"] for r in compare_claims(here, there)]
    assert changes == ["same", "measured", "only here", "only there"]
    assert [r["change"] for r in compare_claims(here, [{**row, "rule": "another"}])][0] == "verdict"


def test_theorem_on_pm1_tests_its_own_statement(tmp_path):
    """On {-1,+1}^n Thm 4.1 does not apply (f(-x) = -f(x)): the row tests T = 2^(n-1), not uniformity."""
    r = nnbias("pfmap", "-n", "4", "--hidden", "8", "--encoding", "pm1", "--samples", "2e4",
               "--theorem-samples", "2e4", "--exact-samples", "2e4", "--out", str(tmp_path / "f"), "--json",
               cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    row = next(c for c in json.loads(r.stdout)["claims"] if c["claim"].startswith("A3 on {-1,+1}^n"))
    assert row["verdict"] == "supported" and "1.000000" in row["measured"]


@pytest.mark.parametrize("args, needle", [
    (["pfmap", "-n", "11"], "n (number of Boolean inputs)=11"),
    (["pfmap", "--hidden", "40,0"], "width=0"),
    (["pfmap", "--activation", "swish"], "activation='swish'"),
    (["pfmap", "--prior", "cauchy"], "prior='cauchy'"),
    (["pfmap", "--hidden", "none", "--activation", "tanh"], "--activation tanh does not apply to a"),
    (["pfmap", "--samples", "-5"], "samples=-5"),
    (["pfmap", "--samples", "2.5"], "samples=2.5"),
    (["pfmap", "--samples", "many"], "samples='many'"),
    (["pfmap", "--store", "/proc/nope/x.duckdb"], "not writable"),
    (["pfmap", "--store", "NOTDB"], "cannot be opened as a DuckDB database"),
    (["volumes", "--inputs", "4"], "inputs=4"),
    (["runs", "--store", "missing.duckdb"], "does not exist"),
    (["claims", "--store", "missing.duckdb"], "does not exist"),
    (["claims", "--markdown"], "--markdown and --json are two formats of the same table"),  # --json added
    (["pfmap", "--device", "tpu"], "device='tpu'"),
    *[([cmd, "--device", "tpu"], "device='tpu'") for cmd in (
        "kernels", "sgd-vs-bayes", "features", "gap", "transfer", "inside", "posterior", "gibbs", "bound",
        "routes", "architectures", "reproduce")],
    *([([cmd, "--device", "cuda"], "no CUDA GPU is visible") for cmd in ("gap", "bound")]
      if not torch.cuda.is_available() else []),
    (["pfmap", "--seed", "9223372036854775808"], "seed=9223372036854775808"),
    (["pfmap", "--samples", "1e30"], "<= 1000000000000"),
    (["pfmap", "--workers", "0"], "workers=0"),
    (["pfmap", "--scheduler", "tcp://127.0.0.1:1"], "applies to the dask executor only"),
    (["pfmap", "--executor", "dask", "--scheduler", "not a url"], "cannot be reached"),
    (["pfmap", "--executor", "dask", "--scheduler", "tcp://h:1", "--workers", "2"], "workers=2 does not"),
    (["volumes", "--prior", "uniform", "--sigma-b", "5"], "--sigma-b does not apply"),
    (["features", "--widths", "abc"], "widths='abc'"),
    (["kernels", "--tasks", "foo"], "task='foo'"),
    (["pfmap", "--out", "/proc/nope/figs"], "cannot be written"),
    (["gap", "--out", "AFILE/figs"], "Not a directory"),
    (["pfmap", "--sigma-w", "1e39"], "float32"),
    (["sgd-vs-bayes", "--tasks", "bool5-0011", "--methods", "sgd-b1000"], "batch size 1000 is larger"),
    (["kernel", "--x", "X.npy", "--out", "K.txt"], "out='K.txt'"),
    (["kernel", "--x", "X.npy", "--out", "."], "out='.'"),
    (["kernel", "--x", "EMPTY.npy", "--out", "K.npy"], "N, d >= 1"),
    (["kernel", "--x", "COMPLEX.npy", "--out", "K.npy"], "expected a real"),
    (["kernel", "--x", "AFILE", "--out", "K.npy"], "is not a .npy array"),
    (["kernel", "--x", "EMPTYFILE", "--out", "K.npy"], "is not a .npy array"),
    (["kernel", "--x", "X.npy", "--out", "K.npy", "--width", "10"], "--width applies to the standard"),
    (["kernel", "--x", "X.npy", "--out", "K.npy", "--sigma-w", "1e30", "--depth", "2", "--dtype", "float32"],
     "overflows float32 at sigma_w=1e+30"),
    (["kernel", "--x", "X.npy", "--out", "K.npy", "--sigma-w", "1e200"], "overflows float64"),
    (["gap", "--curve-sizes", "50,1e7"], "curve size=10000000 is not allowed: its 10000000 x 10000000 Gram"),
    (["transfer", "--sizes", "16,64,1e8"], "n_B=100000000 is not allowed"),
    (["posterior", "--widths", "8,x"], "widths='8,x'"),
    (["posterior", "--methods", "mcmc"], "method='mcmc'"),
    (["posterior", "--temperature", "0.1"], "applies to the langevin method only"),
    (["posterior", "--task", "parity"], "task='parity'"),
    (["posterior", "--samples", "0"], "samples=0"),
    (["gibbs", "--step-sizes", "0.1,abc"], "step_sizes='0.1,abc'"),
    (["gibbs", "--step-sizes", "-1"], "step_sizes=-1.0"),
    (["gibbs", "--chains", "0"], "chains=0"),
    (["routes", "--widths", "0"], "width=0"),
    (["routes", "--readouts", "0"], "readouts=0"),
    (["bound", "--corruptions", "2"], "corruption=2.0"),
    (["bound", "--tasks", "cifar"], "task='cifar'"),
    (["architectures", "--tasks", "cifar"], "task='cifar'"),
    (["routes", "--workers", "2"], "applies to --executor dask for `routes`"),
    (["architectures", "--cnn-widths", "0"], "width=0"),
    (["kernel", "--x", "X.npy", "--out", "K.npy", "--layers", "conv1d:4:3:valid,relu,flatten,dense:1",
      "--input-shape", "1,2"], "filter 3 is larger than the input (2)"),
    (["kernel", "--x", "X.npy", "--out", "K.npy", "--layers", "relu,flatten,dense:1", "--input-shape", "1,3"],
     "do not match input_shape=(1, 3)"),
    (["kernel", "--x", "X.npy", "--out", "K.npy", "--layers", "dense:1", "--depth", "2"],
     "--depth describes an MLP"),
    (["kernel", "--x", "X.npy", "--out", "K.npy", "--memory", "1e9"], "--memory applies to --layers only"),
    (["bench", "kernels", "--neural-tangents", "/no/such/python"], "cannot be run (No such file"),
    (["bench", "kernels", "--neural-tangents", sys.executable], "No module named"),
    (["show", "no-such-run"], "does not exist; run an experiment first"),
    # each chunk is a row of the store and an entry of the run's to-do list: 10^12 of them fit nowhere
    (["pfmap", "--samples", "1e12", "--chunk-size", "1"],
     "samples=1000000000000 in chunks of 1 is 1000000000000 chunks, more than the 10,000,000"),
    (["sgd-vs-bayes", "--runs", "1e12"], "runs=1000000000000 in chunks of 250 is 4000000000 chunks"),
    (["export", "no-such-run", "--csv", "out"], "does not exist; run an experiment first"),
])
def test_bad_input_is_one_line_and_nonzero(tmp_path, args, needle, monkeypatch, capsys):
    """Each case through ``nnbias.cli.main``, as the console script runs it, in this process: they fail
    while the options are checked, so a fresh interpreter per case (seconds of imports) adds nothing
    but time; the other tests here run the command line as a subprocess."""
    import numpy as np

    from nnbias import cli

    (tmp_path / "NOTDB").write_text("not a database " * 50)
    for name, array in (("X", np.ones((3, 2))), ("EMPTY", np.ones((0, 3))),
                        ("COMPLEX", np.ones((3, 2)) * 1j)):
        np.save(tmp_path / f"{name}.npy", array)
    (tmp_path / "AFILE").write_text("a file, not a folder")
    (tmp_path / "EMPTYFILE").write_text("")
    files = {"NOTDB", "X.npy", "EMPTY.npy", "COMPLEX.npy", "AFILE", "EMPTYFILE"}
    args = [str(tmp_path / a) if a.split("/")[0] in files else a for a in args]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NNBIAS_STORE", str(tmp_path / "store.duckdb"))
    monkeypatch.setattr(sys, "argv", ["nnbias", *args, "--quiet" if args[0] == "pfmap" else "--json"])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    err = capsys.readouterr().err
    assert exited.value.code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], err
    assert not (tmp_path / "store.duckdb").exists()  # nothing written half-way


@pytest.mark.parametrize("args, needle", [
    # the buffer of the networks is asked for before it is allocated (int64 overflow in torch else)
    (["gibbs", "--draws", "1e40"], "1e+40 networks of 5-4-1"),
    (["inside", "--networks", "100000000000", "--widths", "64"], "100000000000 networks of 16-64-1"),
    # the widest networks of a sweep, before a run is written (not after the cells before them)
    (["kernels", "--widths", "64,10000000"], "networks of 64-10000000-1 relu"),
    (["features", "--widths", "64,3000000", "--depth", "1"],
     "trained by sgd on 256 inputs (the draws, their training state"),
    (["transfer", "--width", "3000000"], "networks of 16-3000000-1 relu"),
    (["architectures", "--tasks", "digits-10", "--cnn-widths", "4,1000000"],
     "3 networks of 1x8x8 -> conv2d:1000000:3:same:2"),
    (["posterior", "--widths", "8,3000000"], "400 networks of 7-3000000-3000000-1 relu gaussian(sw=1, sb=1) "
                                             "{0,1} in one posterior cell"),
    (["posterior", "--widths", "8,3000000", "--methods", "rejection"],
     "400 networks of 7-3000000-3000000-1 relu gaussian(sw=1, sb=1) {0,1} in one posterior cell"),
    (["bound", "--tasks", "bool7-0011", "--networks", "100000000000"], "trained by adam on 64 inputs"),
    (["gibbs", "--chains", "100000000000"], "100000000000 networks of 5-4-1 relu"),
    (["routes", "--readouts", str(10**12), "--widths", "2", "--samples", "10"],
     "10 networks of 7-2-1 relu gaussian(sw=1, sb=1) {0,1} with 1000000000000 readouts each"),
    (["pfmap", "--hidden", "30000000", "--samples", "1000"], "256 networks of 7-30000000-1 relu"),
    (["bench", "kernels", "--n", "1e6"], "n=1000000 is not allowed: its 1000000 x 1000000 Gram matrix"),
])
def test_a_count_beyond_memory_is_one_line_and_leaves_no_run(tmp_path, args, needle, monkeypatch, capsys):
    """Experiments whose widest networks cannot be held fail before a run is written; the other counts only
    once it has started (they are fine until memory is asked for). Either way the error is one line
    and no run, with nothing in it to resume, is left `running` in the store."""
    from nnbias import cli
    from nnbias.store import Store

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NNBIAS_STORE", str(tmp_path / "store.duckdb"))
    quiet = ["--quiet"] if args[0] != "bench" else []
    monkeypatch.setattr(sys, "argv", ["nnbias", *args, "--json", *quiet])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    lines = capsys.readouterr().err.strip().splitlines()
    assert exited.value.code == 2 and len(lines) == 1 and needle in lines[0], lines
    if (tmp_path / "store.duckdb").exists():  # opened, perhaps a run started, then forgotten
        with Store(tmp_path / "store.duckdb", read_only=True) as st:
            assert st.runs().empty and st.table("run_sessions", "any").empty


def test_an_allocation_the_checks_let_through_is_one_out_of_memory_line(tmp_path):
    """Under an address-space limit (``ulimit -v``; the machine still reports its free memory, so the
    checks pass) the allocator refuses the sampler's first batch of 256 networks 7-300000-1 (2.4 GB):
    one line, exit 2, and no run left in the store."""
    import resource

    from nnbias.store import Store

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))

    args = ["pfmap", "--hidden", "300000", "--samples", "1000", "--store", str(tmp_path / "store.duckdb"),
            "--out", str(tmp_path / "out"), "--quiet"]
    done = subprocess.run([sys.executable, "-m", "nnbias", *args], capture_output=True, text=True,
                          preexec_fn=limit, timeout=300)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith("error: out of memory: ") and "can't allocate memory" in lines[0]
    with Store(tmp_path / "store.duckdb", read_only=True) as st:
        assert st.runs().empty


def test_a_busy_store_is_read_from_a_snapshot_and_refused_to_a_second_writer(tmp_path):
    from nnbias.store import Store

    with Store(tmp_path / "store.duckdb") as st:  # this process holds the write lock, as a running run does
        run_id = st.start_run("demo", {"a": 1}, 0)
        st.append_rows("demo_cells", run_id, __import__("pandas").DataFrame({"x": [1, 2, 3]}))
        st.con.execute("CHECKPOINT")
        st.append_rows("demo_cells", run_id, __import__("pandas").DataFrame({"x": [4]}))  # in the WAL only
        listed = nnbias("runs", "--json", cwd=tmp_path)
        shown = nnbias("show", run_id, "--json", cwd=tmp_path)
        written = nnbias("pfmap", "-n", "2", "--hidden", "none", "--samples", "100", "--quiet",
                         "--out", str(tmp_path / "figs"), cwd=tmp_path)
    assert listed.returncode == 0 and "reading a snapshot" in listed.stderr
    assert [r["run_id"] for r in json.loads(listed.stdout)] == [run_id]
    assert shown.returncode == 0 and json.loads(shown.stdout)["tables"]["demo_cells"] == 4  # WAL included
    assert not list(Path(os.environ.get("TMPDIR", "/tmp")).glob("nnbias-snapshot-*/store.duckdb"))
    assert written.returncode == 2 and "in use by another nnbias process" in written.stderr


def test_show_and_export_a_run(tmp_path):
    import duckdb

    r = nnbias("pfmap", "-n", "3", "--hidden", "4", "--samples", "2000", "--quiet", "--json",
               "--out", str(tmp_path / "figs"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    run_id = json.loads(r.stdout)["run_id"]
    shown = json.loads(nnbias("show", run_id, "--json", cwd=tmp_path).stdout)
    assert shown["experiment"] == "pfmap" and shown["status"] == "done" and shown["config"]["samples"] == 2000
    assert shown["tables"]["function_counts"] > 0 and shown["claims"]
    for fmt in ("parquet", "csv"):
        out = json.loads(nnbias("export", run_id, f"--{fmt}", str(tmp_path / fmt), "--json",
                                cwd=tmp_path).stdout)
        assert {Path(f).name for f in out["files"]} >= {f"function_counts.{fmt}", f"runs.{fmt}"}
    # a second reader (DuckDB on the Parquet files) sees the same counts as the store
    counts = tmp_path / "parquet" / "function_counts.parquet"
    assert duckdb.sql(f"SELECT sum(count) FROM '{counts}'").fetchall()[0][0] == 2000
    polars = pytest.importorskip("polars")
    assert polars.read_parquet(counts)["count"].sum() == 2000
    assert polars.read_csv(tmp_path / "csv" / "function_counts.csv")["count"].sum() == 2000
    bad = nnbias("export", run_id, cwd=tmp_path)
    assert bad.returncode == 2 and "exactly one of --parquet" in bad.stderr
    assert nnbias("show", "nope", cwd=tmp_path).returncode == 2


def test_kernel_command_writes_the_analytic_kernel(tmp_path):
    import numpy as np
    import torch

    from nnbias.engines.kernels import KernelFn
    from nnbias.spec import NetworkSpec

    x = np.random.default_rng(0).normal(size=(7, 3))
    np.save(tmp_path / "x.npy", x)
    r = nnbias("kernel", "--x", str(tmp_path / "x.npy"), "--depth", "2", "--activation", "erf",
               "--sigma-w", "1.5", "--sigma-b", "0.2", "--kind", "ntk", "--out", str(tmp_path / "k.npy"),
               "--json")
    assert r.returncode == 0, r.stderr
    spec = NetworkSpec(3, (1024, 1024), "erf", sigma_w=1.5, sigma_b=0.2, parametrization="ntk")
    assert np.allclose(np.load(tmp_path / "k.npy"), KernelFn(spec)(torch.from_numpy(x), kind="ntk").numpy())
    bad = nnbias("kernel", "--x", str(tmp_path / "nope.npy"), "--out", str(tmp_path / "k.npy"))
    assert bad.returncode == 2 and "does not exist" in bad.stderr
    step = nnbias("kernel", "--x", str(tmp_path / "x.npy"), "--activation", "step", "--kind", "ntk",
                  "--out", str(tmp_path / "k.npy"))
    assert step.returncode == 2 and "does not exist" in step.stderr


def test_kernel_command_takes_a_layer_description(tmp_path):
    """--layers/--input-shape: a pooled CNN's CNTK, the same as the Python API's (in a tiny memory budget)."""
    import numpy as np
    import torch

    from nnbias.engines.serial import SerialKernelFn
    from nnbias.layers import LayeredSpec

    x = np.random.default_rng(0).normal(size=(6, 2 * 16))
    np.save(tmp_path / "x.npy", x)
    layers = "conv2d:8:3:same,relu,conv2d:8:3:circular,relu,gap,dense:1"
    r = nnbias("kernel", "--x", str(tmp_path / "x.npy"), "--layers", layers, "--input-shape", "2,4,4",
               "--sigma-w", "1.5", "--sigma-b", "0.2", "--kind", "ntk", "--memory", "1e5",
               "--out", str(tmp_path / "k.npy"), "--json")
    assert r.returncode == 0, r.stderr
    spec = LayeredSpec((2, 4, 4), layers, 1.5, 0.2)
    expected = SerialKernelFn(spec)(torch.from_numpy(x), kind="ntk").numpy()
    assert np.allclose(np.load(tmp_path / "k.npy"), expected, rtol=1e-12, atol=0)


def test_sgd_vs_bayes_json_and_bad_input(tmp_path):
    r = nnbias("sgd-vs-bayes", "--tasks", "bool5-0011", "--methods", "sgd-b8", "--runs", "200",
               "--rejection-samples", "1e5", "--out", str(tmp_path / "figs"), "--json", "--quiet",
               cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    methods = [row["method"] for row in doc["summary"]]
    assert methods == ["sgd-b8", "rejection"] and doc["summary"][0]["samples"] == 200
    assert Path(doc["figures"]["bool5-0011"]).exists()
    for args, message in ((["--methods", "sgd-b64"], "batch size 64 is larger than |S| = 16"),
                          (["--methods", "rmsprop-b8"], "method='rmsprop-b8' is not allowed"),
                          (["--lr", "-0.1"], "lr=-0.1"),
                          (["--tasks", "mnist"], "task='mnist' is not allowed"),
                          (["--runs", "ten"], "runs='ten' is not allowed"),
                          (["--scale", "huge"], "scale='huge' is not allowed")):
        bad = nnbias("sgd-vs-bayes", "--tasks", "bool5-0011", "--runs", "10", *args, cwd=tmp_path)
        assert bad.returncode == 2 and message in bad.stderr and len(bad.stderr.splitlines()) == 1, bad.stderr


def test_features_cli(tmp_path):
    r = nnbias("features", "--parametrizations", "ntk,mup", "--tasks", "single-index", "--widths", "32,64",
               "--networks", "2", "--steps", "5", "--json", "--out", str(tmp_path / "f"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert {e["parametrization"] for e in doc["exponents"]} == {"ntk", "mup"}
    bad = nnbias("features", "--parametrizations", "sp", cwd=tmp_path)
    assert bad.returncode == 2 and "parametrization='sp' is not allowed" in bad.stderr
    bad = nnbias("features", "--widths", "0,64", cwd=tmp_path)
    assert bad.returncode == 2 and "width=0" in bad.stderr


def test_gap_cli(tmp_path):
    r = nnbias("gap", "--tasks", "linear,parity-k2", "--widths", "16,32", "--networks", "2", "--steps", "20",
               "--curve-sizes", "30,60", "--json", "--out", str(tmp_path / "g"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [row["task"] for row in doc["summary"]] == ["linear", "parity-k2"]
    assert all(Path(f).exists() for f in doc["figures"].values())
    helptext = nnbias("gap", "--help", cwd=tmp_path).stdout
    assert "[small: 2, paper: 5]" in " ".join(helptext.split())  # defaults in brackets survive
    for args, message in ((["--tasks", "mnist"], "task='mnist' is not allowed"),
                          (["--widths", "0,64"], "width=0"),
                          (["--curve-sizes", "ten"], "curve size='ten' is not allowed"),
                          (["--scale", "huge"], "scale='huge' is not allowed")):
        bad = nnbias("gap", *args, cwd=tmp_path)
        assert bad.returncode == 2 and message in bad.stderr and len(bad.stderr.splitlines()) == 1, bad.stderr
