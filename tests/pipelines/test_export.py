"""Export: every format read back with its own reader, provenance, determinism, --where."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.catalog import Catalog
from pipelines.export import ExportError, export

pytestmark = pytest.mark.slow
FORMATS = ("parquet", "jsonl", "hf", "tokens")


def expected(catalog: Catalog) -> dict[str, dict]:
    rows = catalog.query(
        "SELECT a.candidate_id, a.text, a.corrected, l.decided_by FROM accepted_texts a "
        "JOIN latest_decisions l USING (candidate_id)"
    ).to_pylist()
    return {r["candidate_id"]: r for r in rows}


def read_back(dest: Path, fmt: str) -> dict[str, str]:
    """candidate_id → text, through each format's own reader."""
    if fmt == "parquet":
        table = pa.concat_tables(pq.read_table(p) for p in sorted(dest.glob("part-*.parquet")))
        return dict(
            zip(*(table.column(c).to_pylist() for c in ("candidate_id", "text")), strict=True)
        )
    if fmt == "jsonl":
        rows = [json.loads(line) for p in sorted(dest.glob("part-*.jsonl")) for line in p.open()]
        return {r["candidate_id"]: r["text"] for r in rows}
    if fmt == "hf":
        ds = datasets.load_from_disk(str(dest))
        return dict(zip(ds["candidate_id"], ds["text"], strict=True))
    tok = json.loads((dest / "tokenizer.json").read_text())
    shards = [np.memmap(dest / name, dtype=tok["dtype"], mode="r") for name in tok["shards"]]
    out = {}
    for row in pq.read_table(dest / "index.parquet").to_pylist():
        ids = shards[row["shard"]][row["offset"] : row["offset"] + row["length"]]
        assert ids[0] == tok["bos_id"] and ids[-1] == tok["eos_id"]
        out[row["candidate_id"]] = bytes(ids[1:-1].astype(np.uint8)).decode("utf-8")
    return out


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_reads_back_equal_to_the_catalog(curated_home, tmp_path, fmt):
    catalog = Catalog(curated_home)
    want = expected(catalog)
    assert any(r["decided_by"] == "expert" for r in want.values())
    assert any(r["decided_by"] == "model" for r in want.values())
    report = export(catalog, tmp_path / "out", fmt, shard_bytes=4000)
    got = read_back(tmp_path / "out", fmt)
    assert got == {cid: r["text"] for cid, r in want.items()}
    assert report.rows == len(want)
    # small shards: the set really is split, and the card sits beside it
    if fmt != "hf":
        assert len([f for f in report.files if f.suffix in (".parquet", ".jsonl", ".bin")]) > 2
    card = (tmp_path / "out" / "README.md").read_text()
    n_expert = sum(r["decided_by"] == "expert" for r in want.values())
    assert f"expert share: {n_expert}/{len(want)}" in card and "| round |" in card
    assert "| pool.jsonl | reject | rule |" in card


def test_provenance_columns_and_expert_corrections(curated_home, tmp_path):
    catalog = Catalog(curated_home)
    export(catalog, tmp_path / "out", "parquet")
    rows = pq.read_table(tmp_path / "out" / "part-00000.parquet").to_pylist()
    for col in ("source", "source_id", "round", "decided_by", "reason", "model_id", "quality"):
        assert col in rows[0]
    corrected = [r for r in rows if r["corrected"]]
    assert [r["text"] for r in corrected] == ["An expert rewrote this accepted text."]
    assert corrected[0]["decided_by"] == "expert" and corrected[0]["reason"] == "expert_accept"


@pytest.mark.parametrize("fmt", FORMATS)
def test_exports_are_byte_identical_for_the_same_catalog(curated_home, tmp_path, fmt):
    catalog = Catalog(curated_home)
    export(catalog, tmp_path / "a", fmt, shard_bytes=4000)
    export(catalog, tmp_path / "b", fmt, shard_bytes=4000)
    files_a = sorted(
        p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file()
    )
    files_b = sorted(
        p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file()
    )
    assert files_a == files_b
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_where_and_round_filter(curated_home, tmp_path):
    catalog = Catalog(curated_home)
    n_model = catalog.scalar(
        "SELECT count(*) FROM accepted_texts WHERE decided_by = 'model' AND round = 1"
    )
    report = export(catalog, tmp_path / "w", "jsonl", where="decided_by = 'model'", round_=1)
    assert report.rows == n_model > 0
    assert export(catalog, tmp_path / "r2", "jsonl", round_=2).rows == catalog.scalar(
        "SELECT count(*) FROM accepted_texts WHERE round = 2"
    )


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("1=1; DROP TABLE candidates", "holds ';'"),
        ("true) UNION ALL (SELECT * FROM export_rows", "predicate only"),
        ("nosuchcolumn > 1", "nosuchcolumn"),
        ("   ", "empty"),
    ],
)
def test_where_that_is_not_a_predicate_is_refused(curated_home, tmp_path, where, message):
    with pytest.raises(ExportError, match=message):
        export(Catalog(curated_home), tmp_path / "x", "parquet", where=where)


def test_destination_rules(curated_home, tmp_path):
    catalog = Catalog(curated_home)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("keep me")
    with pytest.raises(ExportError, match="not empty"):
        export(catalog, tmp_path / "busy", "parquet")
    assert (tmp_path / "busy" / "mine.txt").read_text() == "keep me"
    export(catalog, tmp_path / "again", "jsonl")
    export(catalog, tmp_path / "again", "parquet")  # an earlier export is replaced
    assert not list((tmp_path / "again").glob("*.jsonl"))
    with pytest.raises(ExportError, match="--format"):
        export(catalog, tmp_path / "y", "csv")


def test_cli_export_reports_throughput_and_refuses_bad_where(curated_home, tmp_path):
    from typer.testing import CliRunner

    from pipelines.cli import app

    runner = CliRunner()
    ok = runner.invoke(
        app, ["export", str(tmp_path / "o"), "--format", "tokens", "--home", str(curated_home)]
    )
    assert ok.exit_code == 0 and "rows/s" in ok.output
    assert (tmp_path / "o" / "tokens-00000.bin").exists()
    bad = runner.invoke(
        app,
        [
            "export",
            str(tmp_path / "p"),
            "--where",
            "1=1; DELETE FROM x",
            "--home",
            str(curated_home),
        ],
    )
    assert bad.exit_code == 2 and "second statement" in bad.output
    hub = runner.invoke(
        app, ["export", str(tmp_path / "q"), "--push-to-hub", "me/x", "--home", str(curated_home)]
    )
    assert hub.exit_code == 2 and "--format hf" in hub.output


def test_pairs_export_with_their_prompt_and_mask_offset(tmp_path):
    """An accepted pair leaves with its prompt (parquet/jsonl/hf) and, in the tokens layout,
    as the training layout with the prompt's token count in the index."""
    from pipelines.catalog import SCHEMAS, now
    from trainer.data import render_prefix

    catalog = Catalog(tmp_path / "home").init()
    stamp = now()
    cands = [
        {"candidate_id": "p1", "content_hash": "h1", "source": "qa.jsonl", "row": 0,
         "role": "pool", "text": "Return the absolute value.", "n_chars": 26, "round": 1,
         "ingested_at": stamp, "kind": "pair", "prompt": "What does abs do?"},
        {"candidate_id": "t1", "content_hash": "h2", "source": "web.jsonl", "row": 0,
         "role": "pool", "text": "A plain accepted text.", "n_chars": 22, "round": 1,
         "ingested_at": stamp, "kind": "text", "prompt": None},
    ]  # fmt: skip
    catalog.write("candidates", pa.Table.from_pylist(cands, SCHEMAS["candidates"]), "c")
    decisions = [
        {"candidate_id": cid, "round": 1, "decision": "accept", "reason": "above_bar",
         "decided_by": "model", "decided_at": stamp}
        for cid in ("p1", "t1")
    ]  # fmt: skip
    catalog.write("decisions", pa.Table.from_pylist(decisions, SCHEMAS["decisions"]), "d")

    export(catalog, tmp_path / "jsonl", "jsonl")
    rows = {
        r["candidate_id"]: r
        for p in (tmp_path / "jsonl").glob("part-*.jsonl")
        for r in map(json.loads, p.open())
    }
    assert (rows["p1"]["kind"], rows["p1"]["prompt"]) == ("pair", "What does abs do?")
    assert (rows["t1"]["kind"], rows["t1"]["prompt"]) == ("text", None)

    export(catalog, tmp_path / "tokens", "tokens")
    tok = json.loads((tmp_path / "tokens" / "tokenizer.json").read_text())
    shards = [
        np.memmap(tmp_path / "tokens" / n, dtype=tok["dtype"], mode="r") for n in tok["shards"]
    ]
    index = {
        r["candidate_id"]: r
        for r in pq.read_table(tmp_path / "tokens" / "index.parquet").to_pylist()
    }
    pair = index["p1"]
    ids = shards[pair["shard"]][pair["offset"] : pair["offset"] + pair["length"]]
    head = bytes(ids[1 : pair["prompt_tokens"]].astype(np.uint8)).decode()
    body = bytes(ids[pair["prompt_tokens"] : -1].astype(np.uint8)).decode()
    assert (head, body) == (render_prefix("What does abs do?"), "Return the absolute value.")
    assert index["t1"]["prompt_tokens"] == 0
