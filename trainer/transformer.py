"""The transformer baseline: a GPT-style causal language model over bytes.

Pre-norm residual blocks (RMSNorm → causal self-attention, RMSNorm → GELU MLP), rotary
position embeddings (Su et al., "RoFormer", 2021) on queries and keys, attention through
PyTorch's ``scaled_dot_product_attention`` (flash / memory-efficient kernels where the
device has them), embeddings tied to the output head. It has the same interface as
``trainer.model.SSMLanguageModel`` (``forward``, ``allocate_inference_cache``, ``step``,
``num_params``, ``cfg``), so training, checkpoints, evaluation and sampling take either.

``step`` keeps a key/value cache that grows by one position per call: generation costs
O(length) per token here, against O(1) for the SSM.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from trainer.config import ModelConfig
from trainer.model import RMSNorm, TiedLanguageModel


def rotary(x: Tensor, start: int) -> Tensor:
    """Rotate pairs (x[..., i], x[..., i + hd/2]) of x: (batch, heads, seqlen, hd) by angle
    pos * 10000^(-2i/hd), where pos = start, start + 1, ... along seqlen."""
    seqlen, hd = x.shape[-2], x.shape[-1]
    half = hd // 2
    inv_freq = 10000.0 ** (-torch.arange(half, device=x.device, dtype=torch.float32) / half)
    pos = torch.arange(start, start + seqlen, device=x.device, dtype=torch.float32)
    angle = pos[:, None] * inv_freq[None, :]  # (seqlen, half)
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


@dataclass
class KVCache:
    """Per-layer keys and values seen so far, each (batch, heads, length, head_dim)."""

    k: list[Tensor]
    v: list[Tensor]
    length: int = 0


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.out_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    def _qkv(self, x: Tensor, start: int) -> tuple[Tensor, Tensor, Tensor]:
        # (b, L, 3 * d) -> (b, L, 3, heads, hd) -> 3 x (b, heads, L, hd)
        q, k, v = self.qkv(x).unflatten(-1, (3, self.n_heads, -1)).permute(2, 0, 3, 1, 4)
        return rotary(q, start), rotary(k, start), v

    def forward(self, x: Tensor) -> Tensor:
        """x: (batch, seqlen, d_model) -> (batch, seqlen, d_model), causal."""
        q, k, v = self._qkv(x, 0)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (b, heads, L, hd)
        return self.out_proj(y.transpose(1, 2).flatten(2))  # (b, L, d_model)

    def step(self, x: Tensor, cache: KVCache, i: int) -> Tensor:
        """x: (batch, d_model) at position cache.length; appends its key/value to layer i."""
        q, k, v = self._qkv(x[:, None], cache.length)  # each (b, heads, 1, hd)
        cache.k[i] = torch.cat([cache.k[i], k], dim=2)
        cache.v[i] = torch.cat([cache.v[i], v], dim=2)
        y = F.scaled_dot_product_attention(q, cache.k[i], cache.v[i])  # (b, heads, 1, hd)
        return self.out_proj(y.flatten(1))  # (b, d_model)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, cfg.mlp_ratio * cfg.d_model, bias=False)
        self.out_proj = nn.Linear(cfg.mlp_ratio * cfg.d_model, cfg.d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.out_proj(F.gelu(self.fc(x), approximate="tanh"))


class TransformerBlock(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm1 = RMSNorm(cfg.d_model)
        self.attn = Attention(cfg)
        self.norm2 = RMSNorm(cfg.d_model)
        self.mlp = MLP(cfg)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TransformerLanguageModel(TiedLanguageModel):
    def __init__(self, cfg: ModelConfig):
        if cfg.arch != "transformer":
            raise ValueError(f"TransformerLanguageModel needs arch='transformer', got {cfg.arch!r}")
        super().__init__(cfg, nn.ModuleList(TransformerBlock(cfg) for _ in range(cfg.n_layers)))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """GPT-2 init: N(0, 0.02), residual output projections scaled by 1/sqrt(2 n_layers)."""
        nn.init.normal_(self.embedding.weight, std=0.02)
        for layer in self.layers:
            for lin in (layer.attn.qkv, layer.mlp.fc):
                nn.init.normal_(lin.weight, std=0.02)
            for lin in (layer.attn.out_proj, layer.mlp.out_proj):
                nn.init.normal_(lin.weight, std=0.02 / math.sqrt(2 * self.cfg.n_layers))

    def allocate_inference_cache(
        self, batch_size: int, device: torch.device | str | None = None
    ) -> KVCache:
        cfg = self.cfg
        w = self.embedding.weight
        device = w.device if device is None else device
        hd = cfg.d_model // cfg.n_heads

        def empty() -> Tensor:
            return torch.zeros(batch_size, cfg.n_heads, 0, hd, device=device, dtype=w.dtype)

        return KVCache(
            k=[empty() for _ in range(cfg.n_layers)], v=[empty() for _ in range(cfg.n_layers)]
        )

    def step(self, ids_t: Tensor, cache: KVCache) -> Tensor:
        """One token for each sequence. ids_t: (batch,) -> logits (batch, vocab_size).

        Equivalent to the last position of ``forward`` on the whole prefix; updates ``cache``.
        """
        x = self.embedding(ids_t)  # (b, d_model)
        for i, layer in enumerate(self.layers):
            x = x + layer.attn.step(layer.norm1(x), cache, i)
            x = x + layer.mlp(layer.norm2(x))
        cache.length += 1
        return F.linear(self.norm_f(x), self.embedding.weight)
