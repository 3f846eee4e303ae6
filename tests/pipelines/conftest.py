"""Workspaces for pipeline tests: a small demo corpus and a tiny model, so a round takes seconds."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.catalog import Catalog
from pipelines.demo_corpus import build_demo_corpus
from pipelines.ingest import ingest
from pipelines.settings import Settings, save_settings

TINY = {
    "model.d_model": 32,
    "model.n_layers": 1,
    "model.d_state": 8,
    "model.headdim": 16,
    "model.chunk_size": 32,
    "train.steps": 12,
    "train.batch_size": 4,
    "train.seq_len": 64,
    "train.warmup_steps": 2,
    "train.checkpoint_every": 6,
    "route.n_samples": 24,
    "route.sample_bytes": 96,
    "route.budget": 5,
    "quality.cv_folds": 3,
    "quality.n_features": 4096,
}


def tiny_settings() -> Settings:
    return Settings().with_overrides(TINY)


@pytest.fixture(scope="session")
def demo_sources(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("demo-data")
    return build_demo_corpus(out, seed=0, n_trusted=60, n_validation=20, n_pool=120)


@pytest.fixture
def tiny_home(tmp_path, demo_sources) -> Path:
    """A workspace with the small demo corpus ingested and tiny settings saved."""
    home = tmp_path / "home"
    catalog = Catalog(home).init()
    save_settings(home, tiny_settings())
    for role in ("trusted", "validation", "pool"):
        ingest(catalog, str(demo_sources[role]), role=role, id_field="id")
    return home
