"""``nnbias reproduce``: every experiment at a small default scale, one HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nnbias.experiments.kernels import KernelsSettings, run_kernels
from nnbias.experiments.pfmap import PfmapSettings, run_pfmap
from nnbias.report.html import Section, write_report
from nnbias.store import Store

SMALL_SAMPLES = 1_000_000


def pfmap_section(result: dict[str, Any]) -> Section:
    top = result["top"][["truth_table", "count", "p", "p_lo", "p_hi", "lz", "entropy", "csr",
                         "generalisation", "expression_size"]]
    text = (f"{result['samples']:,} networks sampled, {result['distinct_functions']:,} distinct "
            f"functions. Run {result['run_id']}.")
    return Section("Parameter-function map: P(f) and complexity", text,
                   [("Most frequent functions (P with 95 % Clopper-Pearson interval)", top),
                    ("T uniformity (Mingard et al. 2019, Thm 4.1)", result["theorem"]),
                    ("Sampler vs exact volumes", result["exact"])],
                   list(result["figures"].values()))


def kernels_section(result: dict[str, Any]) -> Section:
    slope, se = result["exponent"]
    text = (f"Kernel predictors (analytic NNGP, NTK gradient flow) against finite ReLU networks "
            f"trained by full-batch gradient descent (NTK parametrization, same learning rate). "
            f"Empirical-NTK error exponent {slope:.3f} +- {1.96 * se:.3f}. Run {result['run_id']}.")
    return Section("Kernels against finite networks", text,
                   [("Test scores", result["results"]),
                    ("NTK fluctuations at initialisation", result["fluctuations"])],
                   list(result["figures"].values()))


def reproduce(store: Store, out: Path, settings: PfmapSettings, executor=None, quiet: bool = False,
              kernels: KernelsSettings | None = None) -> dict[str, Any]:
    """Run the experiments (resuming finished work) and write ``out/report.html``."""
    pfmap = run_pfmap(store, settings, out / "pfmap", executor, quiet)
    kern = run_kernels(store, kernels or KernelsSettings(seed=settings.sampling.seed), out / "kernels")
    claims = pfmap["claims"] + kern["claims"]
    report = write_report(out / "report.html", "nnbias: why do neural networks generalise?",
                          claims, [pfmap_section(pfmap), kernels_section(kern)], store.path)
    return {"report": str(report), "claims": claims, "pfmap": pfmap, "kernels": kern}
