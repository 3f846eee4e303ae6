"""Near-duplicate detection: MinHash signatures of character shingles, LSH banding, clusters.

Method: Broder 1997, "On the resemblance and containment of documents" (MinHash: the
chance that two sets share their minimum under a random hash is their Jaccard similarity);
Leskovec, Rajaraman & Ullman, "Mining of Massive Datasets" ch. 3 (LSH with b bands of r
rows: a pair of similarity s collides in some band with probability 1 - (1 - s^r)^b);
Shrivastava 2017, "Optimal Densification for Fast and Accurate Minwise Hashing" (one
permutation hashing: one hash per shingle split into ``num_perm`` bins, empty bins filled
by probing other bins with a hash of (bin, attempt)).

Everything is vectorised over a batch of texts (numpy, no Python loop over texts or
shingles), and the stages are split so that signatures can be computed per shard anywhere
and clustered globally afterwards (see ``pipelines/dedup.py``):

1. ``shingle_hashes``: texts are lower-cased and whitespace runs become one space; every
   window of ``shingle_size`` code points gets a 64-bit hash (a polynomial of the code
   points, then the splitmix64 finaliser, seeded). A text shorter than a shingle is one
   shingle, padded.
2. ``minhash_signatures``: ``num_perm`` uint32 values per text. ``"oph"``: the top bits of
   each shingle hash pick a bin, the low 32 bits are the value, each bin keeps its minimum,
   empty bins are densified. ``"kperm"``: value i is the minimum over shingles of an
   independently seeded remix of the shingle hash (the classic estimator; the reference).
3. ``band_keys``: the first ``bands * rows`` values, hashed per band to one 64-bit key.
   Texts sharing a key in any band are candidate pairs.
4. ``bucket_pairs`` → ``verify_pairs`` (share of equal signature values, an unbiased
   estimate of Jaccard similarity, must reach the threshold: cuts LSH false positives) →
   ``components`` (connected components of verified pairs) → ``representatives``: the
   member of lowest rank is kept, every other member points to it. The caller gives the
   rank (pipelines: validation, then trusted, then pool; earliest first; then id).
   ``ClusterBuilder`` does the same over buckets that arrive in batches, with a numpy
   union-find over node numbers given in rank order (the smallest node of a tree is kept).

``near_duplicates`` runs steps 3-4 in memory for one table of signatures.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from scoring.config import DedupConfig
from scoring.heuristics import HASH_MULTIPLIERS, as_string_array

_EMPTY = np.uint32(0xFFFFFFFF)  # an empty OPH bin; real values are capped one below
_MAX_PROBES = 32  # densification probes before the circular fallback
_ALL_PAIRS_MAX = 32  # buckets up to this size give all pairs; bigger ones a star
_WHITESPACE = np.array([9, 10, 11, 12, 13, 32, 0x85, 0xA0, 0x2028, 0x2029, 0x3000], np.uint64)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MULT = HASH_MULTIPLIERS


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser (Steele et al. 2014), elementwise on uint64; returns a new array."""
    x = x ^ (x >> np.uint64(30))
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def _seed_words(seed: int, tag: int, n: int) -> np.ndarray:
    """``n`` well-mixed uint64 constants derived from (seed, tag, index)."""
    base = np.uint64((seed * 0x100000001B3 + tag * 0x1000193) & 0xFFFFFFFFFFFFFFFF)
    with np.errstate(over="ignore"):
        return _mix64(base + _GOLDEN * np.arange(1, n + 1, dtype=np.uint64))


def lsh_params(threshold: float, num_perm: int, recall_weight: float = 0.5) -> tuple[int, int]:
    """(bands, rows) with bands * rows <= num_perm minimising the weighted error area
    (1 - w) ∫₀ᵗ P(s) ds + w ∫ₜ¹ 1 - P(s) ds, with P(s) = 1 - (1 - s^r)^b, w = recall_weight.

    With w = 0.5 this is datasketch's ``MinHashLSH`` criterion. Our pairs are verified
    afterwards, so an LSH false positive only costs a comparison while a false negative is
    a duplicate lost: ``DedupConfig`` weighs misses higher (0.9: 128 values at threshold 0.8
    give 14 bands of 9 rows; a pair at similarity 0.85 collides with probability 0.975).
    Integrals by the midpoint rule.
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
    if not 0.0 < recall_weight < 1.0:
        raise ValueError(f"recall_weight must be in (0, 1), got {recall_weight!r}")
    s = (np.arange(2000) + 0.5) / 2000
    below = s < threshold
    best: tuple[float, int, int] = (np.inf, 0, 0)
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            p = 1.0 - (1.0 - s**r) ** b
            err = np.where(below, (1.0 - recall_weight) * p, recall_weight * (1.0 - p)).mean()
            if err < best[0] - 1e-12:
                best = (err, b, r)
    return best[1], best[2]


def lsh_shape(cfg: DedupConfig) -> tuple[int, int]:
    """The config's (bands, rows): explicit, or chosen for its threshold."""
    if cfg.bands:
        return cfg.bands, cfg.rows
    return _lsh_params_cached(cfg.threshold, cfg.num_perm, cfg.recall_weight)


@functools.cache
def _lsh_params_cached(threshold: float, num_perm: int, recall_weight: float) -> tuple[int, int]:
    return lsh_params(threshold, num_perm, recall_weight)


def collision_probability(similarity: float | np.ndarray, bands: int, rows: int) -> np.ndarray:
    """Chance that a pair of this Jaccard similarity shares at least one LSH bucket."""
    s = np.asarray(similarity, dtype=np.float64)
    return 1.0 - (1.0 - s**rows) ** bands


def shingle_hashes(
    texts: pa.Array | pa.ChunkedArray | Sequence[str], shingle_size: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Step 1: (hashes uint64[m], counts int64[n]); text i owns the next ``counts[i]`` hashes.

    Hashes are in text order and may repeat inside a text (MinHash needs a set, and the
    minimum of a multiset is the minimum of its set).
    """
    k = shingle_size
    arr = pc.utf8_lower(as_string_array(texts))
    n = len(arr)
    codes, doc = _code_points(arr)
    # whitespace runs -> one space (a text of one run stays one space)
    space = np.isin(codes, _WHITESPACE)
    codes[space] = 32
    drop = np.zeros(len(codes), dtype=bool)
    drop[1:] = space[1:] & space[:-1] & (doc[1:] == doc[:-1])
    if drop.any():
        codes, doc = codes[~drop], doc[~drop]
    n_chars = np.bincount(doc, minlength=n).astype(np.int64)
    # 1. lay texts out with k zero code points after each, so no window spans two texts
    starts = np.zeros(n, dtype=np.int64)
    np.cumsum(n_chars[:-1] + k, out=starts[1:])
    padded = np.zeros(int(n_chars.sum()) + n * k + k, dtype=np.uint64)
    padded[np.arange(len(codes), dtype=np.int64) + doc * k] = codes
    # 2. a polynomial hash of every window, then keep the windows inside a text
    length = len(padded) - k + 1
    with np.errstate(over="ignore"):
        window = padded[:length] * _MULT[0]
        for j in range(1, k):
            window += padded[j : j + length] * _MULT[j % len(_MULT)] + np.uint64(j)
    counts = np.maximum(n_chars - k + 1, 1)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    within = np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1], counts)
    keep = np.repeat(starts, counts) + within
    with np.errstate(over="ignore"):
        hashes = _mix64(window[keep] ^ _seed_words(seed, 1, 1)[0])
    return hashes, counts


def _code_points(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(code points uint64, text index int64) of every character, decoding UTF-8 in numpy."""
    b = np.frombuffer(_data_bytes(arr), dtype=np.uint8)
    n_chars = pc.utf8_length(arr).to_numpy(zero_copy_only=False).astype(np.int64)
    doc = np.repeat(np.arange(len(arr), dtype=np.int64), n_chars)
    if not (b >= 0x80).any():
        return b.astype(np.uint64), doc
    lead = np.flatnonzero((b & 0xC0) != 0x80)
    first = b[lead].astype(np.uint64)
    size = 1 + (first >= 0xC0).astype(np.int64) + (first >= 0xE0) + (first >= 0xF0)
    payload = np.uint64(0x3F) >> (size - 1).astype(np.uint64)  # 2 bytes: 0x1F, 3: 0x0F, 4: 0x07
    cp = np.where(size == 1, first, first & payload)
    padded = np.concatenate([b, np.zeros(3, np.uint8)]).astype(np.uint64)
    for j in (1, 2, 3):
        more = size > j
        cp[more] = (cp[more] << np.uint64(6)) | (padded[lead[more] + j] & np.uint64(0x3F))
    return cp, doc


def _data_bytes(arr: pa.Array) -> pa.Buffer:
    """The UTF-8 bytes of a string array's values (respecting slicing)."""
    offsets_type = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(arr.buffers()[1], dtype=offsets_type)[
        arr.offset : arr.offset + len(arr) + 1
    ]
    data = arr.buffers()[2]
    if data is None or len(arr) == 0:
        return pa.py_buffer(b"")
    return data.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))


def minhash_signatures(
    texts: pa.Array | pa.ChunkedArray | Sequence[str], cfg: DedupConfig
) -> np.ndarray:
    """Step 2: uint32 signatures of shape (n_texts, num_perm), in batches of ``batch_docs``."""
    arr = as_string_array(texts)
    out = np.empty((len(arr), cfg.num_perm), dtype=np.uint32)
    for lo in range(0, len(arr), cfg.batch_docs):
        part = arr.slice(lo, cfg.batch_docs)
        hashes, counts = shingle_hashes(part, cfg.shingle_size, cfg.seed)
        sign = _oph if cfg.scheme == "oph" else _kperm
        out[lo : lo + len(part)] = sign(hashes, counts, cfg.num_perm, cfg.seed)
    return out


def _kperm(hashes: np.ndarray, counts: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Classic MinHash: value i = min over shingles of mix64(hash ^ seed_i) >> 32."""
    sig = np.empty((len(counts), k), dtype=np.uint32)
    starts = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    seeds = _seed_words(seed, 2, k)
    for i in range(k):
        values = (_mix64(hashes ^ seeds[i]) >> np.uint64(32)).astype(np.uint32)
        sig[:, i] = np.minimum.reduceat(values, starts) if len(values) else _EMPTY
    return sig


def _oph(hashes: np.ndarray, counts: np.ndarray, k: int, seed: int) -> np.ndarray:
    """One permutation hashing into ``k`` bins, then optimal densification."""
    n = len(counts)
    doc = np.repeat(np.arange(n, dtype=np.int64), counts)
    bins = ((hashes >> np.uint64(32)) * np.uint64(k)) >> np.uint64(32)  # fast range: [0, k)
    values = np.minimum(hashes & np.uint64(0xFFFFFFFF), np.uint64(_EMPTY - 1)).astype(np.uint32)
    sig = np.full(n * k, _EMPTY, dtype=np.uint32)
    np.minimum.at(sig, doc * k + bins.astype(np.int64), values)
    sig = sig.reshape(n, k)
    empty = sig == _EMPTY
    if not empty.any():
        return sig
    # Optimal densification: an empty bin i borrows the value of bin probe(i, t) for the
    # first attempt t whose bin is non-empty; the probe sequence is the same for every text,
    # so two texts with the same non-empty bins fill their empty bins alike.
    filled = sig.copy()
    todo = empty.copy()
    probes = _probe_table(k, seed)
    for t in range(_MAX_PROBES):
        src = sig[:, probes[t]]
        take = todo & (src != _EMPTY)
        filled[take] = src[take]
        todo &= ~take
        if not todo.any():
            return filled
    # Rare (texts with very few shingles): the next non-empty bin to the right, circularly.
    rows = np.flatnonzero(todo.any(axis=1))
    idx = np.where(~empty[rows], np.arange(k), 2 * k)
    nxt = np.minimum.accumulate(np.concatenate([idx, idx + k], axis=1)[:, ::-1], axis=1)
    nxt = nxt[:, ::-1][:, :k] % k
    sub = filled[rows]
    mask = todo[rows]
    sub[mask] = np.take_along_axis(sig[rows], nxt, axis=1)[mask]
    filled[rows] = sub
    return filled


def _probe_table(k: int, seed: int) -> np.ndarray:
    """(attempts, k) bin indices: attempt t of empty bin i looks at bin table[t, i]."""
    words = _seed_words(seed, 3, _MAX_PROBES * k).reshape(_MAX_PROBES, k)
    return ((words >> np.uint64(32)) * np.uint64(k) >> np.uint64(32)).astype(np.int64)


def band_keys(signatures: np.ndarray, bands: int, rows: int, seed: int = 0) -> np.ndarray:
    """Step 3: int64 keys of shape (n, bands); equal keys = equal values in that band."""
    n, k = signatures.shape
    if bands * rows > k:
        raise ValueError(f"bands * rows = {bands * rows} > signature length {k}")
    block = signatures[:, : bands * rows].reshape(n, bands, rows).astype(np.uint64)
    mult = _seed_words(seed, 4, rows) | np.uint64(1)
    with np.errstate(over="ignore"):
        key = (block * mult).sum(axis=2, dtype=np.uint64)
        key += _seed_words(seed, 5, bands)  # one salt per band: bands never share keys
        return _mix64(key).view(np.int64)


def bucket_pairs(members: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs (i < j) from buckets: bucket b holds ``members[offsets[b]:offsets[b+1]]``.

    A bucket of up to ``_ALL_PAIRS_MAX`` members gives all its pairs, a bigger one links
    every member to its smallest (a star, so a huge bucket costs O(size), not O(size²)).
    Pairs are unique.
    """
    members = np.asarray(members, dtype=np.int64)
    sizes = np.diff(offsets)
    out_i, out_j = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for size in np.unique(sizes[sizes > 1]):
        starts = offsets[:-1][sizes == size]
        if size <= _ALL_PAIRS_MAX:
            block = np.sort(members[starts[:, None] + np.arange(size)], axis=1)
            a, b = np.triu_indices(int(size), 1)
            out_i.append(block[:, a].ravel())
            out_j.append(block[:, b].ravel())
        else:
            block = members[starts[:, None] + np.arange(size)]
            first = block.min(axis=1, keepdims=True)
            others = block[block != first]
            out_i.append(np.repeat(first.ravel(), size - 1))
            out_j.append(others)
    i, j = np.concatenate(out_i), np.concatenate(out_j)
    i, j = np.minimum(i, j), np.maximum(i, j)
    keep = i != j
    pair = np.unique(np.stack([i[keep], j[keep]], axis=1), axis=0)
    return pair[:, 0], pair[:, 1]


def lsh_pairs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs of rows sharing a key in any band (``keys``: (n, bands))."""
    n, bands = keys.shape
    flat = keys.T.ravel()  # band-major: (band b, text i) at b * n + i
    order = np.lexsort((flat, np.repeat(np.arange(bands), n)))  # by band, then key
    sorted_keys = flat[order]
    band_of = order // n
    new = np.ones(len(order), dtype=bool)
    new[1:] = (sorted_keys[1:] != sorted_keys[:-1]) | (band_of[1:] != band_of[:-1])
    offsets = np.append(np.flatnonzero(new), len(order))
    return bucket_pairs(order % n, offsets)


def similarity(sig_a: np.ndarray, sig_b: np.ndarray) -> np.ndarray:
    """Share of equal signature values per row: an estimate of Jaccard similarity."""
    return (sig_a == sig_b).mean(axis=-1)


def verify_pairs(
    signatures: np.ndarray, i: np.ndarray, j: np.ndarray, threshold: float, chunk: int = 65536
) -> np.ndarray:
    """Estimated similarity of each pair; the caller keeps pairs >= threshold."""
    sims = np.empty(len(i), dtype=np.float64)
    for lo in range(0, len(i), chunk):
        sl = slice(lo, lo + chunk)
        sims[sl] = similarity(signatures[i[sl]], signatures[j[sl]])
    return sims


def components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Connected-component label of each of ``n`` nodes given undirected edges (i, j)."""
    graph = coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def representatives(labels: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """For each node, the node of lowest ``rank`` in its component (itself if it is kept)."""
    order = np.lexsort((rank, labels))
    first = np.ones(len(order), dtype=bool)
    first[1:] = labels[order][1:] != labels[order][:-1]
    rep_of_label = np.empty(labels.max(initial=-1) + 1, dtype=np.int64)
    rep_of_label[labels[order][first]] = order[first]
    return rep_of_label[labels]


@dataclass(frozen=True)
class Clusters:
    """Result of ``cluster_pairs``: ``duplicate_of[i]`` is the kept row or -1 (row i kept)."""

    duplicate_of: np.ndarray  # int64 (n,)
    similarity: np.ndarray  # float64 (n,): estimated similarity to the kept row; NaN if kept
    n_candidate_pairs: int
    n_verified_pairs: int

    @property
    def n_duplicates(self) -> int:
        return int((self.duplicate_of >= 0).sum())


def cluster_pairs(
    signatures: np.ndarray,
    i: np.ndarray,
    j: np.ndarray,
    rank: np.ndarray,
    cfg: DedupConfig,
) -> Clusters:
    """Step 4 from candidate pairs: verify, connect, keep the lowest rank of each cluster."""
    n = len(signatures)
    n_candidates = len(i)
    if cfg.verify and len(i):
        ok = verify_pairs(signatures, i, j, cfg.threshold) >= cfg.threshold
        i, j = i[ok], j[ok]
    rep = representatives(components(n, i, j), np.asarray(rank))
    dup = np.where(rep == np.arange(n), -1, rep)
    sims = np.full(n, np.nan)
    is_dup = dup >= 0
    sims[is_dup] = verify_pairs(signatures, np.flatnonzero(is_dup), dup[is_dup], 0.0)
    return Clusters(dup.astype(np.int64), sims, n_candidates, len(i))


def union_roots(parent: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """Roots of ``nodes`` in the forest ``parent`` (pointer jumping); compresses their paths."""
    root = parent[nodes]
    while True:
        up = parent[root]
        if np.array_equal(up, root):
            break
        root = up
    parent[nodes] = root
    return root


def union_merge(parent: np.ndarray, i: np.ndarray, j: np.ndarray) -> None:
    """Join the trees of every edge (i, j) in place; a tree's root is always its smallest node.

    A vectorised union-find: each pass finds both roots of every edge and hooks the larger
    root under the smaller (``np.minimum.at`` settles edges that hook the same root), until
    every edge has one root. Roots only ever decrease, so the loop ends.
    """
    while len(i):
        ri, rj = union_roots(parent, i), union_roots(parent, j)
        apart = ri != rj
        if not apart.any():
            return
        i, j, ri, rj = i[apart], j[apart], ri[apart], rj[apart]
        np.minimum.at(parent, np.maximum(ri, rj), np.minimum(ri, rj))


class ClusterBuilder:
    """Step 4 over buckets that arrive in batches: memory O(nodes), not O(buckets or pairs).

    Nodes are numbered in keep order (node 0 is kept before node 1, ...), so the smallest
    node of a cluster, the root of its union-find tree, is the one kept. Feed every bucket
    exactly once (``add_buckets``), in any batches; ``finish`` gives the same ``Clusters``
    as ``cluster_pairs`` over all pairs at once with ``rank = arange(n)``. Only verified
    pairs' endpoints are merged; pair counts are kept exact by a compacted set of packed
    (i, j) keys (8 bytes per distinct candidate pair).
    """

    def __init__(self, signatures: np.ndarray, cfg: DedupConfig):
        self.signatures = signatures
        self.cfg = cfg
        if len(signatures) >= 2**31:
            raise ValueError(f"{len(signatures)} nodes: pairs are packed in 64 bits, 2**31 at most")
        self.parent = np.arange(len(signatures), dtype=np.int64)
        self._kept = np.zeros(0, np.int64)  # distinct packed candidate pairs so far
        self._verified = np.zeros(0, np.int64)  # distinct packed verified pairs so far

    def add_buckets(self, members: np.ndarray, offsets: np.ndarray) -> None:
        """One batch of buckets: bucket b holds nodes ``members[offsets[b]:offsets[b+1]]``."""
        i, j = bucket_pairs(members, offsets)
        if not len(i):
            return
        packed = (i << np.int64(32)) | j
        new = np.setdiff1d(packed, self._kept, assume_unique=True)  # pairs not yet verified
        self._kept = np.union1d(self._kept, new)
        i, j = new >> np.int64(32), new & np.int64(0xFFFFFFFF)
        if self.cfg.verify:
            ok = verify_pairs(self.signatures, i, j, self.cfg.threshold) >= self.cfg.threshold
            i, j = i[ok], j[ok]
        self._verified = np.union1d(self._verified, (i << np.int64(32)) | j)
        union_merge(self.parent, i, j)

    def finish(self) -> Clusters:
        n = len(self.parent)
        rep = union_roots(self.parent, np.arange(n))
        dup = np.where(rep == np.arange(n), -1, rep)
        sims = np.full(n, np.nan)
        is_dup = dup >= 0
        sims[is_dup] = verify_pairs(self.signatures, np.flatnonzero(is_dup), dup[is_dup], 0.0)
        return Clusters(dup.astype(np.int64), sims, len(self._kept), len(self._verified))


def near_duplicates(
    signatures: np.ndarray, cfg: DedupConfig, rank: np.ndarray | None = None
) -> Clusters:
    """Steps 3-4 in memory: cluster rows of ``signatures``; rank defaults to row order."""
    bands, rows = lsh_shape(cfg)
    i, j = lsh_pairs(band_keys(signatures, bands, rows, cfg.seed))
    rank = np.arange(len(signatures)) if rank is None else rank
    return cluster_pairs(signatures, i, j, rank, cfg)
