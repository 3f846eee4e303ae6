"""The pair step of a round: each prompt/response candidate against the model's own answer.

Runs after the text path's score and route (it reuses the round's quality classifier,
fitted by ``pipelines.score.model_bar``), on the pool pairs still undecided after dedup
(``sql/pairs_to_score.sql``), ``score.shard_rows`` at a time:

1. **Rules** on the response, with the rules that fit an answer (``scoring.pairs.
   pair_rule_config``: a short correct answer is not "too short"), then the answer rules
   ``generic_response`` (the set of generic responses is counted once per step over the
   whole catalog, ``generic_responses``, and passed to each shard) and
   ``unfinished_response`` (``scoring.pairs.answer_rule_reasons``).
2. **The model's own answer** to each prompt (``LossScorer.respond``: the current model,
   recurrent form, ``pairs.temperature``, at most ``pairs.max_response_bytes`` bytes),
   drawn from a seed of (``pairs.seed``, round, shard), so a resumed round draws the same.
3. **Both responses scored the same way**: bits per byte given the prompt under the current
   and the reference model, relevance (``scoring.pairs.relevance``), the quality
   classifier's P(good) (with the reference model's order gain, as for text), and the pair
   score; ``gap = score - own_score``. One ``pair_scores`` file per shard, named by the
   round and a digest of its ids: a killed run resumes with the shards it has not written.

``route_pairs_round`` then decides every pair scored in the round (``scoring.pairs.
route_pairs``: accept / reject ``below_model_response`` / hard, the closest ``pairs.budget``
queued for the pairwise expert view) and writes one ``decisions`` file per round, so
running it again rewrites the same file.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.catalog import SCHEMAS, Catalog, now
from pipelines.dedup import bounded_connection
from pipelines.modelling import ModelRef, load_scorer
from pipelines.progress import progress_bar
from pipelines.route import decision_counts, decisions_table
from pipelines.score import Bar, count_rows, rule_step, shard_key, stream_shards
from pipelines.settings import Settings
from scoring.heuristics import RULE_REASONS, heuristic_signals
from scoring.loss import LossScorer, order_gain
from scoring.pairs import (
    GENERIC_SQL,
    PAIR_RULE_REASONS,
    answer_rule_reasons,
    pair_rule_config,
    pair_score,
    relevance,
    route_pairs,
    sigmoid,
)
from scoring.quality import QualityModel

# Columns ``pair_scores`` files carry beyond ``SCHEMAS["pair_scores"]`` (views union by name).
PAIR_EXTRA = ("order_gain", "own_order_gain")


def count_pairs_to_score(catalog: Catalog, round_: int) -> int:
    return count_rows(catalog, "pairs_to_score", round_)


def has_pool_pairs(catalog: Catalog) -> bool:
    """Whether the workspace holds any pool pair at all (the round's pair step runs then)."""
    return bool(
        catalog.scalar(
            "SELECT count(*) FROM candidates WHERE role = 'pool' AND coalesce(kind, 'text') = ?",
            ["pair"],
        )
    )


def pair_shards(catalog: Catalog, settings: Settings, round_: int) -> Iterator[pa.Table]:
    """The pairs the round still has to score (``candidate_id``, ``prompt``, ``text``), in
    parts of ``score.shard_rows``, streamed under ``score.memory_limit_mb``."""
    return stream_shards(catalog, settings, "pairs_to_score", round_)


def generic_responses(catalog: Catalog, settings: Settings) -> frozenset[str]:
    """Digests of the pool's generic responses (``scoring.pairs.GENERIC_SQL``): one query
    over the whole catalog, so a canned answer is caught across shards, ingests and rounds.
    Empty when ``pairs.generic_min_prompts`` is 0 (the rule is off)."""
    cfg = settings.pairs
    if cfg.generic_min_prompts == 0:
        return frozenset()
    con = bounded_connection(catalog, settings.score.memory_limit_mb)
    try:
        rows = con.sql(GENERIC_SQL, params=[cfg.generic_min_words, cfg.generic_min_prompts])
        digests = rows.to_arrow_table().column("digest").to_pylist()
    finally:
        con.close()
    return frozenset(digests)


def score_pairs(
    catalog: Catalog,
    settings: Settings,
    round_: int,
    current: ModelRef,
    reference: ModelRef,
    bar: Bar,
) -> int:
    """Steps 1-3 over every pair the round still has to score; returns how many."""
    total = count_pairs_to_score(catalog, round_)
    if total == 0:
        return 0
    model, ref = load_scorer(current), load_scorer(reference)
    quality = QualityModel.load(bar.quality_model)
    generic = generic_responses(catalog, settings)
    with progress_bar(f"score pairs round {round_}", total) as advance:
        for part in pair_shards(catalog, settings, round_):
            key = shard_key(round_, part.column("candidate_id").to_pylist())
            if not catalog.exists("pair_scores", key):
                seed = _shard_seed(settings.pairs.seed, key)
                table = score_pair_shard(
                    part,
                    settings,
                    round_,
                    current,
                    reference,
                    model,
                    ref,
                    quality,
                    bar,
                    seed,
                    generic=generic,
                )
                catalog.write("pair_scores", table, key)
            advance(part.num_rows)
    return total


def _shard_seed(seed: int, key: str) -> int:
    """A sampling seed from the settings' seed and the shard's key (round + ids digest)."""
    digest = hashlib.sha256(f"{seed}\x1f{key}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def _response_signals(
    model: LossScorer,
    ref: LossScorer,
    quality: QualityModel,
    prompts: list[str],
    responses: list[str],
    n_words: np.ndarray,
    settings: Settings,
    bar: Bar,
) -> dict[str, np.ndarray]:
    """Step 3 for one set of responses: losses given the prompt, relevance, quality, score."""
    kw = {
        "max_bytes": settings.score.max_bytes,
        "max_prompt_bytes": settings.pairs.max_prompt_bytes,
        "batch_tokens": settings.score.batch_tokens,
    }
    loss_model = model.bpb(responses, prompts, **kw)
    loss_ref = ref.bpb(responses, prompts, **kw)
    alone = ref.bpb(responses, **kw)  # the response without its prompt
    rel = relevance(alone, loss_ref)
    kw.pop("max_prompt_bytes")
    # the classifier's features, as for text: n-grams + the reference's order gain
    texts = [r if r.strip() else " " for r in responses]
    gain = np.nan_to_num(order_gain(ref, texts, alone, **kw), nan=0.0)
    qual = quality.predict(texts, gain)
    return {
        "loss_model": loss_model,
        "loss_ref": loss_ref,
        "relevance": rel,
        "quality": qual,
        "order_gain": gain,
        "score": pair_score(
            qual,
            rel,
            settings.pairs,
            order_gain=gain,
            n_words=n_words,
            min_order_gain=bar.min_order_gain,
        ),
    }


def score_pair_shard(
    part: pa.Table,
    settings: Settings,
    round_: int,
    current: ModelRef,
    reference: ModelRef,
    model: LossScorer,
    ref: LossScorer,
    quality: QualityModel,
    bar: Bar,
    seed: int,
    *,
    generic: frozenset[str] = frozenset(),
) -> pa.Table:
    """Score one shard (``candidate_id``, ``prompt``, ``text``) → a ``pair_scores`` table.

    ``generic``: digests of the pool's generic responses (``generic_responses``).
    """
    cfg = settings.pairs
    n = part.num_rows
    signals, reasons = rule_step(part.column("text"), _pair_rules(settings))
    texts = [t or "" for t in part.column("text").to_pylist()]
    reasons = answer_rule_reasons(texts, reasons, cfg, generic)
    passing = np.asarray(pc.is_null(reasons).to_numpy(zero_copy_only=False), dtype=bool)
    idx = np.flatnonzero(passing)
    prompts = [part.column("prompt")[int(i)].as_py() or "" for i in idx]
    responses = [part.column("text")[int(i)].as_py() for i in idx]
    if not idx.size:  # every response failed a rule: nothing to answer or score
        return _rule_only(part, round_, current, reference, reasons)
    own = model.respond(
        prompts,
        max_bytes=cfg.max_response_bytes,
        temperature=cfg.temperature,
        seed=seed,
        max_prompt_bytes=cfg.max_prompt_bytes,
    )
    words = signals.column("n_words").to_numpy(zero_copy_only=False)[idx]
    own_words = heuristic_signals(own).column("n_words").to_numpy(zero_copy_only=False)
    cand = _response_signals(model, ref, quality, prompts, responses, words, settings, bar)
    mine = _response_signals(model, ref, quality, prompts, own, own_words, settings, bar)

    def column(values: np.ndarray) -> pa.Array:
        full = np.full(n, np.nan)
        full[idx] = values
        return pa.array(full, pa.float64(), mask=~passing)

    own_text = np.full(n, None, dtype=object)
    own_text[idx] = own
    columns = {
        "candidate_id": part.column("candidate_id"),
        "round": pa.array([round_] * n, pa.int32()),
        "model_id": [current.model_id] * n,
        "ref_model_id": [reference.model_id] * n,
        "model_response": pa.array(own_text.tolist(), pa.string()),
        "loss_model": column(cand["loss_model"]),
        "loss_ref": column(cand["loss_ref"]),
        "own_loss_model": column(mine["loss_model"]),
        "own_loss_ref": column(mine["loss_ref"]),
        "relevance": column(cand["relevance"]),
        "own_relevance": column(mine["relevance"]),
        "quality": column(cand["quality"]),
        "own_quality": column(mine["quality"]),
        "score": column(cand["score"]),
        "own_score": column(mine["score"]),
        "gap": column(cand["score"] - mine["score"]),
        "order_gain": column(cand["order_gain"]),
        "own_order_gain": column(mine["order_gain"]),
        "rule_reason": reasons,
        "scored_at": pa.array([now()] * n, SCHEMAS["pair_scores"].field("scored_at").type),
    }
    schema = SCHEMAS["pair_scores"]
    for name in PAIR_EXTRA:
        schema = schema.append(pa.field(name, pa.float64()))
    return pa.table(columns, schema=schema)


def _rule_only(
    part: pa.Table, round_: int, current: ModelRef, reference: ModelRef, reasons: pa.Array
) -> pa.Table:
    """A ``pair_scores`` table for a shard whose every response failed a rule."""
    n = part.num_rows
    schema = SCHEMAS["pair_scores"]
    columns = {
        "candidate_id": part.column("candidate_id"),
        "round": pa.array([round_] * n, pa.int32()),
        "model_id": pa.array([current.model_id] * n, pa.string()),
        "ref_model_id": pa.array([reference.model_id] * n, pa.string()),
        "rule_reason": reasons,
        "scored_at": pa.array([now()] * n, schema.field("scored_at").type),
    }
    return pa.table([columns.get(f.name, pa.nulls(n, f.type)) for f in schema], schema=schema)


def _pair_rules(settings: Settings) -> Settings:
    """The workspace's settings with the heuristic rules that fit a response."""
    return dataclasses.replace(settings, heuristics=pair_rule_config(settings.heuristics))


def route_pairs_round(catalog: Catalog, settings: Settings, round_: int) -> Counter:
    """Decide every pair scored in ``round_``; returns counts per (decision, reason)."""
    scored = catalog.query(
        """
        SELECT p.candidate_id, p.model_id, p.rule_reason, p.score, p.own_score,
               -- nothing for an expert to choose: the model wrote the candidate, or wrote
               -- nothing (a young model may stop at once; an empty side is not blind)
               coalesce(trim(p.model_response) IN (trim(c.text), ''), false) AS same_as_model
        FROM pair_scores p JOIN candidates c USING (candidate_id)
        WHERE p.round = ? ORDER BY p.candidate_id
        """,
        [round_],
    )
    if scored.num_rows == 0:
        return Counter()
    decided = route_pairs(scored, settings.pairs)
    rules = sorted({*RULE_REASONS, *PAIR_RULE_REASONS})

    def prob(name: str) -> pa.Array:
        values = scored.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
        return pa.array(sigmoid(values), pa.float64(), mask=~np.isfinite(values))

    table = decisions_table(
        decided,
        round_,
        rules,
        scored.column("model_id"),
        prob("own_score"),  # the per-example bar: the model's own answer
        prob("score"),
    )
    catalog.write("decisions", table, f"r{round_:04d}-route-pairs")
    return decision_counts(decided)
