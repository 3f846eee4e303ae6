"""A workspace holding queued hard prompt/response pairs, written straight into the catalog.

Stands in for ingest, pair scoring and routing (other parts of issue 9): candidates of kind
``pair`` with a gold preference and a gold rewrite in ``meta``, one ``pair_scores`` row each
(the model's own response and the score gap), and a ``hard`` + ``queued`` decision.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from pipelines.catalog import SCHEMAS, Catalog

GOLDS = ("candidate", "model", "both_bad")


def pair_rows(n: int, round_: int = 1, prefix: str = "p") -> dict[str, list[dict]]:
    """Rows for ``n`` hard pairs; gold cycles candidate, model, both_bad."""
    stamp = datetime(2026, 1, 1, tzinfo=UTC)
    cands, scores, decisions = [], [], []
    for i in range(n):
        cid = f"{prefix}{i:04d}"
        gold = GOLDS[i % 3]
        meta = {"gold": gold}
        if gold == "both_bad":
            meta["gold_response"] = f"An expert's answer number {i}: it returns a  sorted copy."
        response = f"Candidate answer {i}: it sorts the list in place."
        cands.append(
            {
                "candidate_id": cid,
                "content_hash": f"h{cid}",
                "source": "instruct.jsonl",
                "source_id": str(i),
                "row": i,
                "role": "pool",
                "text": response,
                "n_chars": len(response),
                "meta": json.dumps(meta),
                "ingest_id": "test",
                "round": round_,
                "ingested_at": stamp,
                "kind": "pair",
                "prompt": f"What does function_{i} do?",
            }
        )
        gap = 0.5 - (i % 5) * 0.25  # both signs, and zero (no guess)
        scores.append(
            {
                "candidate_id": cid,
                "round": round_,
                "model_id": "model-1",
                "ref_model_id": "ref-1",
                "model_response": f"Model answer {i}: it returns something.",
                "loss_model": 1.0,
                "loss_ref": 1.0,
                "own_loss_model": 1.0,
                "own_loss_ref": 1.0,
                "relevance": 0.1,
                "own_relevance": 0.1,
                "quality": 0.5,
                "own_quality": 0.5,
                "score": gap,
                "own_score": 0.0,
                "gap": gap,
                "rule_reason": None,
                "scored_at": stamp,
            }
        )
        decisions.append(
            {
                "candidate_id": cid,
                "round": round_,
                "decision": "hard",
                "reason": "near_model_response",
                "decided_by": "model",
                "model_id": "model-1",
                "bar": 0.5,
                "quality": 0.5,
                "priority": float(-abs(gap)),
                "queued": True,
                "duplicate_of": None,
                "agreement": None,
                "decided_at": stamp,
            }
        )
    return {"candidates": cands, "pair_scores": scores, "decisions": decisions}


def make_pair_home(home: Path, n: int, round_: int = 1, prefix: str = "p") -> Catalog:
    """A fresh workspace at ``home`` with ``n`` queued hard pairs of round ``round_``."""
    catalog = Catalog(home).init()
    add_pairs(catalog, n, round_, prefix)
    return catalog


def add_pairs(catalog: Catalog, n: int, round_: int = 1, prefix: str = "p") -> None:
    for table, rows in pair_rows(n, round_, prefix).items():
        catalog.write(table, pa.Table.from_pylist(rows, SCHEMAS[table]), f"test-{prefix}-{round_}")
