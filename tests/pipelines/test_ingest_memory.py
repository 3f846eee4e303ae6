"""Ingest's lean state (per-batch catalog lookups, compact occurrence counts) gives the ids and
exact-duplicate decisions a whole-catalog dict and a ``Counter`` gave."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.catalog import Catalog
from pipelines.config import IngestConfig
from pipelines.ingest import Occurrences, candidate_id, content_hash, ingest, normalise


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.integers(0, 12), max_size=15), max_size=6))
def test_occurrences_number_like_a_counter(batches):
    counter: Counter = Counter()
    occ = Occurrences()
    for batch in batches:
        hashes = [content_hash(f"text {v}") for v in batch]
        want = []
        for h in hashes:
            counter[h] += 1
            want.append(counter[h])
        np.testing.assert_array_equal(occ.add(hashes), np.array(want, dtype=np.int64))
    assert len(occ.keys) == len(counter) and np.all(occ.keys[:-1] < occ.keys[1:])


def test_ids_and_exact_duplicates_across_batches_sources_and_roles(tmp_path):
    rng = np.random.default_rng(4)
    texts = [f"document number {int(v)} of a small pool" for v in rng.integers(0, 15, 40)]
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    trusted = tmp_path / "trusted.jsonl"
    trusted.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts[:3]))
    catalog = Catalog(tmp_path / "home").init()
    cfg = IngestConfig(batch_rows=4)  # ten batches: repeats span batches
    report = ingest(catalog, str(pool), cfg=cfg)
    ingest(catalog, str(trusted), role="trusted", cfg=cfg)

    # what the ids must be: source, occurrence number of the text in the source, hash
    seen: Counter = Counter()
    want_ids = []
    for t in texts:
        h = content_hash(normalise(t))
        seen[h] += 1
        want_ids.append(candidate_id(str(pool), f"#{seen[h]}", h))
    got = catalog.query("SELECT candidate_id, row FROM candidates WHERE role = 'pool'")
    by_row = dict(
        zip(got.column("row").to_pylist(), got.column("candidate_id").to_pylist(), strict=True)
    )
    assert [by_row[r + 1] for r in range(len(texts))] == want_ids
    assert report.added == len(set(texts)) and report.duplicates == len(texts) - len(set(texts))

    # one kept copy per text: the trusted copy of the first three, else the first pool copy
    rejected = set(
        catalog.query("SELECT candidate_id FROM decisions WHERE reason = 'exact_duplicate'")
        .column(0)
        .to_pylist()
    )
    kept = catalog.query("SELECT content_hash, count(*) AS n FROM candidates GROUP BY 1")
    assert len(rejected) == sum(kept.column("n").to_pylist()) - kept.num_rows
    trusted_kept = (
        catalog.query(
            "SELECT count(*) FROM candidates WHERE role = 'trusted' AND candidate_id NOT IN "
            "(SELECT candidate_id FROM decisions WHERE reason = 'exact_duplicate')"
        )
        .column(0)[0]
        .as_py()
    )
    assert trusted_kept == len(set(texts[:3]))
    # re-ingesting adds nothing
    again = ingest(catalog, str(pool), cfg=cfg)
    assert again.added == 0 and again.batches_skipped == 10
