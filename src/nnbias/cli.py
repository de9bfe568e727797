"""The ``nnbias`` command line: a thin wrapper over the Python API.

Every command takes ``--json`` to print its result as one JSON document on
stdout (progress and logs go to stderr). Bad input is one line on stderr
naming the value and what is allowed, and exit status 2.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from nnbias.errors import NNBiasError, check_choice, check_device, check_int, check_positive, check_seed

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Put theories of neural-network generalisation to empirical test.")
# no rich markup: it would swallow the "[small: ..., paper: ...]" defaults in option help as tags
bench_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                        help="Benchmarks (figures beside same-run baselines).")
app.add_typer(bench_app, name="bench")

JSON = typer.Option(False, "--json", help="Print the result as one JSON document on stdout.")
SCALE = typer.Option("small", help="small or paper.")
QUIET = typer.Option(False, "--quiet", help="No progress bar.")
EXECUTOR = typer.Option("threads", help="threads (this process) or dask.")
WORKERS = typer.Option(None, help="Threads or local Dask worker processes [default: all cores].")
SCHEDULER = typer.Option(None, help="Address of a running Dask scheduler (with --executor dask).")
DEVICE = typer.Option("cpu", help="cpu or cuda: where networks train and kernels are computed "
                                  "(initial networks come from the CPU's generator, the same on every "
                                  "device; minibatch orders, Langevin noise and rejection sampling's "
                                  "draws from the device's).")
STORE = typer.Option(None, "--store", help="DuckDB results file [default: $NNBIAS_STORE or "
                     "./nnbias-results/nnbias.duckdb].")


def parse_count(name: str, text: str, minimum: int = 1) -> int:
    """'1000000', '1e6' or '10**6' style counts; anything else is one clear error."""
    try:
        value: Any = float(text) if any(c in text for c in ".eE") else int(text)
    except ValueError:
        raise NNBiasError(f"{name}={text!r} is not allowed; expected a whole number "
                          f">= {minimum} (e.g. 1000000 or 1e6)") from None
    return check_int(name, value, minimum=minimum)


def parse_names(text: str | None) -> tuple[str, ...] | None:
    """'a, b' -> ('a', 'b'); None (option not given) stays None, so the scale's default applies."""
    return None if text is None else tuple(t.strip() for t in text.split(","))


def parse_counts(name: str, text: str | None) -> tuple[int, ...] | None:
    """'16,64,256' -> (16, 64, 256), each a count as ``parse_count`` reads it; None stays None."""
    return None if text is None else tuple(parse_count(name, n) for n in text.split(","))


def parse_floats(name: str, text: str | None) -> tuple[float, ...] | None:
    """Comma-separated numbers, or None when the option was not given."""
    if text is None:
        return None
    try:
        return tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise NNBiasError(f"{name}={text!r} is not allowed; expected comma-separated numbers") from None


def parse_widths(text: str, name: str = "hidden") -> tuple[int, ...]:
    """'40,40' -> (40, 40); '' or 'none' -> () (a perceptron); errors name the option ``name``."""
    if text.strip().lower() in ("", "none"):
        return ()
    try:
        widths = tuple(int(w) for w in text.split(","))
    except ValueError:
        raise NNBiasError(f"{name}={text!r} is not allowed; expected comma-separated widths "
                          "such as 40,40" + (" (or 'none')" if name == "hidden" else "")) from None
    for w in widths:
        check_int("width", w, minimum=1)
    return widths


def writable_dir(param: typer.CallbackParam, path: Path | None) -> Path | None:
    """An output folder, created while the options are read: one that cannot be written fails
    before any work, not after it (None: the option was not given)."""
    if path is None:
        return None
    name = (param.name or "out").replace("_", "-")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NNBiasError(f"{name}={str(path)!r} cannot be written: {e.strerror or e}") from None
    if not os.access(path, os.W_OK):
        raise NNBiasError(f"{name}={str(path)!r} cannot be written: permission denied")
    return path


def emit(result: Any, as_json: bool, human: str) -> None:
    if as_json:
        sys.stdout.write(json.dumps(result, default=_jsonable) + "\n")
    else:
        typer.echo(human)


def claims_text(claims: list[dict[str, str]]) -> str:
    """Claim, measurement, verdict and its rule, one block each, for the terminal."""
    return "\n".join(f"- {c['claim']}\n    {c['measured']}\n    => {c['verdict']}  ({c['rule']}"
                     + (f"; to decide: {c['decide']})" if c.get("decide") else ")") for c in claims)


def emit_comparison(run_id: str, environments: list[dict[str, str]], rows: list[dict[str, str]],
                    against: str, reference: dict[str, Any], as_json: bool) -> None:
    """A run's claim table against an export: a summary line, both machines, the rows that differ."""
    from nnbias.provenance import computed_on_lines
    from nnbias.report.claims import compare_claims, comparison_summary

    compared = compare_claims(rows, reference["claims"])
    summary = comparison_summary(compared)
    there = reference.get("environments", [])
    lines = [f"{run_id} (this store) against {against} ({reference.get('run_id', 'run not named')})",
             summary,
             *(f"  here:  {line}" for line in computed_on_lines(environments)),
             *(f"  there: {line}" for line in computed_on_lines(there))]
    for r in compared:
        if r["change"] != "same":
            lines.append(f"- [{r['change']}] {r['claim']}")
            lines += [f"    {side}: {r[side]['measured']} => {r[side]['verdict']}"
                      for side in ("here", "there") if r[side]]
    emit({"run_id": run_id, "against": against, "against_run_id": reference.get("run_id"),
          "summary": summary, "environments": {"here": environments, "there": there},
          "rows": compared}, as_json, "\n".join(lines))


def emit_experiment(result: dict[str, Any], keys: tuple[str, ...], table: Any, as_json: bool) -> None:
    """An experiment's chosen results as JSON, or its main table and claims as text."""
    emit({k: result[k] for k in keys}, as_json,
         table.to_string(index=False, float_format=lambda v: f"{v:.3g}") + "\n\n"
         + claims_text(result["claims"]))


def _jsonable(obj: Any) -> Any:
    import numpy as np
    import pandas as pd

    if isinstance(obj, pd.DataFrame):
        return json.loads(obj.to_json(orient="records"))
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    raise TypeError(type(obj).__name__)


@contextlib.contextmanager
def executing(kind: str, workers: int | None, scheduler: str | None, cells: str = "") -> Iterator[Any]:
    """The executor the options ask for (refusing options that do not apply), closed afterwards.
    ``cells``: the experiment whose work is sweep cells only, which run one at a time in this process
    unless on Dask, so a thread count does not apply to it."""
    from nnbias.executor import make_executor

    check_choice("executor", kind, ("threads", "dask"))
    if cells and kind == "threads" and workers is not None:
        raise NNBiasError(f"workers={workers} applies to --executor dask for `{cells}`: its cells run one "
                          "at a time in this process otherwise (torch's forward-mode AD is not "
                          "thread-safe); add --executor dask or leave --workers out")
    ex = make_executor(kind, workers, scheduler)
    try:
        yield ex
    finally:
        getattr(ex, "close", lambda: None)()


def _spec(inputs: int, hidden: str, activation: str, prior: str, sigma_w: float, sigma_b: float,
          bias: bool, encoding: str):
    from nnbias.spec import NetworkSpec
    from nnbias.tasks.boolean import check_n_bits

    widths = parse_widths(hidden)
    if activation is not None and not widths:
        raise NNBiasError(f"--activation {activation} does not apply to a perceptron (--hidden none): it has "
                          "no hidden layer, the sign of its output is the function; leave --activation out")
    return NetworkSpec(check_n_bits(inputs), widths, activation or "relu", bias, prior, sigma_w, sigma_b,
                       encoding)


@app.command()
def pfmap(
    inputs: int = typer.Option(7, "--inputs", "-n", help="Number of Boolean inputs n (1..10)."),
    hidden: str = typer.Option("40,40", help="Hidden widths, comma-separated; 'none' = perceptron."),
    activation: str = typer.Option(None, help="relu, tanh, erf, sign, step or linear [relu]; not with "
                                              "--hidden none."),
    prior: str = typer.Option("gaussian", help="gaussian or uniform."),
    sigma_w: float = typer.Option(1.0, help="Weight scale: weights ~ N(0, sigma_w^2/fan_in)."),
    sigma_b: float = typer.Option(1.0, help="Bias scale: biases ~ N(0, sigma_b^2)."),
    bias: bool = typer.Option(True, "--bias/--no-bias"),
    encoding: str = typer.Option("01", help="Input encoding: 01 or pm1."),
    samples: str = typer.Option("1e6", help="Number of networks to sample."),
    seed: int = typer.Option(0, help="Run seed; chunk i draws from a seed derived from (seed, i)."),
    chunk_size: str = typer.Option("65536", help="Networks per chunk (the unit of resumption)."),
    theorem_samples: str = typer.Option("2e5", help="Samples per T-uniformity variant."),
    exact_samples: str = typer.Option("2e5", help="Samples for the exact-volume check."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    executor: str = typer.Option("threads", help="threads (this process) or dask."),
    workers: int = typer.Option(None, help="Threads or local Dask workers [default: all cores]."),
    scheduler: str = typer.Option(None, help="Address of a running Dask scheduler."),
    top: int = typer.Option(20, help="Rows in the table of most frequent functions."),
    store: Path = STORE,
    out: Path = typer.Option(Path("nnbias-results/pfmap"), help="Folder for figures.",
                             callback=writable_dir),
    as_json: bool = JSON,
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """P(f) of random networks on Boolean inputs, its complexity, and the T-uniformity theorem."""
    from nnbias.experiments.pfmap import PfmapSettings, run_pfmap
    from nnbias.experiments.sampling import SamplingConfig
    from nnbias.store import Store

    spec = _spec(inputs, hidden, activation, prior, sigma_w, sigma_b, bias, encoding)
    cfg = SamplingConfig(spec, parse_count("samples", samples), seed,
                         parse_count("chunk_size", chunk_size), device=device)
    settings = PfmapSettings(cfg, parse_count("theorem_samples", theorem_samples),
                             parse_count("exact_samples", exact_samples), check_int("top", top, minimum=1))
    with executing(executor, workers, scheduler) as ex, Store(store) as st:
        result = run_pfmap(st, settings, out, ex, quiet)
    top_rows = result["top"][["truth_table", "count", "p", "p_lo", "p_hi", "lz", "entropy"]]
    human = (f"{result['samples']:,} samples, {result['distinct_functions']:,} distinct functions "
             f"(run {result['run_id']})\n{top_rows.to_string(index=False)}\n\n"
             + claims_text(result["claims"]))
    emit(result, as_json, human)


@app.command()
def volumes(
    inputs: int = typer.Option(2, "--inputs", "-n", help="Number of inputs (1..3)."),
    prior: str = typer.Option("uniform", help="uniform (cube: exact rationals) or gaussian."),
    bias: bool = typer.Option(True, "--bias/--no-bias"),
    sigma_w: float = typer.Option(None, help="Gaussian prior: weights ~ N(0, sigma_w^2/n) [1]."),
    sigma_b: float = typer.Option(None, help="Gaussian prior: bias ~ N(0, sigma_b^2) [1]."),
    encoding: str = typer.Option("01", help="01 or pm1."),
    as_json: bool = JSON,
) -> None:
    """Exact P(f) of every function a small perceptron computes."""
    from nnbias.engines.volumes import MAX_VOLUME_INPUTS, exact_volumes, method_name
    from nnbias.spec import NetworkSpec

    check_int("inputs", inputs, minimum=1, maximum=MAX_VOLUME_INPUTS)
    check_choice("prior", prior, ("uniform", "gaussian"))
    if prior == "uniform":  # weights and bias uniform on one cube [-1, 1]
        given = [f"--{n}" for n, val in (("sigma-w", sigma_w), ("sigma-b", sigma_b)) if val is not None]
        if given:
            raise NNBiasError(f"{' and '.join(given)} does not apply to prior='uniform' (the unit cube); "
                              "leave it out or use --prior gaussian")
        sigma_w, sigma_b = 1.0, 1 / math.sqrt(inputs)
    else:
        sigma_w, sigma_b = 1.0 if sigma_w is None else sigma_w, 1.0 if sigma_b is None else sigma_b
    spec = NetworkSpec(inputs, (), "step", bias, prior, sigma_w, sigma_b, encoding)
    vols = exact_volumes(spec)
    rows = [{"truth_table": v.truth_table, "probability": v.probability,
             **({"exact": str(v.exact)} if v.exact is not None else {})} for v in vols]
    result = {"inputs": inputs, "prior": prior, "bias": bias, "encoding": encoding,
              "method": method_name(spec), "functions": rows,
              "nonzero": sum(v.probability > 0 for v in vols),
              "total_probability": sum(v.probability for v in vols)}
    lines = [f"{r['truth_table']}  {r.get('exact', ''):>10}  {r['probability']:.9f}"
             for r in rows if r["probability"] > 0]
    emit(result, as_json, f"method: {result['method']}\n" + "\n".join(lines)
         + f"\n{result['nonzero']} functions with non-zero volume; "
           f"{2 ** 2 ** inputs - result['nonzero']} with volume 0")


@app.command()
def runs(store: Path = STORE, as_json: bool = JSON) -> None:
    """List the runs in the results store."""
    from nnbias.store import Store

    with Store(store, read_only=True) as st:
        frame = st.runs()
    emit(frame, as_json, frame.drop(columns=["config"]).to_string(index=False)
         if len(frame) else "no runs yet")


def _known_run(st: Any, run_id: str) -> dict[str, Any]:
    """The stored row of ``run_id``, or one line saying how to find the run ids."""
    frame = st.runs()
    row = frame[frame["run_id"] == run_id]
    if not len(row):
        raise NNBiasError(f"run={run_id!r} is not in the store; `nnbias runs` lists them")
    return json.loads(row.to_json(orient="records", date_format="iso"))[0]  # plain JSON values


@app.command()
def show(run: str = typer.Argument(..., help="Run id (`nnbias runs` lists them)."), store: Path = STORE,
         as_json: bool = JSON) -> None:
    """A run's config, status, machines, tables and claims, read from the store."""
    from nnbias.provenance import computed_on_lines
    from nnbias.store import Store

    with Store(store, read_only=True) as st:
        row = _known_run(st, run)
        tables, judged, environments = st.run_tables(run), st.claims(run), st.environments([run])
    config = json.loads(row.pop("config"))
    lines = [f"{k}: {row[k]}" for k in ("run_id", "experiment", "status", "seed", "version", "started_at",
                                        "ended_at", "samples")]
    lines += computed_on_lines(environments)
    lines += ["config:", *("  " + t for t in json.dumps(config, indent=2, sort_keys=True).splitlines()),
              "tables (rows of this run):", *(f"  {name}: {n:,}" for name, n in tables.items())]
    if judged:
        lines += ["claims:", claims_text(judged)]
    emit({**row, "config": config, "environments": environments, "tables": tables, "claims": judged}, as_json,
         "\n".join(lines))


@app.command()
def export(
    run: str = typer.Argument(..., help="Run id (`nnbias runs` lists them)."),
    parquet: Path = typer.Option(None, "--parquet", help="Folder for one Parquet file per table.",
                                 callback=writable_dir),
    csv: Path = typer.Option(None, "--csv", help="Folder for one CSV file per table.",
                             callback=writable_dir),
    store: Path = STORE,
    as_json: bool = JSON,
) -> None:
    """Write a run's rows of every table (runs, chunks, counts, cells, claims) as Parquet or CSV."""
    from nnbias.store import Store

    if (parquet is None) == (csv is None):
        raise NNBiasError("give exactly one of --parquet DIR or --csv DIR")
    folder, fmt = (parquet, "parquet") if parquet is not None else (csv, "csv")
    with Store(store, read_only=True) as st:
        _known_run(st, run)
        written = st.export_run(run, folder, fmt)
    emit({"run_id": run, "files": [str(p) for p in written]}, as_json, "\n".join(str(p) for p in written))


@app.command()
def claims(
    run: str = typer.Option(None, "--run", help="Run id [default: the latest finished reproduce run]."),
    markdown: bool = typer.Option(False, "--markdown", help="Print the table as Markdown."),
    readme: Path = typer.Option(None, "--readme", help="Write the Markdown table into this README's "
                                                        "generated claims block."),
    against: Path = typer.Option(None, "--against", help="Compare with this export of `nnbias claims "
                                                          "--json` (e.g. docs/claims.json), row by row."),
    store: Path = STORE,
    as_json: bool = JSON,
) -> None:
    """The claim table of a run, read from the store (nothing is rerun); or how it differs from an
    exported one (``--against``)."""
    from nnbias.report.claims import load_export, markdown_table, write_readme_block
    from nnbias.report.html import computed_on
    from nnbias.store import Store

    if markdown and as_json:
        raise NNBiasError("--markdown and --json are two formats of the same table; give one of them")
    if against is not None:
        for name, given in (("--markdown", markdown), ("--readme", readme is not None)):
            if given:
                raise NNBiasError(f"{name} does not apply with --against (which prints the rows that "
                                  "differ); leave one of them out")
        reference = load_export(against)
    with Store(store, read_only=True) as st:
        run_id = run or st.latest_run("reproduce")
        if run_id is None:
            raise NNBiasError(f"store {str(st.path)!r} holds no finished reproduce run; run `nnbias "
                              "reproduce` or name a run with --run")
        _known_run(st, run_id)
        rows, environments = st.claims(run_id), computed_on(st, run_id)
    if not rows:
        raise NNBiasError(f"run={run_id!r} has no claims (only experiment runs and reproduce runs do)")
    if against is not None:
        emit_comparison(run_id, environments, rows, str(against), reference, as_json)
        return
    table = markdown_table(rows)
    if readme is not None:
        write_readme_block(readme, table)
    emit({"run_id": run_id, "environments": environments, "claims": rows}, as_json,
         table.rstrip("\n") if markdown else claims_text(rows))


@app.command()
def report(
    run: str = typer.Option(None, "--run", help="Reproduce run id [default: the latest finished one]."),
    out: Path = typer.Option(Path("nnbias-results"), help="Folder for report.html.", callback=writable_dir),
    store: Path = STORE,
    as_json: bool = JSON,
) -> None:
    """Rebuild the HTML report of a reproduce run, and its figures (PNG and PDF), from the store
    alone (nothing is rerun)."""
    from nnbias.experiments.reproduce import TITLE
    from nnbias.report.html import computed_on, stored_sections, write_report, write_stored_figures
    from nnbias.store import Store

    with Store(store, read_only=True) as st:
        run_id = run or st.latest_run("reproduce")
        if run_id is None:
            raise NNBiasError(f"store {str(st.path)!r} holds no finished reproduce run; run `nnbias "
                              "reproduce` first or name a run with --run")
        _known_run(st, run_id)
        sections, judged = stored_sections(st, run_id), st.claims(run_id)
        path, environments = st.path, computed_on(st, run_id)
        if not sections:
            raise NNBiasError(f"run={run_id!r} has no stored report (only reproduce runs have one)")
        figures = write_stored_figures(st, run_id, out)
    written = write_report(out / "report.html", TITLE, judged, sections, path, environments)
    emit({"run_id": run_id, "report": str(written), "figures": [str(f) for f in figures]}, as_json,
         f"report: {written} ({len(figures)} figure files)")


@app.command()
def reproduce(
    store: Path = STORE,
    out: Path = typer.Option(Path("nnbias-results"), help="Folder for the report and figures.",
                             callback=writable_dir),
    samples: str = typer.Option(None, help="Networks for the main P(f) run [small: 1e6, paper: 1e8]."),
    scale: str = typer.Option("small", help="small (minutes on 2 cores) or paper (the original papers' "
                                            "sizes: hours, or a GPU / cluster)."),
    seed: int = typer.Option(0),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    executor: str = EXECUTOR,
    workers: int = WORKERS,
    scheduler: str = SCHEDULER,
    as_json: bool = JSON,
    quiet: bool = typer.Option(False, "--quiet"),
) -> None:
    """Run every experiment (small scale by default) and write an HTML report."""
    from nnbias.experiments.reproduce import reproduce as run
    from nnbias.experiments.reproduce import scale_settings
    from nnbias.store import Store

    settings = scale_settings(scale, check_seed(seed),
                              parse_count("samples", samples) if samples else None, device=device)
    with executing(executor, workers, scheduler) as ex, Store(store) as st:
        result = run(st, out, executor=ex, quiet=quiet, **settings)
    emit({"report": result["report"], "claims": result["claims"]}, as_json,
         claims_text(result["claims"]) + f"\nreport: {result['report']}")


@app.command()
def kernel(
    x: Path = typer.Option(..., "--x", help="Inputs, an (N, d) .npy array (images flattened row-major)."),
    x2: Path = typer.Option(None, "--x2", help="Second inputs (M, d) .npy [default: x]."),
    depth: int = typer.Option(None, help="MLP: number of hidden layers (dense + activation each) [1]."),
    activation: str = typer.Option(None, help="MLP: relu, erf, linear, tanh, gelu, sign, step [relu]."),
    layers: str = typer.Option(None, help="A layer description instead of an MLP, e.g. "
                                          "'conv2d:64:3:same,relu,conv2d:64:3:same,relu,gap,dense:1' "
                                          "(dense:OUT, conv1d|conv2d:CHANNELS:FILTER[:same|valid|circular|"
                                          "N[:STRIDE]], flatten, gap, activations)."),
    input_shape: str = typer.Option(None, help="With --layers: the shape each row of x is, e.g. 1,40 "
                                               "(channels, length) or 1,8,8 [d: flat]."),
    sigma_w: float = typer.Option(1.0),
    sigma_b: float = typer.Option(0.0),
    kind: str = typer.Option("nngp", help="nngp or ntk."),
    parametrization: str = typer.Option("ntk", help="ntk or standard."),
    width: int = typer.Option(None, help="MLP, standard-parametrization NTK: hidden width [1024]."),
    memory: str = typer.Option(None, help="With --layers: bytes one block of the computation may use, "
                                          "e.g. 2e9 [16 MiB on a CPU, 256 MiB on a GPU]."),
    dtype: str = typer.Option("float64", help="float32 or float64."),
    device: str = typer.Option("cpu", help="cpu or cuda: where the blocks are computed."),
    out: Path = typer.Option(..., "--out", help="Where to write the (N, M) kernel as .npy."),
    as_json: bool = JSON,
) -> None:
    """Analytic NNGP/NTK Gram matrix of an MLP or of a layer description (CNN-GP, CNTK), between
    .npy files (language-neutral)."""
    import numpy as np
    import torch

    check_choice("kind", kind, ("nngp", "ntk"))
    check_choice("dtype", dtype, ("float32", "float64"))
    if out.suffix != ".npy" or out.is_dir():  # np.save would append .npy and report another name
        raise NNBiasError(f"out={str(out)!r} is not allowed; give a file path ending in .npy")
    arrays = [_load_npy(p) for p in (x, x2) if p is not None]
    if width is not None and (kind, parametrization) != ("ntk", "standard"):
        raise NNBiasError(f"--width applies to the standard-parametrization NTK only (kind='ntk', "
                          f"parametrization='standard'), not kind={kind!r} with parametrization="
                          f"{parametrization!r}, which do not depend on the width; leave --width out")
    if layers is None:
        for name, value in (("input-shape", input_shape), ("memory", memory)):
            if value is not None:
                raise NNBiasError(f"--{name} applies to --layers only; give a layer description or leave "
                                  f"--{name} out")
        from nnbias.engines.kernels import KernelFn
        from nnbias.spec import NetworkSpec

        check_int("depth", 1 if depth is None else depth, minimum=0)
        spec = NetworkSpec(arrays[0].shape[1], (width or 1024,) * (1 if depth is None else depth),
                           activation or "relu", sigma_b > 0, "gaussian", sigma_w, sigma_b,
                           parametrization=parametrization)
        compute = KernelFn(spec)
        options: dict[str, Any] = {}
    else:
        for name, value in (("depth", depth), ("activation", activation), ("width", width)):
            if value is not None:
                raise NNBiasError(f"--{name} describes an MLP; with --layers the layer string says it "
                                  "(leave --" + name + " out)")
        from nnbias.engines.serial import SerialKernelFn
        from nnbias.layers import LayeredSpec

        shape = (arrays[0].shape[1],) if input_shape is None else parse_widths(input_shape, "input-shape")
        spec = LayeredSpec(shape, layers, sigma_w, sigma_b, sigma_b > 0, "gaussian", parametrization)
        compute = SerialKernelFn(spec)
        options = {} if memory is None else {"memory": parse_count("memory", memory)}
    try:
        gram = compute(torch.from_numpy(arrays[0]), torch.from_numpy(arrays[-1]) if x2 else None,
                       kind=kind, dtype=getattr(torch, dtype), device=check_device(device), **options)
        finite = bool(torch.isfinite(gram).all())
    except OverflowError:  # sigma_w**2 beyond a Python float
        finite = False
    if not finite:
        raise NNBiasError(f"the {kind} kernel overflows {dtype} at sigma_w={sigma_w:g}, sigma_b={sigma_b:g} "
                          "(entries inf or NaN); lower sigma_w, sigma_b or the depth, or use float64")
    try:
        with open(out, "wb") as f:  # the exact name given, never a second one
            np.save(f, gram.numpy())
    except OSError as e:
        raise NNBiasError(f"out={str(out)!r} cannot be written: {e.strerror}") from None
    emit({"out": str(out), "shape": list(gram.shape), "kind": kind, "spec": spec.to_dict()}, as_json,
         f"wrote {kind} kernel {tuple(gram.shape)} to {out}")


def _load_npy(path: Path):
    import numpy as np

    if not path.is_file():
        raise NNBiasError(f"input file {str(path)!r} does not exist")
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:  # EOFError: an empty file
        raise NNBiasError(f"input file {str(path)!r} is not a .npy array ({e or 'it is empty'})") from None
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr) or 0 in arr.shape:
        raise NNBiasError(f"input file {str(path)!r} holds shape {arr.shape} {arr.dtype}; "
                          "expected a real (N, d) array with N, d >= 1")
    return arr.astype(np.float64)


@app.command()
def kernels(
    tasks: str = typer.Option(None, help="Comma-separated tasks: digits-3-5, digits-0-1, parity-d10-k2, "
                                         "parity-d10-k3, linear, single-index "
                                         "[digits-3-5,parity-d10-k2,single-index]."),
    widths: str = typer.Option(None, help="Widths of the trained networks [small: 64,256,1024; "
                                          "paper: 64..4096]."),
    depth: int = typer.Option(1),
    networks: int = typer.Option(None, help="Networks trained per width [small: 4, paper: 8]."),
    steps: int = typer.Option(None, help="Full-batch gradient-descent steps [1000]."),
    scale: str = typer.Option("small", help="small or paper (widths to 4096, 16 convergence seeds, "
                                            "2000 networks per fluctuation cell)."),
    seed: int = typer.Option(0),
    device: str = DEVICE,
    executor: str = EXECUTOR,
    workers: int = WORKERS,
    scheduler: str = SCHEDULER,
    store: Path = STORE,
    out: Path = typer.Option(Path("nnbias-results/kernels"), help="Folder for figures.",
                             callback=writable_dir),
    as_json: bool = JSON,
    quiet: bool = QUIET,
) -> None:
    """Kernel predictors (NNGP, NTK) against trained finite networks; NTK convergence and fluctuations."""
    from nnbias.experiments.kernels import run_kernels, settings_for
    from nnbias.store import Store

    settings = settings_for(scale, tasks=parse_names(tasks),
                            widths=parse_widths(widths, "widths") if widths else None, depth=depth,
                            networks=networks, steps=steps, seed=check_seed(seed), device=device)
    with executing(executor, workers, scheduler, "kernels") as ex, Store(store) as st:
        result = run_kernels(st, settings, out, quiet, ex)
    emit(result, as_json, result["results"].to_string(index=False) + "\n\n"
         + claims_text(result["claims"]))


@bench_app.command("kernels")
def bench_kernels_cmd(
    n: str = typer.Option("4000", help="Inputs for the analytic Gram matrix and GP solve."),
    n_empirical: str = typer.Option("500", help="Inputs for the empirical NTK."),
    neural_tangents: str = typer.Option(
        None, "--neural-tangents", metavar="PYTHON",
        help="A Python interpreter with jax and neural_tangents: time its NTK of the analytic case "
             "beside nnbias' and compare the values."),
    as_json: bool = JSON,
) -> None:
    """Analytic NTK, GP solve and empirical NTK beside straightforward implementations."""
    from nnbias.bench import bench_kernels

    rows = bench_kernels(parse_count("n", n), parse_count("n_empirical", n_empirical), neural_tangents)

    def line(name: str, r: dict) -> str:
        text = f"{name:<48} N={r['n']:<6} {r['seconds']:8.2f} s  peak +{r['peak_mib']:7.0f} MiB"
        if "max_relative_difference" in r:
            text += (f"  (first call {r['first_call_seconds']:.2f} s with compilation, jax {r['jax']}; "
                     f"max |difference| / max |K| = {r['max_relative_difference']:.1e}; error of the "
                     f"diagonal against its exact value: nnbias {r['diagonal_error_nnbias']:.1e}, "
                     f"neural-tangents {r['diagonal_error_neural_tangents']:.1e})")
        return text

    emit(rows, as_json, "\n".join(line(name, r) for name, r in rows.items()))


@bench_app.command("pfmap")
def bench_pfmap_cmd(
    samples: str = typer.Option("524288", help="Networks for the batched engine."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    workers: int = typer.Option(None, help="Threads [default: all cores]."),
    as_json: bool = JSON,
) -> None:
    """Networks/s of the batched sampler beside a per-network loop and dense-matmul throughput."""
    from nnbias.bench import bench_pfmap
    r = bench_pfmap(parse_count("samples", samples), workers=workers, device=check_device(device))
    emit(r, as_json, "\n".join([
        f"network: {r['network']} on all 128 inputs, device {r['device']}, {r['workers']} workers",
        f"medians of {r['rounds']} rounds, engine and loops measured in alternation",
        f"batched engine        {r['batched_nets_per_s']:>12,.0f} nets/s",
        f"per-network loop      {r['loop_nets_per_s']:>12,.0f} nets/s   "
        f"ratio {r['speedup_vs_loop']:.1f}x (median of rounds: "
        f"{', '.join(f'{v:.1f}' for v in r['speedups_vs_loop_by_round'])})",
        f"nn.Module re-init     {r['module_loop_nets_per_s']:>12,.0f} nets/s   "
        f"ratio {r['speedup_vs_module_loop']:.1f}x",
        f"dense matmul          {r['dense_matmul_gflops']:>12.1f} GFLOP/s; sampler does "
        f"{r['sampler_effective_gflops']:.1f} GFLOP/s = {r['fraction_of_matmul_peak']:.2f} of it",
        f"1e8 samples would take {r['hours_for_1e8'] * 60:.1f} min",
        *(f"  one thread, {name:36s} {us:6.2f} us/net" for name, us in r["us_per_net_one_thread"].items())]))


@app.command("sgd-vs-bayes")
def sgd_vs_bayes(
    tasks: str = typer.Option("bool5-0011,bool7-0011,bool7-random,digits-3-5",
                              help="Comma-separated: bool5-0011, bool7-0011, bool7-0011-s64, bool7-random, "
                                   "digits-3-5."),
    methods: str = typer.Option("sgd-b8,adam-b8,sgd-full,last-sgd-b8",
                                help="[last-]<sgd|momentum|adam|langevin>-<b<batch>|full>; last- trains "
                                     "only the readout."),
    runs: str = typer.Option(None, help="Training runs per task and method [small: 2000, paper: 1e5]."),
    rejection_samples: str = typer.Option(None, help="Prior samples for P_B by rejection "
                                                     "[small: 1e6, paper: 1e8]."),
    lr: float = typer.Option(None, help="Learning rate [default: sgd 0.1, momentum 0.01, adam 0.003]."),
    max_epochs: int = typer.Option(None, help="Epoch cap [small: 300, paper: 2000]; runs that do not "
                                               "fit S by then are counted."),
    scale: str = typer.Option("small", help="small (minutes) or paper (Mingard et al.'s sample sizes)."),
    seed: int = typer.Option(0),
    device: str = DEVICE,
    executor: str = EXECUTOR,
    workers: int = WORKERS,
    scheduler: str = SCHEDULER,
    store: Path = STORE,
    out: Path = typer.Option(Path("nnbias-results/sgd_bayes"), help="Folder for figures.",
                             callback=writable_dir),
    as_json: bool = JSON,
    quiet: bool = typer.Option(False, "--quiet"),
) -> None:
    """P_SGD(f|S) against P_B(f|S) (rejection, NNGP + EP, last-layer training) on Boolean and digit tasks."""
    from nnbias.experiments.sgd_bayes import check_tasks, run_sgd_bayes, settings_for
    from nnbias.store import Store

    if lr is not None:
        check_positive("lr", lr)
    settings = settings_for(
        scale, tasks=parse_names(tasks),
        methods=parse_names(methods),
        runs=parse_count("runs", runs) if runs else None,
        rejection_samples=parse_count("rejection_samples", rejection_samples) if rejection_samples else None,
        lr=lr, max_epochs=max_epochs, seed=check_seed(seed), device=device)
    check_tasks(settings)
    with executing(executor, workers, scheduler) as ex, Store(store) as st:
        result = run_sgd_bayes(st, settings, out, ex, quiet)
    emit_experiment(result, ("run_id", "summary", "figures", "claims"),
                    result["summary"].drop(columns=["run_id"]), as_json)


@app.command()
def features(
    parametrizations: str = typer.Option("standard,ntk,mup,mean-field",
                                         help="Comma-separated: standard, ntk, mup, mean-field."),
    tasks: str = typer.Option(None, help="Comma-separated: single-index, linear, digits-3-5 "
                                         "[small: single-index,digits-3-5]."),
    widths: str = typer.Option(None, help="Widths of the sweep [small: 64,256,1024; paper: 64..4096]."),
    depth: int = typer.Option(2, help="Hidden layers (mean-field always uses one)."),
    networks: int = typer.Option(None, help="Seeds per cell [small: 3, paper: 5]."),
    steps: int = typer.Option(None, help="Full-batch SGD steps [small: 100, paper: 500]."),
    scale: str = SCALE,
    seed: int = typer.Option(0),
    device: str = DEVICE,
    executor: str = EXECUTOR,
    workers: int = WORKERS,
    scheduler: str = SCHEDULER,
    store: Path = STORE,
    out: Path = typer.Option(Path("nnbias-results/features"), help="Folder for figures.",
                             callback=writable_dir),
    as_json: bool = JSON,
    quiet: bool = QUIET,
) -> None:
    """Coordinate check and width sweep of feature movement per abc-parametrization, with fitted exponents."""
    from nnbias.experiments.features import run_features, settings_for
    from nnbias.store import Store

    settings = settings_for(
        scale, parametrizations=parse_names(parametrizations),
        tasks=parse_names(tasks),
        widths=parse_widths(widths, "widths") if widths else None, depth=check_int("depth", depth, minimum=1),
        networks=networks, steps=steps, seed=check_seed(seed), device=device)
    with executing(executor, workers, scheduler, "features") as ex, Store(store) as st:
        result = run_features(st, settings, out, quiet, ex)
    emit_experiment(result, ("run_id", "coord_exponents", "exponents", "figures", "claims"),
                    result["exponents"], as_json)


@app.command()
def gap(
    tasks: str = typer.Option(None, help="Comma-separated ladder tasks: linear, single-index, parity-k2, "
                                         "parity-k3, digits-3-5, mnist1d-2-7 [all]."),
    widths: str = typer.Option(None, help="Widths [small: 64,256,1024; paper: 64..4096]."),
    networks: int = typer.Option(None, help="Seeds per cell [small: 2, paper: 5]."),
    steps: int = typer.Option(None, help="Full-batch gradient-descent steps [small: 500, paper: 3000]."),
    curve_sizes: str = typer.Option(None, help="Training-set sizes of the sparse-parity curves "
                                               "[small: 50..800, paper: 25..3200]."),
    scale: str = SCALE,
    seed: int = typer.Option(0),
    device: str = DEVICE,
    executor: str = EXECUTOR,
    workers: int = WORKERS,
    scheduler: str = SCHEDULER,
    store: Path = STORE,
    out: Path = typer.Option(Path("nnbias-results/gap"), help="Folder for figures.",
                             callback=writable_dir),
    as_json: bool = JSON,
    quiet: bool = QUIET,
) -> None:
    """Where the kernel gap opens: full vs linearised vs muP networks vs NNGP/NTK on a task ladder,
    and sample-complexity curves on sparse parity."""
    from nnbias.experiments.gap import run_gap, settings_for
    from nnbias.store import Store

    settings = settings_for(
        scale, tasks=parse_names(tasks),
        widths=parse_widths(widths, "widths") if widths else None, networks=networks, steps=steps,
        curve_sizes=parse_counts("curve size", curve_sizes),
        seed=check_seed(seed), device=device)
    with executing(executor, workers, scheduler, "gap") as ex, Store(store) as st:
        result = run_gap(st, settings, out, quiet, ex)
    emit_experiment(result, ("run_id", "summary", "divergence", "learned", "learning_rates", "figures",
                             "claims"), result["summary"], as_json)


@app.command()
def transfer(
    pairs: str = typer.Option(None, help="Comma-separated task pairs: single-index-same, single-index-flip, "
                                         "single-index-shared, single-index-unrelated, parity-shared, "
                                         "digits-halves-parity, mnist1d-halves-parity [small: the "
                                         "single-index pairs and digits; paper: all]."),
    sizes: str = typer.Option(None, help="n_B of the learning curves [small: 16,64,256; paper: 8..512]."),
    claim_size: int = typer.Option(None, help="The n_B at which the claims are judged [64]."),
    width: int = typer.Option(None, help="Hidden width [small: 512, paper: 2048]."),
    networks: int = typer.Option(None, help="Seeds per cell [small: 4, paper: 10]."),
    steps: int = typer.Option(None, help="Gradient-descent steps on A and on B [small: 500, paper: 2000]."),
    scale: str = SCALE,
    seed: int = typer.Option(0),
    device: str = DEVICE,
    executor: str = EXECUTOR,
    workers: int = WORKERS,
    scheduler: str = SCHEDULER,
    store: Path = STORE,
    out: Path = typer.Option(Path("nnbias-results/transfer"), help="Folder for figures.",
                             callback=writable_dir),
    as_json: bool = JSON,
    quiet: bool = QUIET,
) -> None:
    """Transfer in the tangent space against feature learning: pretrain on A, adapt on B, per learner."""
    from nnbias.experiments.transfer import run_transfer, settings_for
    from nnbias.store import Store

    n_b = parse_counts("n_B", sizes)
    if n_b and claim_size is None:  # judge at the middle of the sizes asked for
        claim_size = sorted(n_b)[len(n_b) // 2]
    settings = settings_for(
        scale, pairs=parse_names(pairs), sizes=n_b,
        claim_size=claim_size, width=width, networks=networks, steps=steps,
        seed=check_seed(seed), device=device)
    with executing(executor, workers, scheduler, "transfer") as ex, Store(store) as st:
        result = run_transfer(st, settings, out, quiet, ex)
    table = result["gains"][result["gains"]["n"] == settings.claim_size]
    emit_experiment(result, ("run_id", "gains", "figures", "claims"), table, as_json)


@app.command()
def inside(
    task: str = typer.Option("single-index", help="single-index or digits-3-5."),
    widths: str = typer.Option(None, help="Widths [small: 64,256,1024; paper: 64..4096]."),
    parametrizations: str = typer.Option("ntk,mup", help="Comma-separated: ntk, mup."),
    networks: int = typer.Option(None, help="Seeds per cell [small: 3, paper: 8]."),
    steps: int = typer.Option(None, help="Gradient-descent steps of the trained network [small: 500]."),
    scale: str = SCALE,
    seed: int = typer.Option(0),
    device: str = DEVICE,
    executor: str = EXECUTOR,
    workers: int = WORKERS,
    scheduler: str = SCHEDULER,
    store: Path = STORE,
    out: Path = typer.Option(Path("nnbias-results/inside"), help="Folder for figures.",
                             callback=writable_dir),
    as_json: bool = JSON,
    quiet: bool = QUIET,
) -> None:
    """Inside the kernel-regime solution: solve the empirical-NTK system, put p* back into the network."""
    from nnbias.experiments.inside import run_inside, settings_for
    from nnbias.store import Store

    settings = settings_for(scale, task=task, widths=parse_widths(widths, "widths") if widths else None,
                            parametrizations=parse_names(parametrizations),
                            networks=networks, steps=steps, seed=check_seed(seed), device=device)
    with executing(executor, workers, scheduler, "inside") as ex, Store(store) as st:
        result = run_inside(st, settings, out, quiet, ex)
    emit_experiment(result, ("run_id", "exponents", "figures", "claims"), result["exponents"], as_json)


@app.command()
def posterior(
    task: str = typer.Option("bool7-0011-s8", help="bool7-0011-s8 or bool7-0011-s10 (|S| = 8 or 10)."),
    widths: str = typer.Option(None, help="Widths of both hidden layers [small: 8..256; paper: 8..1024]."),
    methods: str = typer.Option(None, help="Comma-separated: rejection, langevin, sgd-ntk, sgd-mup "
                                           "[small: all but langevin; paper: all]."),
    samples: int = typer.Option(None, help="Posterior networks per cell [small: 400, paper: 2000]."),
    temperature: float = typer.Option(None, help="Langevin's temperature T in exp(-L/T) [0.01]."),
    scale: str = SCALE,
    seed: int = typer.Option(0),
    device: str = DEVICE,
    executor: str = EXECUTOR,
    workers: int = WORKERS,
    scheduler: str = SCHEDULER,
    store: Path = STORE,
    out: Path = typer.Option(Path("nnbias-results/posterior"), help="Folder for figures.",
                             callback=writable_dir),
    as_json: bool = JSON,
    quiet: bool = QUIET,
) -> None:
    """Do the hidden layers of a Bayesian network leave their prior? Exact posteriors across widths."""
    from nnbias.experiments.posterior import run_posterior, settings_for
    from nnbias.store import Store

    settings = settings_for(scale, task=task, widths=parse_widths(widths, "widths") if widths else None,
                            methods=parse_names(methods), samples=samples, temperature=temperature,
                            seed=check_seed(seed), device=device)
    if temperature is not None and "langevin" not in settings.methods:
        raise NNBiasError(f"temperature={temperature:g} applies to the langevin method only; "
                          f"methods are {','.join(settings.methods)}")
    with executing(executor, workers, scheduler, "posterior") as ex, Store(store) as st:
        result = run_posterior(st, settings, out, quiet, ex)
    emit_experiment(result, ("run_id", "exponents", "figures", "claims"), result["exponents"], as_json)


@app.command()
def gibbs(
    temperature: float = typer.Option(None, help="T of the Langevin comparison [0.2]."),
    step_sizes: str = typer.Option(None, help="Langevin step sizes [small: 0.01,0.1,0.3,1]."),
    chains: int = typer.Option(None, help="Langevin chains and SGD runs per setting [small: 10000]."),
    draws: str = typer.Option(None, help="Prior draws of the exact reference [small: 1e6, paper: 1e7]."),
    scale: str = SCALE,
    seed: int = typer.Option(0),
    device: str = DEVICE,
    executor: str = EXECUTOR,
    workers: int = WORKERS,
    scheduler: str = SCHEDULER,
    store: Path = STORE,
    out: Path = typer.Option(Path("nnbias-results/gibbs"), help="Folder for figures.", callback=writable_dir),
    as_json: bool = JSON,
    quiet: bool = QUIET,
) -> None:
    """Langevin against the exact Gibbs posterior; SGD settings against tempered posteriors."""
    from nnbias.experiments.gibbs import run_gibbs, settings_for
    from nnbias.store import Store

    settings = settings_for(scale, temperature=temperature, step_sizes=parse_floats("step_sizes", step_sizes),
                            chains=chains, draws=parse_count("draws", draws) if draws else None,
                            seed=check_seed(seed), device=device)
    with executing(executor, workers, scheduler, "gibbs") as ex, Store(store) as st:
        result = run_gibbs(st, settings, out, quiet, ex)
    emit_experiment(result, ("run_id", "langevin", "figures", "claims"), result["langevin"], as_json)


@app.command()
def bound(
    tasks: str = typer.Option(None, help="Comma-separated: bool7-0011, digits-3-5, mnist1d-0-1 "
                                         "[small: the first two; paper: all]."),
    corruptions: str = typer.Option(None, help="Label-corruption fractions [0,0.25,0.5,1]."),
    networks: int = typer.Option(None, help="SGD-trained networks per setting [small: 8, paper: 32]."),
    scale: str = SCALE,
    seed: int = typer.Option(0),
    device: str = DEVICE,
    executor: str = EXECUTOR,
    workers: int = WORKERS,
    scheduler: str = SCHEDULER,
    store: Path = STORE,
    out: Path = typer.Option(Path("nnbias-results/bound"), help="Folder for figures.", callback=writable_dir),
    as_json: bool = JSON,
    quiet: bool = QUIET,
) -> None:
    """The PAC-Bayes marginal-likelihood bound (EP on the NNGP) against SGD's measured test error."""
    from nnbias.experiments.bound import run_bound, settings_for
    from nnbias.store import Store

    settings = settings_for(scale, tasks=parse_names(tasks),
                            corruptions=parse_floats("corruptions", corruptions),
                            networks=networks, seed=check_seed(seed), device=device)
    with executing(executor, workers, scheduler, "bound") as ex, Store(store) as st:
        result = run_bound(st, settings, out, quiet, ex)
    emit_experiment(result, ("run_id", "cells", "figures", "claims"), result["cells"], as_json)


@app.command()
def architectures(
    tasks: str = typer.Option(None, help="Comma-separated: mnist1d-10, digits-10 [both]."),
    mlp_widths: str = typer.Option(None, help="MLP hidden widths [small: 100; paper: 100,400,1600]."),
    cnn_widths: str = typer.Option(None, help="CNN channels [small: 25; paper: 25,100,400]."),
    networks: int = typer.Option(None, help="Seeds per model and width, trained at once "
                                              "[small: 3, paper: 8]."),
    epochs: int = typer.Option(None, help="Adam epochs, minibatches of 100 [150: MNIST-1D's standard "
                                          "6000 steps]."),
    boolean_samples: str = typer.Option(None, help="Random networks per Boolean-image architecture "
                                                   "[small: 2e4, paper: 1e6]."),
    device: str = typer.Option("cpu", help="cpu or cuda: where networks train and kernels are computed."),
    scale: str = SCALE,
    seed: int = typer.Option(0),
    executor: str = EXECUTOR,
    workers: int = WORKERS,
    scheduler: str = SCHEDULER,
    store: Path = STORE,
    out: Path = typer.Option(Path("nnbias-results/architectures"), help="Folder for figures.",
                             callback=writable_dir),
    as_json: bool = JSON,
    quiet: bool = QUIET,
) -> None:
    """Architecture as the prior: logistic/MLP/CNN and their NNGP/NTK and CNN-GP/CNTK on MNIST-1D-10 and
    digits-10; P(f) of a CNN against an FCN on binary images."""
    from nnbias.experiments.architectures import run_architectures, settings_for
    from nnbias.store import Store

    settings = settings_for(scale, tasks=parse_names(tasks),
                            mlp_widths=parse_widths(mlp_widths, "mlp-widths") if mlp_widths else None,
                            cnn_widths=parse_widths(cnn_widths, "cnn-widths") if cnn_widths else None,
                            networks=networks, epochs=epochs,
                            boolean_samples=parse_count("boolean-samples", boolean_samples)
                            if boolean_samples else None, device=device, seed=check_seed(seed))
    with executing(executor, workers, scheduler, "architectures") as ex, Store(store) as st:
        result = run_architectures(st, settings, out, quiet, ex)
    emit_experiment(result, ("run_id", "accuracy", "gaps", "boolean", "figures", "claims"), result["gaps"],
                    as_json)


@app.command()
def routes(
    widths: str = typer.Option(None, help="Hidden widths [small: 2,4,8,32,128; paper: 1..1024]."),
    samples: int = typer.Option(None, help="Networks per route and width [small: 4000, paper: 40000]."),
    readouts: int = typer.Option(None, help="Prior readouts tried per random hidden layer [small: 256]."),
    scale: str = SCALE,
    seed: int = typer.Option(0),
    device: str = DEVICE,
    executor: str = EXECUTOR,
    workers: int = WORKERS,
    scheduler: str = SCHEDULER,
    store: Path = STORE,
    out: Path = typer.Option(Path("nnbias-results/routes"), help="Folder for figures.",
                             callback=writable_dir),
    as_json: bool = JSON,
    quiet: bool = QUIET,
) -> None:
    """Three routes to fitting S: last-layer vs all-layer sampling, and SGD, across widths."""
    from nnbias.experiments.routes import run_routes, settings_for
    from nnbias.store import Store

    settings = settings_for(scale, widths=parse_widths(widths, "widths") if widths else None,
                            samples=samples, readouts=readouts, seed=check_seed(seed), device=device)
    with executing(executor, workers, scheduler, "routes") as ex, Store(store) as st:
        result = run_routes(st, settings, out, quiet, ex)
    emit_experiment(result, ("run_id", "pairs", "figures", "claims"), result["pairs"], as_json)


@bench_app.command("train")
def bench_train_cmd(
    runs: str = typer.Option("8192", help="Training runs for the batched engine."),
    loop_runs: str = typer.Option("30", help="Training runs for the per-network loop."),
    workers: int = typer.Option(None, help="Threads [default: all cores]."),
    as_json: bool = JSON,
) -> None:
    """Training runs/s to 100 % train accuracy: batched engine beside a per-network loop."""
    from nnbias.bench import bench_train

    r = bench_train(parse_count("runs", runs), parse_count("loop_runs", loop_runs), workers)
    emit(r, as_json, "\n".join([
        f"network: {r['network']}, |S| = {r['train_points']}, {r['config']}, {r['workers']} workers",
        f"batched engine     {r['batched_runs_per_s']:>10,.1f} runs/s  ({r['batched_runs']} runs, "
        f"{r['batched_fit_fraction']:.3f} fit S, mean {r['batched_mean_epochs']:.1f} epochs)",
        f"per-network loop   {r['loop_runs_per_s']:>10,.1f} runs/s  ({r['loop_runs']} runs, "
        f"{r['loop_fit_fraction']:.3f} fit S, mean {r['loop_mean_epochs']:.1f} epochs)",
        f"ratio {r['speedup_vs_loop']:.1f}x; 1e5 training runs would take {r['minutes_for_1e5']:.1f} min"]))


def intra_op_threads() -> None:
    """One intra-op (OpenMP/MKL) thread per process unless ``NNBIAS_THREADS`` or ``OMP_NUM_THREADS``
    says otherwise; set before torch is imported, which is when OpenMP reads it.

    Why: nnbias's parallelism is chunks side by side (threads or Dask processes), and its sweeps
    are many small tensor operations, where OpenMP threads gain nothing and spin between parallel
    regions. Measured on this 2-core machine (a `nnbias gap` slice): 11-12 s with 2 threads and
    12 s with 1 alone, but beside one busy process 26-27 s and 31 CPU-s with 2 threads against
    12 s and 12 CPU-s with 1; the whole `nnbias reproduce` gave the same claims either way."""
    threads = os.environ.get("NNBIAS_THREADS")
    if threads is not None:
        check_int("NNBIAS_THREADS", int(threads) if threads.isdigit() else threads, minimum=1)
        os.environ["OMP_NUM_THREADS"] = threads
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def main() -> None:
    try:
        intra_op_threads()
        app(standalone_mode=True)
    except NNBiasError as e:
        typer.echo(f"error: {e}", err=True)
        raise SystemExit(2) from None
    except (MemoryError, RuntimeError) as e:
        first = next(iter(str(e).strip().splitlines()), type(e).__name__)
        if not (isinstance(e, MemoryError) or "out of memory" in first or "can't allocate memory" in first):
            raise
        typer.echo(f"error: out of memory: {first}; ask for fewer networks or points at once, smaller "
                   "widths, or another --device", err=True)
        raise SystemExit(2) from None
