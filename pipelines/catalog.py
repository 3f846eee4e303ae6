"""The catalog: an append-only Parquet lake, queried with DuckDB.

Layout under the workspace::

    lake/<table>/<key>.parquet   one file per task output; the source of truth
    catalog.duckdb               views over the lake for any plain DuckDB client
    .lock                        held by the one process that writes (ingest, round, ...)

The lake may instead live on any fsspec URL (``s3://bucket/prefix``; see
:mod:`pipelines.lake`); everything here that lists, reads or writes lake files goes
through that one filesystem. On local disk Parquet files are written to a temporary name
and renamed; on an object store each is one PUT of the whole object. Either way a crash
never leaves half a file, and names are deterministic (``key``), so a rerun of the same
step overwrites its own output instead of adding to it. Readers never hold a lock: every
query opens an in-memory DuckDB over the Parquet files, which is why ``datawall sql``
answers while a round is writing (DuckDB locks a database *file* against all other processes while a
writer holds it; we never keep such a writer open).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.lake import Lake, LakeError, resolve_lake

logger = logging.getLogger("pipelines")

_TS = pa.timestamp("us", tz="UTC")

# The columns every file of a table has. Writers may add more columns (e.g. one per
# heuristic signal); views union files by name, so a column added later reads as NULL in
# older files.
SCHEMAS: dict[str, pa.Schema] = {
    "candidates": pa.schema(
        [
            ("candidate_id", pa.string()),
            ("content_hash", pa.string()),
            ("source", pa.string()),
            ("source_id", pa.string()),
            ("row", pa.int64()),
            ("role", pa.string()),
            ("text", pa.string()),
            ("n_chars", pa.int64()),
            ("meta", pa.string()),
            ("ingest_id", pa.string()),
            ("round", pa.int32()),
            ("ingested_at", _TS),
            # "text" (NULL in files written before pairs existed) or "pair": then ``prompt``
            # holds the normalised prompt and ``text`` the response
            ("kind", pa.string()),
            ("prompt", pa.string()),
        ]
    ),
    "quarantine": pa.schema(
        [
            ("source", pa.string()),
            ("row", pa.int64()),
            ("reason", pa.string()),
            ("detail", pa.string()),
            ("raw", pa.string()),
            ("ingest_id", pa.string()),
            ("round", pa.int32()),
            ("quarantined_at", _TS),
        ]
    ),
    "scores": pa.schema(
        [
            ("candidate_id", pa.string()),
            ("round", pa.int32()),
            ("model_id", pa.string()),
            ("ref_model_id", pa.string()),
            ("loss_model", pa.float64()),
            ("loss_ref", pa.float64()),
            ("learnability", pa.float64()),
            ("quality", pa.float64()),
            ("rule_reason", pa.string()),
            ("scored_at", _TS),
        ]
    ),
    "samples": pa.schema(
        [
            ("sample_id", pa.string()),
            ("round", pa.int32()),
            ("model_id", pa.string()),
            ("text", pa.string()),
            ("loss_model", pa.float64()),
            ("loss_ref", pa.float64()),
            ("learnability", pa.float64()),
            ("quality", pa.float64()),
        ]
    ),
    "bars": pa.schema(
        [
            ("round", pa.int32()),
            ("model_id", pa.string()),
            ("bar", pa.float64()),
            ("quantile", pa.float64()),
            ("margin", pa.float64()),
            ("n_samples", pa.int64()),
            ("sample_quality_mean", pa.float64()),
            ("quality_model", pa.string()),
            ("n_positive", pa.int64()),
            ("n_negative", pa.int64()),
            ("created_at", _TS),
        ]
    ),
    "decisions": pa.schema(
        [
            ("candidate_id", pa.string()),
            ("round", pa.int32()),
            ("decision", pa.string()),
            ("reason", pa.string()),
            ("decided_by", pa.string()),
            ("model_id", pa.string()),
            ("bar", pa.float64()),
            ("quality", pa.float64()),
            ("priority", pa.float64()),
            ("queued", pa.bool_()),
            ("duplicate_of", pa.string()),
            ("agreement", pa.float64()),  # expert decisions: share of votes for the label
            ("decided_at", _TS),
        ]
    ),
    "annotations": pa.schema(
        [
            ("annotation_id", pa.string()),
            ("task_id", pa.string()),
            ("candidate_id", pa.string()),
            ("round", pa.int32()),
            ("annotator", pa.string()),
            ("choice", pa.string()),
            ("corrected_text", pa.string()),
            ("rationale", pa.string()),
            ("export_file", pa.string()),
            ("created_at", pa.string()),
            ("updated_at", pa.string()),  # an edited annotation is stored again, as a version
            ("imported_at", _TS),
        ]
    ),
    "ls_tasks": pa.schema(
        [
            ("candidate_id", pa.string()),
            ("task_id", pa.int64()),
            ("project_id", pa.int64()),
            ("server", pa.string()),  # the Label Studio URL (never a token)
            ("round", pa.int32()),
            ("pushed_at", _TS),
        ]
    ),
    "ls_pulls": pa.schema(
        [
            ("server", pa.string()),
            ("project_id", pa.int64()),
            ("watermark", _TS),  # latest task updated_at the server reported
            ("tasks", pa.int64()),
            ("annotations_new", pa.int64()),
            ("pulled_at", _TS),
        ]
    ),
    "models": pa.schema(
        [
            ("model_id", pa.string()),
            ("round", pa.int32()),
            ("role", pa.string()),
            ("parent_id", pa.string()),
            ("path", pa.string()),
            ("n_params", pa.int64()),
            ("steps", pa.int64()),
            ("tokens_seen", pa.int64()),
            ("train_docs", pa.int64()),
            ("val_bpb", pa.float64()),
            ("wall_s", pa.float64()),
            ("config", pa.string()),
            ("created_at", _TS),
        ]
    ),
    "rounds": pa.schema(
        [
            ("round", pa.int32()),
            ("model_id", pa.string()),
            ("ref_model_id", pa.string()),
            ("bar", pa.float64()),
            ("n_scored", pa.int64()),
            ("n_accept", pa.int64()),
            ("n_reject", pa.int64()),
            ("n_hard", pa.int64()),
            ("n_queued", pa.int64()),
            ("new_model_id", pa.string()),
            ("val_bpb", pa.float64()),
            ("settings", pa.string()),
            ("started_at", _TS),
            ("finished_at", _TS),
        ]
    ),
    # Prompt/response candidates (kind = "pair"): both responses to the prompt, scored the
    # same way (pipelines/score_pairs.py). bpb is of the response given the prompt.
    "pair_scores": pa.schema(
        [
            ("candidate_id", pa.string()),
            ("round", pa.int32()),
            ("model_id", pa.string()),
            ("ref_model_id", pa.string()),
            ("model_response", pa.string()),  # the current model's own answer (sampled)
            ("loss_model", pa.float64()),  # candidate response | prompt, current model
            ("loss_ref", pa.float64()),  # candidate response | prompt, reference model
            ("own_loss_model", pa.float64()),
            ("own_loss_ref", pa.float64()),
            ("relevance", pa.float64()),  # ref bpb(response) - ref bpb(response | prompt)
            ("own_relevance", pa.float64()),
            ("quality", pa.float64()),  # quality classifier P(good) of the candidate response
            ("own_quality", pa.float64()),
            ("score", pa.float64()),  # the candidate's pair score (log-odds scale)
            ("own_score", pa.float64()),  # the model's own response's pair score
            ("gap", pa.float64()),  # score - own_score: > margin accept, < -margin reject
            ("rule_reason", pa.string()),
            ("scored_at", _TS),
        ]
    ),
    # Pairwise expert tasks: which side (a or b) showed the candidate; the other side showed
    # model_response. Written before the task is pushed, so an answer can always be mapped.
    "pair_tasks": pa.schema(
        [
            ("candidate_id", pa.string()),
            ("round", pa.int32()),
            ("candidate_side", pa.string()),  # "a" | "b"
            ("model_response", pa.string()),
            ("model_id", pa.string()),
            ("pushed_at", _TS),
        ]
    ),
    # `datawall experiment`: one row per trained arm x seed (pipelines/experiment.py)
    "experiment_runs": pa.schema(
        [
            ("experiment_id", pa.string()),
            ("arm", pa.string()),  # curated | random | full | heuristic
            ("seed", pa.int32()),
            ("n_docs", pa.int64()),
            ("arm_tokens", pa.int64()),  # tokens in one pass over the arm's data
            ("budget_tokens", pa.int64()),  # the shared token budget of every arm
            ("tokens_seen", pa.int64()),
            ("epochs", pa.float64()),  # tokens_seen / arm_tokens
            ("capped", pa.bool_()),  # stopped at the epoch cap before the budget
            ("final_val_bpb", pa.float64()),
            ("model_path", pa.string()),
            ("settings", pa.string()),
            ("created_at", _TS),
        ]
    ),
    # Validation loss against tokens seen, per arm x seed
    "experiment_curves": pa.schema(
        [
            ("experiment_id", pa.string()),
            ("arm", pa.string()),
            ("seed", pa.int32()),
            ("step", pa.int64()),
            ("tokens_seen", pa.int64()),
            ("val_bpb", pa.float64()),
        ]
    ),
    # MinHash signature and LSH band keys of each candidate, per dedup config (pipelines/dedup.py)
    "minhash": pa.schema(
        [
            ("candidate_id", pa.string()),
            ("config", pa.string()),  # digest of the signature settings
            ("signature", pa.binary()),  # num_perm little-endian uint32 values
            ("band_keys", pa.list_(pa.int64())),
            ("round", pa.int32()),
        ]
    ),
}

# Extra columns some views expose: `candidates.id` is the documented short name of candidate_id.
_VIEW_ALIASES = {"candidates": ", candidate_id AS id"}

# Next to catalog.duckdb: the lake its views read, so that moving the lake rewrites them.
_DUCKDB_LAKE_FILE = ".catalog-lake"

_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=-]*$")


class WorkspaceBusy(RuntimeError):
    """Another process holds the workspace's writer lock."""


def now() -> datetime:
    return datetime.now(UTC)


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _view_sql() -> list[str]:
    """Derived views, one statement each, from ``pipelines/sql/views.sql``."""
    body = resources.files("pipelines").joinpath("sql/views.sql").read_text(encoding="utf-8")
    body = "\n".join(line for line in body.splitlines() if not line.lstrip().startswith("--"))
    return [stmt.strip() for stmt in body.split(";") if stmt.strip()]


def load_sql(name: str) -> str:
    """A named query from ``pipelines/sql/NAME.sql``."""
    return resources.files("pipelines").joinpath(f"sql/{name}.sql").read_text(encoding="utf-8")


class Catalog:
    """One workspace's lake. Cheap to construct; holds no open connection.

    ``lake`` overrides where the lake lives (a path or an fsspec URL); by default it comes
    from ``$DATAWALL_LAKE``, ``storage.lake`` in ``HOME/datawall.yaml``, else ``HOME/lake``.
    """

    def __init__(self, home: Path | str, lake: str | None = None):
        self.home = Path(home).resolve()
        self.store: Lake = resolve_lake(self.home, lake)

    # -- layout -------------------------------------------------------------------------
    @property
    def fs(self):
        """The fsspec filesystem holding the lake (the local disk by default)."""
        return self.store.fs

    @property
    def lake_url(self) -> str:
        """Where the lake lives: an absolute path, or a URL such as ``s3://bucket/prefix``."""
        return self.store.url

    @property
    def lake(self) -> Path:
        """The lake folder, for a lake on local disk only (see :meth:`table_uri`)."""
        if not self.store.local:
            raise LakeError(
                f"the lake of {self.home} is at {self.store.url}, not on local disk; "
                "go through Catalog.fs / table_uri / files instead of local paths"
            )
        return Path(self.store.root)

    def table_dir(self, table: str) -> Path:
        """A table's folder, for a lake on local disk only (see :meth:`table_uri`)."""
        self._check_table(table)
        return self.lake / table

    def table_uri(self, table: str) -> str:
        """A table's folder as a path (local) or URL (``s3://bucket/prefix/TABLE``)."""
        return self.store.uri(self._table_path(table))

    def files(self, table: str) -> list[str]:
        """The table's data files (not its ``_schema.parquet`` marker), sorted, as URIs."""
        self._check_table(table)
        pattern = self.store.path(table, "*.parquet")
        paths = sorted(p for p in self.fs.glob(pattern) if not p.endswith("/_schema.parquet"))
        return [self.store.uri(p) for p in paths]

    @staticmethod
    def _check_table(table: str) -> None:
        if table not in SCHEMAS:
            raise KeyError(f"unknown table {table!r}; tables: {', '.join(SCHEMAS)}")

    def _table_path(self, table: str) -> str:
        self._check_table(table)
        return self.store.path(table)

    def _marker(self, table: str) -> str:
        return self.store.path(table, "_schema.parquet")

    def init(self) -> Catalog:
        """Create the lake (one empty schema file per table) and ``catalog.duckdb``. Idempotent."""
        self.home.mkdir(parents=True, exist_ok=True)
        for table in self._tables_without_marker():
            if self.store.local:
                Path(self._table_path(table)).mkdir(parents=True, exist_ok=True)
            self._put(self._marker(table), SCHEMAS[table].empty_table())
        if not (self.home / "catalog.duckdb").exists() or self._duckdb_file_lake() != self.lake_url:
            self.write_duckdb_file()  # new, or its views still point at where the lake was
        return self

    def _duckdb_file_lake(self) -> str:
        """The lake ``catalog.duckdb``'s views were written for (from ``.catalog-lake``)."""
        try:
            return (self.home / _DUCKDB_LAKE_FILE).read_text(encoding="utf-8").strip()
        except FileNotFoundError:  # written before lakes could move: the default lake
            return str(self.home / "lake")

    def _tables_without_marker(self) -> list[str]:
        if self.store.local:
            return [t for t in SCHEMAS if not Path(self._marker(t)).exists()]
        # one listing instead of a request per table; on an object store a table's folder
        # exists exactly when its marker (its first object) does
        try:
            present = {
                p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(self.store.root, detail=False)
            }
        except FileNotFoundError:
            present = set()
        return [t for t in SCHEMAS if t not in present]

    @property
    def initialised(self) -> bool:
        """True once ``init`` has run here; tables added by later versions are created on use."""
        return self.fs.exists(self._marker("candidates"))

    # -- writing ------------------------------------------------------------------------
    def write(self, table: str, data: pa.Table, key: str) -> str:
        """Write ``data`` as ``TABLE/KEY.parquet`` in the lake atomically; returns its path.

        The schema's columns are required and cast to their types; extra columns are kept.
        Writing the same key again replaces the file, which makes reruns idempotent.
        """
        self._check_table(table)
        if not _KEY_RE.match(key):
            raise ValueError(f"bad file key {key!r}: use letters, digits, '.', '_', '=', '-'")
        schema = SCHEMAS[table]
        missing = [f.name for f in schema if f.name not in data.column_names]
        if missing:
            raise ValueError(f"table {table}: missing column(s) {missing}")
        columns = [data.column(f.name).cast(f.type) for f in schema]
        extra = [n for n in data.column_names if n not in schema.names]
        out = pa.table(columns + [data.column(n) for n in extra], names=schema.names + extra)
        path = self.store.path(table, f"{key}.parquet")
        self._put(path, out)
        return self.store.uri(path)

    def exists(self, table: str, key: str) -> bool:
        self._check_table(table)
        return self.fs.exists(self.store.path(table, f"{key}.parquet"))

    def _put(self, path: str, table: pa.Table) -> None:
        """Write one Parquet file so that readers see all of it or nothing."""
        if self.store.local:
            self._write_atomic(Path(path), table)
            return
        # Object stores have no rename, but a PUT (or a completed multipart upload) makes
        # the whole object visible at once; so build the file in memory and send it in one
        # go. fs.open(..., "wb") would not do: closing it after an error uploads the part
        # written so far.
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        try:
            self.fs.pipe_file(path, sink.getvalue().to_pybytes())
        except Exception as exc:  # the backend's own errors (botocore's are not OSErrors)
            raise LakeError(
                f"lake {self.lake_url}: cannot write {self.store.uri(path)}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    @staticmethod
    def _write_atomic(path: Path, table: pa.Table) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        pq.write_table(table, tmp, compression="zstd")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    @contextlib.contextmanager
    def writer(self, what: str) -> Iterator[None]:
        """Hold the workspace's single-writer lock, or raise :class:`WorkspaceBusy` at once."""
        self.home.mkdir(parents=True, exist_ok=True)
        lock_path = self.home / ".lock"
        fh = open(lock_path, "a+")  # noqa: SIM115 - held for the whole block
        try:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read().strip() or "another process"
                raise WorkspaceBusy(
                    f"workspace {self.home} is being written by {holder}; "
                    "wait for it to finish, then run this again"
                ) from None
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()} ({what}, since {now():%Y-%m-%d %H:%M:%S} UTC)")
            fh.flush()
            from pipelines.recovery import sweep_temp_files

            sweep_temp_files(self.home)  # what a killed writer left; we are the only writer
            if self.store.local and not Path(self.store.root).is_relative_to(self.home):
                sweep_temp_files(Path(self.store.root))
            yield
        finally:
            with contextlib.suppress(OSError):
                fh.truncate(0)
            fh.close()

    # -- reading ------------------------------------------------------------------------
    def connect(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB with one view per table and the derived views."""
        if not self.initialised:
            raise FileNotFoundError(
                f"no datawall workspace at {self.home}: run `datawall ingest` or `datawall demo` first"
            )
        if self._tables_without_marker():
            self.init()  # a workspace from an earlier version: add the newer, empty tables
        elif self._duckdb_file_lake() != self.lake_url:
            try:  # the lake moved: point catalog.duckdb at its new place
                self.write_duckdb_file()
            except (OSError, duckdb.Error) as exc:  # a read-only HOME must still answer queries
                logger.warning("could not rewrite %s/catalog.duckdb: %s", self.home, exc)
        con = duckdb.connect(":memory:")
        self._attach_lake(con)
        for stmt in self._base_view_sql():
            con.execute(stmt)
        for stmt in _view_sql():
            con.execute(stmt)
        return con

    def _attach_lake(self, con: duckdb.DuckDBPyConnection) -> None:
        """Let ``con`` read a lake that is not on local disk, through our fsspec filesystem."""
        if self.store.local:
            return
        self.fs.invalidate_cache()  # list what is there now, not what an earlier query saw
        con.register_filesystem(self.fs)
        # never fetch an extension (httpfs) at run time: a path the filesystem above does
        # not serve is an error, not a download
        con.execute("SET autoinstall_known_extensions = false")

    def _base_view_sql(self) -> list[str]:
        statements = []
        for table in SCHEMAS:
            files = _sql_literal(self.store.uri(self.store.path(table, "*.parquet")))
            statements.append(
                f"CREATE OR REPLACE VIEW {table} AS SELECT *{_VIEW_ALIASES.get(table, '')} "
                f"FROM read_parquet({files}, union_by_name = true)"
            )
        return statements

    def query(self, sql: str, params: list[Any] | dict[str, Any] | None = None) -> pa.Table:
        con = self.connect()
        try:
            return con.sql(sql, params=params).to_arrow_table()
        finally:
            con.close()

    def named(self, name: str, params: list[Any] | dict[str, Any] | None = None) -> pa.Table:
        """Run the query in ``pipelines/sql/NAME.sql`` with bound parameters."""
        return self.query(load_sql(name), params)

    def scalar(self, sql: str, params: list[Any] | dict[str, Any] | None = None) -> Any:
        table = self.query(sql, params)
        return table.column(0)[0].as_py() if table.num_rows else None

    def current_round(self) -> int:
        """The round being worked on: one past the last finished round."""
        last = self.scalar("SELECT max(round) FROM rounds")
        return 1 if last is None else int(last) + 1

    def write_duckdb_file(self) -> Path:
        """(Re)write ``catalog.duckdb``: views only, so it stays valid as the lake grows."""
        path = self.home / "catalog.duckdb"
        tmp = path.with_name(f".catalog.{os.getpid()}.duckdb")
        tmp.unlink(missing_ok=True)
        con = duckdb.connect(str(tmp))
        try:
            self._attach_lake(con)
            for stmt in self._base_view_sql() + _view_sql():
                con.execute(stmt)
        finally:
            con.close()
        for _ in range(3):
            try:
                os.replace(tmp, path)
                break
            except OSError:  # pragma: no cover - a client had it open on a platform that cares
                time.sleep(0.1)
        (self.home / _DUCKDB_LAKE_FILE).write_text(self.lake_url + "\n", encoding="utf-8")
        return path
