"""The dedup step: near-duplicates across the whole catalog get a ``reject`` decision.

Runs in every curation round before scoring (and as ``datawall dedup``). Exact duplicates
are already settled at ingest; this step finds texts whose character-shingle sets have a
Jaccard similarity of at least ``dedup.threshold`` (MinHash + LSH, :mod:`scoring.dedup`).

Design: dedup is global by construction and incremental across rounds.

1. **Sign** every candidate (any role, round or ingest batch; exact duplicates left out)
   that has no signature for the current signature settings yet. Candidates stream out of
   DuckDB in batches of ``dedup.batch_docs``; each batch becomes one ``minhash`` file
   (candidate id, signature, LSH band keys) named by the settings digest and the batch's
   ids, so a killed run resumes, a rerun signs nothing, and a later round hashes only its
   new candidates. This is the only per-document work, and it needs no shared state, so a
   Dask/Ray sharding (issue 7) can run it per shard and write the same files.
2. **Buckets**: one DuckDB ``GROUP BY`` over *all* stored band keys finds the buckets
   holding two or more candidates (``sql/dedup_bucketed.sql``) and keeps their (key,
   candidate) rows in a temporary table; the bucketed candidates get a node number in keep
   order: validation, then trusted, then pool; earliest ingested first, then first in its
   source file, then candidate id (``sql/dedup_members.sql``). DuckDB aggregates out of
   core under ``dedup.memory_limit_mb``, and this single global join is what makes a new
   candidate meet everything already in the catalog: no per-worker or per-batch index that
   could miss a duplicate in another shard.
3. **Cluster** only the bucketed candidates (memory grows with the duplicates, not the
   pool): their signatures are read into one uint32 matrix (row = node), and the buckets
   stream out of DuckDB ``dedup.cluster_batch`` at a time as lists of nodes; each batch's
   candidate pairs are verified by signature agreement and joined in a numpy union-find
   whose roots are the smallest node, i.e. the member kept (``scoring.dedup.ClusterBuilder``).
   So a pool text near a validation text is always the one rejected and can never leak the
   validation set into training. No Python object per candidate or per pair.
4. **Decide**: every other member (validation texts are never rejected) that has no
   ``near_duplicate`` decision yet gets ``reject / near_duplicate``, ``decided_by`` =
   ``dedup``, ``duplicate_of`` = the kept candidate and ``similarity`` = the estimated
   Jaccard similarity to it, written ``dedup.cluster_batch`` rows per file (ids joined
   back in DuckDB). A rerun finds nothing new and writes nothing. ``to_score`` skips
   decided candidates, so the score step never sees them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa

from pipelines.catalog import SCHEMAS, Catalog, load_sql, now
from scoring.config import DedupConfig
from scoring.dedup import ClusterBuilder, band_keys, lsh_shape, minhash_signatures

logger = logging.getLogger("pipelines")


@dataclass
class DedupReport:
    config: str  # digest of the signature settings
    signed: int = 0  # candidates hashed in this run
    buckets: int = 0  # LSH buckets with two or more candidates
    candidate_pairs: int = 0
    verified_pairs: int = 0
    clustered: int = 0  # candidates in a cluster of two or more
    rejected: int = 0  # new near_duplicate decisions
    already_rejected: int = 0

    def summary(self) -> dict[str, int | str]:
        return asdict(self)


def config_digest(cfg: DedupConfig) -> str:
    """Digest of what a stored signature and its band keys depend on."""
    bands, rows = lsh_shape(cfg)
    keyed = {
        "scheme": cfg.scheme,
        "num_perm": cfg.num_perm,
        "shingle_size": cfg.shingle_size,
        "seed": cfg.seed,
        "bands": bands,
        "rows": rows,
    }
    return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:12]


def sign_batch(ids: pa.Array, texts: pa.Array, cfg: DedupConfig, round_: int) -> pa.Table:
    """One ``minhash`` table for a batch of candidates (pure: no I/O)."""
    bands, rows = lsh_shape(cfg)
    sig = minhash_signatures(texts, cfg)
    keys = band_keys(sig, bands, rows, cfg.seed)
    n, width = sig.shape
    sig_bytes = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(width * 4), n, [None, pa.py_buffer(sig.astype("<u4").tobytes())]
    )
    key_offsets = pa.array(np.arange(n + 1, dtype=np.int32) * bands)
    return pa.table(
        {
            "candidate_id": ids,
            "config": pa.array([config_digest(cfg)] * n, pa.string()),
            "signature": sig_bytes.cast(pa.binary()),
            "band_keys": pa.ListArray.from_arrays(key_offsets, pa.array(keys.ravel())),
            "round": pa.array(np.full(n, round_, dtype=np.int32)),
        }
    )


def sign_new(
    catalog: Catalog,
    cfg: DedupConfig,
    round_: int,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Step 1: sign every candidate without a signature for ``cfg``; returns how many."""
    digest = config_digest(cfg)
    params = {"config": digest}
    total = 0
    con = catalog.connect()
    try:
        reader = con.sql(load_sql("dedup_to_sign"), params=params).to_arrow_reader(cfg.batch_docs)
        for batch in reader:
            if batch.num_rows == 0:
                continue
            ids = batch.column("candidate_id")
            key = (
                f"{digest}-" + hashlib.sha256("\n".join(ids.to_pylist()).encode()).hexdigest()[:16]
            )
            if not catalog.exists("minhash", key):
                catalog.write("minhash", sign_batch(ids, batch.column("text"), cfg, round_), key)
            total += batch.num_rows
            if progress:
                progress(batch.num_rows)
    finally:
        con.close()
    return total


def count_unsigned(catalog: Catalog, cfg: DedupConfig) -> int:
    sql = f"SELECT count(*) FROM ({load_sql('dedup_to_sign')})"
    return int(catalog.scalar(sql, {"config": config_digest(cfg)}))


def dedup(
    catalog: Catalog,
    cfg: DedupConfig,
    round_: int,
    progress: Callable[[int], None] | None = None,
) -> DedupReport:
    """Steps 1-4 (module docstring). Caller holds the workspace writer lock."""
    catalog.init()
    digest = config_digest(cfg)
    report = DedupReport(config=digest)
    report.signed = sign_new(catalog, cfg, round_, progress)

    con = bounded_connection(catalog, cfg.memory_limit_mb)
    try:
        # 2. global buckets, out of core; their members numbered in keep order
        con.execute(load_sql("dedup_bucketed"), {"config": digest})
        con.execute(load_sql("dedup_members"))
        n = _members(con, digest)
        if n == 0:
            logger.info("dedup: %d signed, no LSH collisions", report.signed)
            return report
        # 3. cluster: signatures of the bucketed candidates only, buckets streamed in batches
        builder = ClusterBuilder(_signatures(con, digest, n, cfg.num_perm), cfg)
        report.buckets = _stream_buckets(con, builder, cfg.cluster_batch)
        clusters = builder.finish()
        report.candidate_pairs = clusters.n_candidate_pairs
        report.verified_pairs = clusters.n_verified_pairs
        dup = clusters.duplicate_of
        in_cluster = dup >= 0
        in_cluster[dup[dup >= 0]] = True
        report.clustered = int(in_cluster.sum())

        # 4. decisions for new non-representatives (validation is never rejected)
        flags = con.sql(
            "SELECT role = 'validation' AS validation, decided FROM members ORDER BY node"
        ).to_arrow_table()
        validation = flags.column("validation").to_numpy(zero_copy_only=False).astype(bool)
        decided = flags.column("decided").to_numpy(zero_copy_only=False).astype(bool)
        is_dup = (dup >= 0) & ~validation
        report.already_rejected = int((is_dup & decided).sum())
        new = np.flatnonzero(is_dup & ~decided)
        report.rejected = len(new)
        if len(new):
            _write_decisions(catalog, con, new, dup[new], clusters.similarity[new], round_, cfg)
    finally:
        con.close()
    logger.info("dedup: %s", report.summary())
    return report


def bounded_connection(catalog: Catalog, memory_limit_mb: int):
    """A catalog connection under ``memory_limit_mb`` that spills to ``HOME/.duckdb-tmp``."""
    spill = str(catalog.home / ".duckdb-tmp").replace("'", "''")
    con = catalog.connect()
    # SET takes no bound parameters; both values are ours (a validated int, a path)
    con.execute(f"SET memory_limit = '{int(memory_limit_mb)}MB'")
    con.execute(f"SET temp_directory = '{spill}'")
    return con


def _members(con, digest: str) -> int:
    """How many candidates are bucketed; checks each has a candidate row and a signature."""
    bucketed = con.sql("SELECT count(DISTINCT candidate_id) FROM bucketed").fetchall()[0][0]
    members = con.sql("SELECT count(*) FROM members").fetchall()[0][0]
    signed = con.sql(
        "SELECT count(DISTINCT m.candidate_id) FROM members m "
        "SEMI JOIN minhash s ON s.candidate_id = m.candidate_id AND s.config = $config",
        params={"config": digest},
    ).fetchall()[0][0]
    if not bucketed == members == signed:
        raise RuntimeError(
            f"dedup: of {bucketed} bucketed candidate(s), {bucketed - members} have no candidate "
            f"row and {members - signed} no signature for config {digest}; "
            "the lake is inconsistent"
        )
    return int(members)


def _signatures(con, digest: str, n: int, width: int) -> np.ndarray:
    """The uint32 signature matrix (n, width) of the members, row = node, streamed in.

    Unsorted and unaggregated, so DuckDB holds no copy: each row lands at its node (a
    candidate signed twice under one config has the same signature twice).
    """
    out = np.empty((n, width), dtype=np.uint32)
    seen = np.zeros(n, dtype=bool)
    reader = con.sql(
        "SELECT m.node, s.signature FROM minhash s "
        "JOIN members m ON s.candidate_id = m.candidate_id WHERE s.config = $config",
        params={"config": digest},
    ).to_arrow_reader(65536)
    for batch in reader:
        nodes = batch.column("node").to_numpy()
        fixed = batch.column("signature").cast(pa.binary(width * 4))
        raw = np.frombuffer(
            fixed.buffers()[1],
            dtype="<u4",
            count=len(fixed) * width,
            offset=fixed.offset * width * 4,
        )
        out[nodes] = raw.reshape(len(fixed), width)
        seen[nodes] = True
    if not seen.all():
        raise RuntimeError(f"dedup: {int((~seen).sum())} bucketed candidate(s) have no signature")
    return out


def _stream_buckets(con, builder: ClusterBuilder, batch: int) -> int:
    """Feed every bucket (its members' nodes) to ``builder``, ``batch`` buckets at a time."""
    reader = con.sql(
        "SELECT list(m.node) AS nodes FROM bucketed b JOIN members m USING (candidate_id) "
        "GROUP BY b.key"
    ).to_arrow_reader(batch)
    total = 0
    for part in reader:
        lists = part.column("nodes")
        if len(lists) == 0:
            continue
        offsets = lists.offsets.to_numpy()
        members = lists.values.to_numpy()[offsets[0] : offsets[-1]]
        builder.add_buckets(members, offsets - offsets[0])
        total += len(lists)
    return total


def _write_decisions(
    catalog: Catalog,
    con,
    nodes: np.ndarray,
    kept: np.ndarray,
    similarity: np.ndarray,
    round_: int,
    cfg: DedupConfig,
) -> None:
    """Step 4's rows, ``cfg.cluster_batch`` per file named by round and the rejected ids."""
    con.register(
        "rejected",
        pa.table(
            {"node": nodes, "kept": kept, "similarity": similarity, "seq": np.arange(len(nodes))}
        ),
    )
    reader = con.sql(
        "SELECT m.candidate_id, k.candidate_id AS duplicate_of, r.similarity FROM rejected r "
        "JOIN members m ON m.node = r.node JOIN members k ON k.node = r.kept ORDER BY r.seq"
    ).to_arrow_reader(cfg.cluster_batch)
    for part in reader:
        if part.num_rows == 0:
            continue
        ids = part.column("candidate_id")
        table = _decisions(
            ids, part.column("duplicate_of"), part.column("similarity").to_numpy(), round_
        )
        key = (
            f"r{round_:04d}-dedup-"
            + hashlib.sha256("\n".join(ids.to_pylist()).encode()).hexdigest()[:16]
        )
        catalog.write("decisions", table, key)
    con.unregister("rejected")


def _decisions(
    candidates: pa.Array, kept: pa.Array, similarity: np.ndarray, round_: int
) -> pa.Table:
    n = len(candidates)
    stamp = pa.array([now()] * n, SCHEMAS["decisions"].field("decided_at").type)
    return pa.table(
        {
            "candidate_id": candidates,
            "round": pa.array(np.full(n, round_, dtype=np.int32)),
            "decision": pa.array(["reject"] * n),
            "reason": pa.array(["near_duplicate"] * n),
            "decided_by": pa.array(["dedup"] * n),
            "model_id": pa.nulls(n, pa.string()),
            "bar": pa.nulls(n, pa.float64()),
            "quality": pa.nulls(n, pa.float64()),
            "priority": pa.nulls(n, pa.float64()),
            "queued": pa.array([False] * n),
            "duplicate_of": kept,
            "agreement": pa.nulls(n, pa.float64()),
            "decided_at": stamp,
            "similarity": pa.array(similarity, pa.float64()),
        }
    )
