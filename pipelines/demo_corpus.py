"""The offline demo corpus: trusted, validation and pool JSONL files made from Python's own docs.

Text comes from the documentation that ships with the running interpreter, read without
importing anything: docstrings of the stdlib's modules, classes and functions
(``ast.get_docstring``), its block comments (``tokenize``), and the language-reference topics in
``pydoc_data/topics.py`` (the text behind ``help("assert")``, read with ``ast.literal_eval``).
Docstrings alone give about 2,300 documents of 200+ characters on Python 3.11, too few for the
default sizes; with comments and topics about 2,800. The files are the same for the same seed
*and the same Python version*.

Steps 1-3 live in :mod:`pipelines.stdlib_text`, the junk generators of step 4 in
:mod:`pipelines.junk`; this module makes the splits and writes the files.

1. Walk ``sysconfig.get_paths()["stdlib"]`` in sorted order, skipping tests, idlelib, lib2to3,
   turtledemo, ensurepip, site-packages and build config folders; parse each ``.py``.
2. Split every docstring, comment block and topic into paragraphs; keep prose paragraphs (no
   doctest, no indented code, no bullet or parameter tables, no rst headings, no URLs or
   copyright lines, mostly letters, ends like a sentence) and join each into one line.
3. Make documents of 200-1500 characters: sentences are taken in order and a document ends at
   the first paragraph end after 200 characters (or before passing 1500), so short paragraphs
   of one docstring merge and long ones split at sentence ends. Exact duplicate texts
   (copy-pasted docstrings) are dropped.
4. A seeded shuffle splits the documents into trusted, validation and clean pool (disjoint by
   document). ``junk_frac`` of the pool is junk made from trusted and clean pool text (never
   validation), the same number of each kind in :data:`JUNK_KINDS` (the remainder goes to
   kinds in a seeded order): exact copies, 1-4 word edits, shuffled words, mojibake (typographic
   quotes and dashes, UTF-8 bytes read as cp1252 or latin-1), web boilerplate lines around a
   real title, a 3-10 word fragment cut mid-sentence, one sentence repeated 8-25 times, and
   the source of a stdlib function without a docstring.
5. The pool is shuffled; an exact duplicate of a clean pool row always comes after it, so
   first-occurrence dedup keeps the clean copy.

Rows: ``{"id", "text", "source_file"}`` (``source_file`` relative to the stdlib folder); pool
rows also have ``"kind"`` (``"clean"`` or a junk kind) and ``"gold"`` (``"accept"`` for clean,
``"reject"`` for junk) - an oracle for the simulated expert, never a scoring feature.

The pool file also holds four deliberately malformed lines, for ingest's quarantine, at seeded
positions and without ``"gold"``: one line that is not valid JSON (a truncated object), one row
whose text is ``""``, one whose text is a number, and one with no ``"text"`` field. They are
extra lines: the pool file has ``n_pool + 4`` lines.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.junk import JUNK_KINDS, JunkMaker
from pipelines.stdlib_text import CodeSnippet, Doc, read_stdlib_docs

MALFORMED_LINES = 4


def build_demo_corpus(
    out_dir: Path,
    *,
    seed: int = 0,
    n_trusted: int = 1000,
    n_validation: int = 200,
    n_pool: int = 1500,
    junk_frac: float = 0.3,
) -> dict[str, Path]:
    """Write ``trusted.jsonl``, ``validation.jsonl`` and ``pool.jsonl`` under ``out_dir``.

    Returns ``{"trusted": path, "validation": path, "pool": path}``. Raises ``ValueError`` when
    the sizes are invalid or need more documents than this Python's docs provide.
    """
    if min(n_trusted, n_validation, n_pool) < 0:
        raise ValueError("n_trusted, n_validation and n_pool must be >= 0")
    if not 0.0 <= junk_frac <= 1.0:
        raise ValueError(f"junk_frac must be in [0, 1], got {junk_frac}")
    docs, code = read_stdlib_docs()
    rows = make_splits(docs, code, seed, n_trusted, n_validation, n_pool, junk_frac)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, lines in rows.items():
        paths[split] = write_lines(out_dir / f"{split}.jsonl", lines)
    return paths


# --- splits -------------------------------------------------------------------------------


def make_splits(
    docs: Sequence[Doc],
    code: Sequence[CodeSnippet],
    seed: int,
    n_trusted: int,
    n_validation: int,
    n_pool: int,
    junk_frac: float,
) -> dict[str, list[str]]:
    """JSONL lines per split (steps 4-5). Pure: the same inputs give the same lines."""
    rng = np.random.default_rng(seed)
    n_junk = int(round(n_pool * junk_frac))
    n_clean = n_pool - n_junk
    needed = n_trusted + n_validation + n_clean
    if needed > len(docs):
        raise ValueError(
            f"asked for {needed} distinct documents (trusted + validation + clean pool) but "
            f"this Python's docs give {len(docs)}; lower the sizes or junk_frac"
        )
    order = rng.permutation(len(docs))
    trusted = [docs[i] for i in order[:n_trusted]]
    validation = [docs[i] for i in order[n_trusted : n_trusted + n_validation]]
    clean = [docs[i] for i in order[n_trusted + n_validation : needed]]

    pool = [_row("pool", d.text, d.source_file, "clean") for d in clean]
    kinds = _junk_kinds(n_junk, rng)
    make = JunkMaker(rng, trusted=trusted, clean=clean, code=code)
    for kind in kinds:
        text, source_file, duplicate_of = make(kind)
        row = _row("pool", text, source_file, kind)
        row["_duplicate_of"] = duplicate_of
        pool.append(row)
    pool = [pool[i] for i in rng.permutation(len(pool))]
    _put_duplicates_after_originals(pool)
    _assign_ids(pool)
    for row in pool:
        row.pop("_duplicate_of", None)
    pool_lines = [json.dumps(r, ensure_ascii=False) for r in pool]
    for position, line in zip(
        sorted(rng.choice(len(pool_lines) + 1, size=MALFORMED_LINES, replace=True))[::-1],
        _malformed_lines()[::-1],
        strict=True,
    ):
        pool_lines.insert(int(position), line)

    out = {}
    for split, chosen in (("trusted", trusted), ("validation", validation)):
        rows = [_row(split, d.text, d.source_file) for d in chosen]
        _assign_ids(rows)
        out[split] = [json.dumps(r, ensure_ascii=False) for r in rows]
    out["pool"] = pool_lines
    return out


def _junk_kinds(n_junk: int, rng: np.random.Generator) -> list[str]:
    """``n_junk`` kinds, equal counts; the remainder goes to kinds in a seeded order."""
    base, extra = divmod(n_junk, len(JUNK_KINDS))
    bonus = set(rng.permutation(len(JUNK_KINDS))[:extra].tolist())
    return [k for i, k in enumerate(JUNK_KINDS) for _ in range(base + (i in bonus))]


def _row(split: str, text: Any, source_file: str | None, kind: str | None = None) -> dict:
    row: dict[str, Any] = {"id": split, "text": text, "source_file": source_file}
    if kind is not None:
        row["kind"] = kind
        row["gold"] = "accept" if kind == "clean" else "reject"
    return row


def _assign_ids(rows: list[dict]) -> None:
    """``<split>-<sha1 of kind and text>``; a clash (same junk twice) gets a counter."""
    seen: set[str] = set()
    for row in rows:
        split = row["id"]
        key = f"{row.get('kind', '')}\x1f{row['text']}"
        n = 0
        while True:
            digest = hashlib.sha1(f"{key}\x1f{n}".encode()).hexdigest()[:16]
            row_id = f"{split}-{digest}"
            if row_id not in seen:
                break
            n += 1
        seen.add(row_id)
        row["id"] = row_id


def _put_duplicates_after_originals(pool: list[dict]) -> None:
    """Swap an exact duplicate of a clean pool row with its original when it comes first."""
    first_clean = {}
    for i, row in enumerate(pool):
        if row["kind"] == "clean":
            first_clean.setdefault(row["text"], i)
    for i, row in enumerate(pool):
        if row["kind"] == "exact_duplicate" and row["_duplicate_of"] == "pool":
            j = first_clean[row["text"]]
            if j > i:
                pool[i], pool[j] = pool[j], pool[i]
                first_clean[row["text"]] = i


def _malformed_lines() -> list[str]:
    return [
        '{"id": "pool-malformed-json", "text": "an object cut off in the mid',
        json.dumps({"id": "pool-malformed-empty", "text": "", "source_file": None}),
        json.dumps({"id": "pool-malformed-number", "text": 12345, "source_file": None}),
        json.dumps({"id": "pool-malformed-missing", "source_file": None}),
    ]


def write_lines(path: Path, lines: list[str]) -> Path:
    """Write lines atomically (temporary name, then rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.writelines(line + "\n" for line in lines)
    os.replace(tmp, path)
    return path
