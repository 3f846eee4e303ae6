"""The report's figures: one matplotlib ``Figure`` per question, drawn from query results.

Each function takes the Arrow tables of its ``pipelines/sql/report_*.sql`` queries and
returns a figure; ``pipelines/report.py`` saves it as PNG. Figures are built with the
object API (``matplotlib.figure.Figure``, Agg canvas), never ``pyplot``: no global state,
no GUI backend, safe inside a Prefect worker thread.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
from matplotlib.figure import Figure

# One colour per decision, the same in every figure.
COLOURS = {
    "accept": "#2e7d32",
    "hard": "#ef6c00",
    "reject": "#c62828",
    "undecided": "#9e9e9e",
    "model sample": "#1565c0",
}
ARM_COLOURS = {
    "curated": "#2e7d32",
    "random": "#757575",
    "full": "#1565c0",
    "heuristic": "#ef6c00",
}
_FALLBACK = ["#6a1b9a", "#00838f", "#ad1457", "#4e342e", "#558b2f"]


def _rows(table: pa.Table) -> list[dict]:
    return table.to_pylist()


def _colour(name: str, palette: dict[str, str], i: int) -> str:
    return palette.get(name, _FALLBACK[i % len(_FALLBACK)])


def decisions_figure(table: pa.Table, round_: int) -> Figure:
    """Horizontal bars: one per (decided_by, reason), length = candidates, colour = decision."""
    rows = sorted(_rows(table), key=lambda r: (r["decision"], -r["n"], r["reason"]))
    labels = [f"{r['reason']}  ({r['decided_by']})" for r in rows]
    fig = Figure(figsize=(8.5, 0.9 + 0.36 * max(len(rows), 3)), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(rows))
    ax.barh(y, [r["n"] for r in rows], color=[COLOURS.get(r["decision"], "#616161") for r in rows])
    for yi, r in zip(y, rows, strict=True):
        ax.annotate(f" {r['n']}", (r["n"], yi), va="center", fontsize=8, annotation_clip=False)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("candidates")
    ax.set_title(f"Round {round_}: decisions by reason (who decided in brackets)")
    ax.margins(x=0.12)
    handles = [
        _patch(fig, COLOURS.get(d, "#616161"), d)
        for d in dict.fromkeys(r["decision"] for r in rows)
    ]
    ax.legend(handles=handles, title="decision", loc="upper left", bbox_to_anchor=(1.01, 1.0),
              fontsize=8)  # fmt: skip
    return fig


def _patch(fig: Figure, colour: str, label: str):
    from matplotlib.patches import Patch

    return Patch(facecolor=colour, label=label)


def score_hist_figure(table: pa.Table, round_: int) -> Figure:
    """Two stacked histograms on the bar's scale: the round's candidates by routing decision,
    and the model's own samples; the bar as a vertical line, the hard band shaded."""
    rows = _rows(table)
    first = rows[0]
    bar_x, lo, hi, scale = first["bar_x"], first["band_lo"], first["band_hi"], first["scale"]
    quantile = first.get("quantile")
    edges = sorted({r["x_lo"] for r in rows} | {r["x_hi"] for r in rows})
    width = min(r["x_hi"] - r["x_lo"] for r in rows)
    fig = Figure(figsize=(10.0, 6.0), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    groups = [
        g for g in ("accept", "hard", "reject", "undecided") if any(r["grp"] == g for r in rows)
    ]
    groups += sorted({r["grp"] for r in rows} - set(groups) - {"model sample"})
    base: dict[float, float] = {}
    for i, group in enumerate(groups):
        part = [r for r in rows if r["grp"] == group]
        xs = [r["x_lo"] for r in part]
        bottoms = [base.get(x, 0.0) for x in xs]
        top.bar(
            xs,
            [r["n"] for r in part],
            width=width,
            bottom=bottoms,
            align="edge",
            color=_colour(group, COLOURS, i),
            label=f"{group} ({sum(r['n'] for r in part)})",
        )
        for x, r in zip(xs, part, strict=True):
            base[x] = base.get(x, 0.0) + r["n"]
    samples = [r for r in rows if r["grp"] == "model sample"]
    bottom.bar(
        [r["x_lo"] for r in samples],
        [r["n"] for r in samples],
        width=width,
        align="edge",
        color=COLOURS["model sample"],
        label=f"model samples ({sum(r['n'] for r in samples)})",
    )
    unit = "log-odds" if scale == "logit" else "probability"
    bar_label = f"bar = {bar_x:.2f}"
    if scale == "logit":
        bar_label += f" (p = {1 / (1 + math.exp(-bar_x)):.3f})"
    for ax in (top, bottom):
        ax.axvspan(lo, hi, color="#fbc02d", alpha=0.25, zorder=0,
                   label=f"hard band (bar ± {hi - bar_x:.3g})")  # fmt: skip
        ax.axvline(bar_x, color="black", linewidth=1.6, zorder=3, label=bar_label)
        ax.set_ylabel("count")
        ax.set_xlim(edges[0], edges[-1])
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    top.set_title(f"Round {round_}: quality of scored candidates by routing decision")
    which = f"{quantile:.0%} quantile" if quantile is not None else "quantile"
    bottom.set_title(f"the model's own samples (the bar is their {which})", fontsize=10)
    bottom.set_xlabel(f"quality ({unit}; the scale routing compares on)")
    return fig


def bar_rounds_figure(table: pa.Table, round_: int) -> Figure:
    """The bar per finished round: own classifier, anchored scale, previous round's samples."""
    rows = _rows(table)
    rounds = [r["round"] for r in rows]
    fig = Figure(figsize=(8.5, 4.2), layout="constrained")
    ax = fig.subplots()
    series = [  # sizes differ so that equal values (round 1: bar == bar_anchor) stay visible
        ("bar", "bar (this round's classifier)", "o-", "#000000", 11),
        ("bar_anchor", "bar_anchor (fixed anchor scale, comparable)", "s--", "#1565c0", 6),
        ("bar_prev_samples", "bar_prev_samples (previous round's samples)", "^:", "#ef6c00", 7),
    ]
    plotted = []
    for column, label, style, colour, size in series:
        pts = [
            (r["round"], _clip01(r.get(column)))
            for r in rows
            if r.get(column) is not None and math.isfinite(r[column])
        ]
        if pts:
            ax.plot(*zip(*pts, strict=True), style, color=colour, label=label, markersize=size)
            plotted += [p[1] for p in pts]
    for r in rows:  # the bar's value beside each point
        ax.annotate(f"{r['bar']:.3g}", (r["round"], _clip01(r["bar"])), textcoords="offset points",
                    xytext=(9, -3), fontsize=8)  # fmt: skip
    if plotted and min(plotted) > 0 and max(plotted) < 1:
        ax.set_yscale("logit")  # the bar crowds towards 1 as the model improves
        ax.set_ylabel("quality quantile (probability, logit axis)")
    else:
        ax.set_ylabel("quality quantile (probability)")
    if round_ in rounds:
        ax.axvline(round_, color="#9e9e9e", linewidth=6, alpha=0.3, label=f"round {round_}")
    ax.set_xticks(rounds)
    ax.set_xlim(min(rounds) - 0.5, max(rounds) + 0.5)
    ax.set_xlabel("round")
    ax.set_title("The model-level bar over rounds")
    ax.legend(fontsize=8, loc="best")
    return fig


def _clip01(value: float | None) -> float | None:
    if value is None:
        return None
    return min(max(value, 1e-6), 1 - 1e-6)


def agreement_figure(rounds: pa.Table, annotators: pa.Table, round_: int) -> Figure:
    """Left: each annotator's agreement with the majority on round N's hard cases.
    Right: mean agreement (and unanimous share) per round that queued the hard cases."""
    fig = Figure(figsize=(9.5, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[3, 2])
    people = _rows(annotators)
    if people:
        y = np.arange(len(people))
        left.barh(y, [p["agreement"] for p in people], color="#00838f")
        for yi, p in zip(y, people, strict=True):
            left.annotate(
                f" {p['agreement']:.2f} ({p['votes']} votes)",
                (p["agreement"], yi),
                va="center",
                fontsize=8,
                annotation_clip=False,
            )
        left.set_yticks(y, [p["annotator"] for p in people], fontsize=8)
        left.invert_yaxis()
    else:
        left.text(
            0.5, 0.5, f"no annotated hard cases\nfrom round {round_}", ha="center", va="center",
            transform=left.transAxes,
        )  # fmt: skip
        left.set_yticks([])
    left.set_xlim(0, 1.3)
    left.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
    left.set_xlabel("share of votes matching the majority label")
    left.set_title(f"Annotators on round {round_}'s hard cases", fontsize=10)

    per_round = _rows(rounds)
    xs = [r["round"] for r in per_round]
    right.bar(xs, [r["mean_agreement"] for r in per_round], color="#00838f", label="mean agreement")
    right.plot(xs, [r["unanimous"] for r in per_round], "kD", label="share unanimous")
    right.set_ylim(0, 1.15)
    right.set_xticks(xs, [f"{r['round']}\n({r['candidates']} cand.)" for r in per_round])
    right.set_xlabel("round that queued the hard cases")
    right.set_ylabel("agreement")
    right.set_title("Expert agreement per round", fontsize=10)
    right.legend(fontsize=8, loc="upper left", ncols=2)
    return fig


def lineage_figure(table: pa.Table, round_model: str | None) -> Figure:
    """Validation bits per byte of every model in order of creation; an arrow from each
    parent to its child, the reference starred with its level as a dashed line."""
    rows = _rows(table)
    index = {r["model_id"]: i for i, r in enumerate(rows)}
    fig = Figure(figsize=(8.5, 4.4), layout="constrained")
    ax = fig.subplots()
    for i, r in enumerate(rows):
        if r["val_bpb"] is None:
            continue
        parent = r["parent_id"]
        if parent in index and rows[index[parent]]["val_bpb"] is not None:
            ax.annotate(
                "",
                xy=(i, r["val_bpb"]),
                xytext=(index[parent], rows[index[parent]]["val_bpb"]),
                arrowprops={"arrowstyle": "->", "color": "#616161", "lw": 1.2},
            )
    refs = [
        (i, r) for i, r in enumerate(rows) if r["role"] == "reference" and r["val_bpb"] is not None
    ]
    others = [
        (i, r) for i, r in enumerate(rows) if r["role"] != "reference" and r["val_bpb"] is not None
    ]
    if others:
        ax.plot([i for i, _ in others], [r["val_bpb"] for _, r in others], "o", color="#2e7d32",
                markersize=8, label="round model", zorder=3)  # fmt: skip
    for i, r in refs:
        ax.plot(i, r["val_bpb"], "*", color="#c62828", markersize=15, zorder=3,
                label="reference" if i == refs[0][0] else None)  # fmt: skip
        ax.axhline(r["val_bpb"], color="#c62828", linestyle="--", linewidth=1, alpha=0.6)
    if round_model in index and rows[index[round_model]]["val_bpb"] is not None:
        i = index[round_model]
        ax.plot(i, rows[i]["val_bpb"], "o", markersize=16, markerfacecolor="none",
                markeredgecolor="black", label="trained in this round", zorder=4)  # fmt: skip
    for i, r in enumerate(rows):
        if r["val_bpb"] is not None:
            ax.annotate(
                f"r{r['round']}\n{r['val_bpb']:.3f}",
                (i, r["val_bpb"]),
                textcoords="offset points",
                xytext=(0, 9),
                ha="center",
                fontsize=8,
            )
    ax.set_xticks(range(len(rows)), [_short(r["model_id"]) for r in rows], fontsize=8, rotation=20)
    ax.set_xlim(-0.6, len(rows) - 0.4)
    ax.margins(y=0.25)
    ax.set_xlabel("model, in order of creation (label: round, val bpb)")
    ax.set_ylabel("validation bits per byte (lower is better)")
    ax.set_title("Model lineage: validation loss of each model")
    ax.legend(fontsize=8, loc="best")
    return fig


def _tokens(n: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit} tokens"
    return f"{n:.0f} tokens"


def _short(model_id: str, keep: int = 18) -> str:
    return model_id if len(model_id) <= keep else model_id[: keep - 1] + "…"


def experiment_figure(curves: pa.Table, arms: pa.Table) -> Figure:
    """Left: validation bpb against tokens seen per arm (mean over seeds, min–max band), the
    full arm's final loss as a dashed line, and the point where the curated arm reaches it
    (tokens-to-target). Right: each arm's final bpb, mean ± std over seeds, on an axis that
    makes differences of a few hundredths visible."""
    rows = _rows(curves)
    summary = {r["arm"]: r for r in _rows(arms)}
    fig = Figure(figsize=(10, 4.8), layout="constrained")
    ax, right = fig.subplots(1, 2, width_ratios=[2.2, 1])
    names = list(dict.fromkeys(r["arm"] for r in rows))
    target = next((r["full_final_bpb"] for r in summary.values() if r["full_final_bpb"]), None)
    for i, arm in enumerate(names):
        part = [r for r in rows if r["arm"] == arm]
        x = np.array([r["tokens_seen"] for r in part], dtype=float)
        colour = _colour(arm, ARM_COLOURS, i)
        seeds = max(r["seeds"] for r in part)
        ax.fill_between(
            x, [r["val_bpb_min"] for r in part], [r["val_bpb_max"] for r in part],
            color=colour, alpha=0.18, linewidth=0,
        )  # fmt: skip
        label = f"{arm} (mean of {seeds} seed{'s' if seeds != 1 else ''})"
        reached = summary.get(arm, {}).get("tokens_to_target")
        if reached is not None and target is not None:
            ratio = summary[arm].get("ratio_to_budget")
            label += f": reaches full's final at {_tokens(reached)}"
            label += f" ({ratio:.2f}× budget)" if ratio is not None else ""
            ax.plot(reached, target, "o", color=colour, markersize=8, markeredgecolor="black",
                    zorder=4)  # fmt: skip
        ax.plot(x, [r["val_bpb_mean"] for r in part], "-", color=colour, linewidth=1.8,
                label=label)  # fmt: skip
    if target is not None:
        ax.axhline(target, color="black", linestyle="--", linewidth=1,
                   label=f"full arm's final loss ({target:.3f})")  # fmt: skip
    ax.set_xlabel("tokens seen")
    ax.set_ylabel("validation bits per byte")
    experiment = rows[0]["experiment_id"] if rows else ""
    ax.set_title(f"{experiment}: validation loss by data arm\n(band: min–max over seeds)",
                 fontsize=10)  # fmt: skip
    ax.legend(fontsize=7.5, loc="upper right")
    order = [a for a in ARM_COLOURS if a in summary] + [a for a in summary if a not in ARM_COLOURS]
    for i, arm in enumerate(order):
        r = summary[arm]
        right.errorbar(i, r["final_bpb_mean"], yerr=r["final_bpb_std"] or 0.0, fmt="o",
                       color=_colour(arm, ARM_COLOURS, i), capsize=5, markersize=7)  # fmt: skip
        right.annotate(f"{r['final_bpb_mean']:.3f}", (i, r["final_bpb_mean"]),
                       textcoords="offset points", xytext=(8, -3), fontsize=8)  # fmt: skip
    if target is not None:
        right.axhline(target, color="black", linestyle="--", linewidth=1)
    right.set_xticks(range(len(order)), order)
    right.set_xlim(-0.5, len(order) - 0.3)
    right.set_ylabel("final validation bpb")
    right.set_title("final loss, mean ± std over seeds", fontsize=10)
    return fig
