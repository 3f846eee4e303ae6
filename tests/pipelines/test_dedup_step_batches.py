"""The dedup step in tiny batches (buckets, decision files) decides exactly as in one batch."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from dedup_texts import edit, random_docs

from pipelines.catalog import Catalog
from pipelines.dedup import dedup
from pipelines.ingest import ingest
from scoring.config import DedupConfig

DOCS = random_docs(30, seed=21)


def workspace(home: Path, src: Path) -> Catalog:
    catalog = Catalog(home).init()
    pool = DOCS[:20] + [edit(DOCS[k % 6], 1 + k % 2, seed=k) for k in range(24)]
    for name, texts, role in (
        ("pool", pool, "pool"),
        ("val", [edit(DOCS[2], 1, seed=99)], "validation"),
        ("trusted", [edit(DOCS[4], 2, seed=98)], "trusted"),
    ):
        path = src / f"{name}.jsonl"
        path.write_text(
            "".join(json.dumps({"id": f"{name}{i}", "text": t}) + "\n" for i, t in enumerate(texts))
        )
        ingest(catalog, str(path), role=role, id_field="id")
    return catalog


def decisions(catalog: Catalog) -> list[tuple]:
    return [
        tuple(r.values())
        for r in catalog.query(
            "SELECT candidate_id, duplicate_of, similarity, decision, reason FROM decisions "
            "WHERE reason = 'near_duplicate' ORDER BY candidate_id"
        ).to_pylist()
    ]


def test_one_bucket_per_batch_gives_the_same_decisions(tmp_path):
    whole = workspace(tmp_path / "whole", tmp_path)
    tiny = workspace(tmp_path / "tiny", tmp_path)
    want = dedup(whole, DedupConfig(), round_=1)
    got = dedup(tiny, DedupConfig(cluster_batch=1), round_=1)
    assert want.rejected >= 20 and want.buckets > 1
    assert dataclasses.asdict(got) == dataclasses.asdict(want)
    assert decisions(tiny) == decisions(whole)
    files = lambda c: sorted((c.lake / "decisions").glob("r0001-dedup-*.parquet"))  # noqa: E731
    assert len(files(whole)) == 1 and len(files(tiny)) == want.rejected  # one row per file
    # a rerun in tiny batches finds nothing new
    again = dedup(tiny, DedupConfig(cluster_batch=1), round_=1)
    assert again.rejected == 0 and again.already_rejected == want.rejected
