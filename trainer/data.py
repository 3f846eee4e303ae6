"""Sequence packing and a deterministic, resumable batch order.

Documents become BOS + tokens + EOS (bytes or BPE ids, see trainer.tokenizer) and are
concatenated into one token stream, which is cut into windows of seq_len + 1 tokens with
stride seq_len (inputs = window[:-1], targets = window[1:]), so every token is a target
exactly once. The stream is read circularly: the last window wraps around to the start instead of being dropped or padded, so no text is
lost and even a corpus shorter than one window yields a batch.

Document boundaries: a window may span several documents. The boundary is marked (EOS then
BOS) but not reset: the model's context (the SSM state, the transformer's attention) runs on
across it, as in GPT-2/nanoGPT packing, and every target counts in the loss. This keeps every
window full (no padding, no per-document state resets in the scan), and the model learns
from the EOS/BOS pair that what precedes belongs to another document. The EOS -> BOS target
is nearly free to predict and bits per byte excludes it (trainer.evaluate counts the
bytes of text targets only), so it does not flatter the reported numbers.

Batch order: epoch e visits the windows in the permutation drawn from (seed, e); batch k
holds the items k * batch_size ... (k + 1) * batch_size - 1 of that endless sequence. The
only state is a position counter, so resuming at a position reproduces the run exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from trainer.tokenizer import Tokenizer


class Pair(NamedTuple):
    """A prompt and its response: trained and scored on the response tokens only."""

    prompt: str
    response: str


# What the model reads before a response: the prompt framed so that a model trained on plain
# text and on pairs alike learns where an answer starts. Plain str in, plain str out.
PROMPT_FORMAT = "### Question\n{prompt}\n### Answer\n"


def render_prefix(prompt: str) -> str:
    """The text that precedes a response in training, scoring and sampling."""
    return PROMPT_FORMAT.format(prompt=prompt)


def token_stream(texts: Sequence[str], tokenizer: Tokenizer) -> np.ndarray:
    """All documents as one uint16 stream: BOS doc0 EOS BOS doc1 EOS ..."""
    if not texts:
        return np.zeros(0, dtype=np.uint16)
    return np.concatenate(tokenizer.encode_batch(texts, bos=True, eos=True))


def pack(texts: Sequence[str], seq_len: int, tokenizer: Tokenizer) -> torch.Tensor:
    """Pack documents into (n_seq, seq_len + 1) int64 windows (see module docstring)."""
    if not texts:
        raise ValueError("pack: no texts given")
    stream = token_stream(texts, tokenizer)
    n_seq = -(-(len(stream) - 1) // seq_len)  # ceil: windows needed to cover every target
    idx = np.arange(n_seq)[:, None] * seq_len + np.arange(seq_len + 1)[None, :]
    return torch.from_numpy(stream[idx % len(stream)].astype(np.int64))  # (n_seq, seq_len+1)


class BatchIterator:
    """Endless batches over packed windows in a seeded order; ``position`` is the state."""

    def __init__(self, data: torch.Tensor, batch_size: int, seed: int, position: int = 0):
        self.data = data
        self.batch_size = batch_size
        self.seed = seed
        self.position = position  # items (windows) handed out so far
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            self._perms = {
                epoch: np.random.default_rng([self.seed, epoch]).permutation(len(self.data))
            }
        return self._perms[epoch]

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets), each (batch_size, seq_len) int64."""
        n = len(self.data)
        items = []
        for i in range(self.position, self.position + self.batch_size):
            items.append(self._perm(i // n)[i % n])
        self.position += self.batch_size
        batch = self.data[torch.from_numpy(np.array(items))]  # (batch_size, seq_len + 1)
        return batch[:, :-1], batch[:, 1:]
