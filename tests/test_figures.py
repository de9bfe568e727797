"""Figures: a PNG for the report and a PDF beside it for a paper, the same bytes on a rerun."""

import numpy as np

from nnbias.report import figures


def _rank_frequency(tmp_path, name, functions):
    counts = np.random.default_rng(0).integers(1, 1000, functions)
    return figures.rank_frequency(counts, int(counts.sum()), "7-40-40-1", tmp_path / f"{name}.png")


def test_each_figure_has_a_reproducible_pdf_beside_its_png(tmp_path):
    png = _rank_frequency(tmp_path, "a", 100)
    again = _rank_frequency(tmp_path, "b", 100)
    pdf = png.with_suffix(".pdf").read_bytes()
    assert png.read_bytes()[:4] == b"\x89PNG" and pdf[:5] == b"%PDF-"
    assert pdf == again.with_suffix(".pdf").read_bytes()  # no creation date inside
    assert b"/Subtype /Image" not in pdf  # 100 points stay vectors


def test_a_dense_scatter_is_rasterised_in_the_pdf(tmp_path):
    pdf = _rank_frequency(tmp_path, "dense", 4 * figures.DENSE_POINTS).with_suffix(".pdf").read_bytes()
    assert b"/Subtype /Image" in pdf and len(pdf) < 200_000


def test_a_panel_with_nothing_to_plot_says_so(tmp_path, monkeypatch):
    """bool7-random: no prior sample fits S, so the rejection panel would be empty axes."""
    import pandas as pd

    texts = []
    monkeypatch.setattr(figures, "_save", lambda fig, path: texts.extend(
        [t.get_text() for ax in fig.axes for t in ax.texts]) or path)
    table = pd.DataFrame({"log_pb_ep": [-1.0, -2.0], "rejection": [0, 0], "sgd-b8": [5, 3]})
    figures.sgd_vs_bayes(table, ["sgd-b8"], 2, "bool7-random", tmp_path / "f.png")
    assert texts == ["no function seen >= 2 times\nby a method and by this P_B"]  # the EP panel has points
