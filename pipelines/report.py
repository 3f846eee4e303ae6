"""``datawall report``: one round's report as a self-contained HTML page plus PNG figures.

Written to ``HOME/reports/round-NNNN/`` (or ``--out DIR``): ``index.html`` and one PNG per
figure. The page has inline CSS and no external resources; it references the PNGs by
relative path, so the folder can be copied or served anywhere. Figures:

1. the round's decisions by reason and decider,
2. quality histograms of the round's candidates and the model's samples, with the bar,
3. the bar over rounds, 4. expert agreement, 5. model lineage with validation loss,
6. the latest ``datawall experiment``: validation loss against tokens seen per arm.

Every figure is drawn from named queries (``pipelines/sql/report_*.sql``); the page shows
each query and its result under the figure, so every number can be had again with
``datawall sql``. A figure whose query returns nothing gets a "no data yet" note instead.

Reports take no writer lock (readers never lock): the folder is built under a temporary
name beside its destination and renamed into place, so a reader sees the old report or
the new one, never half of one.
"""

from __future__ import annotations

import html
import logging
import os
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
from matplotlib.figure import Figure

from pipelines import report_plots as plots
from pipelines.catalog import Catalog, load_sql, now

log = logging.getLogger("pipelines")

GENERATOR = "datawall report"  # marks a folder as ours: --out may replace only such a folder
MAX_TABLE_ROWS = 30
DPI = 100


class ReportError(ValueError):
    """The report cannot be written as asked (unknown round, no rounds, bad --out)."""


@dataclass(frozen=True)
class Context:
    """What a figure needs besides its query results."""

    round: int
    round_model: str | None  # the model trained in the round


@dataclass(frozen=True)
class FigureSpec:
    slug: str  # file name stem of the PNG
    title: str
    caption: str
    queries: tuple[str, ...]  # pipelines/sql/NAME.sql; the first must have rows to draw
    draw: Callable[[Sequence[pa.Table], Context], Figure]
    empty: str  # the note shown when the first query has no rows


FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec(
        "1-decisions",
        "Decisions by reason",
        "Candidates decided in this round, one bar per reason and decider (ingest rules, "
        "dedup, the routing model, experts), coloured by decision.",
        ("report_decisions",),
        lambda t, c: plots.decisions_figure(t[0], c.round),
        "No decisions were recorded in this round.",
    ),
    FigureSpec(
        "2-score-histograms",
        "Quality against the bar",
        "Top: quality of the round's scored candidates, stacked by the round's routing "
        "decision (rule rejects have no quality score). Bottom: the model's own samples, "
        "whose quantile is the bar. Both on the scale routing compares on; the black line "
        "is the bar, the shaded band bar ± margin (the hard cases).",
        ("report_score_hist",),
        lambda t, c: plots.score_hist_figure(t[0], c.round),
        "No scores or no bar for this round yet.",
    ),
    FigureSpec(
        "3-bar-over-rounds",
        "The bar over rounds",
        "The bar of every finished round as stored in the bars table: on the round's own "
        "classifier, on the fixed anchor scale (comparable across rounds), and the previous "
        "round's samples under this round's classifier.",
        ("report_bar_rounds",),
        lambda t, c: plots.bar_rounds_figure(t[0], c.round),
        "No finished round has a bar yet.",
    ),
    FigureSpec(
        "4-annotation-agreement",
        "Annotation agreement",
        "Left: each annotator's share of votes that match the experts' majority label on "
        "the hard cases this round sent to experts (candidates with two or more votes; the "
        "annotator's own vote counts towards the majority). Right: per round that queued "
        "hard cases, the mean share of votes for the majority label and the unanimous share.",
        ("report_agreement_rounds", "report_agreement_annotators"),
        lambda t, c: plots.agreement_figure(t[0], t[1], c.round),
        "No expert annotations yet: answer the queued hard cases (datawall annotate …).",
    ),
    FigureSpec(
        "5-model-lineage",
        "Model lineage and validation loss",
        "Every registered model in order of creation with its validation bits per byte; "
        "arrows go from parent to child. The reference model is starred, its loss dashed.",
        ("report_lineage",),
        lambda t, c: plots.lineage_figure(t[0], c.round_model),
        "No model registered yet.",
    ),
    FigureSpec(
        "6-experiment",
        "Experiment: loss against tokens by data arm",
        "The latest `datawall experiment`: validation bits per byte against tokens seen, "
        "mean over seeds with the min–max band; dashed, the full arm's final loss; a dot "
        "where an arm's mean curve first reaches it. The table gives the final loss per "
        "arm, mean ± std over seeds.",
        ("report_experiment_curves", "report_experiment_arms"),
        lambda t, c: plots.experiment_figure(t[0], t[1]),
        "No experiment yet: run `datawall experiment` to compare the data arms.",
    ),
)


@dataclass(frozen=True)
class QueryResult:
    name: str
    about: str  # the file's leading comment
    sql: str  # the query without that comment, the round filled in: pastes into `datawall sql`
    table: pa.Table | None
    error: str | None = None


@dataclass
class RenderedFigure:
    spec: FigureSpec
    results: list[QueryResult]
    png: str | None = None  # file name inside the report folder
    note: str | None = None


@dataclass
class Report:
    round: int
    folder: Path
    figures: list[RenderedFigure] = field(default_factory=list)

    @property
    def index(self) -> Path:
        return self.folder / "index.html"

    @property
    def pngs(self) -> list[str]:
        return [f.png for f in self.figures if f.png]


def finished_rounds(catalog: Catalog) -> list[int]:
    return [
        r["round"]
        for r in catalog.query("SELECT DISTINCT round FROM rounds ORDER BY 1").to_pylist()
    ]


def pick_round(catalog: Catalog, round_: int | None) -> int:
    """The asked round, or the last finished one; a clear error when there is none."""
    done = finished_rounds(catalog)
    if round_ is None:
        if not done:
            raise ReportError(
                f"{catalog.home} has no finished round yet: run `datawall round` first"
            )
        return done[-1]
    if round_ not in done:
        known = ", ".join(map(str, done)) if done else "none yet"
        raise ReportError(
            f"round {round_} has not finished in {catalog.home}; finished rounds: {known}"
        )
    return round_


def write_report(catalog: Catalog, round_: int | None = None, out: Path | None = None) -> Report:
    """Build the report of ``round_`` (default: the last finished) and publish it atomically."""
    chosen = pick_round(catalog, round_)
    dest = Path(out) if out is not None else catalog.home / "reports" / f"round-{chosen:04d}"
    dest = dest.absolute()
    _check_destination(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        report = Report(chosen, dest)
        context = Context(
            chosen,
            catalog.scalar("SELECT new_model_id FROM rounds WHERE round = ?", [chosen]),
        )
        con = catalog.connect()
        try:
            rounds = con.sql(load_sql("round_report")).to_arrow_table()
            for spec in FIGURES:
                report.figures.append(_render(con, spec, context, tmp))
        finally:
            con.close()
        page = render_html(catalog, report, rounds, now())
        (tmp / "index.html").write_text(page, encoding="utf-8")
        _publish(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("report of round %d written to %s", chosen, report.index)
    return report


def _run(con: duckdb.DuckDBPyConnection, name: str, round_: int) -> QueryResult:
    sql = load_sql(name)
    params = {"round": round_} if re.search(r"\$round\b", sql) else None
    # For display only (the query itself binds the round). The leading comment goes
    # apart: a query starting with "--" would read as an option to `datawall sql`.
    lines = re.sub(r"\$round\b", str(round_), sql).strip().splitlines()
    n = next((i for i, line in enumerate(lines) if not line.startswith("--")), len(lines))
    about = " ".join(line.removeprefix("--").strip() for line in lines[:n])
    shown = "\n".join(lines[n:])
    try:
        return QueryResult(name, about, shown, con.sql(sql, params=params).to_arrow_table())
    except duckdb.Error as exc:
        log.warning("report query %s failed: %s", name, exc)
        return QueryResult(name, about, shown, None, f"{type(exc).__name__}: {exc}")


def _render(
    con: duckdb.DuckDBPyConnection, spec: FigureSpec, context: Context, folder: Path
) -> RenderedFigure:
    """Run the figure's queries; draw and save its PNG, or say why there is none."""
    results = [_run(con, name, context.round) for name in spec.queries]
    figure = RenderedFigure(spec, results)
    failed = [r for r in results if r.error]
    if failed:
        figure.note = f"Query {failed[0].name}.sql failed: {failed[0].error}"
        return figure
    if results[0].table.num_rows == 0:
        figure.note = spec.empty
        return figure
    try:
        fig = spec.draw([r.table for r in results], context)
        name = f"{spec.slug}.png"
        fig.savefig(folder / name, dpi=DPI, metadata={"Software": None})
        figure.png = name
    except Exception as exc:  # a figure that cannot be drawn must not sink the others
        log.exception("report figure %s failed", spec.slug)
        figure.note = f"Figure could not be drawn: {type(exc).__name__}: {exc}"
    return figure


def _check_destination(dest: Path) -> None:
    """Refuse to replace a folder that is neither empty nor an earlier report."""
    if not dest.exists():
        return
    if not dest.is_dir():
        raise ReportError(f"{dest} exists and is not a folder")
    if not any(dest.iterdir()):
        return
    index = dest / "index.html"
    marker = f'<meta name="generator" content="{GENERATOR}">'
    if not (index.is_file() and marker in index.read_text(encoding="utf-8", errors="replace")):
        raise ReportError(
            f"{dest} is not empty and holds no earlier datawall report: choose another --out"
        )


def _publish(tmp: Path, dest: Path) -> None:
    """Move the finished folder into place: the old report goes aside, then is deleted."""
    old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
    for _ in range(5):  # another report of the same round may be swapping at the same time
        try:
            if dest.exists():
                os.replace(dest, old)
            os.replace(tmp, dest)
            break
        except OSError:
            continue
    else:
        raise ReportError(f"could not move the new report into {dest}: another writer keeps it")
    shutil.rmtree(old, ignore_errors=True)


# -- HTML ---------------------------------------------------------------------------------
_CSS = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 980px; color: #212121; padding: 0 1em; }
h1 { margin-bottom: 0.1em; } h2 { border-bottom: 1px solid #e0e0e0; padding-bottom: 0.2em; margin-top: 2em; }
.meta { color: #616161; }
figure { margin: 0.5em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eeeeee; }
figcaption { color: #424242; font-size: 0.93em; margin-top: 0.3em; }
.empty { background: #fff8e1; border-left: 4px solid #ffb300; padding: 0.8em 1em; }
details { margin: 0.4em 0; } summary { cursor: pointer; color: #1565c0; }
pre { background: #f5f5f5; padding: 0.7em; overflow-x: auto; font-size: 0.85em; }
table { border-collapse: collapse; font-size: 0.82em; margin: 0.3em 0; }
th, td { border: 1px solid #e0e0e0; padding: 0.2em 0.5em; text-align: right; }
th { background: #fafafa; } td.text { text-align: left; }
nav a { margin-right: 1em; } #image-check { color: #9e9e9e; font-size: 0.8em; }
"""

# After load, record in the page how many figures exist and how many decoded: a browser
# (or a test driving headless Chromium) reads it from the DOM.
_CHECK_SCRIPT = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var loaded = images.filter(function (img) { return img.complete && img.naturalWidth > 0; });
  var out = document.getElementById("image-check");
  out.setAttribute("data-images", String(images.length));
  out.setAttribute("data-loaded", String(loaded.length));
  out.textContent = loaded.length + " of " + images.length + " figures loaded";
});
"""


def render_html(catalog: Catalog, report: Report, rounds: pa.Table, when: datetime) -> str:
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta name="generator" content="{GENERATOR}">',
        f"<title>datawall report — round {report.round}</title>",
        f"<style>{_CSS}</style>",
        f"<script>{_CHECK_SCRIPT}</script>",
        "</head><body>",
        f"<h1>datawall report — round {report.round}</h1>",
        f'<p class="meta">Workspace <code>{e(str(catalog.home))}</code>; written '
        f"{when:%Y-%m-%d %H:%M:%S} UTC. Every figure below comes from a named query; open "
        "“SQL” under it to see the query and run it yourself with "
        '<code>datawall sql "…"</code>.</p>',
        "<nav>"
        + "".join(f'<a href="#{f.spec.slug}">{e(f.spec.title)}</a>' for f in report.figures)
        + "</nav>",
        "<h2>Rounds</h2>",
        _table_html(rounds, highlight=("round", report.round)),
    ]
    for fig in report.figures:
        parts.append(f'<section id="{fig.spec.slug}"><h2>{e(fig.spec.title)}</h2>')
        if fig.png:
            parts.append(
                f'<figure><img src="{e(fig.png)}" alt="{e(fig.spec.title)}">'
                f"<figcaption>{e(fig.spec.caption)}</figcaption></figure>"
            )
        else:
            parts.append(f'<p class="empty">{e(fig.note or "No data yet.")}</p>')
        for result in fig.results:
            parts.append(
                f"<details><summary>SQL: pipelines/sql/{e(result.name)}.sql</summary>"
                f'<p class="meta">{e(result.about)}</p>'
                f"<pre>{e(result.sql)}</pre></details>"
            )
            if result.table is not None and result.table.num_rows:
                parts.append(_table_html(result.table))
        parts.append("</section>")
    parts += ['<p id="image-check"></p>', "</body></html>", ""]
    return "\n".join(parts)


def _table_html(table: pa.Table, highlight: tuple[str, int] | None = None) -> str:
    if table.num_rows == 0:
        return '<p class="meta">(no rows)</p>'
    e = html.escape
    head = "".join(f"<th>{e(n)}</th>" for n in table.column_names)
    body = []
    for row in table.slice(0, MAX_TABLE_ROWS).to_pylist():
        style = (
            ' style="background:#e3f2fd"'
            if highlight and row.get(highlight[0]) == highlight[1]
            else ""
        )
        cells = "".join(_cell(v) for v in row.values())
        body.append(f"<tr{style}>{cells}</tr>")
    more = ""
    if table.num_rows > MAX_TABLE_ROWS:
        more = f'<p class="meta">first {MAX_TABLE_ROWS} of {table.num_rows} rows; the query above gives all.</p>'
    return f"<table><tr>{head}</tr>{''.join(body)}</table>{more}"


def _cell(value: object) -> str:
    if value is None:
        return "<td></td>"
    if isinstance(value, float):
        return f"<td>{value:.4g}</td>"
    if isinstance(value, bool | int):
        return f"<td>{value}</td>"
    return f'<td class="text">{html.escape(str(value))}</td>'
