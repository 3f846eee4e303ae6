"""The model registry: the reference model is reproducible and registered once."""

from __future__ import annotations

import shutil

from pipelines import modelling
from pipelines.catalog import Catalog
from pipelines.ingest import ingest
from pipelines.settings import load_settings, save_settings


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
