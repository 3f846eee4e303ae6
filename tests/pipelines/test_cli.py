"""The `datawall` command line: ingest, sql in every format, clear errors, settings."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.settings import Settings, load_settings

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def home(tmp_path):
    src = tmp_path / "pool.jsonl"
    rows = [
        {"id": "a", "text": "Sorting a list in place changes the order of the items it holds."},
        {"id": "b", "text": "Sorting a list in place changes the order of the items it holds."},
        {"id": "c", "text": 7},
    ]
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    result = invoke("ingest", str(src), "--id-field", "id", "--home", str(tmp_path / "home"))
    assert result.exit_code == 0, result.output
    return tmp_path / "home"


def test_ingest_reports_counts_and_quarantine(home):
    result = invoke(
        "sql", "SELECT reason, row FROM quarantine", "--format", "json", "--home", str(home)
    )
    assert json.loads(result.stdout) == [{"reason": "non_string_text", "row": 3}]


def test_sql_formats(home, monkeypatch):
    monkeypatch.setenv("DATAWALL_HOME", str(home))  # the env var selects the workspace too
    q = "SELECT decision, reason, count(*) AS n FROM latest_decisions GROUP BY ALL"
    as_csv = invoke("sql", q, "--format", "csv")
    assert list(csv.DictReader(io.StringIO(as_csv.stdout))) == [
        {"decision": "reject", "reason": "exact_duplicate", "n": "1"}
    ]
    as_table = invoke("sql", q)
    assert "exact_duplicate" in as_table.stdout


def test_sql_errors_are_clear(home, tmp_path):
    bad = runner.invoke(app, ["sql", "SELEC nonsense", "--home", str(home)])
    assert bad.exit_code == 1 and "error" in bad.output.lower()
    fmt = runner.invoke(app, ["sql", "SELECT 1", "--format", "xml", "--home", str(home)])
    assert fmt.exit_code == 2 and "--format" in fmt.output
    missing = runner.invoke(app, ["sql", "SELECT 1", "--home", str(tmp_path / "none")])
    assert missing.exit_code == 2 and "no datawall workspace" in missing.output


def test_ingest_bad_source_is_a_clear_error(tmp_path):
    result = runner.invoke(
        app, ["ingest", str(tmp_path / "missing.jsonl"), "--home", str(tmp_path)]
    )
    assert result.exit_code == 1 and "no such file" in result.output


def test_settings_file_overrides_and_validation(tmp_path):
    (tmp_path / "datawall.yaml").write_text("route: {budget: 7}\ntrain: {steps: 50}\n")
    settings = load_settings(tmp_path)
    assert settings.route.budget == 7 and settings.train.steps == 50
    assert settings.model == Settings().model
    (tmp_path / "datawall.yaml").write_text("route: {budjet: 7}\n")
    with pytest.raises(ValueError, match="budjet"):
        load_settings(tmp_path)
    (tmp_path / "datawall.yaml").write_text("rout: {}\n")
    with pytest.raises(ValueError, match="unknown section 'rout'"):
        load_settings(tmp_path)
    with pytest.raises(ValueError, match="margin"):
        Settings().with_overrides({"route.margin": -1})
    assert Settings.from_dict(json.loads(Settings().to_json())) == Settings()


def test_round_without_trusted_text_is_a_clear_error(home):
    result = runner.invoke(app, ["round", "--home", str(home)])
    assert result.exit_code == 1 and "no trusted text" in result.output


@pytest.mark.slow
def test_train_with_two_processes(tiny_home):
    """`datawall train --nproc 2`: torchrun (gloo) trains, the checkpoints are registered."""
    result = invoke("train", "--nproc", "2", "--home", str(tiny_home))
    assert result.exit_code == 0, result.output
    models = invoke(
        "sql", "SELECT role, path, steps FROM models", "--format", "json", "--home", str(tiny_home)
    )
    rows = json.loads(models.output)
    assert sorted(r["role"] for r in rows) == ["current", "reference"]
    for row in rows:
        config = json.loads((Path(row["path"]) / "config.json").read_text())
        assert config["world_size"] == 2 and config["step"] == row["steps"] == 12
