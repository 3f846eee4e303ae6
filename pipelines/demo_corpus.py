"""The offline demo corpus: trusted, validation and pool JSONL files made from Python's own docs.

Text comes from the documentation that ships with the running interpreter, read without
importing anything: docstrings of the stdlib's modules, classes and functions
(``ast.get_docstring``), its block comments (``tokenize``), and the language-reference topics in
``pydoc_data/topics.py`` (the text behind ``help("assert")``, read with ``ast.literal_eval``).
Docstrings alone give about 2,300 documents of 200+ characters on Python 3.11, too few for the
default sizes; with comments and topics about 2,800. The files are the same for the same seed
*and the same Python version*.

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

import ast
import functools
import hashlib
import io
import json
import os
import re
import sysconfig
import textwrap
import tokenize
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

JUNK_KINDS = (
    "exact_duplicate",
    "near_duplicate",
    "shuffled",
    "mojibake",
    "boilerplate",
    "truncated",
    "repeated",
    "code",
)
MALFORMED_LINES = 4
MIN_CHARS, MAX_CHARS = 200, 1500

_SKIP_DIRS = frozenset(
    {
        "test",
        "tests",
        "idlelib",
        "lib2to3",
        "turtledemo",
        "ensurepip",
        "site-packages",
        "lib-dynload",
        "__pycache__",
        "pydoc_data",  # read separately: topics.py is data, not docstrings
    }
)
_DOC_NODES = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")
_UNDERLINE = re.compile(r"[-=~^*#+]{3,}")
_PARAM_LINE = re.compile(r"[\w.*\[\]]+\s*(--|:)\s")
_NON_PROSE_START = (">>>", "...", ".. ", ":", "@", "$ ", "#", "- ", "* ", "+ ", "|")
_BANNED = ("copyright", "all rights reserved", "http://", "https://", "::")

_BOILERPLATE = (
    "Copyright (c) {year} {company}. All rights reserved.",
    "Click here to subscribe to our newsletter!",
    "This website uses cookies to ensure you get the best experience. Accept | Decline",
    "We value your privacy. Manage cookie preferences",
    "Home | About | Products | Blog | Contact",
    "Home > Docs > Reference > {title}",
    "Share on Facebook | Tweet | Email | Print",
    "Privacy Policy | Terms of Use | Sitemap",
    "Sign in | Register | Forgot password?",
    "Back to top",
    "Read more >>",
    "Posted by admin | {n} comments",
)
_COMPANIES = ("Example Corp", "Acme Inc", "WebPortal Ltd", "Contoso Media", "Globex LLC")
_TYPOGRAPHY = (("--", "\u2014"), ("...", "\u2026"), ("'", "\u2019"))


@dataclass(frozen=True)
class Doc:
    """One prose document and the stdlib-relative file it came from."""

    text: str
    source_file: str


@dataclass(frozen=True)
class CodeSnippet:
    text: str
    source_file: str


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
        paths[split] = _write_lines(out_dir / f"{split}.jsonl", lines)
    return paths


# --- reading the stdlib -------------------------------------------------------------------


def stdlib_files(root: Path) -> list[Path]:
    """The stdlib's ``.py`` files worth reading, sorted by relative path."""
    files = []
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).parts
        if _SKIP_DIRS.intersection(parts[:-1]) or parts[0].startswith("config-"):
            continue
        if parts[-1].startswith("_sysconfigdata"):
            continue
        files.append(path)
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def read_stdlib_docs(root: Path | None = None) -> tuple[tuple[Doc, ...], tuple[CodeSnippet, ...]]:
    """Prose documents (deduplicated, in file order) and code-only function sources.

    Cached per folder: the result depends only on the files, and reading takes seconds.
    """
    root = Path(sysconfig.get_paths()["stdlib"]) if root is None else Path(root)
    return _read_stdlib_docs(root)


@functools.lru_cache(maxsize=2)
def _read_stdlib_docs(root: Path) -> tuple[tuple[Doc, ...], tuple[CodeSnippet, ...]]:
    docs: list[Doc] = []
    code: list[CodeSnippet] = []
    for path in stdlib_files(root):
        rel = path.relative_to(root).as_posix()
        try:
            source = path.read_text(encoding="utf-8")
            tree = ast.parse(source, filename=rel)
            comments = comment_blocks(source)
        except (SyntaxError, UnicodeDecodeError, ValueError, tokenize.TokenError):
            continue  # a few stdlib files are templates or target other versions
        lines = source.splitlines()
        for node in _definitions(tree):
            doc = ast.get_docstring(node)
            if doc:
                docs.extend(Doc(t, rel) for t in documents_from_text(doc))
            elif not isinstance(node, ast.Module):
                snippet = _code_snippet(lines, node)
                if snippet:
                    code.append(CodeSnippet(snippet, rel))
        for block in comments:
            docs.extend(Doc(t, rel) for t in documents_from_text(block))
    topics = root / "pydoc_data" / "topics.py"
    if topics.is_file():
        for key, text in sorted(_read_topics(topics).items()):
            docs.extend(Doc(t, f"pydoc_data/topics.py#{key}") for t in documents_from_text(text))
    seen: set[str] = set()
    unique = []
    for d in docs:
        if d.text not in seen:
            seen.add(d.text)
            unique.append(d)
    return tuple(unique), tuple(code)


def _definitions(node: ast.AST) -> Iterator[ast.AST]:
    """The module, classes and functions, descending only through statements.

    Like filtering ``ast.walk`` by type, several times faster: expressions are never visited
    (a ``def`` cannot sit inside one).
    """
    if isinstance(node, _DOC_NODES):
        yield node
    for field in ("body", "orelse", "finalbody", "handlers", "cases"):
        for child in getattr(node, field, ()):
            if isinstance(child, ast.stmt | ast.excepthandler | ast.match_case):
                yield from _definitions(child)


def comment_blocks(source: str) -> list[str]:
    """Runs of whole-line ``#`` comments on consecutive lines, ``#`` and one space removed.

    An empty ``#`` line inside a run becomes an empty line, i.e. a paragraph break.
    """
    blocks: list[list[str]] = []
    last_line = -2
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type != tokenize.COMMENT or not tok.line.lstrip().startswith("#"):
            continue
        body = tok.string[1:]
        body = body[1:] if body.startswith(" ") else body
        if tok.start[0] != last_line + 1 or not blocks:
            blocks.append([])
        blocks[-1].append(body)
        last_line = tok.start[0]
    return ["\n".join(b) for b in blocks]


def _read_topics(path: Path) -> dict[str, str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
            value = ast.literal_eval(node.value)
            return {k: v for k, v in value.items() if isinstance(v, str)}
    return {}


def _code_snippet(lines: list[str], node: ast.AST) -> str | None:
    """A whole function without a docstring, 6-40 lines and 200-1500 chars, dedented.

    The lines ``ast.get_source_segment(source, node, padded=True)`` would give, sliced from
    the file's lines once split (calling it per function re-splits the file each time).
    """
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return None
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    if not 6 <= node.end_lineno - first + 1 <= 40:
        return None
    text = textwrap.dedent("\n".join(lines[first - 1 : node.end_lineno])).strip()
    return text if MIN_CHARS <= len(text) <= MAX_CHARS else None


def is_prose_paragraph(paragraph: str) -> bool:
    """True for a paragraph of running text (see step 2 in the module docstring)."""
    lines = paragraph.strip("\n").splitlines()
    if not lines:
        return False
    for line in lines:
        stripped = line.strip()
        if line[:1].isspace() or stripped.startswith(_NON_PROSE_START):
            return False
        if _UNDERLINE.fullmatch(stripped) or _PARAM_LINE.match(stripped):
            return False
        if re.match(r"\d+[.)] ", stripped):
            return False
    joined = " ".join(paragraph.split())
    lowered = joined.lower()
    if len(joined) < 40 or any(b in lowered for b in _BANNED):
        return False
    if not re.search(r"[.!?][\"')]?$", joined):
        return False
    return prose_ratio(joined) >= 0.85


def prose_ratio(text: str) -> float:
    """Share of letters and spaces among all characters."""
    return sum(c.isalpha() or c == " " for c in text) / max(len(text), 1)


def documents_from_text(text: str) -> list[str]:
    """Documents of MIN_CHARS..MAX_CHARS from one docstring, topic or comment block (step 3).

    Sentences are added in order; a document ends at the first paragraph end after
    MIN_CHARS, or earlier when the next sentence would take it past MAX_CHARS. A short
    tail joins the last document when it fits.
    """
    paragraphs = [
        _SENTENCE_END.split(" ".join(p.split()))
        for p in _PARAGRAPH_BREAK.split(text)
        if is_prose_paragraph(p)
    ]
    docs: list[str] = []
    current = ""
    for sentences in paragraphs:
        for i, sentence in enumerate(sentences):
            if len(current) >= MIN_CHARS and len(current) + len(sentence) + 1 > MAX_CHARS:
                docs.append(current)
                current = ""
            current = f"{current} {sentence}" if current else sentence
            if len(current) >= MIN_CHARS and i == len(sentences) - 1:
                docs.append(current)
                current = ""
    if current and docs and len(docs[-1]) + len(current) + 1 <= MAX_CHARS:
        docs[-1] = f"{docs[-1]} {current}"
    return [d for d in docs if MIN_CHARS <= len(d) <= MAX_CHARS and prose_ratio(d) >= 0.85]


# --- splits and junk ----------------------------------------------------------------------


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
    make = _JunkMaker(rng, trusted=trusted, clean=clean, code=code)
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


class _JunkMaker:
    """Makes one junk text of a given kind from real documents; all randomness from ``rng``."""

    def __init__(
        self,
        rng: np.random.Generator,
        *,
        trusted: list[Doc],
        clean: list[Doc],
        code: Sequence[CodeSnippet],
    ) -> None:
        self.rng = rng
        self.sources = trusted + clean  # junk is made from text a crawler could also meet
        self.n_trusted = len(trusted)
        self.code = code
        self._dup_unused = list(rng.permutation(len(self.sources)))
        self._code_unused = list(rng.permutation(len(code)))

    def __call__(self, kind: str) -> tuple[str, str, str | None]:
        if kind == "exact_duplicate":
            i = int(self._dup_unused.pop())  # each document is duplicated at most once
            doc = self.sources[i]
            return doc.text, doc.source_file, "trusted" if i < self.n_trusted else "pool"
        if kind == "code":
            if not self._code_unused:
                raise ValueError("not enough stdlib functions for the code junk")
            snippet = self.code[int(self._code_unused.pop())]
            return snippet.text, snippet.source_file, None
        doc = self.sources[int(self.rng.integers(len(self.sources)))]
        text = getattr(self, f"_{kind}")(doc.text)
        return text, doc.source_file, None

    def _near_duplicate(self, text: str) -> str:
        words = text.split()
        for _ in range(int(self.rng.integers(1, 5))):
            op = int(self.rng.integers(3))
            i = int(self.rng.integers(len(words)))
            other = words[int(self.rng.integers(len(words)))]
            if op == 0 and other != words[i]:
                words[i] = other
            elif op == 1 or len(words) < 10:
                words.insert(i, other)
            else:
                del words[i]
        out = " ".join(words)
        return out if out != text else f"{out} {words[0]}"

    def _shuffled(self, text: str) -> str:
        words = text.split()
        return " ".join(words[i] for i in self.rng.permutation(len(words)))

    def _mojibake(self, text: str) -> str:
        for ascii_form, typographic in _TYPOGRAPHY:
            text = text.replace(ascii_form, typographic)
        text = re.sub(r"\"([^\"]+)\"", "\u201c\\1\u201d", text)
        words = text.split(" ")
        for i in self.rng.choice(len(words), size=min(3, len(words)), replace=False):
            words[int(i)] = f"\u201c{words[int(i)]}\u201d"  # something to break in every text
        text = " ".join(words)
        table = _CP1252 if self.rng.random() < 0.7 else _LATIN1
        return "".join(table[b] for b in text.encode("utf-8"))

    def _boilerplate(self, text: str) -> str:
        title = " ".join(text.split()[:6]).rstrip(".,;:")
        n_lines = int(self.rng.integers(7, 19))
        picks = self.rng.choice(len(_BOILERPLATE), size=n_lines, replace=True)
        fill = {
            "year": int(self.rng.integers(2005, 2025)),
            "company": _COMPANIES[int(self.rng.integers(len(_COMPANIES)))],
            "title": title,
            "n": int(self.rng.integers(0, 50)),
        }
        lines = [_BOILERPLATE[int(p)].format(**fill) for p in picks]
        lines.insert(int(self.rng.integers(len(lines) + 1)), lines[0])  # at least one repeat
        return "\n".join([title, *lines])

    def _truncated(self, text: str) -> str:
        words = text.split()
        start = int(self.rng.integers(0, max(len(words) - 12, 1)))
        n = int(self.rng.integers(3, 11))
        return " ".join(words[start : start + n]).rstrip(".!?,;:")

    def _repeated(self, text: str) -> str:
        sentences = _SENTENCE_END.split(text)
        sentence = max(sentences, key=len) if len(sentences) > 1 else sentences[0]
        if len(sentence) > 300:
            sentence = " ".join(sentence.split()[:30]) + "."
        return " ".join([sentence] * int(self.rng.integers(8, 26)))


def _decode_table(encoding: str) -> tuple[str, ...]:
    """Byte -> character as ``encoding`` shows it; bytes it leaves undefined map to U+00xx."""
    out = []
    for b in range(256):
        try:
            out.append(bytes([b]).decode(encoding))
        except UnicodeDecodeError:
            out.append(chr(b))
    return tuple(out)


_CP1252 = _decode_table("cp1252")
_LATIN1 = _decode_table("latin-1")


def _write_lines(path: Path, lines: list[str]) -> Path:
    """Write lines atomically (temporary name, then rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.writelines(line + "\n" for line in lines)
    os.replace(tmp, path)
    return path
