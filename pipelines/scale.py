"""Scale-out: dedup signing and scoring over shards of the pool, on Dask through Prefect.

The per-document work of a round is cut into shards and run as Prefect tasks on a
``prefect_dask.DaskTaskRunner``: a local ``distributed.LocalCluster`` by default, or an
existing cluster at ``scale.dask_address``. The global steps stay single and global: dedup
clustering is one DuckDB ``GROUP BY`` over *every* shard's stored band keys
(``pipelines.dedup``), so a near-duplicate pair split across two shards (or two workers)
is still found; the bar and routing run once in the flow. When Dask is used and when the
step stays in-process is decided by :class:`pipelines.config.ScaleConfig`.

How a sharded step runs:

1. **Plan** (in the flow's process): read only the ids of the step's work, sorted by
   candidate id, and cut them into shards. A shard is sent as its first and last id and the
   keys of the files it will write: no text travels through Dask.
2. **Work** (on a worker): open the lake, read the shard's rows (the step's own query,
   limited to the id range), check they are the planned ones (the file key is a digest of
   the ids), compute and write one Parquet file per planned key with ``Catalog.write``.
   Models are loaded by the worker from their checkpoint paths (``ModelRef``) and cached
   for its next shards.
3. **Global**: the flow goes on with the clustering, the bar and routing over the lake.

File keys follow the in-process path's scheme (the round or signature settings, and a
digest of the ids a file holds), so a rerun or a resumed run skips what exists and nothing
is duplicated. The Dask path cuts the work in candidate-id order (a shard is an id range a
worker can read back); the in-process path streams DuckDB's order, so the two may group
candidates into different files and batches. Scores then agree to float rounding, also
because the torch thread count differs (``scale.threads_per_worker`` on a worker, all cores
in-process); the test and the benchmark show the decisions identical.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import pyarrow as pa
from prefect import flow, task, unmapped
from prefect.futures import as_completed

from pipelines.catalog import Catalog, load_sql
from pipelines.config import ScaleConfig
from pipelines.dedup import config_digest, sign_batch
from pipelines.modelling import ModelRef, load_scorer
from pipelines.progress import progress_bar
from pipelines.score import Bar, score_shard, shard_key
from pipelines.settings import Settings
from scoring.config import DedupConfig
from scoring.quality import QualityModel

logger = logging.getLogger("pipelines")


@dataclass(frozen=True)
class Shard:
    """One task's work: the candidates ``lo``..``hi`` (by id) of a step's work list, written
    as one file per key, ``sizes[i]`` rows to ``keys[i]``."""

    index: int
    lo: str
    hi: str
    keys: tuple[str, ...]
    sizes: tuple[int, ...]

    @property
    def rows(self) -> int:
        return sum(self.sizes)


def _ids_digest(ids: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def _groups(files: list[tuple[str, list[str]]], per_shard: int) -> list[Shard]:
    """Consecutive files (key, ids) → shards of ``per_shard`` files each."""
    shards = []
    for start in range(0, len(files), per_shard):
        group = files[start : start + per_shard]
        shards.append(
            Shard(
                index=len(shards),
                lo=group[0][1][0],
                hi=group[-1][1][-1],
                keys=tuple(k for k, _ in group),
                sizes=tuple(len(ids) for _, ids in group),
            )
        )
    return shards


# -- where the shards run ------------------------------------------------------------------
def workers_for(scale: ScaleConfig, n_shards: int) -> int:
    """Local workers to start for ``n_shards`` (0: run in this process; the rule is in
    ``ScaleConfig``). Not used when ``scale.dask_address`` names a cluster."""
    if scale.workers == "auto":
        fit = (os.cpu_count() or 1) // scale.threads_per_worker
        n = min(fit, n_shards)
        return 0 if n <= 1 else n
    return 0 if scale.workers == 1 else int(scale.workers)


@contextlib.contextmanager
def dask_address(scale: ScaleConfig, n_shards: int) -> Iterator[str | None]:
    """The scheduler to run ``n_shards`` on: ``scale.dask_address``, a LocalCluster started
    for the step (closed after it), or None for in-process."""
    if scale.dask_address:
        yield scale.dask_address
        return
    n_workers = workers_for(scale, n_shards)
    if n_workers == 0:
        yield None
        return
    from distributed import LocalCluster

    logger.info("starting a local Dask cluster: %d worker processes", n_workers)
    with LocalCluster(
        n_workers=n_workers,
        threads_per_worker=scale.threads_per_worker,
        processes=True,  # torch and the tokenizer hold the GIL: threads would not scale
        dashboard_address=":0",  # a free port: never collides with a running cluster
        silence_logs=logging.WARNING,
    ) as cluster:
        yield cluster.scheduler_address


@contextlib.contextmanager
def _api_for_workers() -> Iterator[None]:
    """Point the task runs' Prefect context at this process's API server.

    Tasks on Dask workers report to the API named in the context they are sent with. When
    this process talks to Prefect's ephemeral server, that setting is empty, and each worker
    would start an ephemeral server of its own (slow, and a run split over several
    databases); naming the running one keeps every task run in one place.
    """
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        yield
        return
    url = str(get_client(sync_client=True).api_url)
    with temporary_settings({PREFECT_API_URL: url}):
        yield


def _run_sharded(
    sharded_flow,
    scale: ScaleConfig,
    shards: list[Shard],
    args: tuple,
    progress: Callable[[int], None] | None,
) -> int | None:
    """Run ``sharded_flow(*args, shards)`` on Dask when the rule says so; None: in-process."""
    if not shards:
        return None
    with dask_address(scale, len(shards)) as address:
        if address is None:
            return None
        from prefect_dask import DaskTaskRunner

        logger.info("%d shard(s) on the Dask cluster at %s", len(shards), address)
        runner = DaskTaskRunner(address=address)
        global _advance
        _advance = progress
        try:
            with _api_for_workers():
                return sharded_flow.with_options(task_runner=runner)(*args, shards)
        finally:
            _advance = None


def _limit_threads(n: int) -> None:
    """torch threads of this worker process (a Dask worker runs ``n`` tasks at a time)."""
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


# -- dedup signing -------------------------------------------------------------------------
def plan_signing(catalog: Catalog, cfg: DedupConfig, shard_size: int) -> list[Shard]:
    """Shards of ``shard_size`` unsigned candidates, in id order, one ``minhash`` file each."""
    digest = config_digest(cfg)
    sql = f"SELECT candidate_id FROM ({load_sql('dedup_to_sign')}) ORDER BY candidate_id"
    ids = catalog.query(sql, {"config": digest}).column(0)
    files = []
    for start in range(0, len(ids), shard_size):
        part = ids.slice(start, shard_size).to_pylist()
        files.append((f"{digest}-{_ids_digest(part)}", part))
    return _groups(files, 1)


def sign_shard(
    home: str, cfg: DedupConfig, round_: int, shard: Shard, lake: str | None = None
) -> int:
    """Worker side: sign one shard's candidates and write its ``minhash`` file.

    ``lake``: the flow's lake URL, so a worker whose environment names no lake (or another
    one) still reads and writes the flow's."""
    catalog = Catalog(home, lake)
    if catalog.exists("minhash", shard.keys[0]):
        return 0
    sql = (
        f"SELECT candidate_id, text FROM ({load_sql('dedup_to_sign')}) "
        "WHERE candidate_id BETWEEN $lo AND $hi ORDER BY candidate_id"
    )
    params = {"config": config_digest(cfg), "lo": shard.lo, "hi": shard.hi}
    part = catalog.query(sql, params)
    _planned(part, shard, 0, shard.rows, shard.keys[0], "dedup signing")
    table = sign_batch(part.column("candidate_id"), part.column("text"), cfg, round_)
    catalog.write("minhash", table, shard.keys[0])
    return part.num_rows


@task(name="sign-shard")
def sign_shard_task(
    home: str, cfg: DedupConfig, round_: int, shard: Shard, lake: str | None = None
) -> int:
    return sign_shard(home, cfg, round_, shard, lake)


@flow(name="dedup-sign-shards")
def sign_shards_flow(
    home: str,
    cfg: DedupConfig,
    round_: int,
    lake: str,
    shards: list[Shard],
) -> int:
    """Sign every shard on the flow's task runner (Dask); returns the candidates signed."""
    futures = sign_shard_task.map(
        unmapped(home), unmapped(cfg), unmapped(round_), shards, unmapped(lake)
    )
    return _gather(futures, shards)


def sign_sharded(
    catalog: Catalog,
    settings: Settings,
    round_: int,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Sign the unsigned candidates on Dask when the scale rule says so; returns how many
    were signed there (0: left to ``dedup.dedup``'s in-process signing)."""
    shards = plan_signing(catalog, settings.dedup, settings.scale.shard_size)
    args = (str(catalog.home), settings.dedup, round_, catalog.lake_url)
    done = _run_sharded(sign_shards_flow, settings.scale, shards, args, progress)
    return done or 0


# -- scoring -------------------------------------------------------------------------------
_TO_SCORE_IDS = "SELECT candidate_id FROM ({}) ORDER BY candidate_id"
_TO_SCORE_RANGE = (
    "SELECT candidate_id, text FROM ({}) WHERE candidate_id BETWEEN ? AND ? ORDER BY candidate_id"
)


def plan_scoring(catalog: Catalog, settings: Settings, round_: int) -> list[Shard]:
    """Files of ``score.shard_rows`` candidates in id order (as ``score_candidates`` sizes
    them), grouped into shards of about ``scale.shard_size`` candidates (one file at least)."""
    sql = _TO_SCORE_IDS.format(load_sql("to_score"))
    ids = catalog.query(sql, [round_]).column(0)  # Arrow: 1M ids are tens of MB
    rows = settings.score.shard_rows
    files = []
    for start in range(0, len(ids), rows):
        part = ids.slice(start, rows).to_pylist()
        key = shard_key(round_, part)
        if not catalog.exists("scores", key):
            files.append((key, part))
    per_shard = max(1, settings.scale.shard_size // rows)
    return _groups(files, per_shard)


def score_shard_files(
    home: str,
    settings: Settings,
    round_: int,
    current: ModelRef,
    reference: ModelRef,
    bar: Bar,
    shard: Shard,
    lake: str | None = None,
) -> int:
    """Worker side: score one shard's candidates and write its ``scores`` files."""
    _limit_threads(settings.scale.threads_per_worker)
    catalog = Catalog(home, lake)
    sql = _TO_SCORE_RANGE.format(load_sql("to_score"))
    part = catalog.query(sql, [round_, shard.lo, shard.hi])
    model, ref = load_scorer(current), load_scorer(reference)
    quality = QualityModel.load(bar.quality_model)
    start = 0
    for key, size in zip(shard.keys, shard.sizes, strict=True):
        piece = _planned(part, shard, start, size, key, "scoring")
        if not catalog.exists("scores", key):
            table = score_shard(
                piece, settings, round_, current, reference, model, ref, quality, bar
            )
            catalog.write("scores", table, key)
        start += size
    return part.num_rows


@task(name="score-shard")
def score_shard_task(
    home: str,
    settings: Settings,
    round_: int,
    current: ModelRef,
    reference: ModelRef,
    bar: Bar,
    shard: Shard,
    lake: str | None = None,
) -> int:
    return score_shard_files(home, settings, round_, current, reference, bar, shard, lake)


@flow(name="score-shards")
def score_shards_flow(
    home: str,
    settings: Settings,
    round_: int,
    current: ModelRef,
    reference: ModelRef,
    bar: Bar,
    lake: str,
    shards: list[Shard],
) -> int:
    """Score every shard on the flow's task runner (Dask); returns the candidates scored."""
    futures = score_shard_task.map(
        unmapped(home),
        unmapped(settings),
        unmapped(round_),
        unmapped(current),
        unmapped(reference),
        unmapped(bar),
        shards,
        unmapped(lake),
    )
    return _gather(futures, shards)


def score_sharded(
    catalog: Catalog,
    settings: Settings,
    round_: int,
    current: ModelRef,
    reference: ModelRef,
    bar: Bar,
) -> int | None:
    """Score the round's candidates on Dask when the scale rule says so; returns how many,
    or None when the work stays in-process (``score.score_candidates``)."""
    shards = plan_scoring(catalog, settings, round_)
    args = (str(catalog.home), settings, round_, current, reference, bar, catalog.lake_url)
    total = sum(s.rows for s in shards)
    with progress_bar(f"score round {round_} ({len(shards)} shards)", total) as advance:
        return _run_sharded(score_shards_flow, settings.scale, shards, args, advance)


# -- helpers -------------------------------------------------------------------------------
# The progress callback of the sharded flow running in this process. Not a flow parameter:
# Prefect records parameters and ships the flow's context to the workers with each task,
# and a progress bar holds locks that cannot be pickled.
_advance: Callable[[int], None] | None = None


def _gather(futures, shards: list[Shard]) -> int:
    """Wait for every shard (advancing the progress bar as each finishes); raise the first
    error."""
    rows = {id(f): s.rows for f, s in zip(futures, shards, strict=True)}
    total = 0
    for future in as_completed(list(futures)):
        total += future.result()
        if _advance is not None:
            _advance(rows[id(future)])
    return total


def _planned(part: pa.Table, shard: Shard, start: int, size: int, key: str, step: str) -> pa.Table:
    """Rows ``start:start+size`` of a shard's rows, checked to be the ids file ``key`` was
    planned for (its key ends in their digest)."""
    piece = part.slice(start, size)
    ids = piece.column("candidate_id").to_pylist()
    if part.num_rows != shard.rows or not key.endswith("-" + _ids_digest(ids)):
        raise RuntimeError(
            f"{step} shard {shard.index} ({shard.lo} .. {shard.hi}): the lake holds "
            f"{part.num_rows} candidate(s) to do in this range, not the {shard.rows} planned "
            f"(file {key}); the workspace changed while the step ran (another writer?). "
            "Run the step again: finished files are kept."
        )
    return piece
