"""Texts with known near-duplicate structure, shared by the dedup tests."""

from __future__ import annotations

import numpy as np


def random_docs(n: int, seed: int, words: int = 60) -> list[str]:
    """Texts of random 3-8 letter words: unrelated texts share almost no 5-char shingles."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = ["".join(rng.choice(letters, size=int(k))) for k in rng.integers(3, 9, 3000)]
    return [" ".join(rng.choice(vocab, size=words)) for _ in range(n)]


def edit(text: str, n_edits: int, seed: int) -> str:
    """Replace ``n_edits`` words with fresh ones (each costs ~ word length + 4 shingles)."""
    rng = np.random.default_rng(seed)
    words = text.split()
    for i in rng.choice(len(words), size=n_edits, replace=False):
        words[int(i)] = "q" + "".join(rng.choice(list("xyzw"), size=5))
    return " ".join(words)
