"""Junk texts for the demo pool, made from real documents with a seeded generator.

One generator per kind in :data:`JUNK_KINDS` (step 4 of :mod:`pipelines.demo_corpus`):
exact copies, word edits, shuffled words, mojibake, web boilerplate, mid-sentence fragments,
repeated sentences and code-only stdlib functions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from pipelines.stdlib_text import SENTENCE_END, CodeSnippet, Doc

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


class JunkMaker:
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
        sentences = SENTENCE_END.split(text)
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
