"""The README's results are the tool's output: its claims block is what ``nnbias claims --markdown``
renders from the committed export of the default run, never text typed by hand."""

import json
import shutil
from pathlib import Path

import pytest

from nnbias.errors import NNBiasError
from nnbias.estimators.verdicts import VERDICTS
from nnbias.report.claims import BEGIN, END, markdown_table, readme_block, write_readme_block

ROOT = Path(__file__).resolve().parents[1]


def test_readme_claims_block_is_the_rendered_export():
    export = json.loads((ROOT / "docs" / "claims.json").read_text(encoding="utf-8"))
    claims = export["claims"]
    assert claims and {c["verdict"] for c in claims} <= set(VERDICTS)
    assert all(c["rule"] for c in claims)  # every row states the rule it was judged by
    assert readme_block((ROOT / "README.md").read_text(encoding="utf-8")) == markdown_table(claims)


def test_writing_the_block_replaces_only_the_block(tmp_path):
    readme = tmp_path / "README.md"
    shutil.copy(ROOT / "README.md", readme)
    before = readme.read_text(encoding="utf-8")
    rows = [{"claim": "x | y", "measured": "1", "verdict": "measured", "rule": "r", "decide": ""}]
    write_readme_block(readme, markdown_table(rows))
    after = readme.read_text(encoding="utf-8")
    assert readme_block(after) == markdown_table(rows) and "x \\| y" in after
    assert after.split(BEGIN)[0] == before.split(BEGIN)[0] and after.split(END)[1] == before.split(END)[1]
    (tmp_path / "plain.md").write_text("no block here")
    with pytest.raises(NNBiasError, match="no claims block"):
        write_readme_block(tmp_path / "plain.md", "")
