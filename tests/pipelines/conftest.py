"""Workspaces for pipeline tests: a small demo corpus and a tiny model, so a round takes seconds."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prefect.logging.configuration import setup_logging
from prefect.testing.utilities import prefect_test_harness

from pipelines.catalog import Catalog
from pipelines.demo_corpus import build_demo_corpus
from pipelines.ingest import ingest
from pipelines.settings import Settings, load_settings, save_settings

# Configure Prefect's logging now, on the real stderr: if a CLI test (Typer's CliRunner
# swaps sys.stderr for a buffer it later closes) were the first to touch Prefect, every
# later flow would log into that closed buffer.
setup_logging()

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


def make_tiny_home(home: Path, sources: dict[str, Path]) -> Path:
    catalog = Catalog(home).init()
    save_settings(home, tiny_settings())
    for role in ("trusted", "validation", "pool"):
        ingest(catalog, str(sources[role]), role=role, id_field="id")
    return home


@pytest.fixture
def tiny_home(tmp_path, demo_sources) -> Path:
    """A workspace with the small demo corpus ingested and tiny settings saved."""
    return make_tiny_home(tmp_path / "home", demo_sources)


@pytest.fixture(scope="session")
def harness():
    """One temporary Prefect API for every test that runs a flow."""
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def curated_home(harness, tmp_path_factory, demo_sources) -> Path:
    """Two finished rounds: the first decided by the model, the second's new pool all sent
    to three simulated experts (one correction included), whose answers were imported."""
    from annotation.queue import read_queue
    from annotation.simulate import simulate_answers
    from pipelines import annotate
    from pipelines.flows import curation_round

    home = make_tiny_home(tmp_path_factory.mktemp("curated") / "home", demo_sources)
    catalog = Catalog(home)
    curation_round(home=str(home))

    more = build_demo_corpus(
        tmp_path_factory.mktemp("more-data"), seed=1, n_trusted=20, n_validation=5, n_pool=60
    )
    ingest(catalog, str(more["pool"]), role="pool", id_field="id")
    settings = load_settings(home).with_overrides({"route.margin": 30.0, "route.budget": 8})
    save_settings(home, settings)
    result = curation_round(home=str(home))
    tasks = read_queue(Path(result["queue"]["queue"]))
    gold = {
        r["candidate_id"]: r["gold"]
        for r in catalog.query(
            "SELECT candidate_id, json_extract_string(meta, '$.gold') AS gold FROM candidates"
        ).to_pylist()
        if r["gold"]
    }
    answered = simulate_answers(tasks, gold, annotators=3, noise=0.0, seed=2)
    for task in answered:
        if task["annotations"][0]["result"][0]["value"]["choices"] == ["accept"]:
            task["annotations"][0]["result"].append(
                {
                    "from_name": "corrected_text",
                    "to_name": "text",
                    "type": "textarea",
                    "value": {"text": ["An expert rewrote this accepted text."]},
                }
            )
            break
    export_file = home.parent / "export.json"
    export_file.write_text(json.dumps(answered))
    with catalog.writer("test"):
        annotate.import_export(catalog, settings, export_file, catalog.current_round())
    return home


@pytest.fixture
def killed_in_second_batch(monkeypatch) -> Callable[[], contextlib.AbstractContextManager]:
    """``with killed_in_second_batch(): ingest(...)``: the ingest dies at the start of its
    second batch (a KeyboardInterrupt, as a kill would stop it; the block fails if it does
    not), and the real batch function is back afterwards."""
    import pipelines.ingest as mod

    real = mod._ingest_batch

    @contextlib.contextmanager
    def kill() -> Iterator[None]:
        calls = {"n": 0}

        def crash_on_second(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt("simulated kill")
            return real(*args, **kwargs)

        monkeypatch.setattr(mod, "_ingest_batch", crash_on_second)
        try:
            with pytest.raises(KeyboardInterrupt):
                yield
        finally:
            monkeypatch.setattr(mod, "_ingest_batch", real)

    return kill
