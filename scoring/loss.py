"""Per-example loss under a model: mean bits per byte of each text, or of a response given
its prompt.

The score behind RHO-LOSS-style selection (Mindermann et al., "Prioritized Training on
Points that are Learnable, Worth Learning, and Not Yet Learnt", ICML 2022): the loss of an
example under the current model, and under a reference model, compared per example.

Each text is scored as BOS + its tokens (UTF-8 bytes, or BPE ids for a model trained with
BPE: the model's own tokenizer, ``trainer.tokenizer.tokenizer_of``), so every token is
predicted (the first from BOS alone); EOS is not scored. Bits per byte is the summed NLL in
bits over the UTF-8 bytes the scored tokens stand for, not over the token count, so it is
comparable across tokenizers. Texts longer than ``max_bytes`` bytes are scored on their
longest token prefix of at most ``max_bytes`` bytes. An empty text has no bytes to predict
and scores NaN.

Prompt/response pairs (``prompts`` given): the layout of training and sampling,
``BOS + render_prefix(prompt) + response`` (prefix and response encoded separately, as in
``trainer.data``), with the bits of the response tokens only, over the response's bytes:
the response's bits per byte *given* the prompt. ``max_bytes`` cuts the response as it cuts
a text; a prompt longer than ``max_prompt_bytes`` keeps its end (the part next to the
answer; ``trainer.sample.prompt_tail``). A ``None`` prompt scores that row as plain text.
Texts are sorted by length and packed into batches of at most ``batch_tokens`` tokens
(padded on the right; the model is causal, so padding never reaches a real position, and
padded targets are masked out).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from trainer.data import render_prefix
from trainer.sample import prompt_tail
from trainer.tokenizer import Tokenizer, tokenizer_of


def _check_prompts(texts: Sequence[str], prompts: Sequence[str | None] | None) -> None:
    if prompts is not None and len(prompts) != len(texts):
        raise ValueError(f"got {len(texts)} texts but {len(prompts)} prompts")


def _encode_rows(
    tok: Tokenizer,
    texts: Sequence[str],
    prompts: Sequence[str | None] | None,
    max_bytes: int,
    max_prompt_bytes: int,
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Token ids, first scored target and scored bytes of each row (see module docstring).

    Row i is ``BOS + prefix + body`` (prefix empty for a text), the body cut to its longest
    token prefix of <= ``max_bytes`` bytes. Inputs are ids[:-1], targets ids[1:]; targets
    ``start[i]:`` are scored (the body's tokens), and ``n_bytes[i]`` is their byte count.
    """
    bodies = tok.encode_batch(texts, bos=False)
    has_prompt = [prompts is not None and prompts[i] is not None for i in range(len(texts))]
    framed = [
        render_prefix(prompt_tail(prompts[i], max_prompt_bytes))  # type: ignore[index]
        for i in range(len(texts))
        if has_prompt[i]
    ]
    prefixes = iter(tok.encode_batch(framed, bos=False))
    bos = np.array([tok.BOS], dtype=np.uint16)
    encoded, start = [], np.zeros(len(texts), dtype=np.int64)
    n_bytes = np.zeros(len(texts), dtype=np.int64)
    for i, body in enumerate(bodies):
        cum = np.cumsum(tok.token_bytes[body])  # bytes covered after each body token
        keep = int(np.searchsorted(cum, max_bytes, side="right"))
        prefix = next(prefixes) if has_prompt[i] else bos[:0]
        encoded.append(np.concatenate([bos, prefix, body[:keep]]))
        start[i] = len(prefix)
        n_bytes[i] = cum[keep - 1] if keep else 0
    return encoded, start, n_bytes


@torch.no_grad()
def example_bpb(
    model: torch.nn.Module,
    texts: Sequence[str],
    prompts: Sequence[str | None] | None = None,
    *,
    max_bytes: int = 2048,
    max_prompt_bytes: int = 1024,
    batch_tokens: int = 16384,
    progress: Callable[[int], None] | None = None,
    tokenizer: Tokenizer | None = None,
) -> np.ndarray:
    """Mean bits per byte of each text, or of each response given its prompt (float64,
    input order). See the module docstring.

    ``tokenizer`` defaults to the one the model was trained with."""
    if max_bytes < 1 or batch_tokens < 1 or max_prompt_bytes < 0:
        raise ValueError(
            f"need max_bytes >= 1, batch_tokens >= 1 and max_prompt_bytes >= 0, got "
            f"{max_bytes}, {batch_tokens}, {max_prompt_bytes}"
        )
    _check_prompts(texts, prompts)
    tok = tokenizer if tokenizer is not None else tokenizer_of(model)
    encoded, first, n_bytes = _encode_rows(tok, texts, prompts, max_bytes, max_prompt_bytes)
    # rows with no byte to score (empty text or response) are left out
    lengths = np.array(
        [len(ids) - 1 if n else 0 for ids, n in zip(encoded, n_bytes, strict=True)], np.int64
    )
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
        pos = torch.arange(width, device=device)[None, :]
        mask = (pos < torch.from_numpy(lengths[idx]).to(device)[:, None]) & (
            pos >= torch.from_numpy(first[idx]).to(device)[:, None]
        )  # (batch, width): the body's targets
        nats = (nll * mask).double().sum(1).cpu().numpy()
        result[idx] = nats / math.log(2) / n_bytes[idx]
        if progress is not None:
            progress(len(idx))
        start = end
    model.train(was_training)
    return result


# -- Hugging Face causal LMs ---------------------------------------------------------------
def _truncate_utf8(text: str, max_bytes: int) -> str:
    """The longest prefix of ``text`` whose UTF-8 encoding fits in ``max_bytes`` bytes."""
    raw = text.encode("utf-8")
    if len(raw) <= max_bytes:
        return text
    return raw[:max_bytes].decode("utf-8", errors="ignore")


def _hf_encode_pair(
    tokenizer,
    prompt: str,
    response: str,
    bos: int | None,
    ctx: int | None,
    max_bytes: int,
    max_prompt_bytes: int,
) -> tuple[list[int], int, int]:
    """``[BOS] + prefix + response`` ids, the first scored target, the response's bytes.

    The response is cut to ``max_bytes`` bytes; the prefix (never the response) gives way
    from the left when the row exceeds the model's context ``ctx``.
    """
    prefix = render_prefix(prompt_tail(prompt, max_prompt_bytes))
    head = tokenizer(prefix, add_special_tokens=False)["input_ids"]
    body = tokenizer(_truncate_utf8(response, max_bytes), add_special_tokens=False)["input_ids"]
    lead = [bos] if bos is not None else []
    if ctx:
        body = body[: max(ctx - len(lead) - 1, 0)]  # at least one prefix token as context
        head = head[max(len(head) - (ctx - len(lead) - len(body)), 0) :]
    ids = lead + list(head) + list(body)
    n_bytes = len(tokenizer.decode(body, skip_special_tokens=True).encode("utf-8"))
    return ids, len(ids) - len(body) - 1, n_bytes


@torch.no_grad()
def hf_example_bpb(
    model: torch.nn.Module,
    tokenizer,
    texts: Sequence[str],
    prompts: Sequence[str | None] | None = None,
    *,
    max_bytes: int = 2048,
    max_prompt_bytes: int = 1024,
    batch_tokens: int = 16384,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Mean bits per byte of each text under a ``transformers`` causal LM (float64, input order).

    Tokens are not bytes, so the loss is mapped back to bytes: the summed NLL (nats) of the
    predicted tokens, in bits, over the UTF-8 bytes those tokens decode to. With a BOS token
    every text token is predicted (``BOS + tokens``); without one the first token has no
    context and is neither scored nor counted. Texts are cut to ``max_bytes`` UTF-8 bytes
    before tokenising and to the model's context (``max_position_embeddings`` /
    ``n_positions`` when it has one). A text with no predicted byte scores NaN.

    With ``prompts``, a row is ``[BOS] + render_prefix(prompt) + response``, prefix and
    response tokenised separately, and only the response's tokens and bytes count (the
    prefix always precedes them, so with or without BOS every response token is predicted).
    """
    if max_bytes < 1 or batch_tokens < 1 or max_prompt_bytes < 0:
        raise ValueError(
            f"need max_bytes >= 1, batch_tokens >= 1 and max_prompt_bytes >= 0, got "
            f"{max_bytes}, {batch_tokens}, {max_prompt_bytes}"
        )
    _check_prompts(texts, prompts)
    config = getattr(model, "config", None)
    ctx = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    bos = tokenizer.bos_token_id
    encoded: list[list[int]] = []
    n_bytes = np.zeros(len(texts), dtype=np.int64)
    first = np.zeros(len(texts), dtype=np.int64)  # first scored target of each row
    for i, text in enumerate(texts):
        if prompts is not None and prompts[i] is not None:
            ids, first[i], n_bytes[i] = _hf_encode_pair(
                tokenizer, prompts[i], text, bos, ctx, max_bytes, max_prompt_bytes
            )
            encoded.append(ids)
            continue
        ids = tokenizer(_truncate_utf8(text, max_bytes), add_special_tokens=False)["input_ids"]
        ids = ([bos] if bos is not None else []) + list(ids)
        if ctx:
            ids = ids[:ctx]
        scored = ids[1:] if bos is not None else ids  # tokens whose bytes are counted
        decoded = tokenizer.decode(scored, skip_special_tokens=True)
        if bos is None and ids:  # the first token is context only: drop its bytes
            head = tokenizer.decode(ids[:1], skip_special_tokens=True)
            n_bytes[i] = len(decoded.encode("utf-8")) - len(head.encode("utf-8"))
        else:
            n_bytes[i] = len(decoded.encode("utf-8"))
        encoded.append(ids)
    n_pred = np.array([max(len(ids) - 1, 0) for ids in encoded], dtype=np.int64)
    result = np.full(len(texts), np.nan, dtype=np.float64)
    order = np.argsort(n_pred, kind="stable")
    order = order[(n_pred[order] > first[order]) & (n_bytes[order] > 0)]
    if progress is not None and len(texts) > len(order):
        progress(len(texts) - len(order))

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    start = 0
    while start < len(order):
        end = start + 1
        while end < len(order) and (end + 1 - start) * (n_pred[order[end]] + 1) <= batch_tokens:
            end += 1
        idx = order[start:end]
        width = int(n_pred[idx[-1]]) + 1
        ids = np.full((len(idx), width), pad, dtype=np.int64)  # (batch, width)
        attn = np.zeros((len(idx), width), dtype=np.int64)
        for row, i in enumerate(idx):
            ids[row, : len(encoded[i])] = encoded[i]
            attn[row, : len(encoded[i])] = 1
        ids_t = torch.from_numpy(ids).to(device)
        attn_t = torch.from_numpy(attn).to(device)
        logits = model(input_ids=ids_t, attention_mask=attn_t).logits[:, :-1].float()
        nll = F.cross_entropy(logits.flatten(0, 1), ids_t[:, 1:].flatten(), reduction="none").view(
            len(idx), width - 1
        )  # (batch, width - 1)
        pos = torch.arange(width - 1, device=device)[None, :]
        scored = attn_t[:, 1:] * (pos >= torch.from_numpy(first[idx]).to(device)[:, None])
        nats = (nll * scored).double().sum(1).cpu().numpy()
        result[idx] = nats / math.log(2) / n_bytes[idx]
        if progress is not None:
            progress(len(idx))
        start = end
    model.train(was_training)
    return result


class LossScorer:
    """One interface over both model kinds: ``bpb(texts)`` and ``sample(n, ...)``.

    ``tokenizer`` is None for the project's own models (``trainer``; they carry their byte or
    BPE tokenizer, see ``trainer.tokenizer.tokenizer_of``) and a ``transformers`` tokenizer
    for a Hugging Face causal LM.
    """

    def __init__(self, model: torch.nn.Module, tokenizer=None) -> None:
        self.model = model
        self.tokenizer = tokenizer

    def bpb(
        self,
        texts: Sequence[str],
        prompts: Sequence[str | None] | None = None,
        *,
        max_bytes: int = 2048,
        max_prompt_bytes: int = 1024,
        batch_tokens: int = 16384,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Bits per byte of each text, or of each response given its prompt (``prompts``)."""
        kw = {
            "max_bytes": max_bytes,
            "max_prompt_bytes": max_prompt_bytes,
            "batch_tokens": batch_tokens,
            "progress": progress,
        }
        if self.tokenizer is None:
            return example_bpb(self.model, texts, prompts, **kw)
        return hf_example_bpb(self.model, self.tokenizer, texts, prompts, **kw)

    @torch.no_grad()
    def respond(
        self,
        prompts: Sequence[str],
        *,
        max_bytes: int,
        temperature: float,
        seed: int,
        max_prompt_bytes: int = 1024,
        batch_size: int = 64,
    ) -> list[str]:
        """The model's own response to each prompt (input order), each cut to ``max_bytes``.

        The model reads ``[BOS] + render_prefix(prompt)`` and writes until EOS or
        ``max_bytes`` bytes; the prompt is not part of the answer. Deterministic given
        (seed, batch_size) on a device; temperature 0 is greedy.
        """
        if self.tokenizer is None:
            from trainer.sample import sample_responses

            return sample_responses(
                self.model,
                prompts,
                max_bytes=max_bytes,
                temperature=temperature,
                seed=seed,
                batch_size=batch_size,
                max_prompt_bytes=max_prompt_bytes,
            )
        return _hf_respond(
            self.model,
            self.tokenizer,
            prompts,
            max_bytes=max_bytes,
            temperature=temperature,
            seed=seed,
            max_prompt_bytes=max_prompt_bytes,
            batch_size=batch_size,
        )

    @torch.no_grad()
    def sample(
        self, n: int, *, max_bytes: int, temperature: float, seed: int, batch_size: int = 128
    ) -> list[str]:
        """``n`` texts written by the model from scratch, each cut to ``max_bytes`` bytes."""
        if self.tokenizer is None:
            from trainer.sample import sample_texts

            return sample_texts(
                self.model,
                n,
                max_bytes=max_bytes,
                temperature=temperature,
                seed=seed,
                batch_size=batch_size,
            )
        tok = self.tokenizer
        start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        if start is None:
            raise ValueError("the tokenizer has neither a BOS nor an EOS token to start samples")
        gen = torch.Generator(device="cpu").manual_seed(seed)
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
        device = next(self.model.parameters()).device
        out: list[str] = []
        while len(out) < n:
            b = min(batch_size, n - len(out))
            ids = torch.full((b, 1), start, dtype=torch.long, device=device)
            seqs = self.model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                do_sample=True,
                temperature=temperature,
                top_k=0,
                max_new_tokens=max_bytes,  # a token is at least one byte
                pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else start,
            )
            for row in seqs[:, 1:].tolist():
                out.append(_truncate_utf8(tok.decode(row, skip_special_tokens=True), max_bytes))
        return out


@torch.no_grad()
def _hf_respond(
    model: torch.nn.Module,
    tokenizer,
    prompts: Sequence[str],
    *,
    max_bytes: int,
    temperature: float,
    seed: int,
    max_prompt_bytes: int,
    batch_size: int,
) -> list[str]:
    """``LossScorer.respond`` for a ``transformers`` model: ``generate`` after the prefix.

    Prompts of a batch are left-padded (attention mask 0 on the padding) so that every row's
    answer starts at the same position; only the generated tokens are decoded.
    """
    tok = tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    if pad is None:
        raise ValueError("the tokenizer has neither a PAD nor an EOS token to pad prompts with")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
    device = next(model.parameters()).device
    lead = [tok.bos_token_id] if tok.bos_token_id is not None else []
    heads = [
        lead
        + tok(render_prefix(prompt_tail(p, max_prompt_bytes)), add_special_tokens=False)[
            "input_ids"
        ]
        for p in prompts
    ]
    out: list[str] = []
    for start in range(0, len(heads), batch_size):
        rows = heads[start : start + batch_size]
        width = max(len(r) for r in rows)
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
        sampling = {"do_sample": True, "temperature": temperature, "top_k": 0}
        seqs = model.generate(
            input_ids=ids,
            attention_mask=mask,
            **(sampling if temperature > 0 else {"do_sample": False}),
            max_new_tokens=max_bytes,  # a token is at least one byte
            pad_token_id=pad,
            eos_token_id=tok.eos_token_id,
        )
        for row in seqs[:, width:].tolist():
            out.append(_truncate_utf8(tok.decode(row, skip_special_tokens=True), max_bytes))
    return out


def shuffle_words(text: str) -> str:
    """The text's whitespace-separated words in a random order, seeded by the text itself."""
    words = text.split()
    seed = int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")
    order = np.random.default_rng(seed).permutation(len(words))
    return " ".join(words[i] for i in order)


def order_gain(scorer: LossScorer, texts: Sequence[str], bpb: np.ndarray, **kw) -> np.ndarray:
    """Bits per byte the model saves thanks to word order: ``bpb(shuffled words) - bpb``.

    A coherence signal that, unlike raw loss, does not depend on how fluent the model is
    overall: prose gains clearly from its word order, word salad gains about nothing.
    ``bpb`` is the texts' own bits per byte under the same scorer (computed once upstream).
    """
    return scorer.bpb([shuffle_words(t) for t in texts], **kw) - np.asarray(bpb, np.float64)
