"""``datawall score --model hf:PATH``: a saved Hugging Face causal LM scores a round end to end."""

from __future__ import annotations

import math

import pytest
from tiny_hf import save_tiny_hf
from typer.testing import CliRunner

from pipelines.catalog import Catalog
from pipelines.cli import app
from pipelines.modelling import hf_model_ref

pytestmark = pytest.mark.slow


def test_score_with_a_saved_hf_model(tiny_home, tmp_path):
    path = save_tiny_hf(tmp_path / "tiny-gpt2")
    result = CliRunner().invoke(app, ["score", "--model", f"hf:{path}", "--home", str(tiny_home)])
    assert result.exit_code == 0, result.output
    catalog = Catalog(tiny_home)
    model_id = hf_model_ref(f"hf:{path}").model_id
    assert model_id.startswith("hf-tiny-gpt2-") and model_id in result.output
    bar = catalog.query("SELECT * FROM bars WHERE round = 1").to_pylist()[0]
    assert bar["model_id"] == model_id and 0.0 <= bar["bar"] <= 1.0
    assert bar["n_samples"] == catalog.scalar("SELECT count(*) FROM samples WHERE round = 1")
    scores = catalog.query(
        "SELECT * FROM scores WHERE round = 1 AND rule_reason IS NULL"
    ).to_pylist()
    assert scores and all(s["model_id"] == model_id for s in scores)
    # bits per byte from the HF model beside the workspace's own reference model
    assert all(math.isfinite(s["loss_model"]) and math.isfinite(s["loss_ref"]) for s in scores)
    assert all(s["loss_model"] != s["loss_ref"] for s in scores)
    # the route step runs on these scores as on any others
    routed = CliRunner().invoke(app, ["route", "--home", str(tiny_home)])
    assert routed.exit_code == 0, routed.output


def test_hf_path_errors_are_clear(tiny_home, tmp_path):
    result = CliRunner().invoke(
        app, ["score", "--model", f"hf:{tmp_path / 'nowhere'}", "--home", str(tiny_home)]
    )
    assert result.exit_code != 0
    assert "no config.json" in result.output
