"""Catalog: atomic deterministic writes, views, the writer lock, reads during writes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import duckdb
import pyarrow as pa
import pytest

from pipelines.catalog import SCHEMAS, Catalog, WorkspaceBusy, now


def quarantine_rows(n: int, start: int = 0) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "source": "s",
                "row": start + i,
                "reason": "r",
                "detail": "",
                "raw": None,
                "ingest_id": "i",
                "round": 1,
                "quarantined_at": now(),
            }
            for i in range(n)
        ],
        SCHEMAS["quarantine"],
    )


def test_write_is_deterministic_and_idempotent(tmp_path):
    catalog = Catalog(tmp_path).init()
    assert catalog.scalar("SELECT count(*) FROM quarantine") == 0
    catalog.write("quarantine", quarantine_rows(3), "batch-1")
    catalog.write("quarantine", quarantine_rows(3), "batch-1")  # a rerun of the same step
    assert catalog.scalar("SELECT count(*) FROM quarantine") == 3
    catalog.write("quarantine", quarantine_rows(2, 10), "batch-2")
    assert catalog.scalar("SELECT count(*) FROM quarantine") == 5
    assert not list(tmp_path.rglob("*.tmp"))


def test_write_checks_columns_and_keys(tmp_path):
    catalog = Catalog(tmp_path).init()
    with pytest.raises(ValueError, match="missing column"):
        catalog.write("quarantine", pa.table({"source": ["x"]}), "k")
    with pytest.raises(ValueError, match="bad file key"):
        catalog.write("quarantine", quarantine_rows(1), "../escape")
    with pytest.raises(KeyError, match="unknown table"):
        catalog.write("nope", quarantine_rows(1), "k")


def test_extra_columns_are_kept_and_old_files_read_null(tmp_path):
    catalog = Catalog(tmp_path).init()
    catalog.write("quarantine", quarantine_rows(1), "a")
    catalog.write("quarantine", quarantine_rows(1, 5).append_column("extra", pa.array([7])), "b")
    rows = catalog.query("SELECT row, extra FROM quarantine ORDER BY row").to_pylist()
    assert rows == [{"row": 0, "extra": None}, {"row": 5, "extra": 7}]


def test_queries_bind_values(tmp_path):
    catalog = Catalog(tmp_path).init()
    catalog.write("quarantine", quarantine_rows(4), "a")
    assert catalog.scalar("SELECT count(*) FROM quarantine WHERE row >= ?", [2]) == 2
    assert catalog.scalar("SELECT count(*) FROM quarantine WHERE source = ?", ["s' OR '1'='1"]) == 0


def test_missing_workspace_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no datawall workspace"):
        Catalog(tmp_path / "nowhere").query("SELECT 1")


def test_second_writer_is_refused_with_a_clear_message(tmp_path):
    catalog = Catalog(tmp_path).init()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import time
            from pipelines.catalog import Catalog
            with Catalog({str(tmp_path)!r}).writer("datawall round"):
                print("locked", flush=True)
                time.sleep(30)
        """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        busy = pytest.raises(WorkspaceBusy, match=r"being written by pid \d+ \(datawall round")
        with busy, catalog.writer("datawall ingest"):
            pass
    finally:
        holder.kill()
        holder.wait()
    with catalog.writer("datawall ingest"):  # the lock dies with its holder
        pass


def test_sql_answers_while_another_process_writes(tmp_path):
    """`datawall sql` and a plain DuckDB client on catalog.duckdb both work mid-write."""
    catalog = Catalog(tmp_path).init()
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import time
            import pyarrow as pa
            from pipelines.catalog import SCHEMAS, Catalog, now
            catalog = Catalog({str(tmp_path)!r})
            with catalog.writer("test writer"):
                for i in range(400):
                    rows = [dict(source="s", row=5 * i + j, reason="r", round=1,
                                 quarantined_at=now()) for j in range(5)]
                    table = pa.Table.from_pylist(rows, SCHEMAS["quarantine"])
                    catalog.write("quarantine", table, f"w{{i:04d}}")
                    time.sleep(0.02)
                    if i == 0:
                        print("writing", flush=True)
        """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout.readline().strip() == "writing"
        seen = []
        for _ in range(3):
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pipelines.cli",
                    "sql",
                    "SELECT count(*) AS n FROM quarantine",
                    "--format",
                    "csv",
                    "--home",
                    str(tmp_path),
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert result.returncode == 0, result.stderr
            seen.append(int(result.stdout.splitlines()[-1]))
            with duckdb.connect(str(tmp_path / "catalog.duckdb"), read_only=True) as con:
                assert con.execute("SELECT count(*) FROM quarantine").fetchone()[0] >= 5
            time.sleep(0.1)
        assert all(n % 5 == 0 and n >= 5 for n in seen)  # never half a file
        assert min(seen) < 2000  # at least one answer came while the writer was writing
    finally:
        writer.wait(timeout=120)
    assert writer.returncode == 0
    assert catalog.scalar("SELECT count(*) FROM quarantine") == 2000


def test_candidates_view_has_the_short_id_name(tmp_path):
    catalog = Catalog(tmp_path).init()
    names = catalog.query("SELECT * FROM candidates LIMIT 0").column_names
    assert "id" in names and "candidate_id" in names


def test_workspace_from_an_earlier_version_gains_new_tables(tmp_path):
    catalog = Catalog(tmp_path).init()
    catalog.write("quarantine", quarantine_rows(2), "a")
    newest = catalog.table_dir("minhash") / "_schema.parquet"
    newest.unlink()  # as if the workspace predates the minhash table
    assert catalog.initialised
    assert catalog.scalar("SELECT count(*) FROM minhash") == 0
    assert newest.exists()
    assert catalog.scalar("SELECT count(*) FROM quarantine") == 2
