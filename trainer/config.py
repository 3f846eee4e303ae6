"""Typed, frozen configs for the model and the training run, validated on construction.

Both are saved next to every checkpoint (``to_dict``) and read back with ``from_dict``,
which rejects unknown keys so a typo in a YAML file or a CLI override fails loudly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Self

from kernels.ssd import IMPLS
from trainer.tokenizer import TOKENIZERS

TOKENIZER_VOCAB_SIZE = 258  # ByteTokenizer: 256 bytes + BOS + EOS; also the BPE minimum
ARCHS = ("ssm", "transformer")  # trainer.model.build_model picks the class
DEVICES = ("auto", "cpu", "cuda", "mps")


class _DictMixin:
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown keys {unknown}; known: {sorted(names)}")
        return cls(**d)


def _positive(cls: str, **values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{cls}.{name} must be > 0, got {value!r}")


@dataclass(frozen=True)
class ModelConfig(_DictMixin):
    """A language model over a tokenizer (``trainer.tokenizer``).

    ``tokenizer="byte"`` (default): UTF-8 bytes, 258 ids. ``tokenizer="bpe"``: byte-level BPE
    trained on the first run's training texts with up to ``vocab_size`` ids (BOS and EOS
    included), saved with the checkpoint and reused, never retrained, when a run continues.

    ``arch="ssm"``: Mamba-2 (d_inner = expand * d_model, nheads = d_inner // headdim; uses
    d_state, headdim, expand, ngroups, d_conv, chunk_size, scan_impl).
    ``arch="transformer"``: the GPT-style baseline (uses n_heads and mlp_ratio).
    d_model, n_layers and vocab_size apply to both.
    """

    arch: str = "ssm"
    vocab_size: int = 264  # 258 tokenizer ids, rounded up to a multiple of 8
    d_model: int = 128
    n_layers: int = 4
    d_state: int = 32
    headdim: int = 32
    expand: int = 2
    ngroups: int = 1
    d_conv: int = 4
    chunk_size: int = 32  # the fastest on CPU for training and scoring (benchmarks/scan.py)
    scan_impl: str = "auto"
    n_heads: int = 4  # transformer only
    mlp_ratio: int = 4  # transformer only: MLP hidden = mlp_ratio * d_model
    tokenizer: str = "byte"  # "byte" or "bpe"

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(
                f"ModelConfig.arch={self.arch!r} is not supported; choose one of {ARCHS}"
            )
        if self.tokenizer not in TOKENIZERS:
            raise ValueError(
                f"ModelConfig.tokenizer={self.tokenizer!r} is not supported; "
                f"choose one of {TOKENIZERS}"
            )
        if self.vocab_size < TOKENIZER_VOCAB_SIZE:
            raise ValueError(
                f"ModelConfig.vocab_size={self.vocab_size} is smaller than the tokenizer's "
                f"vocabulary ({TOKENIZER_VOCAB_SIZE})"
            )
        _positive(
            "ModelConfig",
            d_model=self.d_model,
            n_layers=self.n_layers,
            d_state=self.d_state,
            headdim=self.headdim,
            expand=self.expand,
            ngroups=self.ngroups,
            d_conv=self.d_conv,
            chunk_size=self.chunk_size,
            n_heads=self.n_heads,
            mlp_ratio=self.mlp_ratio,
        )
        if self.arch == "transformer" and self.d_model % (2 * self.n_heads):
            raise ValueError(
                f"ModelConfig: d_model={self.d_model} must be a multiple of 2 * n_heads="
                f"{2 * self.n_heads} (even head size for rotary embeddings)"
            )
        if self.d_inner % self.headdim:
            raise ValueError(
                f"ModelConfig: expand * d_model = {self.d_inner} must be a multiple of "
                f"headdim={self.headdim}"
            )
        if self.nheads % self.ngroups:
            raise ValueError(
                f"ModelConfig: nheads={self.nheads} must be a multiple of ngroups={self.ngroups}"
            )
        if self.scan_impl not in IMPLS:
            raise ValueError(f"ModelConfig.scan_impl={self.scan_impl!r}; choose one of {IMPLS}")

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @property
    def nheads(self) -> int:
        return self.d_inner // self.headdim


@dataclass(frozen=True)
class TrainConfig(_DictMixin):
    """One training run. Defaults train the default model in about 1.5 minutes on 2 idle CPU cores."""

    seq_len: int = 256
    batch_size: int = 16
    steps: int = 400
    lr: float = 3e-3
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 40
    weight_decay: float = 0.1
    grad_clip: float = 1.0  # 0 disables clipping
    betas: tuple[float, float] = (0.9, 0.95)
    seed: int = 0
    eval_every: int = 0  # 0 = evaluate only at the end
    checkpoint_every: int = 100  # resume state every N steps; 0 disables
    device: str = "auto"
    compile: bool = False

    def __post_init__(self) -> None:
        # JSON/YAML give lists; keep the field hashable and typed.
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        _positive("TrainConfig", seq_len=self.seq_len, batch_size=self.batch_size)
        _positive("TrainConfig", steps=self.steps, lr=self.lr)
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"TrainConfig.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if not 0 <= self.warmup_steps <= self.steps:
            raise ValueError(
                f"TrainConfig.warmup_steps must be in [0, steps={self.steps}], "
                f"got {self.warmup_steps}"
            )
        for name in ("weight_decay", "grad_clip", "eval_every", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"TrainConfig.{name} must be >= 0, got {getattr(self, name)}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"TrainConfig.betas must be two numbers in [0, 1), got {self.betas}")
        if self.device not in DEVICES and not self.device.startswith("cuda:"):
            raise ValueError(
                f"TrainConfig.device={self.device!r}; choose one of {DEVICES} or 'cuda:N'"
            )
