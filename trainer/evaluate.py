"""Corpus-level bits per byte on held-out text and prompt/response pairs.

bpb = (sum over predicted text tokens of -log2 p(token | context)) / (UTF-8 bytes of those
tokens). With the byte tokenizer a token is a byte; with BPE a token stands for one or more
bytes (``tokenizer.token_bytes``), and since a document's tokens add up to its UTF-8 bytes the
denominator is the text's byte count either way, which makes the number comparable across
tokenizers. Documents are packed as in training (BOS + tokens + EOS, contiguous; a pair as
BOS + prefix + response + EOS, see trainer.data), so context carries across document
boundaries; EOS/BOS predictions and padding are excluded.

For a pair only the response counts: bits on the response tokens (given the prompt) over
the response's UTF-8 bytes; the prompt's tokens are read, never scored. ``corpus_bits``
keeps the sums of texts and responses apart, so a mixed validation set reports the bpb
over everything counted, over texts and over responses from one pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from trainer.data import RESPONSE, TEXT, Example, token_stream_kinds
from trainer.tokenizer import Tokenizer, tokenizer_of


def _ratio(bits: float, n_bytes: int) -> float:
    return bits / n_bytes if n_bytes else math.nan


@dataclass(frozen=True)
class CorpusBits:
    """Bits and bytes of the counted targets, texts and pair responses apart."""

    text_bits: float
    text_bytes: int
    response_bits: float
    response_bytes: int

    @property
    def bpb(self) -> float:
        """Over everything counted (text and responses); NaN if nothing was counted."""
        return _ratio(self.text_bits + self.response_bits, self.text_bytes + self.response_bytes)

    @property
    def text_bpb(self) -> float:
        return _ratio(self.text_bits, self.text_bytes)

    @property
    def response_bpb(self) -> float:
        return _ratio(self.response_bits, self.response_bytes)


@torch.no_grad()
def corpus_bits(
    model: torch.nn.Module,
    examples: Sequence[Example],
    seq_len: int = 256,
    batch_size: int = 16,
    *,
    tokenizer: Tokenizer | None = None,
) -> CorpusBits:
    """Bits and bytes of ``examples`` (texts and pairs) under ``model``, in one pass.

    ``tokenizer`` defaults to the one the model was trained with (``tokenizer_of``)."""
    tok = tokenizer if tokenizer is not None else tokenizer_of(model)
    stream, kinds = token_stream_kinds(examples, tok)
    if len(stream) < 2:
        return CorpusBits(0.0, 0, 0.0, 0)
    # windows of seq_len + 1 with stride seq_len; the last one padded with EOS and masked
    n_seq = -(-(len(stream) - 1) // seq_len)
    padded = np.full(n_seq * seq_len + 1, tok.EOS, dtype=np.int64)
    padded[: len(stream)] = stream
    padded_kinds = np.zeros(n_seq * seq_len + 1, dtype=np.uint8)  # padding counts nowhere
    padded_kinds[: len(stream)] = kinds
    idx = np.arange(n_seq)[:, None] * seq_len + np.arange(seq_len + 1)[None, :]
    windows = torch.from_numpy(padded[idx])  # (n_seq, seq_len + 1)
    # bytes each target stands for; 0 on BOS/EOS and on padding
    target_bytes = torch.from_numpy(
        tok.token_bytes[padded[idx[:, 1:]]] * (idx[:, 1:] < len(stream))
    )
    target_kinds = torch.from_numpy(padded_kinds[idx[:, 1:]])  # (n_seq, seq_len)

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    nats = {TEXT: 0.0, RESPONSE: 0.0}
    n_bytes = {TEXT: 0, RESPONSE: 0}
    for i in range(0, n_seq, batch_size):
        batch = windows[i : i + batch_size].to(device)
        targets = batch[:, 1:]
        logits = model(batch[:, :-1]).float()  # (b, seq_len, vocab)
        nll = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
        b_bytes = target_bytes[i : i + batch_size].flatten().to(device)  # (b * seq_len,)
        b_kinds = target_kinds[i : i + batch_size].flatten().to(device)
        for kind in (TEXT, RESPONSE):
            counted = (b_bytes > 0) & (b_kinds == kind)
            nats[kind] += nll[counted].double().sum().item()
            n_bytes[kind] += int(b_bytes[counted].sum().item())
    model.train(was_training)
    return CorpusBits(
        text_bits=nats[TEXT] / math.log(2),
        text_bytes=n_bytes[TEXT],
        response_bits=nats[RESPONSE] / math.log(2),
        response_bytes=n_bytes[RESPONSE],
    )


def corpus_bpb(
    model: torch.nn.Module,
    texts: Sequence[Example],
    seq_len: int = 256,
    batch_size: int = 16,
    *,
    tokenizer: Tokenizer | None = None,
) -> float:
    """Bits per byte of ``texts`` (pairs: their responses) under ``model``; NaN if the texts
    hold no bytes.

    ``tokenizer`` defaults to the one the model was trained with (``tokenizer_of``)."""
    return corpus_bits(model, texts, seq_len, batch_size, tokenizer=tokenizer).bpb
