"""Ingest: read a source, normalise, give stable ids, drop exact duplicates, quarantine bad rows.

1. Read rows with :mod:`pipelines.sources`; rows that cannot be parsed go to quarantine.
2. Validate the text field (present, a string, no NUL byte, non-empty, not too long), or
   for a pair source the prompt and response (:mod:`pipelines.ingest_pairs`), and, when the
   source has one, the id field (present, a scalar, not already used by an
   earlier row of the source: a ``duplicate_id`` would make two rows one).
3. Normalise: Unicode NFC, ``\\r\\n`` → ``\\n``, runs of spaces/tabs → one space, spaces at
   line ends and starts dropped, 3+ newlines → 2, ends stripped.
4. ``content_hash`` = SHA-256 of the normalised text (of a pair: of prompt, ``\x1e``,
   response, so a pair never equals a text, :func:`pair_hash`); ``candidate_id`` = hash of (source,
   the user's id or the occurrence number of that content in the source, content_hash),
   so re-reading the same source yields the same ids.
5. Exact duplicates (same content_hash as a candidate already kept, in any role) are kept
   as candidates and get a ``reject / exact_duplicate`` decision pointing to the kept copy.
   The first copy is kept, except that a trusted or validation copy always wins over a
   pool copy: the pool copy is then rejected as the duplicate (a pool text equal to a
   validation text would otherwise leak the validation set into training).

Work is done in batches; each batch's candidates file is its completion marker (written
last, after its quarantine and decision files), so a killed ingest resumes where it stopped
and re-ingesting an unchanged source adds nothing. Memory stays flat in the size of the
catalog and the source: each batch asks the catalog (one DuckDB query) which of its ids
and texts are already stored, and the only state kept across batches is the occurrence
count of each text in the source (:class:`Occurrences`, 20 bytes per distinct text).
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

import numpy as np
import pyarrow as pa

from pipelines.catalog import SCHEMAS, Catalog, load_sql, now
from pipelines.config import IngestConfig, PairFields
from pipelines.ingest_pairs import PairProblem, read_pair
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


def pair_hash(prompt: str, response: str) -> str:
    """``content_hash`` of a normalised pair: a record separator keeps it apart from texts."""
    return content_hash(f"{prompt}\x1e{response}")


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
    text: str  # a pair's response
    source_id: str
    meta: str
    prompt: str | None = None  # set for a pair

    @property
    def chash(self) -> str:
        return content_hash(self.text) if self.prompt is None else pair_hash(self.prompt, self.text)


def validate_row(
    raw: RawRow,
    text_field: str,
    id_field: str | None,
    cfg: IngestConfig,
    pair: PairFields | None = None,
) -> _Good | _Bad:
    """Step 2: turn one parsed row into a normalised text or pair, or a quarantine reason."""
    if raw.reason is not None:
        return _Bad(raw.row, raw.reason, raw.detail or "", raw.raw)
    fields = raw.fields or {}
    preview = (
        raw.raw if raw.raw is not None else json.dumps(fields, default=str, ensure_ascii=False)
    )
    preview = preview[:500]
    prompt = None
    if pair is not None and pair.is_pair:
        got = read_pair(fields, pair, cfg.max_chars, normalise)
        if isinstance(got, PairProblem):
            return _Bad(raw.row, got.reason, got.detail, preview)
        prompt, text = got
        if len(text) < cfg.min_chars:
            return _Bad(raw.row, "empty_response", f"{len(text)} characters < min_chars", preview)
        skip = (*pair.names(), id_field)
    else:
        text_or_bad = _text_field(raw.row, fields, text_field, cfg, preview)
        if isinstance(text_or_bad, _Bad):
            return text_or_bad
        text = text_or_bad
        skip = (text_field, id_field)
    if id_field is not None:
        given = fields.get(id_field)
        if given is None or given == "":
            return _Bad(raw.row, "missing_id", f"no value in id field {id_field!r}", preview)
        if isinstance(given, dict | list | tuple | bytes):
            return _Bad(
                raw.row,
                "bad_id",
                f"id field {id_field!r} is {type(given).__name__}, not a string or number",
                preview,
            )
        source_id = str(given)
    else:
        source_id = raw.default_id or str(raw.row)
    meta = {k: v for k, v in fields.items() if k not in skip}
    return _Good(
        raw.row,
        text,
        source_id,
        json.dumps(meta, default=str, ensure_ascii=False, sort_keys=True),
        prompt,
    )


def _text_field(
    row: int, fields: dict[str, Any], text_field: str, cfg: IngestConfig, preview: str
) -> str | _Bad:
    """The normalised plain text of a row, or why it has none."""
    if text_field not in fields:
        return _Bad(row, "missing_text", f"no field {text_field!r}", preview)
    value = fields[text_field]
    if value is None:
        return _Bad(row, "missing_text", f"field {text_field!r} is null", preview)
    if not isinstance(value, str):
        return _Bad(
            row, "non_string_text", f"field {text_field!r} is {type(value).__name__}", preview
        )
    if "\x00" in value:
        return _Bad(row, "nul_byte", f"field {text_field!r} contains a NUL byte", preview)
    if len(value) > cfg.max_chars:
        return _Bad(
            row, "too_long", f"{len(value)} characters > max_chars={cfg.max_chars}", preview
        )
    text = normalise(value)
    if len(text) < max(cfg.min_chars, 1):
        return _Bad(
            row, "empty_text", f"field {text_field!r} is empty after normalisation", preview
        )
    return text


def _classify(
    raw: RawRow,
    text_field: str,
    id_field: str | None,
    cfg: IngestConfig,
    id_rows: dict[str, int],
    pair: PairFields | None = None,
) -> _Good | _Bad:
    """``validate_row``, plus: a user id seen on an earlier row of this source is a
    ``duplicate_id`` (``id_rows``: id → first row, filled as rows go by)."""
    result = validate_row(raw, text_field, id_field, cfg, pair)
    if id_field is None or isinstance(result, _Bad):
        return result
    first = id_rows.setdefault(result.source_id, result.row)
    if first != result.row:
        preview = raw.raw if raw.raw is not None else json.dumps(raw.fields, default=str)
        return _Bad(
            result.row,
            "duplicate_id",
            f"id {result.source_id[:80]!r} already used by row {first}",
            preview[:500],
        )
    return result


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
    pair: PairFields | None = None,
) -> IngestReport:
    """Ingest one source into the catalog. Caller holds the workspace writer lock.

    Rows are stamped with ``round_`` (default: the workspace's current round). ``pair``
    names the prompt/response (or messages) fields of a source of pairs: its candidates get
    ``kind = 'pair'``, ``prompt`` and the response as ``text``; ``text_field`` is unused.
    """
    cfg = cfg or IngestConfig()
    pair = pair if pair is not None and pair.is_pair else None
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    source = open_source(spec)
    catalog.init()
    round_ = catalog.current_round() if round_ is None else round_
    report = IngestReport(source=source.name, role=role)
    fields_key = f"{text_field}\x1f{id_field}"
    if pair is not None:  # a text source's key is unchanged, so its batches are still found
        fields_key += f"\x1fpair\x1f{pair.prompt_field}\x1f{pair.response_field}"
        fields_key += f"\x1f{pair.messages_field}"
    ingest_id = hashlib.sha256(
        f"{source.name}\x1f{source.fingerprint}\x1f{role}\x1f{fields_key}".encode()
    ).hexdigest()[:16]

    seen_bad = {
        (r["row"], r["reason"])
        for r in catalog.query(
            "SELECT row, reason FROM quarantine WHERE source = ?", [source.name]
        ).to_pylist()
    }
    occurrences = Occurrences()
    id_rows: dict[str, int] = {}

    for index, batch in enumerate(_batched(source.rows(), cfg.batch_rows)):
        key = f"{ingest_id}-{index:05d}"
        report.rows_read += len(batch)
        if catalog.exists("candidates", key):
            report.batches_skipped += 1
            # replay the occurrence counts so later batches get the same ids as before
            results = [_classify(raw, text_field, id_field, cfg, id_rows, pair) for raw in batch]
            occurrences.add([r.chash for r in results if isinstance(r, _Good)])
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
            seen_bad,
            occurrences,
            id_rows,
            report,
            pair,
        )
        if progress:
            progress(len(batch))
    return report


class Occurrences:
    """How often each content hash has occurred in the source so far (ids of rows without a
    user id count them: ``#1``, ``#2``, ...).

    Sorted numpy arrays of 16-byte hashes and int32 counts, merged once per batch: 20
    bytes per distinct text instead of a ``Counter``'s ~150, so ingest memory stays flat
    in the size of the source.
    """

    def __init__(self) -> None:
        self.keys = np.empty(0, dtype="S16")
        self.counts = np.empty(0, dtype=np.int32)

    def add(self, hashes: list[str]) -> np.ndarray:
        """Count one occurrence of each hex hash, in order; return each one's number (1-based)."""
        if not hashes:
            return np.zeros(0, dtype=np.int64)
        keys = np.array([bytes.fromhex(h) for h in hashes], dtype="S16")
        uniq, inverse, per = np.unique(keys, return_inverse=True, return_counts=True)
        # k-th occurrence of a hash inside the batch: position among the rows with that hash
        order = np.argsort(inverse, kind="stable")
        group_start = np.repeat(np.cumsum(per) - per, per)
        within = np.empty(len(keys), dtype=np.int64)
        within[order] = np.arange(len(keys)) - group_start
        pos = np.searchsorted(self.keys, uniq)
        found = pos < len(self.keys)
        found[found] = self.keys[pos[found]] == uniq[found]
        before = np.zeros(len(uniq), dtype=np.int64)
        before[found] = self.counts[pos[found]]
        self.counts[pos[found]] += per[found].astype(np.int32)
        self.keys = np.insert(self.keys, pos[~found], uniq[~found])
        self.counts = np.insert(self.counts, pos[~found], per[~found].astype(np.int32))
        return before[inverse] + within + 1


def _lookup(
    catalog: Catalog, hashes: list[str], ids: list[str]
) -> tuple[dict[str, tuple[str, str]], set[str]]:
    """For one batch: content_hash → (candidate_id, role) of the kept copy already stored,
    and which of ``ids`` are already stored. One query per batch, so memory follows the
    batch, not the catalog."""
    con = catalog.connect()
    try:
        con.register("batch_hashes", pa.table({"content_hash": pa.array(hashes, pa.string())}))
        con.register("batch_ids", pa.table({"candidate_id": pa.array(ids, pa.string())}))
        rows = con.sql(load_sql("ingest_kept")).to_arrow_table()
        present = con.sql(
            "SELECT DISTINCT candidate_id FROM candidates SEMI JOIN batch_ids USING (candidate_id)"
        ).to_arrow_table()
    finally:
        con.close()
    kept = {
        h: (cid, role)
        for h, cid, role in zip(*(rows.column(i).to_pylist() for i in range(3)), strict=True)
    }
    return kept, set(present.column(0).to_pylist())


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
    seen_bad: set[tuple[int, str]],
    occurrences: Occurrences,
    id_rows: dict[str, int],
    report: IngestReport,
    pair: PairFields | None = None,
) -> None:
    stamp = now()
    cands: list[dict[str, Any]] = []
    dups: list[dict[str, Any]] = []
    bad: list[dict[str, Any]] = []
    # ids first (they depend on occurrence counts), then one catalog lookup for the batch
    results = [_classify(raw, text_field, id_field, cfg, id_rows, pair) for raw in batch]
    hashes = [r.chash for r in results if isinstance(r, _Good)]
    numbers = occurrences.add(hashes)
    ids = [
        candidate_id(source.name, r.source_id if id_field is not None else f"#{k}", chash)
        for r, chash, k in zip(
            (r for r in results if isinstance(r, _Good)), hashes, numbers.tolist(), strict=True
        )
    ]
    kept, existing_ids = _lookup(catalog, hashes, ids)
    good = iter(zip(hashes, ids, strict=True))
    for result in results:
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
        chash, cid = next(good)
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
                "kind": "text" if result.prompt is None else "pair",
                "prompt": result.prompt,
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
