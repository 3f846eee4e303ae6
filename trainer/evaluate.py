"""Corpus-level bits per byte on held-out text.

bpb = (sum over predicted text tokens of -log2 p(token | context)) / (UTF-8 bytes of those
tokens). With the byte tokenizer a token is a byte; with BPE a token stands for one or more
bytes (``tokenizer.token_bytes``), and since a document's tokens add up to its UTF-8 bytes the
denominator is the text's byte count either way, which makes the number comparable across
tokenizers. Documents are packed as in training (BOS + tokens + EOS, contiguous), so context
carries across document boundaries; EOS/BOS predictions and padding are excluded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from trainer.data import token_stream
from trainer.tokenizer import Tokenizer, tokenizer_of


@torch.no_grad()
def corpus_bpb(
    model: torch.nn.Module,
    texts: Sequence[str],
    seq_len: int = 256,
    batch_size: int = 16,
    *,
    tokenizer: Tokenizer | None = None,
) -> float:
    """Bits per byte of ``texts`` under ``model``; NaN if the texts hold no bytes.

    ``tokenizer`` defaults to the one the model was trained with (``tokenizer_of``)."""
    tok = tokenizer if tokenizer is not None else tokenizer_of(model)
    stream = token_stream(texts, tok)
    if len(stream) < 2:
        return math.nan
    # windows of seq_len + 1 with stride seq_len; the last one padded with EOS and masked
    n_seq = -(-(len(stream) - 1) // seq_len)
    padded = np.full(n_seq * seq_len + 1, tok.EOS, dtype=np.int64)
    padded[: len(stream)] = stream
    idx = np.arange(n_seq)[:, None] * seq_len + np.arange(seq_len + 1)[None, :]
    windows = torch.from_numpy(padded[idx])  # (n_seq, seq_len + 1)
    # bytes each target stands for; 0 on BOS/EOS and on padding
    target_bytes = torch.from_numpy(
        tok.token_bytes[padded[idx[:, 1:]]] * (idx[:, 1:] < len(stream))
    )

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total_nats, total_bytes = 0.0, 0
    for i in range(0, n_seq, batch_size):
        batch = windows[i : i + batch_size].to(device)
        targets = batch[:, 1:]
        logits = model(batch[:, :-1]).float()  # (b, seq_len, vocab)
        nll = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
        n_bytes = target_bytes[i : i + batch_size].flatten().to(device)  # (b * seq_len,)
        total_nats += nll[n_bytes > 0].double().sum().item()
        total_bytes += int(n_bytes.sum().item())
    model.train(was_training)
    return total_nats / math.log(2) / total_bytes if total_bytes else math.nan
