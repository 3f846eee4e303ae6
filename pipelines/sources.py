"""Readers for every kind of source `datawall ingest` takes.

Each reader yields :class:`RawRow` objects: either the row's fields (a dict) or, when the
row cannot even be parsed (invalid UTF-8, a malformed JSON line), the reason it is bad.
Validation of the fields themselves (text present, a string, not too long) happens in
:mod:`pipelines.ingest`, the same way for every format.

Supported: JSONL (``.jsonl``, ``.ndjson``, ``.json`` with one object per line), Parquet,
CSV, a folder of ``.txt`` files (one document per file), a Hugging Face ``datasets``
dataset saved with ``save_to_disk`` (``DIR`` or ``DIR@SPLIT``), and
``hf:NAME[:CONFIG][@SPLIT]`` through ``datasets.load_dataset``.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

RAW_PREVIEW = 500  # characters of a bad row kept in quarantine
_BOM = b"\xef\xbb\xbf"  # UTF-8 byte-order mark


@dataclass
class RawRow:
    row: int  # 1-based: line for JSONL, record for CSV / Parquet / datasets, file index for .txt
    fields: dict[str, Any] | None = None
    reason: str | None = None  # set when the row could not be parsed
    detail: str | None = None
    raw: str | None = None
    default_id: str | None = None  # a natural id when the format has one (a .txt file's path)


@dataclass(frozen=True)
class Source:
    """A resolved source: a display name, a fingerprint of its content, and a reader."""

    name: str
    kind: str
    fingerprint: str
    location: str  # path or hub spec
    split: str | None = None
    config: str | None = None
    total_bytes: int | None = None

    def rows(self) -> Iterator[RawRow]:
        reader = _READERS[self.kind]
        return reader(self)


class SourceError(ValueError):
    """The source as a whole cannot be read (missing file, unknown format, ...)."""


def open_source(spec: str) -> Source:
    """Resolve a source spec to a :class:`Source`; raises :class:`SourceError` if unreadable."""
    if spec.startswith("hf:"):
        return _hub_source(spec)
    location, _, split = spec.partition("@")
    path = Path(location).expanduser()
    if not path.exists():
        raise SourceError(f"{spec}: no such file or folder")
    path = path.resolve()
    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():
            return Source(
                name=str(path),
                kind="hf_disk",
                fingerprint=_dir_fingerprint(path),
                location=str(path),
                split=split or None,
            )
        if not any(path.rglob("*.txt")):
            raise SourceError(f"{path}: a folder with no .txt files and no saved dataset")
        return Source(
            name=str(path),
            kind="txt_dir",
            fingerprint=_dir_fingerprint(path),
            location=str(path),
            total_bytes=sum(p.stat().st_size for p in path.rglob("*.txt")),
        )
    suffixes = [s.lower() for s in path.suffixes]
    kind = None
    if suffixes and suffixes[-1] in (".jsonl", ".ndjson", ".json"):
        kind = "jsonl"
    elif suffixes and suffixes[-1] == ".parquet":
        kind = "parquet"
    elif suffixes and suffixes[-1] in (".csv", ".tsv"):
        kind = "csv"
    if kind is None:
        raise SourceError(
            f"{path}: unknown format {path.suffix!r}; expected .jsonl/.ndjson/.json, .parquet, "
            ".csv/.tsv, a folder of .txt files, a saved `datasets` folder, or hf:NAME"
        )
    return Source(
        name=str(path),
        kind=kind,
        fingerprint=_file_fingerprint(path),
        location=str(path),
        total_bytes=path.stat().st_size,
    )


def _file_fingerprint(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def _dir_fingerprint(path: Path) -> str:
    digest = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file():
            st = p.stat()
            digest.update(f"{p.relative_to(path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _preview(data: bytes | str) -> str:
    if isinstance(data, bytes):
        data = data.decode("utf-8", errors="backslashreplace")
    return data[:RAW_PREVIEW]


# -- readers ------------------------------------------------------------------------------
def _read_jsonl(src: Source) -> Iterator[RawRow]:
    with open(src.location, "rb") as fh:
        for lineno, line in enumerate(fh, start=1):
            if lineno == 1:
                line = line.removeprefix(_BOM)  # editors on Windows start files with one
            if not line.strip():
                continue
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield RawRow(lineno, reason="invalid_utf8", detail=str(exc), raw=_preview(line))
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                yield RawRow(lineno, reason="malformed_json", detail=exc.msg, raw=_preview(text))
                continue
            if not isinstance(obj, dict):
                yield RawRow(
                    lineno,
                    reason="not_an_object",
                    detail=f"expected a JSON object, got {type(obj).__name__}",
                    raw=_preview(text),
                )
                continue
            yield RawRow(lineno, fields=obj, raw=text)


def _read_parquet(src: Source) -> Iterator[RawRow]:
    """Rows of a Parquet file. A file pyarrow cannot decode (truncated, a corrupt page) is
    unreadable as a whole: Parquet has no row boundaries to resume at, so it raises
    :class:`SourceError` naming the file and the row it reached; batches before it stay
    ingested, and a rerun on the repaired file resumes."""
    try:
        pf = pq.ParquetFile(src.location)
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise SourceError(f"{src.location}: not a readable Parquet file: {exc}") from exc
    row = 0
    batches = pf.iter_batches(batch_size=8192)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except Exception as exc:  # a corrupt page or column chunk, found while reading
            raise SourceError(
                f"{src.location}: corrupt Parquet data after row {row}: {exc}"
            ) from exc
        for record in batch.to_pylist():
            row += 1
            yield RawRow(row, fields=record)


def _read_csv(src: Source) -> Iterator[RawRow]:
    delimiter = "\t" if src.location.lower().endswith(".tsv") else ","
    # surrogateescape keeps undecodable bytes visible, so one bad row does not stop the file;
    # utf-8-sig drops a byte-order mark, which would otherwise rename the first column.
    # strict: a stray or unterminated quote (a truncated file) is a malformed row, not a
    # silently merged or cut text; the reader goes on at the next record.
    with open(src.location, encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
        reader = csv.DictReader(fh, delimiter=delimiter, strict=True)
        row = 0
        while True:
            try:
                record = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                row += 1
                yield RawRow(row, reason="malformed_csv", detail=str(exc))
                continue
            row += 1
            bad = [k for k, v in record.items() if isinstance(v, str) and _has_surrogates(v)]
            if bad:
                raw = json.dumps(record, ensure_ascii=False, default=str)
                yield RawRow(
                    row,
                    reason="invalid_utf8",
                    detail=f"undecodable bytes in column(s) {bad}",
                    raw=_preview(raw.encode("utf-8", "surrogateescape")),
                )
                continue
            if None in record:  # more fields than the header
                extra = record.pop(None)
                yield RawRow(
                    row,
                    reason="malformed_csv",
                    detail=f"{len(extra)} field(s) more than the header has",
                    raw=_preview(str(extra)),
                )
                continue
            yield RawRow(row, fields=dict(record))


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _read_txt_dir(src: Source) -> Iterator[RawRow]:
    root = Path(src.location)
    for index, path in enumerate(sorted(root.rglob("*.txt")), start=1):
        rel = str(path.relative_to(root))
        data = path.read_bytes().removeprefix(_BOM)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield RawRow(index, reason="invalid_utf8", detail=f"{rel}: {exc}", raw=_preview(data))
            continue
        yield RawRow(index, fields={"text": text, "path": rel}, default_id=rel)


def _iter_dataset(ds: Any) -> Iterator[RawRow]:
    row = 0
    for batch in ds.iter(batch_size=1024):
        names = list(batch)
        for values in zip(*(batch[n] for n in names), strict=True):
            row += 1
            yield RawRow(row, fields=dict(zip(names, values, strict=True)))


def _pick_split(ds: Any, split: str | None, where: str) -> Any:
    from datasets import DatasetDict

    if not isinstance(ds, DatasetDict):
        if split:
            raise SourceError(f"{where}: a single dataset has no split {split!r}")
        return ds
    chosen = split or ("train" if "train" in ds else None)
    if chosen is None or chosen not in ds:
        raise SourceError(f"{where}: choose a split with @SPLIT; splits: {', '.join(ds)}")
    return ds[chosen]


def _read_hf_disk(src: Source) -> Iterator[RawRow]:
    from datasets import load_from_disk

    ds = _pick_split(load_from_disk(src.location), src.split, src.location)
    yield from _iter_dataset(ds)


def _hub_source(spec: str) -> Source:
    body = spec[3:]
    body, _, split = body.partition("@")
    name, _, config = body.partition(":")
    if not name:
        raise SourceError(f"{spec}: expected hf:NAME[:CONFIG][@SPLIT]")
    return Source(
        name=spec,
        kind="hf_hub",
        fingerprint=hashlib.sha256(spec.encode()).hexdigest()[:16],
        location=name,
        split=split or "train",
        config=config or None,
    )


def _read_hf_hub(src: Source) -> Iterator[RawRow]:
    from datasets import load_dataset

    try:
        ds = load_dataset(src.location, src.config, split=src.split)
    except Exception as exc:  # offline, missing dataset, bad config: all reported the same way
        raise SourceError(f"{src.name}: datasets.load_dataset failed: {exc}") from exc
    yield from _iter_dataset(ds)


_READERS = {
    "jsonl": _read_jsonl,
    "parquet": _read_parquet,
    "csv": _read_csv,
    "txt_dir": _read_txt_dir,
    "hf_disk": _read_hf_disk,
    "hf_hub": _read_hf_hub,
}

__all__ = ["RawRow", "Source", "SourceError", "open_source"]
