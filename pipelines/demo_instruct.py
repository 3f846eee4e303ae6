"""The demo's instruction set: question/answer pairs about the standard library, built offline.

Each public top-level function or class of a public stdlib module whose docstring opens with
a prose paragraph gives one pair: a question about it ("What does `json.dumps` do?", a few
templates) and that first paragraph, joined into one line, as the answer. The files are read
with :mod:`ast`, never imported (the same files as :mod:`pipelines.stdlib_text`), so nothing
is downloaded and a build takes about a second and a half; the output is the same for the
same seed *and the same Python version*.

1. Walk the stdlib's ``.py`` files (:func:`pipelines.stdlib_text.stdlib_files`), skipping
   modules with a private part (``_``); take each public top-level ``def``/``class`` whose
   docstring's first paragraph is prose (:func:`pipelines.stdlib_text.is_prose_paragraph`)
   of 40-199 characters (shorter than the text demo corpus's documents, see ``MAX_ANSWER``). An answer given by two definitions (copied docstrings) is dropped
   from both, so a "wrong answer" junk row can never be right by accident.
2. A seeded shuffle splits the definitions into trusted, validation and pool (disjoint: no
   question is in two splits).
3. ``junk_frac`` of the pool gets a bad answer, the same number of each kind in
   :data:`JUNK_KINDS` (the remainder to kinds in a seeded order): the answer of another
   definition (fluent but wrong; never a validation answer), the answer cut mid-sentence,
   its words shuffled, a generic non-answer, the question echoed back, mojibake (UTF-8 read
   as cp1252), one sentence repeated, or code instead of an answer (the definition's source
   without its docstring).

Rows: trusted and validation ``{"id", "prompt", "response", "name", "source_file"}``; pool
rows add ``"kind"`` (``"clean"`` or a junk kind), ``"gold"`` (the preference an expert would
give against the model's own answer: ``"candidate"`` for clean rows, ``"both_bad"`` for junk:
a tiny model's answer is no better, so neither side can be preferred) and, on junk rows,
``"gold_response"`` (the true answer: what the simulated expert writes as a rewrite). They are
oracles for the simulated expert (``--oracle-field gold --rewrite-field gold_response``),
never scoring features.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import re
import sysconfig
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.demo_corpus import write_lines
from pipelines.stdlib_text import MIN_CHARS, SENTENCE_END, is_prose_paragraph, stdlib_files

JUNK_KINDS = (
    "wrong_answer",
    "truncated",
    "shuffled",
    "non_answer",
    "echo",
    "mojibake",
    "repeated",
    "code",
)
# Answers stay shorter than any document of the text demo corpus (MIN_CHARS), which is made
# from the same docstrings: a pair signed as prompt + answer then stays below the dedup
# threshold against a text holding its answer (a long answer would make it a near-duplicate).
MIN_ANSWER, MAX_ANSWER = 40, MIN_CHARS - 1
FILES = {split: f"instruct-{split}.jsonl" for split in ("trusted", "validation", "pool")}

_FUNCTION_TEMPLATES = (
    "What does `{name}` do?",
    "What is `{name}` for?",
    "Explain what `{name}` does.",
    "In the Python standard library, what does `{name}` do?",
)
_CLASS_TEMPLATES = (
    "What is `{name}`?",
    "What is the `{name}` class for?",
    "Describe the class `{name}`.",
)
_NON_ANSWERS = (
    "It depends; see the documentation.",
    "Good question! It does what its name says.",
    "This is part of the Python standard library.",
    "I am not sure. Try it and see what happens.",
    "Please refer to the official docs for details.",
    "It is a function. You can call it in your code.",
    "There are many ways to think about this, and it depends on your use case.",
)
_ECHOES = ("{prompt}", "You asked: {prompt}", "{prompt} That is a good question.")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")


@dataclass(frozen=True)
class Definition:
    """One documented stdlib definition: ``json.dumps``, its answer and its code."""

    name: str  # dotted: module path + name
    is_class: bool
    answer: str  # the docstring's first paragraph, on one line
    code: str  # the source without the docstring, at most 12 lines
    source_file: str  # relative to the stdlib folder


def build_instruct_set(
    out_dir: Path,
    *,
    seed: int = 0,
    n_trusted: int = 300,
    n_validation: int = 60,
    n_pool: int = 300,
    junk_frac: float = 0.35,
) -> dict[str, Path]:
    """Write ``instruct-{trusted,validation,pool}.jsonl`` under ``out_dir``; return the paths.

    Raises ``ValueError`` for invalid sizes or more definitions than this Python documents.
    """
    if min(n_trusted, n_validation, n_pool) < 0:
        raise ValueError("n_trusted, n_validation and n_pool must be >= 0")
    if not 0.0 <= junk_frac <= 1.0:
        raise ValueError(f"junk_frac must be in [0, 1], got {junk_frac}")
    rows = make_instruct_splits(
        read_definitions(), seed, n_trusted, n_validation, n_pool, junk_frac
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return {
        split: write_lines(
            out_dir / FILES[split], [json.dumps(r, ensure_ascii=False) for r in lines]
        )
        for split, lines in rows.items()
    }


# --- step 1: definitions ---------------------------------------------------------------------


def read_definitions(root: Path | None = None) -> tuple[Definition, ...]:
    """Step 1, in file order; cached per folder (the result depends only on the files)."""
    root = Path(sysconfig.get_paths()["stdlib"]) if root is None else Path(root)
    return _read_definitions(root)


@functools.lru_cache(maxsize=2)
def _read_definitions(root: Path) -> tuple[Definition, ...]:
    found: list[Definition] = []
    for path in stdlib_files(root):
        rel = path.relative_to(root)
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if not parts or any(p.startswith("_") for p in parts):
            continue
        try:
            source = path.read_text(encoding="utf-8")
            tree = ast.parse(source, filename=str(rel))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue  # a few stdlib files are templates or target other versions
        lines = source.splitlines()
        seen_names: set[str] = set()
        for node in tree.body:
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                continue
            if node.name.startswith("_") or node.name in seen_names:
                continue  # private, or redefined (a platform-specific variant)
            seen_names.add(node.name)
            answer = _summary(ast.get_docstring(node))
            if answer is None:
                continue
            found.append(
                Definition(
                    name=".".join([*parts, node.name]),
                    is_class=isinstance(node, ast.ClassDef),
                    answer=answer,
                    code=_code_without_docstring(lines, node),
                    source_file=rel.as_posix(),
                )
            )
    seen: set[str] = set()
    shared: set[str] = set()
    for d in found:
        (shared if d.answer in seen else seen).add(d.answer)
    return tuple(d for d in found if d.answer not in shared)


def _summary(doc: str | None) -> str | None:
    """The docstring's first paragraph on one line, when it is prose of a fitting length."""
    if not doc:
        return None
    first = _PARAGRAPH_BREAK.split(doc.strip(), maxsplit=1)[0]
    if not is_prose_paragraph(first):
        return None
    text = " ".join(first.split())
    return text if MIN_ANSWER <= len(text) <= MAX_ANSWER else None


def _code_without_docstring(lines: list[str], node: ast.AST) -> str:
    """The definition's first 12 source lines with its docstring's lines left out."""
    body = node.body  # type: ignore[attr-defined]
    doc = body[0] if body and isinstance(body[0], ast.Expr) else None
    skip = range(doc.lineno, doc.end_lineno + 1) if doc is not None else range(0)
    kept = [lines[i - 1] for i in range(node.lineno, node.end_lineno + 1) if i not in skip]
    return textwrap.dedent("\n".join(kept[:12])).strip()


# --- steps 2-3: splits and junk --------------------------------------------------------------


def make_instruct_splits(
    defs: tuple[Definition, ...] | list[Definition],
    seed: int,
    n_trusted: int,
    n_validation: int,
    n_pool: int,
    junk_frac: float,
) -> dict[str, list[dict]]:
    """Rows per split (steps 2-3). Pure: the same inputs give the same rows."""
    needed = n_trusted + n_validation + n_pool
    if needed > len(defs):
        raise ValueError(
            f"asked for {needed} questions (trusted + validation + pool) but this Python's "
            f"stdlib documents {len(defs)} definitions; lower the sizes"
        )
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(defs))
    chosen = [defs[i] for i in order[:needed]]
    trusted = chosen[:n_trusted]
    validation = chosen[n_trusted : n_trusted + n_validation]
    pool = chosen[n_trusted + n_validation :]
    prompts = {d.name: _prompt(d, rng) for d in chosen}

    out = {
        split: [_row(split, d, prompts[d.name], d.answer) for d in group]
        for split, group in (("trusted", trusted), ("validation", validation))
    }
    n_junk = int(round(n_pool * junk_frac))
    junk_at = rng.permutation(n_pool)[:n_junk]
    kinds = dict(zip(junk_at.tolist(), _junk_kinds(n_junk, rng), strict=True))
    donors = trusted + pool  # never validation: its answers must not reach the pool
    rows = []
    for i, d in enumerate(pool):
        kind = kinds.get(i, "clean")
        if kind == "clean":
            row = _row("pool", d, prompts[d.name], d.answer)
            row.update(kind="clean", gold="candidate")
        else:
            response = _junk(kind, d, prompts[d.name], donors, rng)
            row = _row("pool", d, prompts[d.name], response)
            row.update(kind=kind, gold="both_bad", gold_response=d.answer)
        rows.append(row)
    out["pool"] = rows
    return out


def _prompt(d: Definition, rng: np.random.Generator) -> str:
    templates = _CLASS_TEMPLATES if d.is_class else _FUNCTION_TEMPLATES
    return templates[int(rng.integers(len(templates)))].format(name=d.name)


def _row(split: str, d: Definition, prompt: str, response: str) -> dict:
    digest = hashlib.sha1(f"{d.name}\x1f{prompt}".encode()).hexdigest()[:16]
    return {
        "id": f"instruct-{split}-{digest}",
        "prompt": prompt,
        "response": response,
        "name": d.name,
        "source_file": d.source_file,
    }


def _junk_kinds(n_junk: int, rng: np.random.Generator) -> list[str]:
    """``n_junk`` kinds, equal counts; the remainder goes to kinds in a seeded order."""
    base, extra = divmod(n_junk, len(JUNK_KINDS))
    bonus = set(rng.permutation(len(JUNK_KINDS))[:extra].tolist())
    kinds = [k for i, k in enumerate(JUNK_KINDS) for _ in range(base + (i in bonus))]
    return [kinds[i] for i in rng.permutation(len(kinds))]


def _junk(
    kind: str, d: Definition, prompt: str, donors: list[Definition], rng: np.random.Generator
) -> str:
    """A bad answer of ``kind`` to ``d``'s question; always different from the true answer."""
    answer = d.answer
    words = answer.split()
    if kind == "wrong_answer":
        same = [o for o in donors if o.is_class == d.is_class and o.answer != answer]
        return same[int(rng.integers(len(same)))].answer
    if kind == "truncated":
        cut = max(2, int(len(words) * rng.uniform(0.3, 0.7)))
        out = " ".join(words[: min(cut, len(words) - 1)]).rstrip(".,;:!?")
        return out if out != answer else words[0]
    if kind == "shuffled":
        out = " ".join(words[i] for i in rng.permutation(len(words)))
        return out if out != answer else " ".join(reversed(words)) + " the"
    if kind == "non_answer":
        return _NON_ANSWERS[int(rng.integers(len(_NON_ANSWERS)))]
    if kind == "echo":
        return _ECHOES[int(rng.integers(len(_ECHOES)))].format(prompt=prompt)
    if kind == "mojibake":
        return _mojibake(answer, rng)
    if kind == "repeated":
        sentence = SENTENCE_END.split(answer)[0]
        return " ".join([sentence] * int(rng.integers(3, 7)))
    if kind == "code":
        return d.code if d.code.count("\n") >= 1 else f"{d.code}\n    pass"
    raise ValueError(f"unknown junk kind {kind!r}; known: {JUNK_KINDS}")


def _mojibake(text: str, rng: np.random.Generator) -> str:
    """Typographic quotes and dashes, then the UTF-8 bytes shown as cp1252 (``â€™``)."""
    text = text.replace("'", "\u2019").replace("--", "\u2014").replace("...", "\u2026")
    words = text.split(" ")
    for i in rng.choice(len(words), size=min(2, len(words)), replace=False):
        words[int(i)] = f"\u201c{words[int(i)]}\u201d"  # something to break in every answer
    return "".join(_CP1252[b] for b in " ".join(words).encode("utf-8"))


def _cp1252_table() -> tuple[str, ...]:
    """Byte -> character as cp1252 shows it; its five undefined bytes map to U+00xx."""
    out = []
    for b in range(256):
        try:
            out.append(bytes([b]).decode("cp1252"))
        except UnicodeDecodeError:
            out.append(chr(b))
    return tuple(out)


_CP1252 = _cp1252_table()
