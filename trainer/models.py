"""One constructor for every architecture a ModelConfig can name (``cfg.arch``)."""

from __future__ import annotations

from trainer.config import ModelConfig
from trainer.model import SSMLanguageModel
from trainer.transformer import TransformerLanguageModel

LanguageModel = SSMLanguageModel | TransformerLanguageModel


def build_model(cfg: ModelConfig) -> LanguageModel:
    """A freshly initialised model of ``cfg.arch`` ("ssm" or "transformer")."""
    if cfg.arch == "ssm":
        return SSMLanguageModel(cfg)
    if cfg.arch == "transformer":
        return TransformerLanguageModel(cfg)
    raise ValueError(f"build_model: unknown arch {cfg.arch!r}")
