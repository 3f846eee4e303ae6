"""The route step: turn a round's scores into decisions, each with its reason, bar and model.

The policy itself is :func:`scoring.route.route` (a pure function); this step reads the
round's scores, applies it, and appends the decisions. ``decided_by`` is ``rule`` for a
heuristic reject or an ``incoherent`` one (word order saves the reference model too little)
and ``model`` for a decision against the bar.
"""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.catalog import SCHEMAS, Catalog, now
from pipelines.score import Bar
from pipelines.settings import Settings
from scoring.heuristics import RULE_REASONS
from scoring.route import INCOHERENT, route


def route_round(catalog: Catalog, settings: Settings, round_: int, bar: Bar) -> Counter:
    """Decide every candidate scored in ``round_``; returns counts per (decision, reason)."""
    if not catalog.scalar("SELECT count(*) FROM scores WHERE round = ?", [round_]):
        # nothing scored (e.g. a pool of pairs only, scored by pipelines.score_pairs): the
        # extra signal columns below exist only in files the text score step wrote
        return Counter()
    scored = catalog.query(
        """
        SELECT candidate_id, rule_reason, quality, coalesce(learnability, 0.0) AS learnability,
               quality_sd, already_learnt, order_gain
        FROM scores WHERE round = ? ORDER BY candidate_id
        """,
        [round_],
    )
    if scored.num_rows == 0:
        return Counter()
    decided = route(scored, bar.bar, settings.route, bar.min_order_gain)
    n = decided.num_rows
    # "incoherent" is a rule on a model signal (scoring.route, step 1b): decided by rule
    rules = sorted({*RULE_REASONS, INCOHERENT})
    table = decisions_table(
        decided, round_, rules, [bar.model_id] * n, [bar.bar] * n, scored.column("quality")
    )
    catalog.write("decisions", table, f"r{round_:04d}-route")
    return decision_counts(decided)


# Shared with the pair route step (pipelines.score_pairs), which stores the same columns.


def decisions_table(
    decided: pa.Table,
    round_: int,
    rules: list[str],
    model_id: pa.Array | list,
    bar: pa.Array | list,
    quality: pa.Array | pa.ChunkedArray | list,
) -> pa.Table:
    """The ``decisions`` rows of a routed table (one per row of ``decided``).

    ``decided_by`` is ``rule`` where the reason is one of ``rules``, else ``model``;
    ``model_id``, ``bar`` and ``quality`` are given per row, aligned with ``decided``.
    """
    n = decided.num_rows
    by_rule = pc.is_in(decided.column("reason"), value_set=pa.array(rules))
    return pa.table(
        {
            "candidate_id": decided.column("candidate_id"),
            "round": pa.array([round_] * n, pa.int32()),
            "decision": decided.column("decision"),
            "reason": decided.column("reason"),
            "decided_by": pc.if_else(by_rule, "rule", "model"),
            "model_id": model_id,
            "bar": bar,
            "quality": quality,
            "priority": decided.column("priority"),
            "queued": decided.column("queued"),
            "duplicate_of": pa.nulls(n, pa.string()),
            "agreement": pa.nulls(n, pa.float64()),
            "decided_at": pa.array([now()] * n, SCHEMAS["decisions"].field("decided_at").type),
        }
    )


def decision_counts(decided: pa.Table) -> Counter:
    """How many rows of a routed table have each (decision, reason)."""
    return Counter(
        zip(
            decided.column("decision").to_pylist(),
            decided.column("reason").to_pylist(),
            strict=True,
        )
    )
