"""Sampling text from the model with its recurrent form (constant work per token)."""

from __future__ import annotations

import torch

from trainer.models import LanguageModel
from trainer.tokenizer import Tokenizer, tokenizer_of


@torch.no_grad()
def sample_texts(
    model: LanguageModel,
    n: int,
    max_bytes: int = 256,
    *,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 64,
    tokenizer: Tokenizer | None = None,
) -> list[str]:
    """Draw ``n`` documents, each started from BOS and stopped at EOS or ``max_bytes`` bytes.

    Only text tokens and EOS can be drawn (BOS and the vocabulary padding are masked out);
    a BPE token that crosses ``max_bytes`` is cut. ``tokenizer`` defaults to the model's own
    (``tokenizer_of``). temperature == 0 means greedy. Deterministic given (seed,
    batch_size) on a device.
    """
    if n < 0 or max_bytes < 0 or batch_size < 1 or temperature < 0:
        raise ValueError(
            f"sample_texts: need n >= 0, max_bytes >= 0, batch_size >= 1, temperature >= 0; "
            f"got n={n}, max_bytes={max_bytes}, batch_size={batch_size}, "
            f"temperature={temperature}"
        )
    tok = tokenizer if tokenizer is not None else tokenizer_of(model)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    token_bytes = torch.zeros(model.cfg.vocab_size, dtype=torch.long, device=device)
    token_bytes[: tok.vocab_size] = torch.from_numpy(tok.token_bytes).to(device)
    banned = token_bytes == 0  # specials and vocabulary padding ...
    banned[tok.EOS] = False  # ... except EOS

    texts: list[str] = []
    for start in range(0, n, batch_size):
        b = min(batch_size, n - start)
        cache = model.allocate_inference_cache(b, device)
        ids = torch.full((b,), tok.BOS, dtype=torch.long, device=device)
        out = torch.empty(b, max_bytes, dtype=torch.long, device=device)
        done = torch.zeros(b, dtype=torch.bool, device=device)
        length = torch.full((b,), max_bytes, dtype=torch.long, device=device)  # tokens kept
        n_bytes = torch.zeros(b, dtype=torch.long, device=device)
        for t in range(max_bytes):  # every text token is at least one byte
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
            n_bytes += token_bytes[ids]
            full = (n_bytes >= max_bytes) & ~done
            length[full] = t + 1
            done |= full
            if bool(done.all()):
                break
        for row, n_tokens in zip(out.cpu(), length.tolist(), strict=True):
            data = tok.decode_bytes(row[:n_tokens].numpy())[:max_bytes]
            texts.append(data.decode("utf-8", errors="replace"))
    model.train(was_training)
    return texts
