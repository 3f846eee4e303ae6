"""Ingest: read a source, normalise, give stable ids, drop exact duplicates, quarantine bad rows.

1. Read rows with :mod:`pipelines.sources`; rows that cannot be parsed go to quarantine.
2. Validate the text field (present, a string, no NUL byte, non-empty, not too long).
3. Normalise: Unicode NFC, ``\\r\\n`` → ``\\n``, runs of spaces/tabs → one space, spaces at
   line ends and starts dropped, 3+ newlines → 2, ends stripped.
4. ``content_hash`` = SHA-256 of the normalised text; ``candidate_id`` = hash of (source,
   the user's id or the occurrence number of that content in the source, content_hash),
   so re-reading the same source yields the same ids.
5. Exact duplicates (same content_hash as a candidate already kept, in any role) are kept
   as candidates and get a ``reject / exact_duplicate`` decision pointing to the kept copy.
   The first copy is kept, except that a trusted or validation copy always wins over a
   pool copy: the pool copy is then rejected as the duplicate (a pool text equal to a
   validation text would otherwise leak the validation set into training).

Work is done in batches; each batch's candidates file is its completion marker (written
last, after its quarantine and decision files), so a killed ingest resumes where it stopped
and re-ingesting an unchanged source adds nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import pyarrow as pa

from pipelines.catalog import SCHEMAS, Catalog, now
from pipelines.config import IngestConfig
from pipelines.sources import RawRow, Source, open_source

ROLES = ("pool", "trusted", "validation")

_SPACES = re.compile(r"[ \t\f\v\u00a0]+")
_LINE_EDGES = re.compile(r" *\n *")
_NEWLINES = re.compile(r"\n{3,}")


def normalise(text: str) -> str:
    """NFC and whitespace normalisation (step 3 above)."""
    text = unicodedata.normalize("NFC", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _SPACES.sub(" ", text)
    text = _LINE_EDGES.sub("\n", text)
    text = _NEWLINES.sub("\n\n", text)
    return text.strip()


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def candidate_id(source: str, key: str, chash: str) -> str:
    return hashlib.sha256(f"{source}\x1f{key}\x1f{chash}".encode()).hexdigest()[:32]


@dataclass
class IngestReport:
    source: str
    role: str
    rows_read: int = 0
    added: int = 0
    duplicates: int = 0
    quarantined: int = 0
    already_present: int = 0
    batches_skipped: int = 0
    quarantine_reasons: Counter = field(default_factory=Counter)

    def summary(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "role": self.role,
            "rows_read": self.rows_read,
            "added": self.added,
            "exact_duplicates": self.duplicates,
            "quarantined": self.quarantined,
            "already_present": self.already_present,
            "quarantine_reasons": dict(self.quarantine_reasons),
        }


@dataclass
class _Bad:
    row: int
    reason: str
    detail: str
    raw: str | None


@dataclass
class _Good:
    row: int
    text: str
    source_id: str
    meta: str


def validate_row(
    raw: RawRow, text_field: str, id_field: str | None, cfg: IngestConfig
) -> _Good | _Bad:
    """Step 2: turn one parsed row into a normalised text, or a quarantine reason."""
    if raw.reason is not None:
        return _Bad(raw.row, raw.reason, raw.detail or "", raw.raw)
    fields = raw.fields or {}
    preview = (
        raw.raw if raw.raw is not None else json.dumps(fields, default=str, ensure_ascii=False)
    )
    preview = preview[:500]
    if text_field not in fields:
        return _Bad(raw.row, "missing_text", f"no field {text_field!r}", preview)
    value = fields[text_field]
    if value is None:
        return _Bad(raw.row, "missing_text", f"field {text_field!r} is null", preview)
    if not isinstance(value, str):
        return _Bad(
            raw.row, "non_string_text", f"field {text_field!r} is {type(value).__name__}", preview
        )
    if "\x00" in value:
        return _Bad(raw.row, "nul_byte", f"field {text_field!r} contains a NUL byte", preview)
    if len(value) > cfg.max_chars:
        return _Bad(
            raw.row, "too_long", f"{len(value)} characters > max_chars={cfg.max_chars}", preview
        )
    text = normalise(value)
    if len(text) < max(cfg.min_chars, 1):
        return _Bad(
            raw.row, "empty_text", f"field {text_field!r} is empty after normalisation", preview
        )
    if id_field is not None:
        if fields.get(id_field) in (None, ""):
            return _Bad(raw.row, "missing_id", f"no value in id field {id_field!r}", preview)
        source_id = str(fields[id_field])
    else:
        source_id = raw.default_id or str(raw.row)
    meta = {k: v for k, v in fields.items() if k not in (text_field, id_field)}
    return _Good(
        raw.row, text, source_id, json.dumps(meta, default=str, ensure_ascii=False, sort_keys=True)
    )


def _batched(it: Iterable[RawRow], n: int) -> Iterator[list[RawRow]]:
    it = iter(it)
    while batch := list(islice(it, n)):
        yield batch


def ingest(
    catalog: Catalog,
    spec: str,
    *,
    role: str = "pool",
    text_field: str = "text",
    id_field: str | None = None,
    cfg: IngestConfig | None = None,
    round_: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> IngestReport:
    """Ingest one source into the catalog. Caller holds the workspace writer lock.

    Rows are stamped with ``round_`` (default: the workspace's current round).
    """
    cfg = cfg or IngestConfig()
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    source = open_source(spec)
    catalog.init()
    round_ = catalog.current_round() if round_ is None else round_
    report = IngestReport(source=source.name, role=role)
    ingest_id = hashlib.sha256(
        f"{source.name}\x1f{source.fingerprint}\x1f{role}\x1f{text_field}\x1f{id_field}".encode()
    ).hexdigest()[:16]

    kept = _kept_hashes(catalog)
    existing_ids = set(catalog.query("SELECT candidate_id FROM candidates").column(0).to_pylist())
    seen_bad = {
        (r["row"], r["reason"])
        for r in catalog.query(
            "SELECT row, reason FROM quarantine WHERE source = ?", [source.name]
        ).to_pylist()
    }
    occurrences: Counter = Counter()

    for index, batch in enumerate(_batched(source.rows(), cfg.batch_rows)):
        key = f"{ingest_id}-{index:05d}"
        report.rows_read += len(batch)
        if catalog.exists("candidates", key):
            report.batches_skipped += 1
            # replay the occurrence counts so later batches get the same ids as before
            for raw in batch:
                result = validate_row(raw, text_field, id_field, cfg)
                if isinstance(result, _Good):
                    occurrences[content_hash(result.text)] += 1
            report.already_present += len(batch)
            if progress:
                progress(len(batch))
            continue
        _ingest_batch(
            catalog,
            source,
            batch,
            key,
            role,
            text_field,
            id_field,
            cfg,
            round_,
            kept,
            existing_ids,
            seen_bad,
            occurrences,
            report,
        )
        if progress:
            progress(len(batch))
    return report


def _kept_hashes(catalog: Catalog) -> dict[str, tuple[str, str]]:
    """content_hash → (candidate_id, role) of the kept copy, for every stored candidate."""
    rows = catalog.query(
        """
        SELECT c.content_hash, min_by(c.candidate_id, c.ingested_at) AS candidate_id,
               min_by(c.role, c.ingested_at) AS role
        FROM candidates c
        WHERE c.candidate_id NOT IN (
            SELECT candidate_id FROM decisions WHERE reason = 'exact_duplicate'
        )
        GROUP BY c.content_hash
        """
    )
    return {
        h: (cid, role)
        for h, cid, role in zip(*(rows.column(i).to_pylist() for i in range(3)), strict=True)
    }


def _ingest_batch(
    catalog: Catalog,
    source: Source,
    batch: list[RawRow],
    key: str,
    role: str,
    text_field: str,
    id_field: str | None,
    cfg: IngestConfig,
    round_: int,
    kept: dict[str, tuple[str, str]],
    existing_ids: set[str],
    seen_bad: set[tuple[int, str]],
    occurrences: Counter,
    report: IngestReport,
) -> None:
    stamp = now()
    cands: list[dict[str, Any]] = []
    dups: list[dict[str, Any]] = []
    bad: list[dict[str, Any]] = []
    for raw in batch:
        result = validate_row(raw, text_field, id_field, cfg)
        if isinstance(result, _Bad):
            report.quarantine_reasons[result.reason] += 1
            if (result.row, result.reason) in seen_bad:
                continue
            seen_bad.add((result.row, result.reason))
            report.quarantined += 1
            bad.append(
                {
                    "source": source.name,
                    "row": result.row,
                    "reason": result.reason,
                    "detail": result.detail,
                    "raw": result.raw,
                    "ingest_id": key,
                    "round": round_,
                    "quarantined_at": stamp,
                }
            )
            continue
        chash = content_hash(result.text)
        occurrences[chash] += 1
        id_key = result.source_id if id_field is not None else f"#{occurrences[chash]}"
        cid = candidate_id(source.name, id_key, chash)
        if cid in existing_ids:
            report.already_present += 1
            continue
        existing_ids.add(cid)
        cands.append(
            {
                "candidate_id": cid,
                "content_hash": chash,
                "source": source.name,
                "source_id": result.source_id,
                "row": result.row,
                "role": role,
                "text": result.text,
                "n_chars": len(result.text),
                "meta": result.meta,
                "ingest_id": key,
                "round": round_,
                "ingested_at": stamp,
            }
        )
        if chash not in kept:
            kept[chash] = (cid, role)
            report.added += 1
            continue
        report.duplicates += 1
        kept_id, kept_role = kept[chash]
        if kept_role == "pool" and role != "pool":
            # a trusted/validation copy wins: the earlier pool copy becomes the duplicate
            kept[chash] = (cid, role)
            dups.append(_duplicate_decision(kept_id, cid, round_, stamp))
        else:
            dups.append(_duplicate_decision(cid, kept_id, round_, stamp))
    # quarantine and decisions first: the candidates file marks the batch complete
    if bad:
        catalog.write("quarantine", pa.Table.from_pylist(bad, SCHEMAS["quarantine"]), key)
    if dups:
        catalog.write("decisions", pa.Table.from_pylist(dups, SCHEMAS["decisions"]), key)
    catalog.write("candidates", pa.Table.from_pylist(cands, SCHEMAS["candidates"]), key)


def _duplicate_decision(candidate: str, kept: str, round_: int, stamp: Any) -> dict[str, Any]:
    return {
        "candidate_id": candidate,
        "round": round_,
        "decision": "reject",
        "reason": "exact_duplicate",
        "decided_by": "rule",
        "model_id": None,
        "bar": None,
        "quality": None,
        "priority": None,
        "queued": False,
        "duplicate_of": kept,
        "agreement": None,
        "decided_at": stamp,
    }
