"""Curation quality on the demo corpus, whose labels are known by construction.

For every junk kind of ``pipelines.demo_corpus`` (and the clean text), what share the
round rejects (junk recall), accepts (good retention, for clean text) and sends to
experts, at three points:

1. **round 1**: the decisions of the first round (rules, then the model-level bar).
2. **after experts**: the round-1 queue answered by a simulated expert from the gold
   labels (``annotation.simulate``, through the same import path a person's answer takes),
   then round 2 run: the latest decision of every pool candidate.
3. **round-2 classifier, whole pool**: the quality classifier retrained in round 2 on the
   expert labels, with round 2's bar, applied to *every* rule-passing pool candidate (the
   stored losses of round 1, no decision written): what the loop would decide now.

Also prints the bar of each round on both scales (routing bar, anchored bar, previous
round's samples under the current classifier) and the classifier's calibration.

Small settings by default (a 2-layer, 64-wide SSM, 150 training steps) so a run takes a
few minutes on 2 CPU cores; ``--size demo`` uses ``make demo``'s model and training, whose
bar is high enough to send a full budget of hard cases to the experts.
Run: ``python benchmarks/curation_quality.py [--size demo] [--home DIR]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's packages

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from pipelines import studio  # noqa: E402
from pipelines.catalog import Catalog  # noqa: E402
from pipelines.demo_corpus import build_demo_corpus  # noqa: E402
from pipelines.flows import curation_round  # noqa: E402
from pipelines.ingest import ingest  # noqa: E402
from pipelines.settings import Settings, load_settings, save_settings  # noqa: E402
from scoring.quality import QualityModel  # noqa: E402
from scoring.route import route  # noqa: E402

SMALL = {
    "model.d_model": 64,
    "model.n_layers": 2,
    "model.d_state": 16,
    "model.headdim": 32,
    "train.steps": 150,
    "train.batch_size": 8,
    "train.seq_len": 256,
    "train.warmup_steps": 15,
    "train.checkpoint_every": 0,
    "route.n_samples": 256,
    "route.budget": 60,
    "quality.n_features": 2**16,
}

KIND_SQL = "json_extract_string(c.meta, '$.kind')"


def table(title: str, rows: list[dict]) -> None:
    """Per kind: n, reject / accept / hard / to-experts shares, in %."""
    by_kind: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_kind[r["kind"]].append(r)
    print(f"\n{title}")
    print(f"{'kind':18s} {'n':>5s} {'reject%':>8s} {'accept%':>8s} {'hard%':>7s} {'experts%':>9s}")
    order = ["clean"] + sorted(k for k in by_kind if k != "clean")
    for kind in order:
        rs = by_kind[kind]
        n = len(rs)

        def share(pred, rs=rs, n=n):
            return 100.0 * sum(1 for r in rs if pred(r)) / n

        print(
            f"{kind:18s} {n:5d} {share(lambda r: r['decision'] == 'reject'):8.1f} "
            f"{share(lambda r: r['decision'] == 'accept'):8.1f} "
            f"{share(lambda r: r['decision'] == 'hard'):7.1f} "
            f"{share(lambda r: bool(r['experts'])):9.1f}"
        )
    junk = [r for r in rows if r["kind"] != "clean"]
    clean = [r for r in rows if r["kind"] == "clean"]
    recall = 100.0 * sum(r["decision"] == "reject" for r in junk) / max(len(junk), 1)
    keep = 100.0 * sum(r["decision"] == "accept" for r in clean) / max(len(clean), 1)
    lost = 100.0 * sum(r["decision"] == "reject" for r in clean) / max(len(clean), 1)
    experts = 100.0 * sum(bool(r["experts"]) for r in rows) / max(len(rows), 1)
    print(
        f"junk recall {recall:.1f}% | good retention {keep:.1f}% (clean rejected {lost:.1f}%) "
        f"| sent to experts {experts:.1f}%"
    )


def round_rows(catalog: Catalog, round_: int) -> list[dict]:
    return catalog.query(
        f"SELECT {KIND_SQL} AS kind, d.decision, d.queued AS experts FROM decisions d "
        "JOIN candidates c USING (candidate_id) WHERE d.round = ? AND d.decided_by <> 'expert' "
        "AND c.role = 'pool'",
        [round_],
    ).to_pylist()


def latest_rows(catalog: Catalog) -> list[dict]:
    return catalog.query(
        f"SELECT {KIND_SQL} AS kind, l.decision, "
        "(l.decided_by = 'expert' OR coalesce(l.queued, false)) AS experts "
        "FROM latest_decisions l JOIN candidates c USING (candidate_id) WHERE c.role = 'pool'"
    ).to_pylist()


def rescored_rows(catalog: Catalog, settings: Settings, round_: int) -> list[dict]:
    """Round ``round_``'s classifier and bar on every pool candidate scored in round 1."""
    bar = catalog.query("SELECT * FROM bars WHERE round = ?", [round_]).to_pylist()[0]
    quality = QualityModel.load(bar["quality_model"])
    scored = catalog.query(
        f"SELECT s.candidate_id, s.rule_reason, s.learnability, s.order_gain, c.text, "
        f"{KIND_SQL} AS kind, l.decision AS latest, l.decided_by FROM scores s "
        "JOIN candidates c USING (candidate_id) JOIN latest_decisions l USING (candidate_id) "
        "WHERE s.round = 1 ORDER BY s.candidate_id"
    )
    rows = scored.to_pylist()
    passing = [i for i, r in enumerate(rows) if r["rule_reason"] is None]
    q = np.full(len(rows), np.nan)
    sd = np.zeros(len(rows))
    if passing:
        texts = [rows[i]["text"] for i in passing]
        signals = np.array([rows[i]["order_gain"] for i in passing])
        q[passing], sd[passing] = quality.predict_with_uncertainty(texts, signals)
    frame = pa.table(
        {
            "candidate_id": [r["candidate_id"] for r in rows],
            "rule_reason": pa.array([r["rule_reason"] for r in rows], pa.string()),
            "quality": q,
            "learnability": [r["learnability"] or 0.0 for r in rows],
            "quality_sd": sd,
            "order_gain": [r["order_gain"] for r in rows],
        }
    )
    decided = route(frame, bar["bar"], settings.route, bar["min_order_gain"]).to_pylist()
    return [
        {"kind": r["kind"], "decision": d["decision"], "experts": d["queued"]}
        for r, d in zip(rows, decided, strict=True)
    ]


def bars_table(catalog: Catalog) -> None:
    rows = catalog.query("SELECT * FROM bars ORDER BY round").to_pylist()
    print("\nbars per round (probabilities; anchored = the first classifier, never refitted)")
    print(
        f"{'round':>5s} {'bar':>7s} {'anchored':>9s} {'prev samples':>13s} "
        f"{'Brier raw->cal':>16s} {'ECE raw->cal':>15s}"
    )
    for r in rows:
        prev = "" if r.get("bar_prev_samples") is None else f"{r['bar_prev_samples']:.4f}"
        print(
            f"{r['round']:5d} {r['bar']:7.4f} {r['bar_anchor']:9.4f} {prev:>13s} "
            f"{r['brier_raw']:7.4f}->{r['brier']:.4f} {r['ece_raw']:7.4f}->{r['ece']:.4f}"
        )
    val = catalog.query("SELECT round, model_id, val_bpb FROM models ORDER BY round").to_pylist()
    print("models: " + ", ".join(f"{m['model_id']} val_bpb {m['val_bpb']:.3f}" for m in val))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--home", type=Path, default=None, help="workspace (default: a temp dir)")
    ap.add_argument("--n-trusted", type=int, default=1000)
    ap.add_argument("--n-pool", type=int, default=1500)
    ap.add_argument("--budget", type=int, default=60)
    ap.add_argument("--margin", type=float, default=None, help="route.margin (log-odds)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--size",
        choices=("small", "demo"),
        default="small",
        help="small: a 2-layer 64-wide SSM, 150 steps; demo: `make demo`'s model and training",
    )
    args = ap.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="datawall-curation-"))
    start = time.time()
    catalog = Catalog(home).init()
    overrides = {**(SMALL if args.size == "small" else {}), "route.budget": args.budget}
    if args.margin is not None:
        overrides["route.margin"] = args.margin
    save_settings(home, Settings().with_overrides(overrides))
    settings = load_settings(home)
    paths = build_demo_corpus(
        home / "demo-data",
        seed=args.seed,
        n_trusted=args.n_trusted,
        n_validation=200,
        n_pool=args.n_pool,
    )
    for role in ("trusted", "validation", "pool"):
        ingest(catalog, str(paths[role]), role=role, id_field="id")
    curation_round(home=str(home))
    table("round 1 (rules + bar), before expert answers", round_rows(catalog, 1))
    answered = studio.simulate(catalog, settings, None, "gold", annotators=1, seed=args.seed)
    print(f"\nsimulated experts answered {answered['answered']} queued hard case(s)")
    curation_round(home=str(home))
    table("after expert answers and round 2: latest decision per candidate", latest_rows(catalog))
    table(
        "round-2 classifier and bar on every pool candidate scored in round 1",
        rescored_rows(catalog, settings, 2),
    )
    bars_table(catalog)
    print(f"\nworkspace {home}; {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
