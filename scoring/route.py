"""Routing: accept / reject / send to experts, against the model-level bar.

Policy, in order, for each candidate (``bar`` from ``scoring.bar.model_level_bar``):

1. ``rule_reason`` not null -> ``reject``, reason = the rule's code (``RULE_REASONS`` of
   ``scoring.heuristics``, or any code an upstream filter such as dedup put there).
1b. ``order_gain < min_order_gain`` (when the score step gives a threshold) -> ``reject``,
   ``"incoherent"``: word order saves the reference model less bits than it saves almost
   every trusted text (``scoring.loss.order_gain``), i.e. word salad, however fluent its
   n-grams look.
2. ``quality >= bar + margin`` -> ``accept``, ``"above_bar"``.
3. ``quality < bar - margin`` -> ``reject``, ``"below_bar"``.
4. otherwise ``hard`` (``bar - margin <= quality < bar + margin``), ranked by expected value
   of an expert label, ``priority = uncertainty * gain``:

   - ``uncertainty = 2 * Phi(-|quality - bar| / s)``, ``s = max(quality_sd,
     min_sd * margin)``: the chance that the candidate's true quality lies on the other
     side of the bar, i.e. that an expert's label flips the decision (uncertainty sampling,
     Lewis & Gale 1994), with ``quality_sd`` the quality classifier's ensemble disagreement
     in log-odds (``QualityModel.predict_with_uncertainty``; a null counts as 0). 1 on the
     bar; lower the further from it and the more the classifier's members agree.
   - ``gain = eps + max(learnability, 0)``, or ``eps`` alone when the text is
     ``already_learnt``. Learnability is the reducible loss ``loss(current) -
     loss(reference)`` of RHO-LOSS (Mindermann et al. 2022, "Prioritized Training on Points
     that are Learnable, Worth Learning, and Not Yet Learnt"): how much the model stands to
     gain. Raw loss is *not* a gain: noise has a high loss under every model, so its
     learnability is about 0 and it ranks by uncertainty alone, below learnable text.
     ``eps`` (``RouteConfig.priority_eps``) keeps the ranking by uncertainty when
     learnability is 0 or unknown (null or NaN counts as 0).

   The top ``budget`` hard cases by priority (ties: ascending ``candidate_id``) are
   ``queued`` for experts with reason ``"near_bar"``; the rest are ``"over_budget"`` and
   wait.

"Already learnt" (``already_learnt``, computed in the score step and stored per candidate):
the current model predicts the text far better than the reference (``learnability <=
-learnt_margin``) or at least as well as it predicts its own samples (``loss_model <=``
the samples' median loss): training on it again teaches little.

Scale: with ``RouteConfig.scale = "logit"`` (the default) quality and bar are compared as
log-odds, ``log(p / (1 - p))`` clipped at ``p`` in [1e-6, 1 - 1e-6], and ``margin`` is in
log-odds units. Calibrated probabilities crowd near 1 once the model writes well (the
bar sat at 0.97 on the demo after one round), where a fixed band in probability would be
meaningless; in log-odds a margin of 1 means "e times likelier" on either side.

Pure and deterministic: no I/O, output rows in input order.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.special import ndtr

from scoring.config import RouteConfig

ACCEPT, REJECT, HARD = "accept", "reject", "hard"
DECISIONS: tuple[str, ...] = (ACCEPT, REJECT, HARD)

ABOVE_BAR, BELOW_BAR, NEAR_BAR, OVER_BUDGET = "above_bar", "below_bar", "near_bar", "over_budget"
INCOHERENT = "incoherent"
ROUTE_REASONS: tuple[str, ...] = (ABOVE_BAR, BELOW_BAR, NEAR_BAR, OVER_BUDGET, INCOHERENT)

INPUT_COLUMNS: tuple[str, ...] = ("candidate_id", "rule_reason", "quality", "learnability")
# Optional inputs: a missing column or a null counts as 0 / False.
OPTIONAL_COLUMNS: tuple[str, ...] = ("quality_sd", "already_learnt", "order_gain")
OUTPUT_SCHEMA = pa.schema(
    [
        ("candidate_id", pa.string()),
        ("decision", pa.string()),
        ("reason", pa.string()),
        ("priority", pa.float64()),
        ("queued", pa.bool_()),
    ]
)


def _column(frame: pa.Table, name: str, kind: pa.DataType) -> pa.Array:
    col = frame.column(name).combine_chunks()
    ok = pa.types.is_floating(kind) and (
        pa.types.is_floating(col.type) or pa.types.is_integer(col.type)
    )
    if kind == pa.string() and pa.types.is_dictionary(col.type):
        col = col.dictionary_decode()
    ok = ok or col.type == kind or (kind == pa.string() and pa.types.is_large_string(col.type))
    ok = ok or pa.types.is_null(col.type)
    if not ok:
        raise ValueError(f"route: column {name!r} must be {kind}, got {col.type}")
    return col.cast(kind)


def to_scale(p: np.ndarray, scale: str) -> np.ndarray:
    """Probabilities on the scale routing compares them on (see the module docstring)."""
    if scale == "probability":
        return np.asarray(p, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        q = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1.0 - 1e-6)
        return np.log(q) - np.log1p(-q)


def already_learnt(
    loss_model: np.ndarray, learnability: np.ndarray, sample_loss: float, cfg: RouteConfig
) -> np.ndarray:
    """True where the current model has learnt a text already (see the module docstring).

    ``sample_loss`` is the median bits per byte of the model's own samples under the model.
    NaN losses (rule rejects, empty texts) are never "learnt".
    """
    loss_model = np.asarray(loss_model, dtype=np.float64)
    learnability = np.asarray(learnability, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return (learnability <= -cfg.learnt_margin) | (loss_model <= sample_loss)


def _optional(frame: pa.Table, name: str, kind: pa.DataType, fill: object) -> np.ndarray:
    if name not in frame.column_names:
        return np.full(frame.num_rows, fill)
    col = _column(frame, name, kind).fill_null(fill)
    return col.to_numpy(zero_copy_only=False)


def route(
    frame: pa.Table, bar: float, cfg: RouteConfig, min_order_gain: float | None = None
) -> pa.Table:
    """Decide every candidate (columns ``INPUT_COLUMNS``); returns ``OUTPUT_SCHEMA`` rows."""
    missing = [c for c in INPUT_COLUMNS if c not in frame.column_names]
    if missing:
        raise ValueError(f"route: frame is missing column(s) {missing}")
    if not isinstance(bar, int | float) or not math.isfinite(bar):
        raise ValueError(f"route: bar must be a finite number, got {bar!r}")
    ids = _column(frame, "candidate_id", pa.string())
    if ids.null_count:
        raise ValueError(f"route: candidate_id has {ids.null_count} null(s)")
    rule = _column(frame, "rule_reason", pa.string())
    quality = _column(frame, "quality", pa.float64()).to_numpy(zero_copy_only=False)
    learn = _column(frame, "learnability", pa.float64()).to_numpy(zero_copy_only=False)
    spread = np.nan_to_num(_optional(frame, "quality_sd", pa.float64(), 0.0).astype(float))
    learnt = _optional(frame, "already_learnt", pa.bool_(), False).astype(bool)
    gain_of_order = _optional(frame, "order_gain", pa.float64(), np.nan).astype(float)

    quality, bar = to_scale(quality, cfg.scale), float(to_scale(np.asarray([bar]), cfg.scale)[0])

    # 1-3. Rule rejects, then clear accepts and rejects around the bar.
    ruled = rule.is_valid().to_numpy(zero_copy_only=False)
    incoherent = np.zeros(len(ids), dtype=bool)
    if min_order_gain is not None and math.isfinite(min_order_gain):
        with np.errstate(invalid="ignore"):
            incoherent = ~ruled & (gain_of_order < min_order_gain)
    ruled_or_incoherent = ruled | incoherent
    bad = ~ruled & ~np.isfinite(quality)
    if bad.any():
        first = ids[int(np.flatnonzero(bad)[0])].as_py()
        raise ValueError(
            f"route: quality is null/NaN/inf for {int(bad.sum())} candidate(s) without a "
            f"rule_reason (first: {first!r})"
        )
    accept = ~ruled_or_incoherent & (quality >= bar + cfg.margin)
    reject = ~ruled_or_incoherent & (quality < bar - cfg.margin)
    hard = ~ruled_or_incoherent & ~accept & ~reject

    # 4. Hard cases: expected value of an expert label, top `budget` queued.
    # the spread is in log-odds; on the probability scale only the floor applies
    floor = cfg.min_sd * cfg.margin
    sd = np.maximum(spread, floor) if cfg.scale == "logit" else np.full_like(quality, floor)
    uncert = 2.0 * ndtr(-np.abs(quality - bar) / sd)
    gain = cfg.priority_eps + np.where(learnt, 0.0, np.maximum(np.nan_to_num(learn, nan=0.0), 0.0))
    priority = np.where(hard, uncert * gain, np.nan)
    hard_rows = np.flatnonzero(hard)
    ranking = pc.sort_indices(
        pa.table({"p": priority[hard_rows], "id": ids.take(pa.array(hard_rows))}),
        sort_keys=[("p", "descending"), ("id", "ascending")],
    ).to_numpy()
    queued = np.zeros(len(ids), dtype=bool)
    queued[hard_rows[ranking[: cfg.budget]]] = True

    # Reason codes: rule code if ruled, else the routing reason.
    code = np.select(
        [accept, reject, hard & queued, hard, incoherent],
        [0, 1, 2, 3, 4],
        default=0,
    ).astype(np.int8)
    route_reason = pa.array(ROUTE_REASONS, pa.string()).take(pa.array(code))
    decision = np.select([accept, hard], [0, 2], default=1).astype(np.int8)
    return pa.table(
        [
            ids,
            pa.array(DECISIONS, pa.string()).take(pa.array(decision)),
            pc.if_else(pa.array(ruled), rule, route_reason),
            pa.array(priority, pa.float64(), mask=~hard),
            pa.array(queued),
        ],
        schema=OUTPUT_SCHEMA,
    )
