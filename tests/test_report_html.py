"""Report tables as the page shows them (the browser test checks that they fit the screen and the page)."""

import numpy as np
import pandas as pd

from nnbias.report.html import LANDSCAPE_COLUMNS, data_table


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
