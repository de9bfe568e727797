"""``nnbias reproduce``: every experiment at a small default scale, one HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def reproduce(store: Store, out: Path, settings: PfmapSettings, executor=None,
              quiet: bool = False) -> dict[str, Any]:
    """Run the experiments (resuming finished work) and write ``out/report.html``."""
    pfmap = run_pfmap(store, settings, out / "pfmap", executor, quiet)
    report = write_report(out / "report.html", "nnbias: why do neural networks generalise?",
                          pfmap["claims"], [pfmap_section(pfmap)], store.path)
    return {"report": str(report), "claims": pfmap["claims"], "pfmap": pfmap}
