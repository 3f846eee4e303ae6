"""Prompt/response pairs against the model's own answer: the pair score and the routing.

The model-level bar of plain text is one number per round (``scoring.bar``). For a pair it
is per example: the current model answers the same prompt (``LossScorer.respond``), and a
candidate response is kept only if it beats that answer by a margin. Both responses are
scored the same way, on a log-odds scale:

    score = clip(logit(quality), +-max_quality_logit)
            + relevance_weight * relevance
            - coherence_weight * max(0, min_order_gain - order_gain)   (>= coherence_min_words)

- ``quality``: the quality classifier's P(good) of the response text (``scoring.quality``,
  fitted on text: trusted and expert-accepted against the model's samples). It asks "does
  this read like the writing we keep". Clipped: on a handful of short answers the
  classifier says 0.999 and 1.0 for a right answer and for its words shuffled alike, and
  an unclipped logit (6.9 vs 13.8) would outvote every other signal on noise.
- ``relevance = bpb_ref(response) - bpb_ref(response | prompt)``: the bits per byte of the
  response that its prompt explains under the reference model (the pointwise mutual
  information of prompt and response, per byte). It asks "does this answer *this*
  question": a fluent answer to another question reads as well as the right one, but its
  prompt explains about nothing of it (measured on the tests' trained model: 0.16-0.39
  bit/byte for right answers, -0.2-0.13 for answers to other questions). Bits per byte are
  small numbers, hence the large default weight. The reference model is used because it
  did not write the model's answer, so both responses are measured by the same outsider
  (under the current model its own sample would look unduly likely).
- coherence: ``order_gain`` (bits per byte the real word order saves the reference model,
  ``scoring.loss.order_gain``) below the trusted texts' floor ``min_order_gain`` (the text
  path's "incoherent" threshold, ``pipelines.score``) costs ``coherence_weight`` per bit.
  Word salad keeps the right words (quality and relevance barely notice) but loses its
  order gain. Only responses of at least ``coherence_min_words`` words are judged on it:
  the order of three words is too little evidence, and a short answer must not lose for
  being short.

The gap ``score - own_score`` then reads like the text path's margin around the bar:

1. ``rule_reason`` not null -> ``reject`` with that reason (rules on the response: the
   text rules that fit an answer, ``pair_rule_config``, then the two answer rules below;
   dedup and exact duplicates never reach this step).
2. ``gap > margin`` -> ``accept``, ``above_model_response``.
3. ``gap < -margin`` -> ``reject``, ``below_model_response``.
4. otherwise ``hard``, ``near_model_response``, ``priority = 1 - |gap| / margin`` (1 when
   the two answers are level: an expert's preference is least predictable there); the top
   ``budget`` by priority (ties: ascending ``candidate_id``) are ``queued``. A candidate
   that *is* the model's answer (optional column ``same_as_model``, which the pair step
   also sets when the model's answer is empty) gets priority 0 and is never queued: an
   expert shown two identical answers has nothing to choose, and the model writes it
   already (an empty side would not be blind). It waits, and the next round's model answers again.

Two rules judge an answer as an answer, for any data (``PAIR_RULE_REASONS``):

- ``generic_response``: the same normalised response given to at least
  ``generic_min_prompts`` distinct prompts of the pool, with at least ``generic_min_words``
  words, is a canned non-answer ("Please refer to the official docs for details."): an
  answer that fits every question answers none. Counted over the whole catalog once per
  pair step (``GENERIC_SQL``); expert rewrites (source ``expert-rewrite``) neither count
  nor are hit: an expert wrote that answer for that prompt, and it is decided already.
  Short answers ("Yes.", "None.", "It returns a list.") are legitimately shared.
- ``unfinished_response``: a response of at least ``unfinished_min_words`` words that does
  not end like a finished answer (``unfinished``): C4's terminal-punctuation rule (Raffel
  et al. 2020, "Exploring the Limits of Transfer Learning with a Unified Text-to-Text
  Transformer", section 2.2) applied to the answer's end, where truncation shows. Short
  answers ("42", "Returns x") are exempt.

Pure and deterministic: no I/O, output rows in input order.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from collections.abc import Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from scoring.config import HeuristicConfig, PairsConfig
from scoring.route import DECISIONS, OUTPUT_SCHEMA, to_scale

ABOVE_MODEL = "above_model_response"
BELOW_MODEL = "below_model_response"
NEAR_MODEL = "near_model_response"
PAIR_REASONS: tuple[str, ...] = (ABOVE_MODEL, BELOW_MODEL, NEAR_MODEL)
GENERIC = "generic_response"
UNFINISHED = "unfinished_response"
# the answer rules, in the order they are checked (after the text rules of pair_rule_config)
PAIR_RULE_REASONS: tuple[str, ...] = (GENERIC, UNFINISHED)
PAIR_INPUT_COLUMNS: tuple[str, ...] = ("candidate_id", "rule_reason", "score", "own_score")


def relevance(bpb_alone: np.ndarray, bpb_given_prompt: np.ndarray) -> np.ndarray:
    """Bits per byte of a response its prompt explains: ``bpb(r) - bpb(r | prompt)``.

    NaN where either is NaN (an empty response has no byte to explain).
    """
    return np.asarray(bpb_alone, np.float64) - np.asarray(bpb_given_prompt, np.float64)


def pair_score(
    quality: np.ndarray,
    relevance_: np.ndarray,
    cfg: PairsConfig,
    *,
    order_gain: np.ndarray | None = None,
    n_words: np.ndarray | None = None,
    min_order_gain: float | None = None,
) -> np.ndarray:
    """The pair score of each response (see the module docstring).

    ``quality`` is P(good) from the classifier; a NaN relevance (empty response) counts as
    0: nothing explained. The coherence term applies when ``order_gain``, ``n_words`` and a
    finite ``min_order_gain`` are given; a NaN order gain counts as no evidence.
    """
    cap = cfg.max_quality_logit
    q = np.clip(to_scale(np.asarray(quality, np.float64), "logit"), -cap, cap)
    rel = np.nan_to_num(np.asarray(relevance_, np.float64), nan=0.0)
    score = q + cfg.relevance_weight * rel
    if order_gain is not None and min_order_gain is not None and math.isfinite(min_order_gain):
        gain = np.asarray(order_gain, np.float64)
        deficit = np.nan_to_num(np.maximum(min_order_gain - gain, 0.0), nan=0.0)
        judged = np.asarray(n_words) >= cfg.coherence_min_words
        score = score - cfg.coherence_weight * np.where(judged, deficit, 0.0)
    return score


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The inverse of the logit: a pair score back on the probability scale."""
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def pair_rule_config(cfg: HeuristicConfig) -> HeuristicConfig:
    """The heuristic rules that still apply to a response, from the text rules ``cfg``.

    An answer is judged on what it is, not on the shape of a web document: "Return the
    absolute value of x." is a complete answer with 6 words, few stop words and no prose
    around it, and an answer may be a number, a formula, a list or code. So the length
    floor (``too_short`` now means empty), stop words, word length, letter and symbol
    shares, bullets, ellipses and code lines are off; what stays rejects a response on its
    form alone: too long, mojibake, repeated lines and repeated n-grams (degenerate loops).
    """
    return dataclasses.replace(
        cfg,
        min_chars=1,
        min_words=1,
        min_alpha_frac=0.0,
        max_symbol_frac=1.0,
        max_code_line_frac=1.0,
        max_bullet_line_frac=1.0,
        max_ellipsis_line_frac=1.0,
        min_alpha_word_frac=0.0,
        min_stopword_frac=0.0,
        min_mean_word_len=0.0,
        max_mean_word_len=float(max(cfg.max_chars, 1)),
    )


def _floats(frame: pa.Table, name: str) -> np.ndarray:
    col = frame.column(name).combine_chunks()
    t = col.type
    if not (pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_null(t)):
        raise ValueError(f"route_pairs: column {name!r} must be numeric, got {col.type}")
    return col.cast(pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)


def route_pairs(frame: pa.Table, cfg: PairsConfig) -> pa.Table:
    """Decide every pair (columns ``PAIR_INPUT_COLUMNS``); returns ``scoring.route``'s
    ``OUTPUT_SCHEMA`` rows (candidate_id, decision, reason, priority, queued)."""
    missing = [c for c in PAIR_INPUT_COLUMNS if c not in frame.column_names]
    if missing:
        raise ValueError(f"route_pairs: frame is missing column(s) {missing}")
    ids = frame.column("candidate_id").combine_chunks().cast(pa.string())
    if ids.null_count:
        raise ValueError(f"route_pairs: candidate_id has {ids.null_count} null(s)")
    rule = frame.column("rule_reason").combine_chunks().cast(pa.string())
    ruled = rule.is_valid().to_numpy(zero_copy_only=False)
    gap = _floats(frame, "score") - _floats(frame, "own_score")
    bad = ~ruled & ~np.isfinite(gap)
    if bad.any():
        first = ids[int(np.flatnonzero(bad)[0])].as_py()
        raise ValueError(
            f"route_pairs: score or own_score is null/NaN/inf for {int(bad.sum())} pair(s) "
            f"without a rule_reason (first: {first!r})"
        )
    margin = cfg.margin
    with np.errstate(invalid="ignore"):
        accept = ~ruled & (gap > margin)
        reject = ~ruled & (gap < -margin)
    hard = ~ruled & ~accept & ~reject
    same = np.zeros(len(ids), dtype=bool)
    if "same_as_model" in frame.column_names:
        col = frame.column("same_as_model").combine_chunks().cast(pa.bool_()).fill_null(False)
        same = col.to_numpy(zero_copy_only=False).astype(bool)
    closeness = np.where(same, 0.0, 1.0 - np.abs(np.nan_to_num(gap)) / margin)
    priority = np.where(hard, closeness, np.nan)

    hard_rows = np.flatnonzero(hard)
    ranking = pc.sort_indices(
        pa.table({"p": priority[hard_rows], "id": ids.take(pa.array(hard_rows, pa.int64()))}),
        sort_keys=[("p", "descending"), ("id", "ascending")],
    ).to_numpy()
    queued = np.zeros(len(ids), dtype=bool)
    queued[hard_rows[ranking[: cfg.budget]]] = True
    queued &= ~same

    code = np.select([accept, reject], [0, 1], default=2).astype(np.int8)
    reason = pa.array(PAIR_REASONS, pa.string()).take(pa.array(code))
    decision = np.select([accept, hard], [0, 2], default=1).astype(np.int8)
    return pa.table(
        [
            ids,
            pa.array(DECISIONS, pa.string()).take(pa.array(decision)),
            pc.if_else(pa.array(ruled), rule, reason),
            pa.array(priority, pa.float64(), mask=~hard),
            pa.array(queued),
        ],
        schema=OUTPUT_SCHEMA,
    )


# What a finished answer may end with. Sentence punctuation: . ! ? and also : ; (a list
# or code answer's last item may end so). After it, any closing quotes, brackets or
# backticks ("Use `abs(x)`." / He said "no."). A closing bracket, quote or backtick alone
# also ends an answer when the answer opened one (a code answer ``sorted(xs, key=len)``,
# a fenced block ending in ```, a quoted name): truncation by length almost never lands
# right after a closer it opened. Not finished: a letter, a digit, a comma or dash, and an
# ellipsis (``...`` / ``…``: the writer's own mark of a cut). A digit is the one hard case:
# "The default limit is 1000" is finished, "It takes 2" is not; C4 says no, and so do we
# (a real answer with a number last mostly ends in a full stop; short ones are exempt).
_TERMINAL = frozenset(".!?:;")
_CLOSERS = {")": "(", "]": "[", "}": "{", "»": "«", "”": "“", "’": "‘"}
_SELF_CLOSERS = frozenset("\"'`")
_ELLIPSIS = re.compile(r"(\.\.\.|…)[\s\"'`)\]}”’»]*$")


def word_count(text: str) -> int:
    """Words of a response for the answer rules: whitespace-separated tokens."""
    return len(text.split())


def is_finished(text: str) -> bool:
    """Whether ``text`` ends like a finished answer (the endings are listed above ``_TERMINAL``)."""
    body = text.rstrip()
    if not body or _ELLIPSIS.search(body):
        return False
    if body[-1] in _TERMINAL:
        return True
    end = len(body)
    while end and (body[end - 1] in _CLOSERS or body[end - 1] in _SELF_CLOSERS):
        end -= 1
    if end == len(body):
        return False  # a letter, digit, comma, dash, ...
    if end and body[end - 1] in _TERMINAL:
        return True  # ." or .) or .``` : punctuation inside the closers
    last = body[-1]
    head = body[:-1]
    if last in _SELF_CLOSERS:
        return last in head  # the answer opened what it closes
    return _CLOSERS[last] in head


def unfinished(texts: Iterable[str], min_words: int) -> np.ndarray:
    """True where a response of at least ``min_words`` words does not end finished
    (``is_finished``); ``min_words`` 0 turns the rule off (all False)."""
    texts = list(texts)
    if min_words <= 0:
        return np.zeros(len(texts), dtype=bool)
    return np.array(
        [word_count(t) >= min_words and not is_finished(t) for t in texts], dtype=bool
    ).reshape(len(texts))


def response_digest(text: str) -> str:
    """The key of a response in the set of generic ones: md5 hex of its UTF-8 (DuckDB's
    ``md5(text)`` gives the same), so the set stays small however long the answers are."""
    return hashlib.md5(text.encode("utf-8")).hexdigest()


# The digests of pool responses given to at least ? distinct prompts, with at least ?
# words. Expert rewrites are the expert's answer to their prompt: they do not count.
GENERIC_SQL = """
SELECT md5(text) AS digest
FROM candidates
WHERE coalesce(kind, 'text') = 'pair' AND role = 'pool'
  AND coalesce(source, '') <> 'expert-rewrite'
  AND text IS NOT NULL
  AND len(string_split_regex(trim(text), '\\s+')) >= ?
GROUP BY text
HAVING count(DISTINCT prompt) >= ?
"""


def generic(texts: Iterable[str], digests: frozenset[str], min_words: int) -> np.ndarray:
    """True where a response is one of the generic ones (``digests`` from ``GENERIC_SQL``)
    and has at least ``min_words`` words."""
    texts = list(texts)
    if not digests:
        return np.zeros(len(texts), dtype=bool)
    return np.array(
        [word_count(t) >= min_words and response_digest(t) in digests for t in texts],
        dtype=bool,
    ).reshape(len(texts))


def answer_rule_reasons(
    texts: Sequence[str], reasons: pa.Array, cfg: PairsConfig, digests: frozenset[str]
) -> pa.Array:
    """``reasons`` (the text rules' first failing rule per response, null = passes) with the
    answer rules added where it is null: ``generic_response`` first, then
    ``unfinished_response``."""
    reasons = reasons.cast(pa.string())
    if len(texts) != len(reasons):
        raise ValueError(f"answer_rule_reasons: {len(texts)} texts but {len(reasons)} reasons")
    gen = generic(texts, digests, cfg.generic_min_words)
    cut = unfinished(texts, cfg.unfinished_min_words)
    added = np.select([gen, cut], [GENERIC, UNFINISHED], default="").astype(object)
    added[added == ""] = None
    return pc.coalesce(reasons, pa.array(added.tolist(), pa.string()))
