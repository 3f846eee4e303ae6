"""Export the curated set for any training stack, with its provenance and a dataset card.

Formats (all deterministic: the same catalog state gives byte-identical files):

- ``parquet`` / ``jsonl``: one row per accepted candidate (the expert-corrected text where
  an expert fixed it), with provenance columns, sharded by size (``part-NNNNN.*``); a
  prompt/response pair has ``kind = "pair"``, its ``prompt``, and the response in ``text``;
- ``hf``: a ``datasets.Dataset`` written with ``save_to_disk`` (fingerprint = content hash);
  ``push_to_hub`` sends the same dataset to the Hugging Face Hub where it is reachable;
- ``tokens``: the nanoGPT layout — flat ``tokens-NNNNN.bin`` shards of token ids that a
  trainer can ``numpy.memmap``, an ``index.parquet`` with each document's shard, offset and
  length, and ``tokenizer.json`` (byte-level: BOS + UTF-8 bytes + EOS per document; a pair
  is BOS + ``trainer.data.render_prefix(prompt)`` + response + EOS, the training layout, and
  the index's ``prompt_tokens`` says how many leading tokens to mask).

Every export writes a ``README.md`` dataset card beside the data. Files are written to a
temporary name and renamed; the destination must be empty or hold an earlier export.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.catalog import Catalog, load_sql
from trainer.data import render_prefix
from trainer.tokenizer import ByteTokenizer

FORMATS = ("parquet", "jsonl", "hf", "tokens")
_MARKER = ".datawall-export"


class ExportError(ValueError):
    """Bad export arguments: an unknown format, an unsafe --where, a busy destination."""


@dataclass(frozen=True)
class ExportReport:
    dest: Path
    format: str
    rows: int
    files: list[Path]
    bytes_written: int


def validate_where(con: duckdb.DuckDBPyConnection, where: str) -> str:
    """Accept ``where`` only if it is one boolean predicate over the export's columns.

    The predicate is parsed inside ``SELECT * FROM export_rows WHERE (...)`` by DuckDB's own
    parser; anything that is not exactly that one plain SELECT (a second statement, a
    UNION that escapes the parentheses, a LIMIT, a subquery on another table is fine only as
    part of the predicate) is refused with a clear message.
    """
    if not where.strip():
        raise ExportError("--where is empty")
    query = f"SELECT * FROM export_rows WHERE ({where})"
    try:
        statements = con.extract_statements(query)
    except duckdb.Error as exc:
        if ";" in where:
            raise ExportError(
                "--where must be one predicate; it holds ';' (a second statement?)"
            ) from None
        raise ExportError(f"--where is not valid SQL: {exc}") from None
    if len(statements) != 1:
        raise ExportError(f"--where must be one predicate, not {len(statements)} statements")
    tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [query]).fetchall()[0][0])
    if tree.get("error"):
        raise ExportError(f"--where is not valid SQL: {tree.get('error_message')}")
    node = tree["statements"][0]["node"]
    plain = (
        node.get("type") == "SELECT_NODE"
        and not node.get("modifiers")
        and node.get("from_table", {}).get("table_name") == "export_rows"
        and [c.get("class") for c in node.get("select_list", [])] == ["STAR"]
        and not node.get("group_expressions")
        and node.get("having") is None
    )
    if not plain:
        raise ExportError("--where must be a predicate only (it changed the query's shape)")
    return query


def export_rows(
    catalog: Catalog, *, round_: int | None = None, where: str | None = None
) -> pa.Table:
    """The accepted rows with provenance, in candidate_id order, filtered as asked."""
    con = catalog.connect()
    try:
        con.execute("CREATE TEMP VIEW export_rows AS " + load_sql("export_rows"))
        query = "SELECT * FROM export_rows"
        if where is not None:
            query = validate_where(con, where)
        params: list[Any] = []
        if round_ is not None:
            query = f"SELECT * FROM ({query}) WHERE round = ?"
            params.append(round_)
        try:
            return con.sql(query + " ORDER BY candidate_id", params=params or None).to_arrow_table()
        except duckdb.Error as exc:
            raise ExportError(f"--where failed: {exc}") from None
    finally:
        con.close()


def export(
    catalog: Catalog,
    dest: Path,
    fmt: str = "parquet",
    *,
    round_: int | None = None,
    where: str | None = None,
    shard_bytes: int = 256 << 20,
    push_to_hub: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> ExportReport:
    """Write the curated set to ``dest`` in ``fmt``, with a dataset card."""
    if fmt not in FORMATS:
        raise ExportError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if shard_bytes < 1:
        raise ExportError("shard size must be positive")
    dest = Path(dest)
    _prepare(dest)
    rows = export_rows(catalog, round_=round_, where=where)
    writer = {
        "parquet": _write_parquet,
        "jsonl": _write_jsonl,
        "hf": _write_hf,
        "tokens": _write_tokens,
    }
    files = writer[fmt](rows, dest, shard_bytes)
    if progress:
        progress(rows.num_rows)
    card = dest / "README.md"
    _atomic_bytes(card, dataset_card(catalog, rows, fmt, round_, where).encode("utf-8"))
    files.append(card)
    if fmt == "hf" and push_to_hub:
        _dataset(rows).push_to_hub(push_to_hub)
    total = sum(f.stat().st_size for f in files)
    return ExportReport(dest, fmt, rows.num_rows, files, total)


# -- writers ------------------------------------------------------------------------------
def _shards(rows: pa.Table, shard_bytes: int) -> list[pa.Table]:
    """Cut ``rows`` into consecutive slices of about ``shard_bytes`` of text each."""
    if rows.num_rows == 0:
        return [rows]
    sizes = np.asarray([len(t.encode("utf-8")) for t in rows.column("text").to_pylist()])
    cuts, start, acc = [], 0, 0
    for i, size in enumerate(sizes):
        if acc and acc + size > shard_bytes:
            cuts.append((start, i))
            start, acc = i, 0
        acc += size
    cuts.append((start, len(sizes)))
    return [rows.slice(a, b - a) for a, b in cuts]


def _write_parquet(rows: pa.Table, dest: Path, shard_bytes: int) -> list[Path]:
    files = []
    for i, part in enumerate(_shards(rows, shard_bytes)):
        path = dest / f"part-{i:05d}.parquet"
        tmp = _tmp(path)
        pq.write_table(part, tmp, compression="zstd")
        os.replace(tmp, path)
        files.append(path)
    return files


def _write_jsonl(rows: pa.Table, dest: Path, shard_bytes: int) -> list[Path]:
    files = []
    for i, part in enumerate(_shards(rows, shard_bytes)):
        lines = (
            json.dumps(r, ensure_ascii=False, sort_keys=True, default=str) + "\n"
            for r in part.to_pylist()
        )
        path = dest / f"part-{i:05d}.jsonl"
        _atomic_bytes(path, "".join(lines).encode("utf-8"))
        files.append(path)
    return files


def _dataset(rows: pa.Table):
    from datasets import Dataset
    from datasets.table import InMemoryTable

    # a content fingerprint instead of a random one, so save_to_disk is deterministic
    fingerprint = hashlib.sha256(
        "\n".join(rows.column("candidate_id").to_pylist()).encode()
        + "\x00".join(rows.column("text").to_pylist()).encode()
    ).hexdigest()[:16]
    return Dataset(InMemoryTable(rows), fingerprint=fingerprint)


def _write_hf(rows: pa.Table, dest: Path, shard_bytes: int) -> list[Path]:
    import datasets

    ds = _dataset(rows)
    staging = dest / ".hf-staging"
    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # one line of ours instead of three bars of theirs
    try:
        ds.save_to_disk(str(staging), max_shard_size=shard_bytes)
    finally:
        if was_enabled:
            datasets.enable_progress_bars()
    files = []
    for path in sorted(staging.iterdir()):
        target = dest / path.name
        os.replace(path, target)
        files.append(target)
    staging.rmdir()
    return files


def _write_tokens(rows: pa.Table, dest: Path, shard_bytes: int) -> list[Path]:
    tok = ByteTokenizer()
    dtype = np.uint8 if tok.vocab_size <= 256 else np.uint16
    ids = rows.column("candidate_id").to_pylist()
    shards: list[list[np.ndarray]] = [[]]
    index = {"candidate_id": [], "shard": [], "offset": [], "length": [], "prompt_tokens": []}
    offset = 0
    per_shard = max(1, shard_bytes // np.dtype(dtype).itemsize)
    prompts = rows.column("prompt").to_pylist()
    for cid, text, prompt in zip(ids, rows.column("text").to_pylist(), prompts, strict=True):
        if prompt is None:
            doc = tok.encode(text, bos=True, eos=True).astype(dtype)
            n_prompt = 0
        else:  # a pair: the training layout, BOS + framed prompt + response + EOS
            head = tok.encode(render_prefix(prompt), bos=True, eos=False)
            body = tok.encode(text, bos=False, eos=True)
            doc = np.concatenate([head, body]).astype(dtype)
            n_prompt = len(head)
        index["prompt_tokens"].append(n_prompt)
        if offset and offset + len(doc) > per_shard:
            shards.append([])
            offset = 0
        index["candidate_id"].append(cid)
        index["shard"].append(len(shards) - 1)
        index["offset"].append(offset)
        index["length"].append(len(doc))
        shards[-1].append(doc)
        offset += len(doc)
    files = []
    for i, docs in enumerate(shards):
        path = dest / f"tokens-{i:05d}.bin"
        data = np.concatenate(docs) if docs else np.zeros(0, dtype)
        _atomic_bytes(path, data.tobytes())
        files.append(path)
    index_path = dest / "index.parquet"
    tmp = _tmp(index_path)
    pq.write_table(
        pa.table(
            {
                "candidate_id": pa.array(index["candidate_id"], pa.string()),
                "shard": pa.array(index["shard"], pa.int32()),
                "offset": pa.array(index["offset"], pa.int64()),
                "length": pa.array(index["length"], pa.int64()),
                # leading tokens of a pair's document that are its prompt (BOS included):
                # the targets to mask for response-only training; 0 for a text
                "prompt_tokens": pa.array(index["prompt_tokens"], pa.int64()),
            }
        ),
        tmp,
    )
    os.replace(tmp, index_path)
    tokenizer = {
        "type": "byte",
        "vocab_size": tok.vocab_size,
        "bos_id": tok.BOS,
        "eos_id": tok.EOS,
        "dtype": np.dtype(dtype).name,
        "document": "BOS + UTF-8 bytes + EOS",
        "shards": [f.name for f in files],
    }
    tok_path = dest / "tokenizer.json"
    _atomic_bytes(tok_path, (json.dumps(tokenizer, indent=2, sort_keys=True) + "\n").encode())
    return [*files, index_path, tok_path]


# -- the dataset card ---------------------------------------------------------------------
def dataset_card(
    catalog: Catalog, rows: pa.Table, fmt: str, round_: int | None, where: str | None
) -> str:
    """README.md for an export: what is in it, where it came from, how it was chosen."""
    lines = ["# datawall export", ""]
    lines += [
        f"- format: `{fmt}`; rows: {rows.num_rows}",
        f"- round filter: {round_ if round_ is not None else 'all rounds'}",
        f"- where: `{where}`" if where else "- where: none",
        "",
        "## Exported rows per source and decider",
        "",
        "| source | decided_by | rows |",
        "|---|---|---|",
    ]
    counts: dict[tuple[str, str], int] = {}
    for src, by in zip(
        rows.column("source").to_pylist(), rows.column("decided_by").to_pylist(), strict=True
    ):
        counts[(src, by)] = counts.get((src, by), 0) + 1
    lines += [f"| {Path(s).name} | {b} | {n} |" for (s, b), n in sorted(counts.items())]
    lines += [
        "",
        "## The whole pool it was chosen from (latest decision per candidate)",
        "",
        "| source | decision | decided_by | candidates |",
        "|---|---|---|---|",
    ]
    for r in catalog.query(load_sql("export_pool_counts")).to_pylist():
        lines.append(
            f"| {Path(r['source']).name} | {r['decision']} | {r['decided_by']} | {r['n']} |"
        )
    n_expert = sum(n for (_, b), n in counts.items() if b == "expert")
    corrected = sum(rows.column("corrected").to_pylist()) if rows.num_rows else 0
    lines += [
        "",
        "## Experts",
        "",
        f"- expert share: {n_expert}/{rows.num_rows}"
        + (f" ({n_expert / rows.num_rows:.1%})" if rows.num_rows else ""),
        f"- expert-corrected texts: {corrected}",
    ]
    agreement = catalog.scalar(load_sql("export_agreement"))
    lines.append(
        f"- mean annotator agreement: {agreement:.3f}"
        if agreement is not None
        else "- mean annotator agreement: no annotations"
    )
    lines += [
        "",
        "## Rounds, bars and models",
        "",
        "| round | scored by | bar | model trained | val bpb |",
        "|---|---|---|---|---|",
    ]
    for r in catalog.query(
        "SELECT round, model_id, bar, new_model_id, val_bpb FROM rounds ORDER BY round"
    ).to_pylist():
        lines.append(
            f"| {r['round']} | {r['model_id']} | {r['bar']:.4f} | {r['new_model_id']} | "
            f"{r['val_bpb']:.4f} |"
        )
    last = catalog.query("SELECT settings FROM rounds ORDER BY round DESC LIMIT 1").to_pylist()
    if last:
        settings = json.loads(last[0]["settings"])
        lines += [
            "",
            "## Thresholds (last round)",
            "",
            "```json",
            json.dumps(
                {k: settings[k] for k in ("route", "heuristics") if k in settings},
                indent=2,
                sort_keys=True,
            ),
            "```",
        ]
    lines += [
        "",
        "## Columns",
        "",
        "`candidate_id`, `text` (expert-corrected where `corrected`), `source`, `source_id`, "
        "`round` and `decided_by`/`reason` of the accept decision, `model_id` that scored it, "
        "`bar`, `quality`, `loss_model`/`loss_ref` (bits per byte), `learnability`.",
        "",
    ]
    return "\n".join(lines)


# -- files --------------------------------------------------------------------------------
def _prepare(dest: Path) -> None:
    """An empty folder or an earlier export (which is replaced); anything else is refused."""
    if dest.exists():
        if not dest.is_dir():
            raise ExportError(f"{dest}: exists and is not a folder")
        entries = [p for p in dest.iterdir()]
        if entries and not (dest / _MARKER).exists():
            raise ExportError(f"{dest}: not empty and not a datawall export; choose another DEST")
        for p in entries:
            if p.is_dir():
                shutil.rmtree(p)
            elif p.name != _MARKER:
                p.unlink()
    dest.mkdir(parents=True, exist_ok=True)
    (dest / _MARKER).touch()


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _atomic_bytes(path: Path, data: bytes) -> None:
    tmp = _tmp(path)
    tmp.write_bytes(data)
    os.replace(tmp, path)
