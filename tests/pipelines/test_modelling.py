"""The model registry: the reference model is reproducible and registered once; a
corrupted checkpoint is reported and skipped; only safe loaders read checkpoints."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import pytest

from pipelines import modelling
from pipelines.catalog import Catalog
from pipelines.ingest import ingest
from pipelines.settings import load_settings, save_settings
from trainer.checkpoint import CONFIG, WEIGHTS, CheckpointError, load_model


def test_reference_model_is_the_same_wherever_the_sources_live(tiny_home, demo_sources, tmp_path):
    settings = load_settings(tiny_home)
    first = modelling.ensure_reference(Catalog(tiny_home), settings)

    # the same files under another path: other candidate ids, the same texts
    copy_dir = tmp_path / "elsewhere"
    other = Catalog(tmp_path / "other-home").init()
    save_settings(other.home, settings)
    for role in ("trusted", "validation", "pool"):
        src = copy_dir / demo_sources[role].name
        src.parent.mkdir(exist_ok=True)
        shutil.copy(demo_sources[role], src)
        ingest(other, str(src), role=role, id_field="id")
    second = modelling.ensure_reference(other, settings)

    assert first.model_id == second.model_id
    assert (first.path / "model.safetensors").read_bytes() == (
        second.path / "model.safetensors"
    ).read_bytes()
    # registered once: asking again trains nothing new
    assert modelling.ensure_reference(other, settings) == second
    assert other.scalar("SELECT count(*) FROM models") == 1


def test_a_corrupted_latest_model_is_skipped_and_retrained(tiny_home, caplog):
    """Truncated or garbled weights, or a broken config.json: the error names the file, the
    previous model keeps scoring, and training that model again replaces the broken copy."""
    catalog = Catalog(tiny_home)
    settings = load_settings(tiny_home)
    reference = modelling.ensure_reference(catalog, settings)
    first = modelling.train_round_model(catalog, settings, 1, reference)
    second = modelling.train_round_model(catalog, settings, 2, first)
    assert modelling.scorer_model(catalog) == second
    weights = second.path / WEIGHTS
    good = weights.read_bytes()

    damage = {
        "truncated": lambda: weights.write_bytes(good[: len(good) // 2]),
        "garbled": lambda: weights.write_bytes(good[:-64] + bytes(64)),
        "bad config": lambda: (second.path / CONFIG).write_text('{"model": '),
    }
    config = (second.path / CONFIG).read_text()
    for name, corrupt in damage.items():
        corrupt()
        with pytest.raises(CheckpointError) as err:
            load_model(second.path)
        assert str(second.path) in str(err.value), name
        assert (CONFIG if name == "bad config" else WEIGHTS) in str(err.value), name
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="pipelines"):
            assert modelling.scorer_model(catalog) == first, name
        assert second.model_id in caplog.text and str(second.path) in caplog.text, name
        modelling.load(modelling.scorer_model(catalog))  # the previous one still loads
        weights.write_bytes(good)
        (second.path / CONFIG).write_text(config)
        assert modelling.scorer_model(catalog) == second, name

    # every model broken: the reference scores; training the broken one again repairs it
    weights.write_bytes(good[:100])
    first_config = (first.path / CONFIG).read_text()
    (first.path / CONFIG).unlink()
    assert modelling.scorer_model(catalog) == reference
    (first.path / CONFIG).write_text(first_config)
    again = modelling.train_round_model(catalog, settings, 2, first)
    assert again == second and weights.read_bytes() == good
    assert (second.path.with_name(f"{second.model_id}.corrupt") / WEIGHTS).exists()
    assert catalog.scalar("SELECT count(*) FROM models WHERE model_id = ?", [second.model_id]) == 1


# Loaders that can run code from a file. torch.load must say weights_only=True; pickle
# is not used; joblib (a pickle) only for the project's own quality classifier.
_UNSAFE = re.compile(r"\b(torch\.load|pickle\.loads?|joblib\.load|dill\.load|cloudpickle)\b")
_ALLOWED = {("scoring/quality.py", "joblib.load")}


def test_checkpoints_load_with_safe_loaders_only():
    root = Path(__file__).resolve().parents[2]
    found = []
    for package in ("kernels", "trainer", "scoring", "annotation", "pipelines"):
        for path in sorted((root / package).rglob("*.py")):
            rel = str(path.relative_to(root))
            source = path.read_text(encoding="utf-8")
            for match in _UNSAFE.finditer(source):
                call = source[match.start() : source.find(")", match.start()) + 1]
                line = source[: match.start()].count("\n") + 1
                if source[: match.start()].rsplit("\n", 1)[-1].lstrip().startswith(("#", "``")):
                    continue
                if match.group(1) == "torch.load" and "weights_only=True" in call:
                    continue
                if (rel, match.group(1)) in _ALLOWED:
                    continue
                found.append(f"{rel}:{line}: {call}")
    assert not found, "unsafe loaders:\n" + "\n".join(found)
    # and the one torch.load there is really is the safe one
    assert "weights_only=True" in (root / "trainer" / "checkpoint.py").read_text()
