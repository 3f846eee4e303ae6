"""Corpus-level bits per byte on held-out text.

bpb = (sum over predicted bytes of -log2 p(byte | context)) / (number of predicted bytes).
Documents are packed as in training (BOS + bytes + EOS, contiguous), so context carries
across document boundaries; only targets that are bytes count (EOS/BOS predictions and
padding are excluded), which makes the number comparable across tokenizers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from trainer.data import token_stream
from trainer.tokenizer import ByteTokenizer


@torch.no_grad()
def corpus_bpb(
    model: torch.nn.Module, texts: Sequence[str], seq_len: int = 256, batch_size: int = 16
) -> float:
    """Bits per byte of ``texts`` under ``model``; NaN if the texts hold no bytes."""
    stream = token_stream(texts, ByteTokenizer())
    if len(stream) < 2:
        return math.nan
    # windows of seq_len + 1 with stride seq_len; the last one padded with EOS and masked
    n_seq = -(-(len(stream) - 1) // seq_len)
    padded = np.full(n_seq * seq_len + 1, ByteTokenizer.EOS, dtype=np.int64)
    padded[: len(stream)] = stream
    idx = np.arange(n_seq)[:, None] * seq_len + np.arange(seq_len + 1)[None, :]
    windows = torch.from_numpy(padded[idx])  # (n_seq, seq_len + 1)
    valid = torch.from_numpy(idx[:, 1:] < len(stream))  # (n_seq, seq_len), False on padding

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total_nats, total_bytes = 0.0, 0
    for i in range(0, n_seq, batch_size):
        batch = windows[i : i + batch_size].to(device)
        targets = batch[:, 1:]
        logits = model(batch[:, :-1]).float()  # (b, seq_len, vocab)
        nll = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
        mask = (targets.flatten() < 256) & valid[i : i + batch_size].flatten().to(device)
        total_nats += nll[mask].double().sum().item()
        total_bytes += int(mask.sum().item())
    model.train(was_training)
    return total_nats / math.log(2) / total_bytes if total_bytes else math.nan
