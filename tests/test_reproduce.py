import html
import re
import shutil
from pathlib import Path

import pytest

from nnbias.estimators.verdicts import VERDICTS
from nnbias.experiments.architectures import ArchitecturesSettings
from nnbias.experiments.bound import BoundSettings
from nnbias.experiments.features import FeaturesSettings
from nnbias.experiments.gap import GapSettings
from nnbias.experiments.gibbs import GibbsSettings
from nnbias.experiments.inside import InsideSettings
from nnbias.experiments.kernels import KernelsSettings
from nnbias.experiments.pfmap import PfmapSettings
from nnbias.experiments.posterior import PosteriorSettings
from nnbias.experiments.reproduce import reproduce
from nnbias.experiments.routes import RoutesSettings
from nnbias.experiments.sampling import SamplingConfig
from nnbias.experiments.sgd_bayes import SgdBayesSettings
from nnbias.experiments.transfer import TransferSettings
from nnbias.provenance import describe, environment
from nnbias.spec import NetworkSpec
from nnbias.store import Store


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory):
    """One small reproduce run shared by the report's tests: (result, store tables, stored claims, out)."""
    tmp_path = tmp_path_factory.mktemp("reproduce")
    settings = PfmapSettings(SamplingConfig(NetworkSpec(6, (20, 20)), 60_000, chunk_size=20_000),
                             theorem_samples=60_000, exact_samples=100_000)
    with Store(tmp_path / "s.duckdb") as st:
        small = KernelsSettings(tasks=("digits-0-1",), widths=(32, 128), networks=2, steps=200,
                                convergence_widths=(32, 128, 512), convergence_seeds=2,
                                fluctuation_depths=(1, 3), fluctuation_widths=(16, 64),
                                fluctuation_networks=100)
        sgd = SgdBayesSettings(tasks=("bool5-0011",), methods=("sgd-b8",), runs=300, chunk_size=100,
                               rejection_samples=100_000)
        feat = FeaturesSettings(tasks=("single-index",), parametrizations=("ntk", "mup"), widths=(32, 64),
                                networks=2, steps=5, coord_widths=(32, 64, 128))
        gap = GapSettings(tasks=("linear", "parity-k2"), widths=(32, 64), networks=2, steps=50,
                          etas=(0.5, 1.0), curve_tasks=("parity-k2",), curve_sizes=(50, 100), curve_width=32)
        moved = TransferSettings(pairs=("single-index-same", "single-index-flip"), sizes=(8, 16),
                                 claim_size=8, width=16, networks=2, steps=20)
        solved = InsideSettings(widths=(16, 32), networks=2, steps=20)
        post = PosteriorSettings(widths=(8, 16, 32), samples=40, prior_samples=80, permutations=20)
        gibbs = GibbsSettings(draws=20_000, chains=300, steps=30, step_sizes=(0.1, 1.0), sgd_lrs=(0.1,),
                              sgd_batches=(6,), sgd_epochs=30, temperatures=(0.1, 1.0))
        bounds = BoundSettings(tasks=("bool7-0011",), corruptions=(0.0, 1.0), networks=2, max_epochs=100)
        result = reproduce(st, tmp_path / "out", settings, quiet=True, kernels=small, sgd_bayes=sgd,
                           features=feat, gap=gap, transfer=moved, inside=solved, posterior=post,
                           gibbs=gibbs, bound=bounds, architectures=ArchitecturesSettings(
                               tasks=("digits-10",), mlp_widths=(16,), cnn_widths=(4,), networks=2, epochs=4,
                               kernel_train=150, kernel_test=100, pooled_train=60, pooled_test=40,
                               boolean_samples=400),
                           routes=RoutesSettings(widths=(2, 8), samples=200, readouts=32, max_epochs=50))
        tables = {r[0] for r in st.con.execute("SHOW TABLES").fetchall()}
        stored = st.claims(result["run_id"])
    return result, tables, stored, tmp_path / "out"


def test_reproduce_writes_a_self_contained_report(reproduced):
    result, tables, stored, out = reproduced
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 23
    assert "<th>verdict</th>" in html and "<th>rule</th>" in html and not re.search(r'src="(?!data:)', html)
    assert {"pfmap_top", "pfmap_theorem", "pfmap_exact", "kernels_results", "sgd_bayes_summary",
            "psgd_chunks", "sgd_bayes_ep", "features_coord", "features_cells",
            "gap_kernels", "gap_cells", "gap_lr", "gap_curves", "transfer_cells", "inside_cells",
            "posterior_cells", "gibbs_references", "gibbs_cells", "routes_cells", "bound_cells",
            "claims", "run_sessions"} <= tables
    assert any(c["claim"].startswith("A4: on bool5-0011") for c in result["claims"])
    assert stored == result["claims"]  # what `nnbias claims` prints is what the run judged
    assert {c["verdict"] for c in stored} <= set(VERDICTS)

    def verdict(prefix: str) -> str:
        return next(c["verdict"] for c in result["claims"] if c["claim"].startswith(prefix))

    # Thm 4.1 and the exact volumes are mathematical facts: the sampler must agree with them
    assert verdict("A3: a bias-free") == "supported" and verdict("A2: the sampler") == "supported"
    assert verdict("A1: large volume") == "supported"


def test_report_is_rebuilt_from_the_store_alone(reproduced, tmp_path):
    """`nnbias report` writes the same claims, figures and tables from the store, and the same figure
    files (PNG and PDF, where reproduce put them), without the figure files and without rerunning anything."""
    import json
    import subprocess
    import sys

    result, _, _, out = reproduced
    original = (out / "report.html").read_text()
    hidden = [*out.rglob("*.png"), *out.rglob("*.pdf")]
    for figure in hidden:  # the rebuild must not read them
        figure.rename(figure.with_name(figure.name + ".bak"))
    try:
        r = subprocess.run([sys.executable, "-m", "nnbias", "report", "--store", str(out.parent / "s.duckdb"),
                            "--out", str(tmp_path / "rebuilt"), "--json"], capture_output=True, text=True,
                           timeout=300)
    finally:
        for figure in hidden:
            figure.with_name(figure.name + ".bak").rename(figure)
    assert r.returncode == 0, r.stderr
    rebuilt = (tmp_path / "rebuilt" / "report.html").read_text()
    files = [Path(f).relative_to(tmp_path / "rebuilt") for f in json.loads(r.stdout)["figures"]]
    assert sorted(f.suffix for f in files) == [".pdf"] * 23 + [".png"] * 23  # each figure of the page, twice
    assert all((tmp_path / "rebuilt" / f).read_bytes() == (out / f).read_bytes() for f in files)

    def body(page: str) -> str:  # everything after the header line that carries the time of writing
        return page[page.index('<h2 id="claims">'):]

    assert body(rebuilt) == body(original)
    assert rebuilt.count("<details>") == original.count("<details>") == 12  # each section's run config


def test_report_and_claims_say_what_the_runs_were_computed_on(reproduced, tmp_path):
    """The machine on the page and in `claims --json` is the one the store recorded for the runs, not
    the one that rebuilds the page (results agree bit for bit on one kind of CPU only)."""
    import json
    import subprocess
    import sys

    _, _, _, out = reproduced
    here = environment()
    assert "Computed on " + html.escape(describe(here)) in (out / "report.html").read_text()
    moved = tmp_path / "moved.duckdb"
    shutil.copyfile(out.parent / "s.duckdb", moved)
    with Store(moved) as st:
        st.con.execute("UPDATE run_sessions SET environment = json_merge_patch(environment, ?)",
                       ['{"cpu": "Elsewhere CPU 9000"}'])

    def nnbias(*args: str) -> str:
        return subprocess.run([sys.executable, "-m", "nnbias", *args, "--store", str(moved)], check=True,
                              capture_output=True, text=True, timeout=300).stdout

    nnbias("report", "--out", str(tmp_path / "rebuilt"))
    page = (tmp_path / "rebuilt" / "report.html").read_text()
    assert "Computed on Elsewhere CPU 9000" in page and html.escape(describe(here)) not in page
    assert json.loads(nnbias("claims", "--json"))["environments"] == [{**here, "cpu": "Elsewhere CPU 9000"}]


def test_report_renders_in_a_real_browser(reproduced):
    """Headless Chromium (Debian's chromium + chromium-driver, installed by .ci/run) opens the report:
    every image decodes (naturalWidth > 0), the console has no errors, a screenshot is taken, the page
    fits a laptop screen's width and every table fits the printed page it goes on."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        pytest.skip("no chromium/chromedriver on this machine (.ci/run installs Debian's chromium)")
    _, _, _, out = reproduced
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--window-size=1280,2000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver_path), options=options)
    try:
        browser.get((out / "report.html").resolve().as_uri())
        widths = browser.execute_script(
            "return Array.from(document.images, i => i.complete ? i.naturalWidth : 0)")
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        verdicts = browser.execute_script(
            "return Array.from(document.querySelectorAll('td.supported, td.contradicted, "
            "td.inconclusive, td.measured'), td => td.textContent)")
        assert browser.save_screenshot(str(out / "report.png"))
        shown = browser.execute_script(  # displayed width / the PNG's, for images narrower than the page
            "return Array.from(document.images).filter(i => i.width < document.body.clientWidth - 40)"
            ".map(i => i.width / i.naturalWidth)")
        on_screen = browser.execute_script(
            "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        browser.set_window_size(740, 2000)
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
        printed = browser.execute_script(
            "return Array.from(document.querySelectorAll('div.table > table'),"
            " t => [t.parentElement.classList.contains('landscape'), t.getBoundingClientRect().width])")
    finally:
        browser.quit()
    assert len(widths) == 23 and all(w > 0 for w in widths), widths
    assert errors == []
    assert len(verdicts) == len(reproduced[0]["claims"])  # every row's verdict cell is styled by its word
    assert (out / "report.png").stat().st_size > 20_000
    assert len(shown) > 12 and max(shown) - min(shown) < 0.01, shown  # every panel drawn at one scale
    assert on_screen[0] <= on_screen[1], on_screen  # a laptop screen: the page itself never scrolls sideways
    # printed, no table is cut off: the printable width at Chrome's 0.4 in margins, 96 px per inch, is
    # 717 px on a portrait A4 page and 979 px on a landscape Letter page (the narrower of the two papers)
    portrait, landscape = ([w for wide, w in printed if wide is side] for side in (False, True))
    assert portrait and landscape and max(portrait) <= 717 and max(landscape) <= 979, printed


@pytest.mark.parametrize("settings", [ArchitecturesSettings, BoundSettings, FeaturesSettings, GapSettings,
                                      GibbsSettings, InsideSettings, KernelsSettings, PosteriorSettings,
                                      RoutesSettings, SgdBayesSettings, TransferSettings])
def test_every_sweep_over_nothing_is_refused_and_a_perceptron_is_not(settings):
    """Each tuple field of an experiment's settings is a sweep; emptied, it is one line naming it (the
    run would otherwise end in max() of an empty sequence or a claim over no rows); ``hidden=()``
    describes a perceptron and stays allowed."""
    import dataclasses

    from nnbias.errors import NNBiasError

    defaults = settings()
    sweeps = [f.name for f in dataclasses.fields(settings) if isinstance(getattr(defaults, f.name), tuple)]
    assert sweeps
    for name in sweeps:
        if name == "hidden":
            dataclasses.replace(defaults, hidden=())
            continue
        with pytest.raises(NNBiasError, match=rf"^{name}=\(\) is not allowed; expected at least one value$"):
            dataclasses.replace(defaults, **{name: ()})
