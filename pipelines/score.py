"""The score step: the model-level bar, then every new candidate scored against it.

1. **Samples**: the current model writes ``route.n_samples`` texts (recurrent form).
2. **Quality classifier**: positives = trusted text + expert-accepted; negatives = the
   model's own samples + expert-rejected + (a capped share of) earlier rule rejects;
   features = hashed n-grams + the reference model's order gain (bits per byte saved by the
   real word order). The samples' quality is taken out-of-fold, so the bar is not
   flattered by the classifier having seen them. Calibration (Brier, ECE) is recorded.
3. **Bar** = the ``route.bar_quantile`` quantile of the samples' quality: the level the
   model itself writes at. It is stored per round (table ``bars``) with the samples, beside
   the same bar on a fixed scale (``bar_anchor``, see ``scoring.bar``), the previous
   round's samples under this round's classifier (``bar_prev_samples``), and the
   incoherence threshold (``min_order_gain``: the ``route.coherence_quantile`` quantile of
   the trusted texts' order gain).
4. **Candidates** still undecided are scored in shards (one Parquet file each): heuristic
   signals and the first failing rule; for rule-passing rows, bits per byte under the
   current and the reference model, learnability = current − reference (RHO-LOSS reducible
   loss, Mindermann et al. 2022), already-learnt, order gain, quality and its spread.

Each shard file is named by its content, so a killed run resumes with the rest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.catalog import SCHEMAS, Catalog, load_sql, now
from pipelines.dedup import bounded_connection
from pipelines.modelling import ModelRef, load_scorer, trusted_texts
from pipelines.progress import note, progress_bar
from pipelines.settings import Settings
from scoring.bar import anchored_bar, model_level_bar
from scoring.config import RouteConfig
from scoring.heuristics import heuristic_signals, rule_reasons
from scoring.loss import LossScorer, order_gain
from scoring.quality import QualityModel
from scoring.route import already_learnt


@dataclass(frozen=True)
class Bar:
    round: int
    model_id: str
    bar: float
    quality_model: Path
    sample_loss: float = float("nan")  # median bits per byte of the samples under the model
    min_order_gain: float | None = None  # below it a candidate is "incoherent" (route)


# Columns the bars table carries beyond ``SCHEMAS["bars"]`` (views union files by name).
BAR_EXTRA = [
    ("bar_anchor", pa.float64()),
    ("anchor_round", pa.int32()),
    ("prev_round", pa.int32()),
    ("bar_prev_samples", pa.float64()),
    ("sample_loss", pa.float64()),
    ("min_order_gain", pa.float64()),
    ("brier", pa.float64()),
    ("ece", pa.float64()),
    ("brier_raw", pa.float64()),
    ("ece_raw", pa.float64()),
    ("calibration", pa.string()),
]


def _bpb(scorer: LossScorer, texts: list[str], settings: Settings) -> np.ndarray:
    """Bits per byte of each text, with the workspace's scoring limits."""
    return scorer.bpb(
        texts, max_bytes=settings.score.max_bytes, batch_tokens=settings.score.batch_tokens
    )


def _order_gain(
    scorer: LossScorer, texts: list[str], bpb: np.ndarray | None, settings: Settings
) -> np.ndarray:
    """``scoring.loss.order_gain`` with the workspace's limits; NaN (empty text) becomes 0."""
    if not texts:
        return np.zeros(0)
    own = _bpb(scorer, texts, settings) if bpb is None else bpb
    kw = {"max_bytes": settings.score.max_bytes, "batch_tokens": settings.score.batch_tokens}
    return np.nan_to_num(order_gain(scorer, texts, own, **kw), nan=0.0)


def quality_model_path(catalog: Catalog, round_: int) -> Path:
    return catalog.home / "quality" / f"round-{round_:04d}.joblib"


def anchor_path(catalog: Catalog, reference: ModelRef) -> Path:
    """The fixed scorer of the bar's comparable scale: one per reference model."""
    return catalog.home / "quality" / f"anchor-v2-{reference.model_id}.joblib"


def read_bar(catalog: Catalog, round_: int) -> Bar | None:
    rows = catalog.query("SELECT * FROM bars WHERE round = ?", [round_]).to_pylist()
    if not rows:
        return None
    row = rows[0]
    loss = row.get("sample_loss")
    return Bar(
        round_,
        row["model_id"],
        row["bar"],
        Path(row["quality_model"]),
        float("nan") if loss is None else loss,
        row.get("min_order_gain"),
    )


def model_bar(
    catalog: Catalog, settings: Settings, round_: int, current: ModelRef, reference: ModelRef
) -> Bar:
    """Steps 1–3: sample, fit the quality classifier, set the bar. Idempotent per round."""
    existing = read_bar(catalog, round_)
    if existing is not None and existing.model_id == current.model_id:
        return existing
    cfg = settings.route
    model, ref = load_scorer(current), load_scorer(reference)
    note(f"round {round_}: sampling {cfg.n_samples} texts from {current.model_id} for the bar")
    texts = model.sample(
        cfg.n_samples,
        max_bytes=cfg.sample_bytes,
        temperature=cfg.sample_temperature,
        seed=cfg.sample_seed + round_,
        batch_size=128,
    )
    texts = [t if t.strip() else " " for t in texts]

    positives = trusted_texts(catalog)
    experts = catalog.named("expert_labels").to_pylist()
    positives += [r["text"] for r in experts if r["decision"] == "accept"]
    negatives_extra = [r["text"] for r in experts if r["decision"] == "reject"]
    negatives_extra += (
        catalog.named("rule_negatives", [settings.score.max_rule_negatives])
        .column("text")
        .to_pylist()
    )

    # The classifier sees n-grams plus one model signal: the reference model's order gain
    # (bits per byte saved by the real word order). Not the raw loss: a model's own samples
    # sit at its entropy, below or above human text depending on how well it is trained, so
    # a loss feature learns "sample or not" in a direction that flips from model to model
    # (the demo's clean-text over-rejection); the order gain separates word salad from
    # prose and leaves fluent samples where they belong.
    loss_model = _bpb(model, texts, settings)
    loss_ref = _bpb(ref, texts, settings)
    gain_samples = _order_gain(ref, texts, loss_ref, settings)
    gain_pos = _order_gain(ref, positives, None, settings)
    gain_neg = _order_gain(ref, negatives_extra, None, settings)
    cfg_q = cfg.coherence_quantile
    min_gain = float(np.nanquantile(gain_pos, cfg_q)) if cfg_q > 0 and len(positives) else None
    note(
        f"round {round_}: quality classifier on {len(positives)} positives, "
        f"{len(texts) + len(negatives_extra)} negatives ({len(texts)} model samples)"
    )
    quality = QualityModel(settings.quality)
    _, neg_oof = quality.fit_predict_oof(
        positives, texts + negatives_extra, gain_pos, np.concatenate([gain_samples, gain_neg])
    )
    sample_quality = np.asarray(neg_oof[: len(texts)], dtype=np.float64)
    bar = model_level_bar(sample_quality, cfg.bar_quantile)
    qpath = quality_model_path(catalog, round_)
    qpath.parent.mkdir(parents=True, exist_ok=True)
    quality.save(qpath)
    anchored = _anchored_bar(
        catalog, reference, round_, quality, texts, gain_samples, sample_quality, bar, cfg
    )
    prev_round, bar_prev = _previous_samples_bar(catalog, round_, quality, cfg.bar_quantile)
    sample_loss = float(np.nanmedian(loss_model))

    samples = pa.table(
        {
            "sample_id": [f"r{round_:04d}-s{i:05d}" for i in range(len(texts))],
            "round": pa.array([round_] * len(texts), pa.int32()),
            "model_id": [current.model_id] * len(texts),
            "text": texts,
            "loss_model": loss_model,
            "loss_ref": loss_ref,
            "learnability": loss_model - loss_ref,
            "quality": sample_quality,
            "quality_anchor": anchored[1],
            "order_gain": gain_samples,
        }
    )
    key = f"r{round_:04d}"
    catalog.write("samples", samples, key)
    cal = quality.calibration
    row = {
        "round": round_,
        "model_id": current.model_id,
        "bar": bar,
        "quantile": cfg.bar_quantile,
        "margin": cfg.margin,
        "n_samples": len(texts),
        "sample_quality_mean": float(sample_quality.mean()),
        "quality_model": str(qpath),
        "n_positive": len(positives),
        "n_negative": len(texts) + len(negatives_extra),
        "created_at": now(),
        "bar_anchor": anchored[0],
        "anchor_round": anchored[2],
        "prev_round": prev_round,
        "bar_prev_samples": bar_prev,
        "sample_loss": sample_loss,
        "min_order_gain": min_gain,
        "brier": cal.get("brier"),
        "ece": cal.get("ece"),
        "brier_raw": cal.get("brier_raw"),
        "ece_raw": cal.get("ece_raw"),
        "calibration": json.dumps(cal, sort_keys=True),
    }
    schema = SCHEMAS["bars"]
    for name, kind in BAR_EXTRA:
        schema = schema.append(pa.field(name, kind))
    catalog.write("bars", pa.Table.from_pylist([row], schema), key)
    note(
        f"round {round_}: bar {bar:.4f} (anchored scale {anchored[0]:.4f}); calibration "
        f"Brier {cal.get('brier_raw', float('nan')):.4f} -> {cal.get('brier', float('nan')):.4f}, "
        f"ECE {cal.get('ece_raw', float('nan')):.4f} -> {cal.get('ece', float('nan')):.4f}"
    )
    return Bar(round_, current.model_id, bar, qpath, sample_loss, min_gain)


ROUND_BAR_COLUMNS = ("bar_anchor", "bar_prev_samples", "brier", "ece", "brier_raw", "ece_raw")


def round_bar_columns(catalog: Catalog, round_: int) -> dict[str, float | None]:
    """The round's bar on the anchored scale and its calibration, for the ``rounds`` row."""
    rows = catalog.query("SELECT * FROM bars WHERE round = ?", [round_]).to_pylist()
    row = rows[0] if rows else {}
    return {name: row.get(name) for name in ROUND_BAR_COLUMNS}


def _anchored_bar(
    catalog: Catalog,
    reference: ModelRef,
    round_: int,
    quality: QualityModel,
    texts: list[str],
    signals: np.ndarray,
    sample_quality: np.ndarray,
    bar: float,
    cfg: RouteConfig,
) -> tuple[float, np.ndarray, int]:
    """The bar on the fixed scale: (bar, the samples' anchored quality, the anchor's round).

    The anchor is the first classifier fitted against this reference model, kept unchanged:
    its features (n-grams and the reference model's order gain) and weights never move, so the
    same quantile of *its* scores is comparable from round to round, and rises as the
    model's samples read more like trusted text. In the anchor's own round the samples were
    its training negatives, so their out-of-fold quality (the routing bar) stands in.
    """
    path = anchor_path(catalog, reference)
    sidecar = path.with_name(path.name + ".round")
    if not path.exists():
        quality.save(path)
        sidecar.write_text(str(round_), encoding="utf-8")
    anchor_round = int(sidecar.read_text(encoding="utf-8"))
    if anchor_round == round_:
        return bar, sample_quality, anchor_round
    value, sample_q = anchored_bar(QualityModel.load(path), texts, signals, cfg.bar_quantile)
    return value, sample_q, anchor_round


def _previous_samples_bar(
    catalog: Catalog, round_: int, quality: QualityModel, quantile: float
) -> tuple[int | None, float | None]:
    """The previous round's samples scored by this round's classifier, and their bar."""
    prev = catalog.query(
        "SELECT * FROM samples WHERE round = "
        "(SELECT max(round) FROM samples WHERE round < ?) ORDER BY sample_id",
        [round_],
    )
    if prev.num_rows == 0 or "order_gain" not in prev.column_names:
        return None, None
    gain = prev.column("order_gain").to_numpy(zero_copy_only=False)
    if not np.isfinite(gain).all():  # samples of a round scored before order gain existed
        return None, None
    q = quality.predict(prev.column("text").to_pylist(), gain)
    return int(prev.column("round")[0].as_py()), model_level_bar(q, quantile)


def score_candidates(
    catalog: Catalog,
    settings: Settings,
    round_: int,
    current: ModelRef,
    reference: ModelRef,
    bar: Bar,
) -> int:
    """Step 4: score every candidate the round still has to score; returns how many."""
    total = count_to_score(catalog, round_)
    if total == 0:
        return 0
    model, ref = load_scorer(current), load_scorer(reference)
    quality = QualityModel.load(bar.quality_model)
    with progress_bar(f"score round {round_}", total) as advance:
        for part in to_score_shards(catalog, settings, round_):
            key = shard_key(round_, part.column("candidate_id").to_pylist())
            if not catalog.exists("scores", key):
                table = score_shard(
                    part, settings, round_, current, reference, model, ref, quality, bar
                )
                catalog.write("scores", table, key)
            advance(part.num_rows)
    return total


def count_to_score(catalog: Catalog, round_: int) -> int:
    return count_rows(catalog, "to_score", round_)


def count_rows(catalog: Catalog, sql_name: str, round_: int) -> int:
    """How many rows the round's query ``sql/<sql_name>.sql`` gives."""
    return int(catalog.scalar(f"SELECT count(*) FROM ({load_sql(sql_name)})", [round_]))


def to_score_shards(catalog: Catalog, settings: Settings, round_: int) -> Iterator[pa.Table]:
    """The candidates the round still has to score, ``score.shard_rows`` at a time.

    Streamed from DuckDB under ``score.memory_limit_mb`` and unsorted (``sql/to_score.sql``),
    so memory follows the shard, not the pool. Files written while iterating are not
    seen: the query's file list is fixed when it starts.
    """
    return stream_shards(catalog, settings, "to_score", round_)


def stream_shards(
    catalog: Catalog, settings: Settings, sql_name: str, round_: int
) -> Iterator[pa.Table]:
    """The rows of the round's query ``sql/<sql_name>.sql``, ``score.shard_rows`` at a time,
    streamed under ``score.memory_limit_mb`` (empty batches skipped)."""
    con = bounded_connection(catalog, settings.score.memory_limit_mb)
    try:
        reader = con.sql(load_sql(sql_name), params=[round_]).to_arrow_reader(
            settings.score.shard_rows
        )
        for batch in reader:
            if batch.num_rows:
                yield pa.Table.from_batches([batch])
    finally:
        con.close()


def rule_step(texts: pa.Array | pa.ChunkedArray, settings: Settings) -> tuple[pa.Table, pa.Array]:
    """Heuristic signals of ``texts`` and the first failing rule of each (null: passes)."""
    signals = heuristic_signals(texts)
    return signals, rule_reasons(signals, settings.heuristics)


def rule_scan(catalog: Catalog, settings: Settings, round_: int) -> tuple[int, int]:
    """The rule part of step 4 alone, over every candidate still to score: (seen, failing).

    Reads the shards the score step reads and runs the same ``rule_step``, writing nothing
    (no model needed): what the rules would reject this round, and a measure of the
    step's memory and speed (``benchmarks/memory_scale.py``).
    """
    seen = failing = 0
    for part in to_score_shards(catalog, settings, round_):
        _, reasons = rule_step(part.column("text"), settings)
        seen += len(reasons)
        failing += len(reasons) - reasons.null_count
    return seen, failing


def shard_key(round_: int, ids: list[str]) -> str:
    """The ``scores`` file key of a shard: the round and a digest of its candidate ids."""
    return f"r{round_:04d}-" + hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def score_shard(
    part: pa.Table,
    settings: Settings,
    round_: int,
    current: ModelRef,
    reference: ModelRef,
    model: LossScorer,
    ref: LossScorer,
    quality: QualityModel,
    bar: Bar,
) -> pa.Table:
    """Score one shard (``candidate_id``, ``text``) → a ``scores`` table."""
    texts = part.column("text")
    signals, reasons = rule_step(texts, settings)
    passing = np.asarray(pc.is_null(reasons).to_numpy(zero_copy_only=False), dtype=bool)
    n = part.num_rows
    loss_model = np.full(n, np.nan)
    loss_ref = np.full(n, np.nan)
    qual = np.full(n, np.nan)
    spread = np.full(n, np.nan)
    gain = np.full(n, np.nan)
    idx = np.flatnonzero(passing)
    if idx.size:
        keep = [texts[int(i)].as_py() for i in idx]
        loss_model[idx] = _bpb(model, keep, settings)
        loss_ref[idx] = _bpb(ref, keep, settings)
        gain[idx] = _order_gain(ref, keep, loss_ref[idx], settings)
        qual[idx], spread[idx] = quality.predict_with_uncertainty(keep, gain[idx])
    learnability = loss_model - loss_ref
    learnt = already_learnt(loss_model, learnability, bar.sample_loss, settings.route)

    def nullable(values: np.ndarray) -> pa.Array:
        return pa.array(values, pa.float64(), mask=~passing)

    columns = {
        "candidate_id": part.column("candidate_id"),
        "round": pa.array([round_] * n, pa.int32()),
        "model_id": [current.model_id] * n,
        "ref_model_id": [reference.model_id] * n,
        "loss_model": nullable(loss_model),
        "loss_ref": nullable(loss_ref),
        "learnability": nullable(learnability),
        "quality": nullable(qual),
        "quality_sd": nullable(spread),
        "order_gain": nullable(gain),
        "already_learnt": pa.array(learnt, pa.bool_(), mask=~passing),
        "rule_reason": reasons,
        "scored_at": pa.array([now()] * n, SCHEMAS["scores"].field("scored_at").type),
    }
    for name in signals.column_names:
        columns[name] = signals.column(name)
    return pa.table(columns)
