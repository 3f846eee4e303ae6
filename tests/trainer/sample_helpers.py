"""Reference answers for the sampling tests, shared by the CPU and the CUDA test files.

Imported as ``from sample_helpers import ...``: pytest puts this folder on ``sys.path`` for
the test modules here (the same way ``tests/kernels/ssd_helpers.py`` is imported).
"""

from __future__ import annotations

import torch

from trainer.data import render_prefix
from trainer.tokenizer import ByteTokenizer


def greedy_by_forward(model, prompt: str, n: int, device: str | torch.device = "cpu") -> str:
    """The greedy answer computed with the parallel form, one whole forward per token.

    The slow, obviously right reference for ``sample_responses(temperature=0)``: the model
    sees ``BOS + render_prefix(prompt)`` plus the bytes chosen so far, BOS is never chosen,
    EOS ends the answer, and the text is cut to ``n`` bytes as ``sample_responses`` cuts it.
    ``model`` must already be on ``device``.
    """
    tok = ByteTokenizer()
    ids = [tok.BOS, *render_prefix(prompt).encode()]
    out = []
    for _ in range(n):
        with torch.no_grad():
            logits = model(torch.tensor([ids], device=device))[0, -1].float()
        logits[tok.BOS] = float("-inf")
        nxt = int(logits.argmax())
        if nxt == tok.EOS:
            break
        out.append(nxt)
        ids.append(nxt)
    text = bytes(out).decode("utf-8", errors="replace")
    return text.encode()[:n].decode("utf-8", errors="ignore")  # as sample_responses cuts
