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
class PairFields:
    """Where a source keeps prompt/response pairs (``datawall ingest --prompt-field ...``).

    Either ``prompt_field`` and ``response_field`` together, or ``messages_field`` alone: a
    chat-style list of ``{"role", "content"}`` messages whose last one (an assistant's) is
    the response and whose earlier ones render as the prompt. All unset: a plain-text source.
    Field names belong to one source, so they are ingest options, not workspace settings.
    """

    prompt_field: str | None = None
    response_field: str | None = None
    messages_field: str | None = None

    def __post_init__(self) -> None:
        for name in ("prompt_field", "response_field", "messages_field"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"ingest {name} must be a non-empty string, got {value!r}")
        if (self.prompt_field is None) != (self.response_field is None):
            raise ValueError(
                "ingest: --prompt-field and --response-field go together (a pair needs both)"
            )
        if self.messages_field is not None and self.prompt_field is not None:
            raise ValueError(
                "ingest: --messages-field replaces --prompt-field/--response-field; give one or "
                "the other"
            )
        if self.prompt_field is not None and self.prompt_field == self.response_field:
            raise ValueError(f"ingest: prompt and response field are both {self.prompt_field!r}")

    @property
    def is_pair(self) -> bool:
        return self.prompt_field is not None or self.messages_field is not None

    def names(self) -> tuple[str, ...]:
        """The source fields these options read (left out of ``candidates.meta``)."""
        given = (self.prompt_field, self.response_field, self.messages_field)
        return tuple(f for f in given if f is not None)


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


@dataclass(frozen=True)
class ExperimentConfig:
    """``datawall experiment``: curation rounds, then fresh models trained on each arm.

    ``tokens`` is the shared training budget T of every arm (0: ``epoch_cap`` passes over the
    smallest arm, so no arm repeats its data more than the cap). The model fields left at 0
    take ``model:`` / ``train:``'s value, so a smaller model than the loop's can be measured
    on a CPU (``experiment: {d_model: 64, n_layers: 2}``).
    """

    rounds: int = 2
    seeds: int = 3
    tokens: int = 0
    epoch_cap: float = 4.0
    eval_points: int = 10  # validation evaluations per budget (plus one at the end)
    warmup_frac: float = 0.1
    d_model: int = 0
    n_layers: int = 0
    d_state: int = 0
    headdim: int = 0
    batch_size: int = 0
    seq_len: int = 0
    lr: float = 0.0

    def __post_init__(self) -> None:
        if self.rounds < 0:
            raise ValueError(f"experiment.rounds must be >= 0, got {self.rounds}")
        if self.seeds < 1:
            raise ValueError(f"experiment.seeds must be >= 1, got {self.seeds}")
        if self.tokens < 0:
            raise ValueError(f"experiment.tokens must be > 0 (or 0 for auto), got {self.tokens}")
        if not self.epoch_cap > 0:
            raise ValueError(f"experiment.epoch_cap must be > 0, got {self.epoch_cap}")
        if self.eval_points < 1:
            raise ValueError(f"experiment.eval_points must be >= 1, got {self.eval_points}")
        if not 0 <= self.warmup_frac < 1:
            raise ValueError(f"experiment.warmup_frac must be in [0, 1), got {self.warmup_frac}")
        for name in ("d_model", "n_layers", "d_state", "headdim", "batch_size", "seq_len", "lr"):
            if getattr(self, name) < 0:
                raise ValueError(
                    f"experiment.{name} must be >= 0 (0: inherit), got {getattr(self, name)}"
                )


@dataclass(frozen=True)
class ScaleConfig:
    """Where the per-shard work of a round runs (``pipelines.scale``) and how training starts.

    Dedup signing and scoring are cut into shards of ``shard_size`` candidates, one Prefect
    task each. Where the tasks run:

    - ``dask_address`` set: on that existing Dask cluster (``tcp://host:8786``), always;
    - else ``workers = 1``: in this process, one shard after another (no Dask);
    - else ``workers = N`` (N > 1): on a local Dask cluster of N worker processes;
    - else ``workers = "auto"`` (the default): in this process while the step's work fits in
      one shard (small workspaces and tests pay no cluster start-up), and on a local cluster
      of ``min(CPU cores // threads_per_worker, shards)`` workers once it spans more (in
      this process still where that is one worker: a one-core machine).

    Each worker runs ``threads_per_worker`` tasks at a time with that many torch threads.
    ``train_nproc`` > 1 trains each round's model in that many ``torchrun`` processes (DDP).
    """

    workers: int | str = "auto"
    dask_address: str | None = None
    shard_size: int = 2_000
    threads_per_worker: int = 1
    train_nproc: int = 1

    @staticmethod
    def parse_workers(value: int | str) -> int | str:
        """``"auto"`` or a worker count, from a CLI option or a deployment parameter."""
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        return value.strip().lower() if isinstance(value, str) else value

    def __post_init__(self) -> None:
        if self.workers != "auto" and (
            isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1
        ):
            raise ValueError(f"scale.workers must be 'auto' or an int >= 1, got {self.workers!r}")
        if self.dask_address is not None and not (
            isinstance(self.dask_address, str) and "://" in self.dask_address
        ):
            raise ValueError(
                f"scale.dask_address must be a scheduler URL like tcp://host:8786, "
                f"got {self.dask_address!r}"
            )
        for name in ("shard_size", "threads_per_worker", "train_nproc"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"scale.{name} must be an int >= 1, got {value!r}")
