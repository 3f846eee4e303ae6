"""Workspace location and the settings of every component, in one typed object.

A workspace (``--home DIR`` or ``DATAWALL_HOME``, default ``./datawall-home``) holds the
Parquet lake, the model checkpoints, the annotation queue and an optional ``datawall.yaml``
whose sections override the defaults of each component's config dataclass::

    train: {steps: 200}
    route: {budget: 100, margin: 0.5}
    pairs: {margin: 1.0, budget: 50}        # prompt/response data (scoring.pairs)
    storage: {lake: "s3://bucket/prefix"}   # the lake elsewhere (pipelines/lake.py)

The settings in force are saved with every round (``rounds.settings``), so any round can be
reproduced from the catalog alone.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from annotation.config import AnnotationConfig
from pipelines.config import ExperimentConfig, IngestConfig, ScaleConfig, ScoreConfig
from pipelines.lake import StorageConfig
from scoring.config import (
    DedupConfig,
    HeuristicConfig,
    PairsConfig,
    QualityConfig,
    RouteConfig,
)
from trainer.config import ModelConfig, TrainConfig

DEFAULT_HOME = Path("datawall-home")
CONFIG_FILE = "datawall.yaml"


@dataclass(frozen=True)
class Settings:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    heuristics: HeuristicConfig = field(default_factory=HeuristicConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    route: RouteConfig = field(default_factory=RouteConfig)
    annotation: AnnotationConfig = field(default_factory=AnnotationConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)  # where the lake lives
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)
    scale: ScaleConfig = field(default_factory=ScaleConfig)
    pairs: PairsConfig = field(default_factory=PairsConfig)  # prompt/response candidates

    @classmethod
    def from_dict(cls, raw: dict[str, Any], origin: str = "settings") -> Settings:
        """Build settings from nested dicts; unknown sections or keys are a clear error."""
        if not isinstance(raw, dict):
            raise ValueError(f"{origin}: expected a mapping of sections, got {type(raw).__name__}")
        sections = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for name, section in raw.items():
            if name not in sections:
                raise ValueError(
                    f"{origin}: unknown section {name!r}; known: {', '.join(sorted(sections))}"
                )
            values[name] = _build_section(
                sections[name].default_factory, section, f"{origin}: {name}"
            )
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _section_dict(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def with_overrides(self, overrides: dict[str, Any]) -> Settings:
        """Return settings with ``{"section.key": value}`` overrides applied."""
        merged = self.to_dict()
        for dotted, value in overrides.items():
            section, _, key = dotted.partition(".")
            if not key:
                raise ValueError(f"override {dotted!r}: expected SECTION.KEY=VALUE")
            merged.setdefault(section, {})[key] = value
        return Settings.from_dict(merged, origin="overrides")


def _section_dict(obj: Any) -> dict[str, Any]:
    out = dataclasses.asdict(obj)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def _build_section(factory: Any, raw: Any, origin: str) -> Any:
    default = factory()
    if raw is None:
        return default
    if not isinstance(raw, dict):
        raise ValueError(f"{origin}: expected a mapping, got {type(raw).__name__}")
    known = {f.name: f for f in dataclasses.fields(default)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ValueError(f"{origin}: unknown key(s) {unknown}; known: {', '.join(sorted(known))}")
    values = {}
    for key, value in raw.items():
        current = getattr(default, key)
        values[key] = (
            tuple(value) if isinstance(current, tuple) and isinstance(value, list) else value
        )
    try:
        return dataclasses.replace(default, **values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{origin}: {exc}") from exc


def resolve_home(home: Path | str | None = None) -> Path:
    """The workspace: the argument, else ``$DATAWALL_HOME``, else ``./datawall-home``."""
    chosen = home if home is not None else os.environ.get("DATAWALL_HOME") or DEFAULT_HOME
    return Path(chosen).expanduser().resolve()


def load_settings(home: Path) -> Settings:
    """Defaults, overridden by ``HOME/datawall.yaml`` when it exists."""
    path = Path(home) / CONFIG_FILE
    if not path.exists():
        return Settings()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc
    return Settings.from_dict(raw, origin=str(path))


def save_settings(home: Path, settings: Settings) -> Path:
    path = Path(home) / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(settings.to_dict(), sort_keys=False), encoding="utf-8")
    os.replace(tmp, path)
    return path
