"""Self-contained HTML reports: figures embedded as base64 PNG, tables as HTML."""

from __future__ import annotations

import base64
import datetime as dt
import html
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from nnbias import __version__

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:0.85em;margin:0.5em 0}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}
th{background:#f3f3f3} img{max-width:48%;margin:0.5%} code{font-size:0.9em}
.supported{color:#176d17;font-weight:bold} .contradicted{color:#a11;font-weight:bold}
.inconclusive{color:#8a6d00;font-weight:bold} .measured{color:#555}
td.rule{font-size:0.85em;color:#555}
"""


@dataclass
class Section:
    title: str
    text: str = ""
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)


def _img(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img alt="{html.escape(Path(path).stem)}" src="data:image/png;base64,{data}">'


def claims_table(claims: list[dict[str, str]]) -> str:
    """Claim -> measured -> verdict (coloured by its word) -> the rule it was judged by."""
    def rule(c: dict[str, str]) -> str:
        return c["rule"] + (f". To decide: {c['decide']}" if c.get("decide") else "")

    rows = "".join(
        f"<tr><td>{html.escape(c['claim'])}</td><td>{html.escape(c['measured'])}</td>"
        f"<td class=\"{html.escape(c['verdict'])}\">{html.escape(c['verdict'])}</td>"
        f"<td class=\"rule\">{html.escape(rule(c))}</td></tr>"
        for c in claims)
    return f"<table><tr><th>claim</th><th>measured</th><th>verdict</th><th>rule</th></tr>{rows}</table>"


def write_report(path: Path, title: str, claims: list[dict[str, str]], sections: list[Section],
                 store_path: Path) -> Path:
    parts = [f"<h1>{html.escape(title)}</h1>",
             f"<p>nnbias {__version__}, {dt.datetime.now():%Y-%m-%d %H:%M}. Results store: "
             f"<code>{html.escape(str(store_path))}</code> (DuckDB; query it with SQL, pandas or "
             "polars).</p>",
             "<h2>Claims</h2>", claims_table(claims)]
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        if s.text:
            parts.append(f"<p>{html.escape(s.text)}</p>")
        parts.extend(_img(f) for f in s.figures)
        for caption, frame in s.tables:
            parts.append(f"<h3>{html.escape(caption)}</h3>")
            parts.append(frame.to_html(index=False, float_format=lambda v: f"{v:.4g}",
                                       na_rep="", border=0))
    doc = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc, encoding="utf-8")
    return path
