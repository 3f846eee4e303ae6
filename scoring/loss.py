"""Per-example loss under a model: mean bits per byte of each text.

The score behind RHO-LOSS-style selection (Mindermann et al., "Prioritized Training on
Points that are Learnable, Worth Learning, and Not Yet Learnt", ICML 2022): the loss of an
example under the current model, and under a reference model, compared per example.

Each text is scored as BOS + its UTF-8 bytes, so every byte is predicted (the first from
BOS alone); EOS is not scored. Texts longer than ``max_bytes`` bytes are scored on their
first ``max_bytes`` bytes only. An empty text has no bytes to predict and scores NaN.
Texts are sorted by length and packed into batches of at most ``batch_tokens`` tokens
(padded on the right; the model is causal, so padding never reaches a real position, and
padded targets are masked out).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from trainer.tokenizer import ByteTokenizer


@torch.no_grad()
def example_bpb(
    model: torch.nn.Module,
    texts: Sequence[str],
    *,
    max_bytes: int = 2048,
    batch_tokens: int = 16384,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Mean bits per byte of each text (float64, input order). See the module docstring."""
    if max_bytes < 1 or batch_tokens < 1:
        raise ValueError(
            f"need max_bytes >= 1 and batch_tokens >= 1, got {max_bytes}, {batch_tokens}"
        )
    tok = ByteTokenizer()
    # BOS + bytes, truncated: inputs are ids[:-1], targets ids[1:] (length = n_bytes)
    encoded = [tok.encode(t, bos=True)[: max_bytes + 1] for t in texts]
    lengths = np.array([len(ids) - 1 for ids in encoded], dtype=np.int64)
    result = np.full(len(texts), np.nan, dtype=np.float64)
    order = np.argsort(lengths, kind="stable")
    order = order[lengths[order] > 0]
    if progress is not None and len(texts) > len(order):
        progress(len(texts) - len(order))  # empty texts: nothing to run

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    start = 0
    while start < len(order):
        # the longest text in the batch is the last one (ascending order)
        end = start + 1
        while end < len(order) and (end + 1 - start) * lengths[order[end]] <= batch_tokens:
            end += 1
        idx = order[start:end]
        width = int(lengths[idx[-1]])
        ids = np.zeros((len(idx), width + 1), dtype=np.int64)  # (batch, width + 1)
        for row, i in enumerate(idx):
            ids[row, : lengths[i] + 1] = encoded[i]
        ids_t = torch.from_numpy(ids).to(device)
        logits = model(ids_t[:, :-1]).float()  # (batch, width, vocab)
        nll = F.cross_entropy(logits.flatten(0, 1), ids_t[:, 1:].flatten(), reduction="none").view(
            len(idx), width
        )  # (batch, width)
        mask = (
            torch.arange(width, device=device)[None, :]
            < torch.from_numpy(lengths[idx]).to(device)[:, None]
        )
        nats = (nll * mask).double().sum(1).cpu().numpy()
        result[idx] = nats / math.log(2) / lengths[idx]
        if progress is not None:
            progress(len(idx))
        start = end
    model.train(was_training)
    return result
