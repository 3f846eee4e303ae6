"""The lake on object storage, for real: a moto S3 server on 127.0.0.1, s3fs, DuckDB.

The server is moto's own HTTP server (``moto[server]``), not an in-process mock: every
write, listing and read crosses a socket the way it would against S3. Credentials are
dummies set in the environment only, as a user would (the AWS chain); the tests check they
end up nowhere in the workspace.
"""

from __future__ import annotations

import json
import logging
import shutil
import uuid
from pathlib import Path

import boto3
import duckdb
import pytest
import yaml
from typer.testing import CliRunner

from pipelines.catalog import Catalog
from pipelines.cli import app
from pipelines.lake import LakeError, StorageConfig
from pipelines.settings import load_settings
from tests.pipelines.test_catalog import quarantine_rows

DUMMY_KEY = "AKIADATAWALLTEST0000"
DUMMY_SECRET = "datawall-dummy-secret-never-stored"

ROWS = [
    {"id": "a", "text": "Sorting a list in place changes the order of the items it holds."},
    {"id": "b", "text": "Sorting a list in place changes the order of the items it holds."},
    {"id": "c", "text": 7},  # not a string: quarantined
    {
        "id": "d",
        "text": "A dictionary maps hashable keys to values and keeps them in insertion "
        "order, so iterating over it gives the keys back in the order they were added.",
    },
    {
        "id": "e",
        "text": "A dictionary maps hashable keys to values and keeps them in insertion "
        "order, so iterating over it gives the keys back in the order they were added!",
    },
    {"id": "f", "text": "Generators produce values lazily, one at a time, as they are asked for."},
]

runner = CliRunner()
OUTPUTS: list[str] = []  # everything the commands printed, to look for leaked secrets


def invoke(*args: str):
    result = runner.invoke(app, list(args), catch_exceptions=False)
    OUTPUTS.append(result.output)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint, monkeypatch):
    """A fresh bucket on the server; dummy credentials in the environment only."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", DUMMY_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", DUMMY_SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "DATAWALL_LAKE", "DATAWALL_LAKE_OPTIONS"):
        monkeypatch.delenv(name, raising=False)
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    return client, bucket, s3_endpoint


@pytest.fixture
def pipeline_logs():
    """Every message the ``pipelines`` logger emits, down to DEBUG, during the test."""
    records: list[str] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = lambda record: records.append(record.getMessage())
    lib_logger = logging.getLogger("pipelines")
    level = lib_logger.level
    lib_logger.addHandler(handler)
    lib_logger.setLevel(logging.DEBUG)
    yield records
    lib_logger.removeHandler(handler)
    lib_logger.setLevel(level)


def keys(client, bucket: str) -> list[str]:
    return sorted(objects(client, bucket))


def objects(client, bucket: str) -> dict[str, str]:
    """Every object in the bucket: key -> ETag (which changes when an object is rewritten)."""
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {obj["Key"]: obj["ETag"] for page in pages for obj in page.get("Contents", [])}


def source(tmp_path: Path) -> Path:
    path = tmp_path / "pool.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n", encoding="utf-8")
    return path


def sql(home: Path, query: str) -> list[dict]:
    return json.loads(invoke("sql", query, "--format", "json", "--home", str(home)).stdout)


def test_ingest_dedup_and_sql_on_s3(tmp_path, s3, pipeline_logs):
    client, bucket, endpoint = s3
    home = tmp_path / "home"
    home.mkdir()
    (home / "datawall.yaml").write_text(
        yaml.safe_dump(
            {
                "storage": {
                    "lake": f"s3://{bucket}/team/lake",
                    "options": {"endpoint_url": endpoint},
                },
                "dedup": {"threshold": 0.7},
            }
        )
    )
    assert load_settings(home).storage.lake == f"s3://{bucket}/team/lake"
    src = source(tmp_path)

    OUTPUTS.clear()
    first = json.loads(invoke("ingest", str(src), "--id-field", "id", "--home", str(home)).stdout)
    assert first["quarantined"] == 1
    after_ingest = keys(client, bucket)
    dedup = invoke("dedup", "--home", str(home))
    assert '"rejected": 1' in dedup.stdout

    assert sql(home, "SELECT reason, row FROM quarantine") == [
        {"reason": "non_string_text", "row": 3}
    ]
    decided = sql(
        home,
        "SELECT candidate_id, reason, duplicate_of FROM latest_decisions ORDER BY reason",
    )
    ids = {r["candidate_id"]: r["source_id"] for r in sql(home, "SELECT * FROM candidates")}
    assert [(ids[r["candidate_id"]], r["reason"], ids[r["duplicate_of"]]) for r in decided] == [
        ("b", "exact_duplicate", "a"),
        ("e", "near_duplicate", "d"),
    ]

    # a rerun adds nothing: same rows, and no object written again
    before = objects(client, bucket)
    again = json.loads(invoke("ingest", str(src), "--id-field", "id", "--home", str(home)).stdout)
    assert again["added"] == 0
    assert objects(client, bucket) == before
    assert sql(home, "SELECT count(*) AS n FROM candidates") == [{"n": 5}]

    # every object is under the prefix, one folder per table, no temporary names
    assert all(k.startswith("team/lake/") for k in before)
    tables = {k.split("/")[2] for k in before}
    assert {"candidates", "quarantine", "decisions", "minhash", "rounds"} <= tables
    assert not [k for k in before if ".tmp" in k or k.rsplit("/", 1)[-1].startswith(".")]
    assert set(after_ingest) < set(before)  # dedup wrote signatures and decisions
    assert not (home / "lake").exists()  # nothing went to the local default

    # the catalog file's views read the S3 lake; no credential in the workspace or the logs
    assert f"'s3://{bucket}/team/lake/candidates/*.parquet'" in view_sql(home / "catalog.duckdb")
    for path in home.rglob("*"):
        if path.is_file():
            assert DUMMY_SECRET.encode() not in path.read_bytes(), path
    assert any(f"lake at s3://{bucket}/team/lake" in r for r in pipeline_logs)
    assert not [r for r in pipeline_logs if DUMMY_SECRET in r]
    assert OUTPUTS and not [o for o in OUTPUTS if DUMMY_SECRET in o]


def test_env_lake_api_and_empty_tables(tmp_path, s3, monkeypatch):
    client, bucket, endpoint = s3
    monkeypatch.setenv("DATAWALL_LAKE", f"s3://{bucket}/lake")
    monkeypatch.setenv("DATAWALL_LAKE_OPTIONS", json.dumps({"endpoint_url": endpoint}))
    catalog = Catalog(tmp_path / "home")
    assert catalog.lake_url == f"s3://{bucket}/lake"
    assert not catalog.initialised
    catalog.init()
    assert catalog.initialised
    # empty tables read through their schema markers
    assert catalog.scalar("SELECT count(*) FROM scores") == 0
    assert catalog.files("quarantine") == []

    written = catalog.write("quarantine", quarantine_rows(3), "batch-1")
    catalog.write("quarantine", quarantine_rows(3), "batch-1")  # a rerun: the same object
    assert written == f"s3://{bucket}/lake/quarantine/batch-1.parquet"
    assert catalog.exists("quarantine", "batch-1") and not catalog.exists("quarantine", "b2")
    assert catalog.files("quarantine") == [written]
    # a second catalog (another process, in effect) sees the new object at once
    assert Catalog(tmp_path / "home").scalar("SELECT count(*) FROM quarantine") == 3
    assert [k for k in keys(client, bucket) if "/quarantine/" in k] == [
        "lake/quarantine/_schema.parquet",
        "lake/quarantine/batch-1.parquet",
    ]
    with pytest.raises(LakeError, match="not on local disk"):
        catalog.table_dir("quarantine")


def test_missing_bucket_is_a_clear_error(tmp_path, s3, monkeypatch):
    _, _, endpoint = s3
    monkeypatch.setenv("DATAWALL_LAKE_OPTIONS", json.dumps({"endpoint_url": endpoint}))
    lake = "s3://no-such-bucket-here/lake"
    with pytest.raises(LakeError, match=f"lake {lake}: cannot write {lake}/"):
        Catalog(tmp_path / "a", lake=lake).init()
    monkeypatch.setenv("DATAWALL_LAKE", lake)
    result = runner.invoke(app, ["ingest", str(source(tmp_path)), "--home", str(tmp_path / "b")])
    assert result.exit_code == 1 and f"lake {lake}: cannot write" in result.output
    assert "NoSuchBucket" in result.output or "FileNotFoundError" in result.output


def test_credentials_in_settings_are_refused(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="secret.*AWS_ACCESS_KEY_ID"):
        StorageConfig(lake="s3://b/l", options={"secret": "x"})
    with pytest.raises(ValueError, match="client_kwargs.aws_secret_access_key"):
        StorageConfig(options={"client_kwargs": {"aws_secret_access_key": "x"}})
    (tmp_path / "datawall.yaml").write_text(
        yaml.safe_dump({"storage": {"lake": "s3://b/l", "options": {"key": "AKIA"}}})
    )
    with pytest.raises(ValueError, match="datawall.yaml"):
        Catalog(tmp_path)
    monkeypatch.setenv("DATAWALL_LAKE_OPTIONS", json.dumps({"token": "x"}))
    with pytest.raises(ValueError, match="DATAWALL_LAKE_OPTIONS"):
        Catalog(tmp_path / "other", lake="s3://b/l")
    with pytest.raises(ValueError, match="carries a password"):
        Catalog(tmp_path / "other", lake="ftp://me:hunter2@example.org/lake")


def test_file_url_lake_is_local_atomic_and_recorded(tmp_path, monkeypatch):
    monkeypatch.delenv("DATAWALL_LAKE", raising=False)
    lake = tmp_path / "elsewhere" / "lake"
    home = tmp_path / "home"
    src = str(source(tmp_path))
    invoke("ingest", src, "--id-field", "id", "--home", str(home), "--lake", lake.as_uri())
    assert load_settings(home).storage.lake == str(lake)  # later commands need no flag
    assert sql(home, "SELECT count(*) AS n FROM candidates") == [{"n": 5}]
    catalog = Catalog(home)
    assert catalog.lake == lake and catalog.store.local
    assert catalog.files("quarantine") == [str(p) for p in sorted(lake.glob("quarantine/[!_]*"))]
    assert len(catalog.files("quarantine")) == 1
    assert not (home / "lake").exists()
    assert not list(lake.rglob("*.tmp"))
    # the same lake again is fine; another one would split the workspace, so it is refused
    invoke("ingest", src, "--id-field", "id", "--home", str(home), "--lake", str(lake))
    moved = runner.invoke(
        app, ["ingest", src, "--home", str(home), "--lake", str(tmp_path / "other")]
    )
    assert moved.exit_code == 2 and "already keeps its lake at" in moved.output

    # moving a lake: copy it, point storage.lake at the copy; catalog.duckdb follows
    assert str(lake / "candidates") in view_sql(home / "catalog.duckdb")
    copy = tmp_path / "moved" / "lake"
    shutil.copytree(lake, copy)
    (home / "datawall.yaml").write_text(yaml.safe_dump({"storage": {"lake": str(copy)}}))
    assert sql(home, "SELECT count(*) AS n FROM candidates") == [{"n": 5}]
    assert str(copy / "candidates") in view_sql(home / "catalog.duckdb")


def view_sql(path: Path) -> str:
    con = duckdb.connect(str(path), read_only=True)
    try:
        rows = con.sql("SELECT sql FROM duckdb_views() WHERE view_name = 'candidates'")
        return rows.fetchall()[0][0]
    finally:
        con.close()


def test_memory_url_lake_goes_through_fsspec(tmp_path):
    """Any fsspec filesystem works, not only S3: the in-process memory one here."""
    catalog = Catalog(tmp_path, lake=f"memory://datawall-{uuid.uuid4().hex[:8]}/lake").init()
    assert not catalog.store.local
    written = catalog.write("quarantine", quarantine_rows(2), "a")
    assert catalog.files("quarantine") == [written]
    assert catalog.scalar("SELECT count(*) FROM quarantine") == 2
    assert catalog.scalar("SELECT count(*) FROM candidates") == 0


def test_default_lake_is_home_lake_as_before(tmp_path, monkeypatch):
    monkeypatch.delenv("DATAWALL_LAKE", raising=False)
    catalog = Catalog(tmp_path).init()
    assert catalog.lake == tmp_path.resolve() / "lake" and catalog.store.local
    written = catalog.write("quarantine", quarantine_rows(1), "a")
    assert written == str(catalog.table_dir("quarantine") / "a.parquet")
    # a workspace from before lakes could move has no .catalog-lake: its file is kept as is
    (catalog.home / ".catalog-lake").unlink()
    duckdb_file = catalog.home / "catalog.duckdb"
    stamp = duckdb_file.stat().st_mtime_ns
    assert catalog.scalar("SELECT count(*) FROM quarantine") == 1
    assert duckdb_file.stat().st_mtime_ns == stamp
