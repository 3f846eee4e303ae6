"""The dedup step: global across roles, batches and rounds; validation wins; idempotent."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from dedup_texts import edit, random_docs
from typer.testing import CliRunner

from pipelines.catalog import Catalog
from pipelines.cli import app
from pipelines.dedup import config_digest, dedup
from pipelines.ingest import ingest
from pipelines.settings import Settings, save_settings
from scoring.config import DedupConfig

DOCS = random_docs(40, seed=11)
CFG = DedupConfig()


def write_jsonl(path: Path, texts: list[str], prefix: str) -> str:
    with open(path, "w", encoding="utf-8") as fh:
        for i, text in enumerate(texts):
            fh.write(json.dumps({"id": f"{prefix}{i}", "text": text}) + "\n")
    return str(path)


def add(catalog: Catalog, tmp_path: Path, name: str, texts: list[str], role: str = "pool") -> None:
    ingest(catalog, write_jsonl(tmp_path / f"{name}.jsonl", texts, name), role=role, id_field="id")


def near_dups(catalog: Catalog, threshold: float = CFG.threshold) -> dict[str, str]:
    """source_id of each near-duplicate → source_id of the candidate it points to."""
    rows = catalog.query(
        """
        SELECT d.*, c.source_id, k.source_id AS kept
        FROM decisions d
        JOIN candidates c USING (candidate_id)
        JOIN candidates k ON k.candidate_id = d.duplicate_of
        WHERE d.reason = 'near_duplicate' AND d.decided_by = 'dedup' AND d.decision = 'reject'
        """
    ).to_pylist()
    # the estimated similarity is an extra column of the dedup step's decision files
    assert all(r["similarity"] >= threshold for r in rows)
    return {r["source_id"]: r["kept"] for r in rows}


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return Catalog(tmp_path / "home").init()


def test_validation_copy_wins_over_an_earlier_pool_copy(tmp_path, catalog):
    add(catalog, tmp_path, "p", DOCS[:10] + [edit(DOCS[20], 1, seed=1)])
    add(catalog, tmp_path, "v", [DOCS[20]], role="validation")
    add(catalog, tmp_path, "t", [edit(DOCS[20], 2, seed=2), edit(DOCS[3], 1, seed=3)], "trusted")
    report = dedup(catalog, CFG, round_=1)
    # the pool and trusted copies of v0 point to it; the trusted copy of p3 outranks p3
    assert near_dups(catalog) == {"p10": "v0", "t0": "v0", "p3": "t1"}
    assert report.rejected == 3 and report.clustered == 5
    # trusted near-duplicates no longer count as training text
    texts = catalog.named("role_texts", ["trusted"]).column("text").to_pylist()
    assert texts == [edit(DOCS[3], 1, seed=3)]


def test_global_across_batches_and_rounds_and_idempotent(tmp_path, catalog):
    add(catalog, tmp_path, "a", DOCS[:20])
    first = dedup(catalog, CFG, round_=1)
    assert first.signed == 20 and first.rejected == 0
    # a later ingest (and round) holds near copies of round-1 texts and of each other
    add(catalog, tmp_path, "b", [edit(DOCS[4], 1, seed=4), DOCS[30], edit(DOCS[30], 2, seed=5)])
    second = dedup(catalog, CFG, round_=2)
    assert second.signed == 3  # only the new candidates are hashed
    assert near_dups(catalog) == {"b0": "a4", "b2": "b1"}
    n_files = len(list((catalog.lake / "decisions").glob("*.parquet")))
    n_sigs = catalog.scalar("SELECT count(*) FROM minhash")

    rerun = dedup(catalog, CFG, round_=2)
    assert (rerun.signed, rerun.rejected, rerun.already_rejected) == (0, 0, 2)
    assert len(list((catalog.lake / "decisions").glob("*.parquet"))) == n_files
    assert catalog.scalar("SELECT count(*) FROM minhash") == n_sigs == 23

    # the score step only sees what is still undecided
    todo = set(catalog.named("to_score", [2]).column("candidate_id").to_pylist())
    rejected = catalog.query("SELECT candidate_id FROM decisions").column(0).to_pylist()
    assert todo and not todo & set(rejected)


def test_exact_duplicates_are_not_signed_and_threshold_counts(tmp_path, catalog):
    add(catalog, tmp_path, "a", [DOCS[0], DOCS[0], edit(DOCS[1], 14, seed=6), DOCS[1]])
    report = dedup(catalog, CFG, round_=1)
    assert report.signed == 3  # the exact copy was settled at ingest
    assert near_dups(catalog) == {}  # a 14-word edit is far below 0.8
    loose = dataclasses.replace(CFG, threshold=0.3)
    assert config_digest(loose) != config_digest(CFG)  # other bands: signed again
    assert dedup(catalog, loose, round_=1).signed == 3
    assert near_dups(catalog, 0.3) == {"a3": "a2"}


def test_cli_dedup(tmp_path, catalog):
    home = catalog.home
    save_settings(home, Settings().with_overrides({"dedup.threshold": 0.7}))
    add(catalog, tmp_path, "a", [DOCS[0], edit(DOCS[0], 3, seed=7)])
    result = CliRunner().invoke(app, ["dedup", "--home", str(home)])
    assert result.exit_code == 0, result.output
    assert '"rejected": 1' in result.output
    assert near_dups(catalog) == {"a1": "a0"}
    result = CliRunner().invoke(app, ["dedup", "--home", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
