"""Prose documents and function sources read from the running Python's standard library.

Steps 1-3 of :mod:`pipelines.demo_corpus`: the stdlib's ``.py`` files are parsed, never
imported; docstrings (``ast.get_docstring``), block comments (``tokenize``) and the
``pydoc_data/topics.py`` topics are cut into prose documents of MIN_CHARS..MAX_CHARS, and
functions without a docstring are kept as code snippets.
"""

from __future__ import annotations

import ast
import functools
import io
import re
import sysconfig
import textwrap
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")
_UNDERLINE = re.compile(r"[-=~^*#+]{3,}")
_PARAM_LINE = re.compile(r"[\w.*\[\]]+\s*(--|:)\s")
_NON_PROSE_START = (">>>", "...", ".. ", ":", "@", "$ ", "#", "- ", "* ", "+ ", "|")
_BANNED = ("copyright", "all rights reserved", "http://", "https://", "::")


@dataclass(frozen=True)
class Doc:
    """One prose document and the stdlib-relative file it came from."""

    text: str
    source_file: str


@dataclass(frozen=True)
class CodeSnippet:
    text: str
    source_file: str


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
    """True for a paragraph of running text (step 2 in :mod:`pipelines.demo_corpus`)."""
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
        SENTENCE_END.split(" ".join(p.split()))
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
