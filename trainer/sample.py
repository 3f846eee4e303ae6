"""Sampling text from the model with its recurrent form (constant work per token)."""

from __future__ import annotations

import torch

from trainer.models import LanguageModel
from trainer.tokenizer import ByteTokenizer


@torch.no_grad()
def sample_texts(
    model: LanguageModel,
    n: int,
    max_bytes: int = 256,
    *,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 64,
) -> list[str]:
    """Draw ``n`` documents, each started from BOS and stopped at EOS or ``max_bytes`` bytes.

    Only bytes and EOS can be drawn (BOS and the vocabulary padding are masked out).
    temperature == 0 means greedy. Deterministic given (seed, batch_size) on a device.
    """
    if n < 0 or max_bytes < 0 or batch_size < 1 or temperature < 0:
        raise ValueError(
            f"sample_texts: need n >= 0, max_bytes >= 0, batch_size >= 1, temperature >= 0; "
            f"got n={n}, max_bytes={max_bytes}, batch_size={batch_size}, "
            f"temperature={temperature}"
        )
    tok = ByteTokenizer()
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    banned = torch.ones(model.cfg.vocab_size, dtype=torch.bool, device=device)
    banned[:256] = False
    banned[tok.EOS] = False

    texts: list[str] = []
    for start in range(0, n, batch_size):
        b = min(batch_size, n - start)
        cache = model.allocate_inference_cache(b, device)
        ids = torch.full((b,), tok.BOS, dtype=torch.long, device=device)
        out = torch.empty(b, max_bytes, dtype=torch.long, device=device)
        done = torch.zeros(b, dtype=torch.bool, device=device)
        length = torch.full((b,), max_bytes, dtype=torch.long, device=device)
        for t in range(max_bytes):
            logits = model.step(ids, cache).float().masked_fill(banned, float("-inf"))
            if temperature == 0:
                ids = logits.argmax(-1)
            else:
                probs = torch.softmax(logits / temperature, dim=-1)
                ids = torch.multinomial(probs, 1, generator=gen).squeeze(-1)
            ended = (ids == tok.EOS) & ~done
            length[ended] = t
            done |= ended
            out[:, t] = ids
            if bool(done.all()):
                break
        for row, n_bytes in zip(out.cpu(), length.tolist(), strict=True):
            texts.append(tok.decode(row[:n_bytes].numpy()))
    model.train(was_training)
    return texts
