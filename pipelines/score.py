"""The score step: the model-level bar, then every new candidate scored against it.

1. **Samples**: the current model writes ``route.n_samples`` texts (recurrent form).
2. **Quality classifier**: positives = trusted text + expert-accepted; negatives = the
   model's own samples + expert-rejected + (a capped share of) earlier rule rejects;
   features = hashed n-grams + bits per byte under the reference model. The samples'
   quality is taken out-of-fold, so the bar is not flattered by the classifier having seen
   them.
3. **Bar** = the ``route.bar_quantile`` quantile of the samples' quality: the level the
   model itself writes at. It is stored per round (table ``bars``) with the samples.
4. **Candidates** still undecided are scored in shards (one Parquet file each): heuristic
   signals and the first failing rule; for rule-passing rows, bits per byte under the
   current and the reference model, learnability = current − reference (RHO-LOSS reducible
   loss, Mindermann et al. 2022), and quality.

Each shard file is named by its content, so a killed run resumes with the rest.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.catalog import SCHEMAS, Catalog, now
from pipelines.modelling import ModelRef, load, trusted_texts
from pipelines.progress import note, progress_bar
from pipelines.settings import Settings
from scoring.bar import model_level_bar
from scoring.heuristics import heuristic_signals, rule_reasons
from scoring.loss import example_bpb
from scoring.quality import QualityModel
from trainer.sample import sample_texts


@dataclass(frozen=True)
class Bar:
    round: int
    model_id: str
    bar: float
    quality_model: Path


def _bpb(model, texts: list[str], settings: Settings) -> np.ndarray:
    """Bits per byte of each text, with the workspace's scoring limits."""
    return example_bpb(
        model, texts, max_bytes=settings.score.max_bytes, batch_tokens=settings.score.batch_tokens
    )


def quality_model_path(catalog: Catalog, round_: int) -> Path:
    return catalog.home / "quality" / f"round-{round_:04d}.joblib"


def read_bar(catalog: Catalog, round_: int) -> Bar | None:
    rows = catalog.query(
        "SELECT model_id, bar, quality_model FROM bars WHERE round = ?", [round_]
    ).to_pylist()
    if not rows:
        return None
    row = rows[0]
    return Bar(round_, row["model_id"], row["bar"], Path(row["quality_model"]))


def model_bar(
    catalog: Catalog, settings: Settings, round_: int, current: ModelRef, reference: ModelRef
) -> Bar:
    """Steps 1–3: sample, fit the quality classifier, set the bar. Idempotent per round."""
    existing = read_bar(catalog, round_)
    if existing is not None and existing.model_id == current.model_id:
        return existing
    cfg = settings.route
    model, ref = load(current), load(reference)
    note(f"round {round_}: sampling {cfg.n_samples} texts from {current.model_id} for the bar")
    texts = sample_texts(
        model,
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

    # The classifier sees n-grams plus one model signal: bits per byte under the reference
    # model (word salad and boilerplate read as fluent n-grams but score high loss).
    def ref_loss(texts_: list[str]) -> np.ndarray:
        return _bpb(ref, texts_, settings)

    loss_model = _bpb(model, texts, settings)
    loss_ref = ref_loss(texts)
    note(
        f"round {round_}: quality classifier on {len(positives)} positives, "
        f"{len(texts) + len(negatives_extra)} negatives ({len(texts)} model samples)"
    )
    quality = QualityModel(settings.quality)
    _, neg_oof = quality.fit_predict_oof(
        positives,
        texts + negatives_extra,
        ref_loss(positives),
        np.concatenate([loss_ref, ref_loss(negatives_extra)]),
    )
    sample_quality = np.asarray(neg_oof[: len(texts)], dtype=np.float64)
    bar = model_level_bar(sample_quality, cfg.bar_quantile)
    qpath = quality_model_path(catalog, round_)
    qpath.parent.mkdir(parents=True, exist_ok=True)
    quality.save(qpath)

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
        }
    )
    key = f"r{round_:04d}"
    catalog.write("samples", samples, key)
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
    }
    catalog.write("bars", pa.Table.from_pylist([row], SCHEMAS["bars"]), key)
    return Bar(round_, current.model_id, bar, qpath)


def score_candidates(
    catalog: Catalog,
    settings: Settings,
    round_: int,
    current: ModelRef,
    reference: ModelRef,
    bar: Bar,
) -> int:
    """Step 4: score every candidate the round still has to score; returns how many."""
    todo = catalog.named("to_score", [round_])
    if todo.num_rows == 0:
        return 0
    model, ref = load(current), load(reference)
    quality = QualityModel.load(bar.quality_model)
    shard = settings.score.shard_rows
    with progress_bar(f"score round {round_}", todo.num_rows) as advance:
        for start in range(0, todo.num_rows, shard):
            part = todo.slice(start, shard)
            ids = part.column("candidate_id").to_pylist()
            key = f"r{round_:04d}-" + hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]
            if not catalog.exists("scores", key):
                table = score_shard(part, settings, round_, current, reference, model, ref, quality)
                catalog.write("scores", table, key)
            advance(part.num_rows)
    return todo.num_rows


def score_shard(
    part: pa.Table,
    settings: Settings,
    round_: int,
    current: ModelRef,
    reference: ModelRef,
    model,
    ref,
    quality: QualityModel,
) -> pa.Table:
    """Score one shard (``candidate_id``, ``text``) → a ``scores`` table."""
    texts = part.column("text")
    signals = heuristic_signals(texts)
    reasons = rule_reasons(signals, settings.heuristics)
    passing = np.asarray(pc.is_null(reasons).to_numpy(zero_copy_only=False), dtype=bool)
    n = part.num_rows
    loss_model = np.full(n, np.nan)
    loss_ref = np.full(n, np.nan)
    qual = np.full(n, np.nan)
    idx = np.flatnonzero(passing)
    if idx.size:
        keep = [texts[int(i)].as_py() for i in idx]
        loss_model[idx] = _bpb(model, keep, settings)
        loss_ref[idx] = _bpb(ref, keep, settings)
        qual[idx] = quality.predict(keep, loss_ref[idx])

    def nullable(values: np.ndarray) -> pa.Array:
        return pa.array(values, pa.float64(), mask=~passing)

    columns = {
        "candidate_id": part.column("candidate_id"),
        "round": pa.array([round_] * n, pa.int32()),
        "model_id": [current.model_id] * n,
        "ref_model_id": [reference.model_id] * n,
        "loss_model": nullable(loss_model),
        "loss_ref": nullable(loss_ref),
        "learnability": nullable(loss_model - loss_ref),
        "quality": nullable(qual),
        "rule_reason": reasons,
        "scored_at": pa.array([now()] * n, SCHEMAS["scores"].field("scored_at").type),
    }
    for name in signals.column_names:
        columns[name] = signals.column(name)
    return pa.table(columns)
