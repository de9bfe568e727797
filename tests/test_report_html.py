"""Report tables as the page shows them (the browser test checks that they fit the screen and the page),
and the report's figure files as the store keeps them."""

import duckdb
import numpy as np
import pandas as pd
import pytest

from nnbias.errors import NNBiasError
from nnbias.report.html import LANDSCAPE_COLUMNS, Section, data_table, store_sections, write_stored_figures
from nnbias.store import Store


def test_a_table_shows_numbers_to_four_digits_and_marks_what_may_wrap():
    frame = pd.DataFrame({"p_lo": np.array([0.123456, np.nan], dtype=np.float32), "count": [364690, 3],
                          "truth_table": ["01" * 64, "short"], "fit": [True, False]})
    page = data_table(frame)
    assert "<th>p_<wbr>lo</th>" in page and "<th>truth_<wbr>table</th>" in page
    assert '<td class="n">0.1235</td>' in page and '<td class="n"></td>' in page  # float32 rounded; NaN blank
    assert '<td class="n">364690</td>' in page
    assert f'<td class="long">{"01" * 64}</td>' in page and "<td>short</td>" in page
    assert "<td>True</td>" in page and 'class="table"' in page and "landscape" not in page


def test_a_table_of_many_columns_goes_on_a_landscape_page():
    wide = pd.DataFrame({f"c{i}": [i] for i in range(LANDSCAPE_COLUMNS + 1)})
    assert 'class="table landscape"' in data_table(wide)
    assert "landscape" not in data_table(wide.iloc[:, :LANDSCAPE_COLUMNS])


def test_figure_files_come_back_from_the_store_where_they_were(tmp_path):
    report = tmp_path / "report"
    figure = report / "pfmap" / "rank.png"
    figure.parent.mkdir(parents=True)
    figure.write_bytes(b"\x89PNG" + bytes(12) + (640).to_bytes(4, "big"))
    figure.with_suffix(".pdf").write_bytes(b"%PDF-1.4 vector")
    with Store(tmp_path / "s.duckdb") as store:
        store_sections(store, "run-a", [Section("P(f)", figures=[figure])], report)
        written = write_stored_figures(store, "run-a", tmp_path / "rebuilt")
    assert sorted(p.relative_to(tmp_path / "rebuilt").as_posix() for p in written) == ["pfmap/rank.pdf",
                                                                                      "pfmap/rank.png"]
    assert [p.read_bytes() for p in sorted(written)] == [b"%PDF-1.4 vector", figure.read_bytes()]


def test_a_store_written_before_pdfs_were_kept_still_gives_its_pngs(tmp_path):
    """Such a store's report_figures has no file and pdf columns; opening it for writing adds them."""
    con = duckdb.connect(str(tmp_path / "old.duckdb"))
    con.execute("CREATE TABLE report_figures AS SELECT 0::BIGINT AS section, 0::BIGINT AS position, "
                "'rank' AS name, '\\x89PNG'::BLOB AS png, 'run-a' AS run_id")
    con.close()
    with Store(tmp_path / "old.duckdb") as store:
        written = write_stored_figures(store, "run-a", tmp_path / "rebuilt")
        columns = {c for c, *_ in store.con.execute("DESCRIBE report_figures").fetchall()}
    assert [p.name for p in written] == ["rank.png"] and written[0].read_bytes() == b"\x89PNG"
    assert {"file", "pdf"} <= columns


@pytest.mark.parametrize("file", ["/tmp/elsewhere.png", "../outside.png", "pfmap/../../outside.png"])
def test_a_stored_figure_path_that_leads_out_of_the_report_folder_is_refused(tmp_path, file):
    with Store(tmp_path / "s.duckdb") as store:
        store.replace_table("report_figures", "run-a", pd.DataFrame(
            [{"section": 0, "position": 0, "name": "rank", "png": b"\x89PNG", "file": file, "pdf": None}]))
        with pytest.raises(NNBiasError, match="is not allowed; expected a path inside"):
            write_stored_figures(store, "run-a", tmp_path / "rebuilt")
    assert not (tmp_path / "outside.png").exists() and not (tmp_path / "rebuilt").exists()
