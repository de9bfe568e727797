"""``nnbias reproduce``: every experiment at a small default scale, one HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nnbias.errors import check_choice
from nnbias.experiments import architectures as architectures_exp
from nnbias.experiments import bound as bound_exp
from nnbias.experiments import features as features_exp
from nnbias.experiments import gap as gap_exp
from nnbias.experiments import gibbs as gibbs_exp
from nnbias.experiments import inside as inside_exp
from nnbias.experiments import kernels as kernels_exp
from nnbias.experiments import posterior as posterior_exp
from nnbias.experiments import routes as routes_exp
from nnbias.experiments import sgd_bayes as sgd_bayes_exp
from nnbias.experiments import transfer as transfer_exp
from nnbias.experiments.architectures import ArchitecturesSettings, run_architectures
from nnbias.experiments.bound import BoundSettings, run_bound
from nnbias.experiments.features import FeaturesSettings, run_features
from nnbias.experiments.gap import GapSettings, run_gap
from nnbias.experiments.gibbs import GibbsSettings, run_gibbs
from nnbias.experiments.inside import InsideSettings, run_inside
from nnbias.experiments.kernels import KernelsSettings, run_kernels
from nnbias.experiments.pfmap import PfmapSettings, default_settings, run_pfmap
from nnbias.experiments.posterior import PosteriorSettings, run_posterior
from nnbias.experiments.routes import RoutesSettings, run_routes
from nnbias.experiments.sgd_bayes import SgdBayesSettings, run_sgd_bayes
from nnbias.experiments.transfer import TransferSettings, run_transfer
from nnbias.report.html import Section, computed_on, store_sections, write_report
from nnbias.store import Store

TITLE = "nnbias: why do neural networks generalise?"
SMALL_SAMPLES = 1_000_000
PAPER_SAMPLES = 100_000_000  # the original P(f) runs took 10^7 - 10^10 samples
PAPER_THEOREM_SAMPLES = 1_000_000


def scale_settings(scale: str, seed: int = 0, samples: int | None = None, **sampling: Any) -> dict[str, Any]:
    """Every experiment's settings at ``small`` (minutes on 2 cores) or ``paper`` scale (hours; the
    original papers' sample sizes and widths), as ``reproduce``'s keyword arguments."""
    paper = check_choice("scale", scale, ("small", "paper")) == "paper"
    samples = samples or (PAPER_SAMPLES if paper else SMALL_SAMPLES)
    pf = default_settings(samples, seed=seed, **sampling)
    if paper:
        pf = PfmapSettings(pf.sampling, PAPER_THEOREM_SAMPLES, PAPER_THEOREM_SAMPLES)
    shared = {"seed": seed, "device": sampling.get("device", "cpu")}
    return {"settings": pf, "kernels": kernels_exp.settings_for(scale, **shared),
            "sgd_bayes": sgd_bayes_exp.settings_for(scale, rejection_samples=samples, **shared),
            "features": features_exp.settings_for(scale, **shared),
            "gap": gap_exp.settings_for(scale, **shared),
            "transfer": transfer_exp.settings_for(scale, **shared),
            "inside": inside_exp.settings_for(scale, **shared),
            "posterior": posterior_exp.settings_for(scale, **shared),
            "gibbs": gibbs_exp.settings_for(scale, **shared),
            "routes": routes_exp.settings_for(scale, **shared),
            "bound": bound_exp.settings_for(scale, **shared),
            "architectures": architectures_exp.settings_for(scale, **shared)}


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
    slope, half = result["exponent"]
    text = (f"Kernel predictors (analytic NNGP, NTK gradient flow) against finite ReLU networks "
            f"trained by full-batch gradient descent (NTK parametrization, same learning rate). "
            f"Empirical-NTK error exponent {slope:.3f} +- {half:.3f} (95 % CI). Run {result['run_id']}.")
    return Section("Kernels against finite networks", text,
                   [("Test scores", result["results"]),
                    ("NTK fluctuations at initialisation", result["fluctuations"])],
                   list(result["figures"].values()))


def sgd_bayes_section(result: dict[str, Any]) -> Section:
    text = ("P_SGD(f|S): networks drawn from the prior and trained to 100 % training accuracy, counted by "
            "the function they compute on the test set E. P_B(f|S): rejection sampling from the stored "
            "parameter-function map (Boolean tasks), the NNGP with expectation propagation, and training "
            "only the last layer. Correlations are of log probabilities over the functions seen at least "
            "twice; TV and its permutation p-value compare whole distributions with rejection sampling. "
            f"Run {result['run_id']}.")
    summary = result["summary"].drop(columns=["run_id"])
    return Section("Is SGD a Bayesian sampler? P_SGD against P_B", text, [("Summary", summary)],
                   list(result["figures"].values()))


def features_section(result: dict[str, Any]) -> Section:
    text = ("Coordinate check and width sweep for the abc-parametrizations (standard with lr ~ 1/width, NTK, "
            "muP, mean-field). Exponents are slopes of log(feature movement) against log(width) with 95 % "
            "confidence intervals; per-cell measures are means over seeds. Run " + result["run_id"] + ".")
    cols = ["task", "parametrization", "width", "test_score", "train_loss", "output_change", "act_change_1",
            "kernel_distance", "alignment_init", "alignment_end", "cka_1", "max_angle_1", "grad_fraction_1"]
    keys = ["task", "parametrization", "width"]
    cells = result["cells"][cols].groupby(keys, sort=False).mean().reset_index()
    return Section("Feature learning across widths and parametrizations", text,
                   [("Coordinate-check exponents", result["coord_exponents"]),
                    ("Fitted exponents of feature movement", result["exponents"]),
                    ("Per-cell measures (mean over seeds)", cells)],
                   list(result["figures"].values()))


def gap_section(result: dict[str, Any]) -> Section:
    text = ("Task ladder, easy to hard for kernels. Per width: networks in NTK parametrization trained by "
            "full-batch gradient descent (lr = 1/lambda_max of the NTK), their linearisations trained the "
            "same way from the same initialisation, and muP networks (base learning rate tuned per task at "
            "the base width on training loss, carried to other widths). Errors: 1 - accuracy, or MSE / "
            "Var(y). 'NTK net t=train' is the expected error of an infinitely wide network from a random "
            "initialisation trained as long (mean and variance of Lee et al. 2019). The gap is best kernel "
            "error - muP error; it is open where it exceeds max(0.05, 2 sd). Run " + result["run_id"] + ".")
    return Section("Where the kernel gap opens", text,
                   [("Per task: best kernel against networks at the widest width", result["summary"]),
                    ("Full vs linearised training: fitted exponents against width", result["divergence"]),
                    ("Sparse parity: smallest |S| reaching the error threshold", result["learned"]),
                    ("Test errors (mean and sd over seeds)", result["scores"]),
                    ("muP learning-rate tuning at the base width", result["learning_rates"])],
                   list(result["figures"].values()))


def transfer_section(result: dict[str, Any]) -> Section:
    text = ("Pretrain on task A, adapt on task B with n_B examples; every learner from the same "
            "initialisations, centred (its initial function subtracted), trained by full-batch gradient "
            "descent on the squared error, also from scratch on B. Gain = error from scratch - error after "
            "pretraining (normalised test MSE; > 0: transfer helped), mean and 95 % interval over seeds. "
            "The tangent model (linearised at initialisation) can only move its starting point; the muP "
            "network learns features. Run " + result["run_id"] + ".")
    return Section("Transfer: tangent space against feature learning", text,
                   [("Transfer gains (mean over seeds, 95 % interval)", result["gains"])],
                   list(result["figures"].values()))


def inside_section(result: dict[str, Any]) -> Section:
    text = ("The empirical NTK of a finite network at initialisation, its linear system solved (p* = "
            "p0 + J^T (J J^T)^-1 (y - f0), the linearised network trained to convergence), and p* put back "
            "into the nonlinear network, beside the network trained by gradient descent from the same "
            "initialisation. "
            "Feature measures are of the hidden layer on test inputs: relative change, the largest principal "
            "angle between top-k PCA subspaces, and the share of the change along the top-k output-gradient "
            "directions. Run " + result["run_id"] + ".")
    cells = result["cells"].drop(columns="seed").groupby(["task", "parametrization", "solution", "width"],
                                                         sort=False).mean().reset_index()
    return Section("Inside the kernel-regime solution", text,
                   [("Fitted exponents against width", result["exponents"]),
                    ("Per cell (mean over seeds)", cells)], list(result["figures"].values()))


def posterior_section(result: dict[str, Any]) -> Section:
    text = ("Posterior samples of a 7-bit Boolean task's networks (two hidden layers, NTK parametrization) "
            "conditioned on fitting S: exact by rejection from the prior, beside networks trained to fit S "
            "by gradient descent (NTK parametrization and muP). Per layer: the centred alignment (linear "
            "CKA) of its representation of all inputs with the target, posterior against prior (gain, Welch "
            "95 % interval); the distance (1 - cosine) of the layer's empirical NNGP from the prior's, "
            "beside the same distance between two prior samples of that size (the floor); the CKA of each "
            "posterior network's representation with an independent prior network's, beside that of two "
            "prior networks; an energy test "
            "of one neuron's incoming weights against the prior's; the mean top eigenvalue of W^T W "
            "/ fan_out against the prior's and the Marchenko-Pastur edge. "
            "Exponents: gain = a width^b fitted to the raw gains with their errors. Run "
            + result["run_id"] + ".")
    cells = result["cells"][["width", "method", "layer", "networks", "acceptance", "align", "prior_align",
                             "gain", "gain_lo", "gain_hi", "energy", "energy_p", "kernel_distance",
                             "kernel_distance_floor", "cka_with_prior", "cka_prior_pairs", "top_eig",
                             "prior_top_eig", "mp_edge"]]
    return Section("Does Bayesian sampling move hidden layers?", text,
                   [("Width exponents of the alignment gain", result["exponents"]),
                    ("Per cell", cells)], list(result["figures"].values()))


def gibbs_section(result: dict[str, Any]) -> Section:
    text = ("A 5-bit task small enough to know the Gibbs posterior exp(-L/T) prior over the functions on "
            "E exactly (10^6 prior draws reweighted; effective sample sizes below). Langevin chains at the "
            "same T across step sizes against it (TV with its 95 % upper bound, chi-square test); SGD "
            "trained to fit S at several learning rates and batch sizes against the tempered posteriors "
            "(T = 0: the rejection posterior P_B). Run " + result["run_id"] + ".")
    best = result["tempering"].loc[result["tempering"].groupby(["lr", "batch"])["tv"].idxmin()]
    return Section("Langevin against Boltzmann; optimizers against tempered posteriors", text,
                   [("Langevin against the exact Gibbs posterior", result["langevin"]),
                    ("Closest tempered posterior per SGD setting", best),
                    ("Reference effective sample sizes", result["references"][["temperature", "ess"]])],
                   list(result["figures"].values()))


def routes_section(result: dict[str, Any]) -> Section:
    text = ("Three routes to fitting S with one hidden ReLU layer of growing width: (A) random frozen hidden "
            "layers with the readout sampled from the prior until it fits (one sample per expressive hidden "
            "layer) or trained by SGD; (B) all layers sampled until the network fits (P_B); (C) the whole "
            "network trained by SGD. TV between the routes' distributions over the functions on E, with "
            "permutation p-values and bootstrap 95 % upper bounds; log-frequency correlations with Fisher-z "
            "intervals. Run " + result["run_id"] + ".")
    spread = result["cells"][result["cells"]["route"] == "last-sample"][["width", "tried", "fitted",
                                                                           "acceptance_cv"]]
    return Section("Three routes to fitting S", text,
                   [("Routes compared pairwise", result["pairs"]),
                    ("Expressive random features and the spread of P(S | features)", spread)],
                   list(result["figures"].values()))


def bound_section(result: dict[str, Any]) -> Section:
    text = ("The PAC-Bayes marginal-likelihood bound 1 - exp(-(ln 1/P(S) + 2 ln m + 1 - ln delta)/m), "
            "delta = 0.05, with P(S) from EP on the NNGP, against the test error (on clean test labels) of "
            "networks trained by Adam to 100 % training accuracy, across training-set sizes and label "
            "corruption. Run " + result["run_id"] + ".")
    return Section("PAC-Bayes bound against measured error", text, [("Per setting", result["cells"])],
                   list(result["figures"].values()))


def architectures_section(result: dict[str, Any]) -> Section:
    text = ("Logistic regression, MLP and CNN (MNIST-1D's own models; Adam lr 0.01, minibatches of 100, "
            "150 epochs (on MNIST-1D its standard 6000 steps), standard parametrization) with 95 % "
            "intervals over seeds, beside the "
            "infinite-width kernels of the same layer descriptions as 10-output kernel regression on "
            "centred one-hot targets (NNGP / CNN-GP: GP posterior mean; NTK / CNTK: gradient flow to "
            "t = inf; ridge 1e-4 of the mean diagonal). Pooled (GAP) kernels at small scale use a subset "
            "of the data (column 'train') and are not compared in the gap table. Published MNIST-1D "
            "accuracies: logistic 32 %, MLP 68 %, CNN 94 % (Greydanus 2020). Boolean images: random "
            "networks on all 512 binary 3x3 images. Run " + result["run_id"] + ".")
    return Section("Architecture as the prior: CNNs, MLPs and their kernels", text,
                   [("Trained networks: test accuracy", result["accuracy"]),
                    ("Kernels: test accuracy", result["kernels"]),
                    ("Gap: trained network - best kernel of its architecture", result["gaps"]),
                    ("Random functions on 3x3 binary images", result["boolean"])],
                   list(result["figures"].values()))


def reproduce(store: Store, out: Path, settings: PfmapSettings, executor=None, quiet: bool = False,
              kernels: KernelsSettings | None = None, sgd_bayes: SgdBayesSettings | None = None,
              features: FeaturesSettings | None = None, gap: GapSettings | None = None,
              transfer: TransferSettings | None = None,
              inside: InsideSettings | None = None, posterior: PosteriorSettings | None = None,
              gibbs: GibbsSettings | None = None, routes: RoutesSettings | None = None,
              bound: BoundSettings | None = None,
              architectures: ArchitecturesSettings | None = None) -> dict[str, Any]:
    """Run the experiments (resuming finished work) and write ``out/report.html``.

    The P_B-by-rejection runs of the 7-input tasks reuse the main P(f) run when
    it samples the same network with the same seed and size.
    """
    pfmap = run_pfmap(store, settings, out / "pfmap", executor, quiet)
    kern = run_kernels(store, kernels or KernelsSettings(seed=settings.sampling.seed), out / "kernels", quiet,
                       executor)
    sgd = run_sgd_bayes(store, sgd_bayes or SgdBayesSettings(seed=settings.sampling.seed,
                                                             rejection_samples=settings.sampling.samples),
                        out / "sgd_bayes", executor, quiet)
    seed = settings.sampling.seed
    feat = run_features(store, features or FeaturesSettings(seed=seed), out / "features", quiet, executor)
    gaps = run_gap(store, gap or GapSettings(seed=seed), out / "gap", quiet, executor)
    moved = run_transfer(store, transfer or TransferSettings(seed=seed), out / "transfer", quiet, executor)
    solved = run_inside(store, inside or InsideSettings(seed=seed), out / "inside", quiet, executor)
    post = run_posterior(store, posterior or PosteriorSettings(seed=seed), out / "posterior", quiet, executor)
    gibbs_result = run_gibbs(store, gibbs or GibbsSettings(seed=seed), out / "gibbs", quiet, executor)
    paths = run_routes(store, routes or RoutesSettings(seed=seed), out / "routes", quiet, executor)
    bounds = run_bound(store, bound or BoundSettings(seed=seed), out / "bound", quiet, executor)
    archs = run_architectures(store, architectures or ArchitecturesSettings(seed=seed), out / "architectures",
                              quiet, executor)
    claims = (pfmap["claims"] + kern["claims"] + sgd["claims"] + feat["claims"] + gaps["claims"]
              + moved["claims"] + solved["claims"] + post["claims"] + gibbs_result["claims"]
              + paths["claims"] + bounds["claims"] + archs["claims"])
    parts = {"pfmap": (pfmap, pfmap_section), "kernels": (kern, kernels_section),
             "sgd_bayes": (sgd, sgd_bayes_section), "features": (feat, features_section),
             "gap": (gaps, gap_section), "transfer": (moved, transfer_section),
             "inside": (solved, inside_section), "posterior": (post, posterior_section),
             "gibbs": (gibbs_result, gibbs_section), "routes": (paths, routes_section),
             "bound": (bounds, bound_section), "architectures": (archs, architectures_section)}
    sections = []
    for result, section in parts.values():
        sections.append(section(result))
        sections[-1].runs = {result["run_id"]: store.run_config(result["run_id"])}
    # the reproduce run is named by the runs it gathers; its claim table is what `nnbias claims` prints,
    # its sections what `nnbias report` rebuilds the page from
    run_id = store.start_run("reproduce", {name: r["run_id"] for name, (r, _) in parts.items()},
                             settings.sampling.seed)
    store.save_claims(run_id, claims)
    store_sections(store, run_id, sections, out)
    store.finish_run(run_id)
    report = write_report(out / "report.html", TITLE, claims, sections, store.path,
                          computed_on(store, run_id))
    return {"run_id": run_id, "report": str(report), "claims": claims, "pfmap": pfmap, "kernels": kern,
            "sgd_bayes": sgd, "features": feat, "gap": gaps, "transfer": moved, "inside": solved,
            "posterior": post, "gibbs": gibbs_result, "routes": paths, "bound": bounds,
            "architectures": archs}
