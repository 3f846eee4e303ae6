"""Sequence packing with a per-target loss mask, and a deterministic, resumable batch order.

A training example is a plain text (``str``) or a prompt/response pair (``Pair``).

- A text becomes BOS + tokens + EOS (bytes or BPE ids, see trainer.tokenizer); every target
  in it counts in the loss.
- A pair becomes BOS + encode(render_prefix(prompt)) + encode(response) + EOS, the prefix and
  the response encoded separately so the boundary is the same in training, scoring and
  sampling. Only the response tokens and the final EOS count as targets: the model reads
  the prompt but is not trained to write it (the prompt is masked).

All examples are concatenated into one token stream, which is cut into windows of seq_len + 1
tokens with stride seq_len (inputs = window[:-1], targets = window[1:]), so every token is a
target exactly once. The stream is read circularly: the last window wraps around to the start instead of being dropped or padded, so no text is
lost and even a corpus shorter than one window yields a batch. Beside the windows, ``pack``
keeps a boolean mask over the targets (True = counted); a corpus without pairs has no mask
(``None``: every target counts), which keeps plain-text training exactly as it was.

Document boundaries: a window may span several documents. The boundary is marked (EOS then
BOS) but not reset: the model's context (the SSM state, the transformer's attention) runs on
across it, as in GPT-2/nanoGPT packing, and every target of a text counts in the loss. This
keeps every window full (no padding, no per-document state resets in the scan), and the model
learns from the EOS/BOS pair that what precedes belongs to another document. The EOS -> BOS
target is nearly free to predict and bits per byte excludes it (trainer.evaluate counts the
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

Example = str | Pair

# What each token of the stream is as a target (``token_stream_kinds``)
NOT_COUNTED = 0  # BOS and prompt tokens of a pair
TEXT = 1  # every token of a plain text (BOS and EOS included)
RESPONSE = 2  # the response tokens and the final EOS of a pair


def render_prefix(prompt: str) -> str:
    """The text that precedes a response in training, scoring and sampling."""
    return PROMPT_FORMAT.format(prompt=prompt)


def example_text(example: Example) -> str:
    """The example as the model reads it (a pair: prefix + response), e.g. to learn BPE."""
    if isinstance(example, Pair):
        return render_prefix(example.prompt) + example.response
    return example


def has_pairs(examples: Sequence[Example]) -> bool:
    return any(isinstance(e, Pair) for e in examples)


def token_stream(texts: Sequence[str], tokenizer: Tokenizer) -> np.ndarray:
    """All documents as one uint16 stream: BOS doc0 EOS BOS doc1 EOS ..."""
    if not texts:
        return np.zeros(0, dtype=np.uint16)
    return np.concatenate(tokenizer.encode_batch(texts, bos=True, eos=True))


def token_stream_kinds(
    examples: Sequence[Example], tokenizer: Tokenizer
) -> tuple[np.ndarray, np.ndarray]:
    """(stream, kinds): the uint16 token stream of ``examples`` and, per token, what it is as
    a target (``NOT_COUNTED`` / ``TEXT`` / ``RESPONSE``, uint8). For texts only, the stream
    equals ``token_stream``."""
    texts = [e for e in examples if not isinstance(e, Pair)]
    pairs = [e for e in examples if isinstance(e, Pair)]
    text_ids = iter(tokenizer.encode_batch(texts, bos=True, eos=True) if texts else [])
    prefix_ids = iter(
        tokenizer.encode_batch([render_prefix(p.prompt) for p in pairs], bos=True, eos=False)
        if pairs
        else []
    )
    response_ids = iter(
        tokenizer.encode_batch([p.response for p in pairs], bos=False, eos=True) if pairs else []
    )
    parts: list[np.ndarray] = []
    kinds: list[np.ndarray] = []
    for example in examples:
        if isinstance(example, Pair):
            prefix, response = next(prefix_ids), next(response_ids)  # BOS+prefix, response+EOS
            parts += [prefix, response]
            kinds += [
                np.full(len(prefix), NOT_COUNTED, np.uint8),
                np.full(len(response), RESPONSE, np.uint8),
            ]
        else:
            ids = next(text_ids)
            parts.append(ids)
            kinds.append(np.full(len(ids), TEXT, np.uint8))
    if not parts:
        return np.zeros(0, dtype=np.uint16), np.zeros(0, dtype=np.uint8)
    return np.concatenate(parts), np.concatenate(kinds)


class Packed(NamedTuple):
    """Packed training windows and which of their targets count in the loss."""

    windows: torch.Tensor  # (n_seq, seq_len + 1) int64
    mask: torch.Tensor | None  # (n_seq, seq_len) bool, True = counted; None: all count


def pack_examples(examples: Sequence[Example], seq_len: int, tokenizer: Tokenizer) -> Packed:
    """Pack texts and pairs into windows plus the target mask (see module docstring)."""
    if not examples:
        raise ValueError("pack: no texts given")
    stream, kinds = token_stream_kinds(examples, tokenizer)
    n_seq = -(-(len(stream) - 1) // seq_len)  # ceil: windows needed to cover every target
    idx = np.arange(n_seq)[:, None] * seq_len + np.arange(seq_len + 1)[None, :]
    idx %= len(stream)  # (n_seq, seq_len + 1) positions in the circular stream
    windows = torch.from_numpy(stream[idx].astype(np.int64))
    if not has_pairs(examples):
        return Packed(windows, None)
    return Packed(windows, torch.from_numpy(kinds[idx[:, 1:]] != NOT_COUNTED))


def pack(texts: Sequence[Example], seq_len: int, tokenizer: Tokenizer) -> torch.Tensor:
    """Pack documents into (n_seq, seq_len + 1) int64 windows (see module docstring)."""
    return pack_examples(texts, seq_len, tokenizer).windows


class BatchIterator:
    """Endless batches over packed windows in a seeded order; ``position`` is the state.

    ``mask`` (n_seq, seq_len) bool, from ``pack_examples``: which targets count; None when
    every target counts."""

    def __init__(
        self,
        data: torch.Tensor,
        batch_size: int,
        seed: int,
        position: int = 0,
        mask: torch.Tensor | None = None,
    ):
        if mask is not None and mask.shape != (data.shape[0], data.shape[1] - 1):
            raise ValueError(f"BatchIterator: mask {tuple(mask.shape)} does not fit {data.shape}")
        self.data = data
        self.mask = mask
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

    def _next_items(self) -> torch.Tensor:
        n = len(self.data)
        items = []
        for i in range(self.position, self.position + self.batch_size):
            items.append(self._perm(i // n)[i % n])
        self.position += self.batch_size
        return torch.from_numpy(np.array(items))

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets), each (batch_size, seq_len) int64."""
        batch = self.data[self._next_items()]  # (batch_size, seq_len + 1)
        return batch[:, :-1], batch[:, 1:]

    def next_masked(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(inputs, targets, mask): as ``next_batch`` plus the (batch_size, seq_len) bool mask
        of counted targets, or None when every target counts."""
        items = self._next_items()
        batch = self.data[items]  # (batch_size, seq_len + 1)
        mask = None if self.mask is None else self.mask[items]
        return batch[:, :-1], batch[:, 1:], mask
