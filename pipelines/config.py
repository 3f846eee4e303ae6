"""Configs of the pipeline's own steps (the libraries' configs live beside their code)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class IngestConfig:
    """Limits applied while reading a source. Rows past them go to quarantine."""

    max_chars: int = 100_000
    min_chars: int = 1
    batch_rows: int = 10_000

    def __post_init__(self) -> None:
        if self.max_chars < 1:
            raise ValueError(f"ingest.max_chars must be >= 1, got {self.max_chars}")
        if not 0 <= self.min_chars <= self.max_chars:
            raise ValueError(
                f"ingest.min_chars must be in [0, max_chars={self.max_chars}], got {self.min_chars}"
            )
        if self.batch_rows < 1:
            raise ValueError(f"ingest.batch_rows must be >= 1, got {self.batch_rows}")


@dataclass(frozen=True)
class ScoreConfig:
    """How candidates are scored: loss batching and shard size (a shard is one Parquet file)."""

    max_bytes: int = 2048
    batch_tokens: int = 16_384
    shard_rows: int = 2_000
    max_rule_negatives: int = 500
    memory_limit_mb: int = 256  # DuckDB's limit while streaming shards; it spills past it

    def __post_init__(self) -> None:
        for name in ("max_bytes", "batch_tokens", "shard_rows", "memory_limit_mb"):
            if getattr(self, name) < 1:
                raise ValueError(f"score.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_rule_negatives < 0:
            raise ValueError("score.max_rule_negatives must be >= 0")
