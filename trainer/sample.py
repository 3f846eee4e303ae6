"""Sampling from the model with its recurrent form (constant work per token).

Two uses: documents written from scratch (``sample_texts``: the model-level bar's samples)
and the model's own answer to a prompt (``sample_responses``: the per-example bar of
prompt/response data). Both run the same loop: each row's *head* (``[BOS]``, or ``[BOS] +
render_prefix(prompt)``) is teacher-forced through ``model.step`` one token at a time, rows
of different head lengths side by side in one batch, and each row starts drawing as soon as
its head is read, until EOS or ``max_bytes`` bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from trainer.data import render_prefix
from trainer.models import LanguageModel
from trainer.tokenizer import Tokenizer, tokenizer_of


def prompt_tail(prompt: str, max_bytes: int) -> str:
    """The longest end of ``prompt`` whose UTF-8 encoding fits in ``max_bytes`` bytes.

    A long prompt keeps the part next to the answer (the question usually comes last); a
    character split by the cut is dropped.
    """
    raw = prompt.encode("utf-8", errors="replace")
    if len(raw) <= max_bytes:
        return prompt
    return raw[len(raw) - max_bytes :].decode("utf-8", errors="ignore") if max_bytes else ""


def _check(n: int, max_bytes: int, batch_size: int, temperature: float, name: str) -> None:
    if n < 0 or max_bytes < 0 or batch_size < 1 or temperature < 0:
        raise ValueError(
            f"{name}: need n >= 0, max_bytes >= 0, batch_size >= 1, temperature >= 0; "
            f"got n={n}, max_bytes={max_bytes}, batch_size={batch_size}, "
            f"temperature={temperature}"
        )


@torch.no_grad()
def _continue(
    model: LanguageModel,
    tok: Tokenizer,
    heads: Sequence[np.ndarray],
    max_bytes: int,
    temperature: float,
    gen: torch.Generator,
) -> list[str]:
    """What the model writes after each head (one batch): the drawn text, heads excluded.

    Step t feeds row i its head token t while t < len(head_i), else the token it drew at
    t - 1; the logits of step t are row i's answer token k = t - (len(head_i) - 1) once
    k >= 0. Only text tokens and EOS can be drawn (BOS and the vocabulary padding are
    masked out); a BPE token that crosses ``max_bytes`` is cut.
    """
    b = len(heads)
    if b == 0:
        return []
    if max_bytes == 0:
        return [""] * b
    device = next(model.parameters()).device
    token_bytes = torch.zeros(model.cfg.vocab_size, dtype=torch.long, device=device)
    token_bytes[: tok.vocab_size] = torch.from_numpy(tok.token_bytes).to(device)
    banned = token_bytes == 0  # specials and vocabulary padding ...
    banned[tok.EOS] = False  # ... except EOS

    lens = torch.tensor([len(h) for h in heads], dtype=torch.long, device=device)
    width = int(lens.max())
    head = torch.zeros(b, width, dtype=torch.long, device=device)  # (batch, longest head)
    for row, h in enumerate(heads):
        head[row, : len(h)] = torch.from_numpy(np.asarray(h, dtype=np.int64))
    rows = torch.arange(b, device=device)
    cache = model.allocate_inference_cache(b, device)
    ids = head[:, 0]
    out = torch.zeros(b, max_bytes, dtype=torch.long, device=device)
    done = torch.zeros(b, dtype=torch.bool, device=device)
    length = torch.full((b,), max_bytes, dtype=torch.long, device=device)  # tokens kept
    n_bytes = torch.zeros(b, dtype=torch.long, device=device)
    for t in range(width - 1 + max_bytes):  # every answer token is at least one byte
        logits = model.step(ids, cache).float().masked_fill(banned, float("-inf"))
        if temperature == 0:
            drawn = logits.argmax(-1)
        else:
            probs = torch.softmax(logits / temperature, dim=-1)
            drawn = torch.multinomial(probs, 1, generator=gen).squeeze(-1)
        k = t - (lens - 1)  # (batch,) answer position; < 0 while still reading the head
        live = (k >= 0) & ~done
        kk = k.clamp(0, max_bytes - 1)
        out[rows[live], kk[live]] = drawn[live]
        ended = live & (drawn == tok.EOS)
        length[ended] = kk[ended]
        done |= ended
        n_bytes += torch.where(live, token_bytes[drawn], 0)
        full = live & ~ended & (n_bytes >= max_bytes)
        length[full] = kk[full] + 1
        done |= full
        if bool(done.all()):
            break
        reading = t + 1 < lens
        ids = torch.where(reading, head[:, min(t + 1, width - 1)], drawn)
    texts = []
    for row, n_tokens in zip(out.cpu(), length.tolist(), strict=True):
        data = tok.decode_bytes(row[:n_tokens].numpy())[:max_bytes]
        texts.append(data.decode("utf-8", errors="replace"))
    return texts


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

    ``tokenizer`` defaults to the model's own (``tokenizer_of``). temperature == 0 means
    greedy. Deterministic given (seed, batch_size) on a device.
    """
    _check(n, max_bytes, batch_size, temperature, "sample_texts")
    tok = tokenizer if tokenizer is not None else tokenizer_of(model)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    bos = np.array([tok.BOS], dtype=np.int64)
    texts: list[str] = []
    for start in range(0, n, batch_size):
        b = min(batch_size, n - start)
        texts += _continue(model, tok, [bos] * b, max_bytes, temperature, gen)
    model.train(was_training)
    return texts


@torch.no_grad()
def sample_responses(
    model: LanguageModel,
    prompts: Sequence[str],
    max_bytes: int = 256,
    *,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 64,
    max_prompt_bytes: int = 1024,
    tokenizer: Tokenizer | None = None,
) -> list[str]:
    """The model's answer to each prompt (input order), without the prompt.

    The model reads ``[BOS] + render_prefix(prompt)`` (the layout of ``trainer.data``; a
    prompt over ``max_prompt_bytes`` keeps its end, ``prompt_tail``) and writes until EOS
    or ``max_bytes`` bytes (of the returned UTF-8 text). Prompts are batched by encoded length, so little work goes into
    rows waiting for a long head. Deterministic given (seed, batch_size) on a device.
    """
    _check(len(prompts), max_bytes, batch_size, temperature, "sample_responses")
    tok = tokenizer if tokenizer is not None else tokenizer_of(model)
    framed = [render_prefix(prompt_tail(p, max_prompt_bytes)) for p in prompts]
    heads = [h.astype(np.int64) for h in tok.encode_batch(framed, bos=True)]
    order = sorted(range(len(heads)), key=lambda i: (len(heads[i]), i))
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    answers: list[str] = [""] * len(heads)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = _continue(model, tok, [heads[i] for i in idx], max_bytes, temperature, gen)
        for i, text in zip(idx, batch, strict=True):
            # invalid bytes became U+FFFD (3 bytes): keep the answer within max_bytes
            answers[i] = text.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")
    model.train(was_training)
    return answers
