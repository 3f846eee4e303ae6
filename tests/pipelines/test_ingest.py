"""Ingest: every format, every kind of bad row, normalisation, exact dedup, idempotence."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.catalog import Catalog
from pipelines.config import IngestConfig
from pipelines.ingest import content_hash, ingest, normalise
from pipelines.sources import SourceError

PROSE = [
    "The quick brown fox jumps over the lazy dog near the river bank today.",
    "Return a new list containing all items from the iterable in ascending order.",
    "Open the file and return a corresponding file object, or raise an error.",
]


def write_jsonl(path: Path, lines: list[bytes | str | dict]) -> Path:
    with open(path, "wb") as fh:
        for line in lines:
            if isinstance(line, dict):
                line = json.dumps(line)
            if isinstance(line, str):
                line = line.encode("utf-8")
            fh.write(line + b"\n")
    return path


def counts(catalog: Catalog) -> tuple[int, int, int]:
    return (
        catalog.scalar("SELECT count(*) FROM candidates"),
        catalog.scalar("SELECT count(*) FROM quarantine"),
        catalog.scalar("SELECT count(*) FROM decisions"),
    )


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return Catalog(tmp_path / "home").init()


def test_normalise_nfc_and_whitespace():
    decomposed = "Cafe\u0301  au\tlait \r\n\r\n\r\n\n next  \n"
    assert normalise(decomposed) == "Caf\u00e9 au lait\n\nnext"
    assert content_hash(normalise("a  b")) == content_hash("a b")


def test_jsonl_bad_rows_go_to_quarantine_with_row_and_reason(tmp_path, catalog):
    src = write_jsonl(
        tmp_path / "pool.jsonl",
        [
            {"id": "a", "text": PROSE[0]},
            b'{"id": "b", "text": "caf\xe9 is not utf-8"}',
            '{"id": "c", "text": "unterminated',
            {"id": "d", "text": ""},
            {"id": "e", "text": 42},
            {"id": "f", "body": "no text field"},
            {"id": "g", "text": "x" * 200},
            {"id": "h", "text": "nul\x00byte"},
            "[1, 2, 3]",
            {"id": "i", "text": None},
            {"id": "j", "text": PROSE[1], "lang": "en"},
        ],
    )
    report = ingest(catalog, str(src), id_field="id", cfg=IngestConfig(max_chars=150))
    assert report.added == 2 and report.quarantined == 9
    bad = catalog.query("SELECT row, reason, source FROM quarantine ORDER BY row").to_pylist()
    assert [(r["row"], r["reason"]) for r in bad] == [
        (2, "invalid_utf8"),
        (3, "malformed_json"),
        (4, "empty_text"),
        (5, "non_string_text"),
        (6, "missing_text"),
        (7, "too_long"),
        (8, "nul_byte"),
        (9, "not_an_object"),
        (10, "missing_text"),
    ]
    assert all(r["source"] == str(src.resolve()) for r in bad)
    good = catalog.query("SELECT source_id, meta FROM candidates ORDER BY source_id").to_pylist()
    assert [g["source_id"] for g in good] == ["a", "j"]
    # the other columns are kept as meta, the id and text are not repeated there
    assert json.loads(good[1]["meta"]) == {"lang": "en"}


def test_reingest_adds_nothing(tmp_path, catalog):
    src = write_jsonl(
        tmp_path / "pool.jsonl", [{"text": t} for t in PROSE] + ["not json", {"text": PROSE[0]}]
    )
    first = ingest(catalog, str(src))
    before = counts(catalog)
    second = ingest(catalog, str(src))
    assert first.added == 3 and first.duplicates == 1 and first.quarantined == 1
    assert second.added == 0 and second.quarantined == 0
    assert counts(catalog) == before == (4, 1, 1)


def test_appended_source_adds_only_new_rows(tmp_path, catalog):
    src = write_jsonl(tmp_path / "pool.jsonl", [{"text": PROSE[0]}, "bad line"])
    ingest(catalog, str(src))
    write_jsonl(src, [{"text": PROSE[0]}, "bad line", {"text": PROSE[2]}])
    report = ingest(catalog, str(src))
    assert report.added == 1 and report.quarantined == 0
    assert counts(catalog)[:2] == (2, 1)


def test_exact_duplicates_are_rejected_with_pointer_to_kept_copy(tmp_path, catalog):
    trusted = write_jsonl(tmp_path / "trusted.jsonl", [{"text": PROSE[0]}])
    pool = write_jsonl(
        tmp_path / "pool.jsonl",
        [{"text": PROSE[1]}, {"text": "  " + PROSE[1] + "  "}, {"text": PROSE[0]}],
    )
    ingest(catalog, str(trusted), role="trusted")
    report = ingest(catalog, str(pool), role="pool")
    assert report.added == 1 and report.duplicates == 2
    rows = catalog.query(
        """
        SELECT l.decision, l.reason, l.decided_by, k.text = c.text AS same_text
        FROM latest_decisions l
        JOIN candidates c USING (candidate_id)
        JOIN candidates k ON k.candidate_id = l.duplicate_of
        """
    ).to_pylist()
    assert len(rows) == 2
    assert all(
        r
        == {
            "decision": "reject",
            "reason": "exact_duplicate",
            "decided_by": "rule",
            "same_text": True,
        }
        for r in rows
    )


def test_trusted_and_validation_copies_win_over_an_earlier_pool_copy(tmp_path, catalog):
    pool = write_jsonl(tmp_path / "pool.jsonl", [{"text": PROSE[0]}, {"text": PROSE[1]}])
    validation = write_jsonl(tmp_path / "validation.jsonl", [{"text": PROSE[0]}])
    ingest(catalog, str(pool), role="pool")
    report = ingest(catalog, str(validation), role="validation")
    assert report.duplicates == 1
    rows = catalog.query(
        """
        SELECT c.role, l.reason, k.role AS kept_role
        FROM latest_decisions l
        JOIN candidates c USING (candidate_id)
        JOIN candidates k ON k.candidate_id = l.duplicate_of
        """
    ).to_pylist()
    # the pool copy of a validation text is the one rejected: no leak into training
    assert rows == [{"role": "pool", "reason": "exact_duplicate", "kept_role": "validation"}]
    assert catalog.scalar("SELECT count(*) FROM candidates WHERE role = 'validation'") == 1
    again = ingest(catalog, str(validation), role="validation")
    assert again.added == again.duplicates == 0


def test_parquet_csv_txt_and_saved_dataset(tmp_path, catalog):
    pq.write_table(
        pa.table({"text": [PROSE[0], None, "ok " * 10], "n": [1, 2, 3]}), tmp_path / "a.parquet"
    )
    pq.write_table(pa.table({"text": [1, 2]}), tmp_path / "ints.parquet")
    with open(tmp_path / "b.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["doc_id", "text"])
        writer.writerow(["x1", PROSE[1]])
        writer.writerow(["x2", ""])
        writer.writerow(["x3", PROSE[2], "extra"])
    with open(tmp_path / "b.csv", "ab") as fh:
        fh.write(b'x4,"bad \xff byte"\n')
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "one.txt").write_text("First document about sorting lists in Python code.")
    (docs / "sub" / "two.txt").write_bytes(b"\xfe\xff broken")
    import datasets

    datasets.Dataset.from_dict(
        {"text": ["A saved dataset row with some words in it."]}
    ).save_to_disk(str(tmp_path / "saved"))

    a = ingest(catalog, str(tmp_path / "a.parquet"))
    assert (a.added, a.quarantined) == (2, 1)
    ints = ingest(catalog, str(tmp_path / "ints.parquet"))
    assert (ints.added, ints.quarantine_reasons["non_string_text"]) == (0, 2)
    b = ingest(catalog, str(tmp_path / "b.csv"), id_field="doc_id")
    assert b.added == 1
    assert dict(b.quarantine_reasons) == {"empty_text": 1, "malformed_csv": 1, "invalid_utf8": 1}
    t = ingest(catalog, str(docs))
    assert (t.added, t.quarantined) == (1, 1)
    assert catalog.scalar("SELECT source_id FROM candidates WHERE text LIKE 'First%'") == "one.txt"
    s = ingest(catalog, str(tmp_path / "saved"))
    assert s.added == 1


def test_hub_source_goes_through_load_dataset(tmp_path, catalog):
    # load_dataset takes a local folder the same way as a hub name: the real code path, offline
    repo = tmp_path / "hub-repo"
    repo.mkdir()
    write_jsonl(repo / "train.jsonl", [{"text": PROSE[0]}, {"text": PROSE[1]}])
    report = ingest(catalog, f"hf:{repo}@train")
    assert report.added == 2
    assert catalog.scalar("SELECT DISTINCT source FROM candidates") == f"hf:{repo}@train"
    with pytest.raises(SourceError, match="load_dataset failed"):
        ingest(catalog, "hf:datawall-test/does-not-exist:cfg@train")


def test_unknown_format_and_missing_file(tmp_path, catalog):
    (tmp_path / "x.xml").write_text("<a/>")
    with pytest.raises(SourceError, match="unknown format"):
        ingest(catalog, str(tmp_path / "x.xml"))
    with pytest.raises(SourceError, match="no such file"):
        ingest(catalog, str(tmp_path / "nope.jsonl"))
    with pytest.raises(ValueError, match="role must be one of"):
        ingest(catalog, str(tmp_path / "x.xml"), role="gold")


def test_killed_ingest_resumes_without_loss_or_duplicates(
    tmp_path, catalog, killed_in_second_batch
):
    rows = [
        {"text": f"Document number {i} talks about topic {i % 7} at some length."}
        for i in range(25)
    ]
    src = write_jsonl(tmp_path / "pool.jsonl", rows + ["broken"])
    cfg = IngestConfig(batch_rows=10)
    with killed_in_second_batch():
        ingest(catalog, str(src), cfg=cfg)
    assert catalog.scalar("SELECT count(*) FROM candidates") == 10
    ingest(catalog, str(src), cfg=cfg)
    assert catalog.scalar("SELECT count(*) FROM candidates") == 25
    assert catalog.scalar("SELECT count(DISTINCT candidate_id) FROM candidates") == 25
    assert catalog.scalar("SELECT count(*) FROM quarantine") == 1
    leftovers = list((catalog.lake).rglob("*.tmp"))
    assert leftovers == []
