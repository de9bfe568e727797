"""Self-contained HTML reports: figures embedded as base64 PNG, tables as HTML.

A report is its claims and its sections (text, tables, figures, and the
configs and seeds of the runs behind them). ``store_sections`` keeps the
sections of a reproduce run in the store (tables as JSON, figures as PNG
bytes), so ``nnbias report`` rebuilds the same page from the store alone,
without rerunning anything.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nnbias.errors import NNBiasError
from nnbias.provenance import computed_on_lines

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:0.85em;margin:0.5em 0}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}
th{background:#f3f3f3} code{font-size:0.9em}
img{width:calc(var(--w) * 0.7);max-width:100%;height:auto;margin:0.5%}
td.n{text-align:right;white-space:nowrap} td.long{word-break:break-all;min-width:12em}
div.table{overflow-x:auto} div.table table{font-size:0.75em} @page landscape{size:landscape}
.supported{color:#176d17;font-weight:bold} .contradicted{color:#a11;font-weight:bold}
.inconclusive{color:#8a6d00;font-weight:bold} .measured{color:#555}
td.rule{font-size:0.85em;color:#555} details{margin:0.3em 0} pre{font-size:0.8em;overflow-x:auto}
@media print{body{max-width:none;margin:0} img{width:calc(var(--w) * 0.52);page-break-inside:avoid}
div.table{overflow-x:visible} div.table table{font-size:0.6em}
div.table td,div.table th{padding:1px 3px} pre{white-space:pre-wrap}
div.landscape{page:landscape} div.landscape table{font-size:0.55em}
h2{page-break-before:always} h2#claims{page-break-before:avoid} details{display:block}
nav{display:none}}
"""
LANDSCAPE_COLUMNS = 9  # a table of more columns does not fit a portrait page at the print size


@dataclass
class Section:
    title: str
    text: str = ""
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    figures: list[Path | tuple[str, bytes]] = field(default_factory=list)  # PNG files or (name, bytes)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)  # run id -> its config


def _png(figure: Path | tuple[str, bytes]) -> tuple[str, bytes]:
    return figure if isinstance(figure, tuple) else (Path(figure).stem, Path(figure).read_bytes())


def _img(figure: Path | tuple[str, bytes]) -> str:
    """The figure at a fixed fraction of its own size (``--w``: its width in pixels, from the PNG
    header), so that a panel looks the same size in a one-panel and a four-panel figure."""
    name, png = _png(figure)
    width = int.from_bytes(png[16:20], "big")
    return (f'<img alt="{html.escape(name)}" style="--w:{width}px" '
            f'src="data:image/png;base64,{base64.b64encode(png).decode()}">')


def computed_on(store: Any, run_id: str) -> list[dict[str, str]]:
    """The machines and software recorded for a run and, for a reproduce run, the runs behind its
    report's sections."""
    sections = store.table("report_sections", run_id)
    behind = [r for runs in sections["runs"] for r in json.loads(runs)] if len(sections) else []
    return store.environments([run_id, *behind])


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


def _cell(value: Any) -> str:
    """What a table cell shows: floats to 4 significant digits (float32 too), nothing for a missing value."""
    if value is None or (isinstance(value, float | np.floating) and np.isnan(value)):
        return ""
    return f"{value:.4g}" if isinstance(value, float | np.floating) else str(value)


def data_table(frame: pd.DataFrame) -> str:
    """A result table that a laptop screen and a printed page can hold: headers break after their
    underscores, numbers stay whole and right-aligned and long unbroken strings (truth tables) wrap.
    A table still too wide for the screen scrolls in its own box instead of widening the page; one of
    many columns is printed on a landscape page."""
    numeric = [pd.api.types.is_numeric_dtype(t) and not pd.api.types.is_bool_dtype(t) for t in frame.dtypes]
    head = "".join(f"<th>{html.escape(str(c)).replace('_', '_<wbr>')}</th>" for c in frame.columns)

    def td(value: Any, is_number: bool) -> str:
        text = _cell(value)
        unbroken = len(text) > 24 and " " not in text
        kind = ' class="n"' if is_number else ' class="long"' if unbroken else ""
        return f"<td{kind}>{html.escape(text)}</td>"

    rows = "".join("<tr>" + "".join(td(v, n) for v, n in zip(row, numeric, strict=True)) + "</tr>"
                   for row in frame.itertuples(index=False, name=None))
    box = "table landscape" if len(frame.columns) > LANDSCAPE_COLUMNS else "table"
    return f'<div class="{box}"><table><tr>{head}</tr>{rows}</table></div>'


def _runs_block(runs: dict[str, dict[str, Any]]) -> str:
    """Each run behind a section: its id, seed and full config (folded)."""
    return "".join(
        f"<details><summary>run <code>{html.escape(run_id)}</code>, seed {html.escape(str(cfg.get('seed')))}"
        f"</summary><pre>{html.escape(json.dumps(cfg, indent=1, sort_keys=True))}</pre></details>"
        for run_id, cfg in runs.items())


def write_report(path: Path, title: str, claims: list[dict[str, str]], sections: list[Section],
                 store_path: Path, environments: list[dict[str, str]]) -> Path:
    """The page: claims first, then one section per experiment; everything embedded. ``environments``:
    what the runs were computed on (as recorded, not the machine that writes the page)."""
    env = "<br>".join(html.escape(line) for line in computed_on_lines(environments))
    toc = "".join(f'<li><a href="#s{i}">{html.escape(s.title)}</a></li>' for i, s in enumerate(sections))
    parts = [f"<h1>{html.escape(title)}</h1>",
             f"<p>Written {dt.datetime.now():%Y-%m-%d %H:%M}. Results store: "
             f"<code>{html.escape(str(store_path))}</code> (DuckDB; query it with SQL, pandas or "
             "polars; <code>nnbias report</code> rebuilds this page from it).</p>"
             f"<p><small>{env}</small></p>"
             f"<nav><ol><li><a href=\"#claims\">Claims</a></li>{toc}</ol></nav>",
             '<h2 id="claims">Claims</h2>', claims_table(claims)]
    for i, s in enumerate(sections):
        parts.append(f'<h2 id="s{i}">{html.escape(s.title)}</h2>')
        if s.text:
            parts.append(f"<p>{html.escape(s.text)}</p>")
        parts.append(_runs_block(s.runs))
        parts.extend(_img(f) for f in s.figures)
        for caption, frame in s.tables:
            parts.append(f"<h3>{html.escape(caption)}</h3>")
            parts.append(data_table(frame))
    doc = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc, encoding="utf-8")
    return path


def _frame_json(frame: pd.DataFrame) -> str:
    """A table as JSON that keeps what the page shows: Python's json writes inf and NaN (pandas'
    to_json would turn inf into null) and leaves strings of digits strings."""
    return json.dumps(frame.to_dict(orient="split", index=False), default=str)


def _json_frame(text: str) -> pd.DataFrame:
    d = json.loads(text)
    return pd.DataFrame(d["data"], columns=d["columns"])


def _figure_row(figure: Path | tuple[str, bytes], root: Path) -> dict[str, Any]:
    """A figure as stored: its PNG, the PDF written beside it (if any) and its file under the
    report folder, so that ``nnbias report`` puts both back where ``reproduce`` wrote them."""
    name, png = _png(figure)
    if isinstance(figure, tuple):
        return {"name": name, "png": png, "file": f"{name}.png", "pdf": None}
    figure = Path(figure)
    pdf = figure.with_suffix(".pdf")
    file = figure.relative_to(root) if figure.is_relative_to(root) else Path(figure.name)
    return {"name": name, "png": png, "file": file.as_posix(),
            "pdf": pdf.read_bytes() if pdf.exists() else None}


def store_sections(store: Any, run_id: str, sections: list[Section], root: Path) -> None:
    """Keep a report's sections in the store (``report_sections``, ``report_tables``,
    ``report_figures``), replacing those stored before for ``run_id``; figures' files are kept
    relative to ``root``, the report's folder."""
    rows, tables, figures = [], [], []
    for i, s in enumerate(sections):
        rows.append({"section": i, "title": s.title, "text": s.text,
                     "runs": json.dumps(s.runs, sort_keys=True)})
        tables += [{"section": i, "position": j, "caption": caption,
                    "frame": _frame_json(frame)}
                   for j, (caption, frame) in enumerate(s.tables)]
        figures += [{"section": i, "position": j, **_figure_row(f, root)} for j, f in enumerate(s.figures)]
    for name, frame in (("report_sections", rows), ("report_tables", tables), ("report_figures", figures)):
        store.replace_table(name, run_id, pd.DataFrame(frame))


def stored_sections(store: Any, run_id: str) -> list[Section]:
    """The sections ``store_sections`` kept for ``run_id``, in order (empty if none)."""
    rows = store.table("report_sections", run_id)
    if rows.empty:  # no reproduce run stored sections in this store (the table may not exist yet)
        return []
    tables, figures = store.table("report_tables", run_id), store.table("report_figures", run_id)
    out = []
    for r in rows.sort_values("section").itertuples():
        t = tables[tables["section"] == r.section].sort_values("position") if len(tables) else tables
        f = figures[figures["section"] == r.section].sort_values("position") if len(figures) else figures
        out.append(Section(r.title, r.text,
                           [(x.caption, _json_frame(x.frame)) for x in t.itertuples()],
                           [(x.name, bytes(x.png)) for x in f.itertuples()], json.loads(r.runs)))
    return out


def write_stored_figures(store: Any, run_id: str, out: Path) -> list[Path]:
    """Write the figures ``store_sections`` kept for ``run_id`` under ``out`` as ``reproduce`` laid
    them out: each PNG and the PDF beside it (stores written before PDFs were kept hold PNGs only).
    A stored path that leads out of ``out`` is refused: a store is data, not a licence to write
    anywhere."""
    figures = store.table("report_figures", run_id)
    written = []
    for row in figures.to_dict("records"):
        relative = Path(row["file"] if isinstance(row.get("file"), str) else f"{row['name']}.png")
        if relative.is_absolute() or ".." in relative.parts:
            raise NNBiasError(f"report_figures.file={relative.as_posix()!r} of run={run_id!r} is not "
                              "allowed; expected a path inside the report folder")
        file = out / relative
        file.parent.mkdir(parents=True, exist_ok=True)
        for path, data in ((file, row["png"]), (file.with_suffix(".pdf"), row.get("pdf"))):
            if isinstance(data, bytes | bytearray | memoryview):
                path.write_bytes(bytes(data))
                written.append(path)
    return written
