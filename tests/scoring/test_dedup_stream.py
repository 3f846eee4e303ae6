"""Streaming clustering (``ClusterBuilder``, union-find) equals clustering all pairs at once."""

from __future__ import annotations

import dataclasses

import numpy as np
from dedup_texts import edit, random_docs
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from scoring.config import DedupConfig
from scoring.dedup import (
    ClusterBuilder,
    band_keys,
    lsh_shape,
    minhash_signatures,
    near_duplicates,
    union_merge,
    union_roots,
)

CFG = DedupConfig()


def planted_pool(seed: int = 5) -> list[str]:
    """Unrelated texts plus chains and stars of near copies and one boilerplate family of 80
    (so some LSH buckets exceed the all-pairs size and become stars)."""
    docs = random_docs(60, seed=seed)
    texts = list(docs)
    for k in range(10):  # chains: copy of a copy of a copy
        cur = docs[k]
        for step in range(3):
            cur = edit(cur, 1, seed=100 * k + step)
            texts.append(cur)
    for k in range(10, 15):  # stars: several copies of one text
        texts += [edit(docs[k], 2, seed=1000 * k + c) for c in range(4)]
    texts += [edit(docs[20], 1, seed=5000 + c) for c in range(80)]
    order = np.random.default_rng(seed).permutation(len(texts))
    return [texts[int(i)] for i in order]


def buckets_of(signatures: np.ndarray, cfg: DedupConfig) -> tuple[np.ndarray, np.ndarray]:
    """(members, offsets) of every LSH bucket with two or more rows, as the DuckDB query."""
    bands, rows = lsh_shape(cfg)
    keys = band_keys(signatures, bands, rows, cfg.seed)
    flat = keys.ravel()  # keys are salted per band: the key alone names a bucket
    node = np.repeat(np.arange(len(signatures)), bands)
    order = np.lexsort((node, flat))
    sorted_keys = flat[order]
    start = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    sizes = np.diff(np.r_[start, len(order)])
    keep = np.repeat(sizes > 1, sizes)
    members = node[order][keep]
    sizes = sizes[sizes > 1]
    return members, np.r_[0, np.cumsum(sizes)]


def stream(signatures, members, offsets, cfg, batch, seed=0):
    """Feed the buckets to a ClusterBuilder ``batch`` at a time, in a shuffled order."""
    builder = ClusterBuilder(signatures, cfg)
    n_buckets = len(offsets) - 1
    order = np.random.default_rng(seed).permutation(n_buckets)
    for lo in range(0, n_buckets, batch):
        part = order[lo : lo + batch]
        sizes = offsets[part + 1] - offsets[part]
        idx = np.concatenate([np.arange(offsets[b], offsets[b + 1]) for b in part])
        builder.add_buckets(members[idx], np.r_[0, np.cumsum(sizes)])
    return builder.finish()


def assert_same(got, want) -> None:
    np.testing.assert_array_equal(got.duplicate_of, want.duplicate_of)
    np.testing.assert_array_equal(np.isnan(got.similarity), np.isnan(want.similarity))
    np.testing.assert_array_equal(
        got.similarity[~np.isnan(got.similarity)], want.similarity[~np.isnan(want.similarity)]
    )
    assert got.n_candidate_pairs == want.n_candidate_pairs
    assert got.n_verified_pairs == want.n_verified_pairs


def test_batched_clustering_equals_the_whole_on_planted_clusters():
    sig = minhash_signatures(planted_pool(), CFG)
    whole = near_duplicates(sig, CFG)
    assert whole.n_duplicates >= 60  # the planted copies are found
    members, offsets = buckets_of(sig, CFG)
    assert np.diff(offsets).max() > 32  # a star bucket is in the test
    for batch in (1, 3, 17, len(offsets)):
        assert_same(stream(sig, members, offsets, CFG, batch, seed=batch), whole)


def test_batched_clustering_without_verification():
    cfg = dataclasses.replace(CFG, verify=False)
    sig = minhash_signatures(planted_pool(seed=8), cfg)
    members, offsets = buckets_of(sig, cfg)
    assert_same(stream(sig, members, offsets, cfg, 2), near_duplicates(sig, cfg))


def test_no_buckets_keeps_every_row():
    sig = minhash_signatures(random_docs(5, seed=3), CFG)
    got = ClusterBuilder(sig, CFG).finish()
    assert (got.duplicate_of == -1).all() and np.isnan(got.similarity).all()
    assert got.n_candidate_pairs == got.n_verified_pairs == 0


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 40),
    edges=st.lists(st.tuples(st.integers(0, 39), st.integers(0, 39)), max_size=80),
    batch=st.integers(1, 10),
)
def test_union_find_roots_are_the_smallest_node_of_each_component(n, edges, batch):
    edges = [(a % n, b % n) for a, b in edges]
    i = np.array([a for a, _ in edges], dtype=np.int64)
    j = np.array([b for _, b in edges], dtype=np.int64)
    parent = np.arange(n, dtype=np.int64)
    for lo in range(0, len(i), batch):
        union_merge(parent, i[lo : lo + batch], j[lo : lo + batch])
    roots = union_roots(parent, np.arange(n))
    graph = coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n))
    labels = connected_components(graph, directed=False)[1]
    smallest = np.full(labels.max() + 1, n)
    np.minimum.at(smallest, labels, np.arange(n))
    np.testing.assert_array_equal(roots, smallest[labels])
