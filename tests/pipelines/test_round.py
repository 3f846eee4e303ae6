"""A whole curation round under Prefect's test harness, then the expert loop through the queue."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from annotation.queue import read_queue
from annotation.simulate import simulate_answers
from pipelines import annotate
from pipelines.catalog import Catalog
from pipelines.cli import app
from pipelines.flows import annotation_pull, curation_round
from pipelines.settings import load_settings, save_settings
from scoring.route import to_scale

pytestmark = pytest.mark.slow


def gold_labels(catalog: Catalog) -> dict[str, str]:
    rows = catalog.query(
        "SELECT candidate_id, json_extract_string(meta, '$.gold') AS gold FROM candidates "
        "WHERE role = 'pool'"
    ).to_pylist()
    return {r["candidate_id"]: r["gold"] for r in rows if r["gold"]}


def test_round_decides_every_candidate_and_trains_the_next_scorer(harness, tiny_home):
    catalog = Catalog(tiny_home)
    first = curation_round(home=str(tiny_home))
    assert first["round"] == 1 and catalog.current_round() == 2

    # every pool candidate has exactly one latest decision, with a reason
    pool = catalog.scalar("SELECT count(*) FROM candidates WHERE role = 'pool'")
    decided = catalog.query("SELECT l.* FROM latest_decisions l WHERE l.role = 'pool'").to_pylist()
    assert len(decided) == pool
    assert all(d["decision"] in ("accept", "reject", "hard") and d["reason"] for d in decided)
    # rule rejects in a corpus with junk; model decisions carry the bar and the model id
    by = {(d["decided_by"], d["decision"]) for d in decided}
    assert ("rule", "reject") in by and ("model", "accept") in by
    bar = catalog.scalar("SELECT bar FROM bars WHERE round = 1")
    model_rows = [d for d in decided if d["decided_by"] == "model"]
    assert all(d["bar"] == bar and d["model_id"] == first["model_id"] for d in model_rows)
    # accept / reject / hard follow the bar and its margin
    cfg = load_settings(tiny_home).route
    level = to_scale(np.asarray([bar]), cfg.scale)[0]
    for d in model_rows:
        q = to_scale(np.asarray([d["quality"]]), cfg.scale)[0]
        if d["decision"] == "accept":
            assert q >= level + cfg.margin
        elif d["decision"] == "reject":
            assert q < level - cfg.margin
        else:
            assert level - cfg.margin <= q < level + cfg.margin

    # the queue holds exactly the queued hard cases, each with the model's guess attached
    queued = catalog.scalar("SELECT count(*) FROM decisions WHERE round = 1 AND queued")
    assert queued <= load_settings(tiny_home).route.budget
    tasks = read_queue(Path(first["queue"]["queue"]))
    assert len(tasks) == queued == first["n_queued"]
    for task in tasks:
        assert task["predictions"][0]["model_version"] == first["model_id"]

    # a new model was trained, validated and registered; it scores round 2
    new = catalog.query(
        "SELECT * FROM models WHERE model_id = ?", [first["new_model_id"]]
    ).to_pylist()
    assert len(new) == 1 and new[0]["round"] == 1 and math.isfinite(new[0]["val_bpb"])
    assert new[0]["parent_id"] == first["model_id"]
    second = curation_round(home=str(tiny_home))
    assert second["round"] == 2 and second["model_id"] == first["new_model_id"]
    # round 2 re-scores only what round 1 left undecided (hard cases over budget)
    left_over = catalog.scalar(
        "SELECT count(*) FROM decisions WHERE round = 1 AND decision = 'hard' AND NOT queued"
    )
    assert second["n_scored"] == left_over


def test_expert_answers_come_back_through_the_file_queue(harness, tiny_home, tmp_path):
    catalog = Catalog(tiny_home)
    # a band wider than the log-odds range: every rule-passing candidate is a hard case
    settings = load_settings(tiny_home).with_overrides({"route.margin": 30.0})
    save_settings(tiny_home, settings)
    result = curation_round(home=str(tiny_home), budget=6)
    tasks = read_queue(Path(result["queue"]["queue"]))
    assert len(tasks) == 6
    gold = gold_labels(catalog)
    answered = simulate_answers(tasks, gold, annotators=3, noise=0.0, seed=1)
    for task in answered:  # one expert rewrites accepted text
        for ann in task["annotations"][:1]:
            if ann["result"][0]["value"]["choices"] == ["accept"]:
                ann["result"].append(
                    {
                        "from_name": settings.annotation.corrected_text_name,
                        "to_name": "text",
                        "type": "textarea",
                        "value": {"text": ["Expert-corrected text."]},
                    }
                )
    inbox = tiny_home / "annotations" / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    export = inbox / "export-1.json"
    export.write_text(json.dumps(answered))
    backup = tmp_path / "export-1.json"
    backup.write_text(json.dumps(answered))

    pulled = annotation_pull(home=str(tiny_home))
    assert pulled["files"] == 1 and pulled["annotations_new"] == 3 * len(tasks)
    assert (inbox / "done" / "export-1.json").exists()
    experts = catalog.query(
        "SELECT candidate_id, decision FROM latest_decisions WHERE decided_by = 'expert'"
    ).to_pylist()
    assert {e["candidate_id"]: e["decision"] for e in experts} == {
        t["data"]["candidate_id"]: gold[t["data"]["candidate_id"]] for t in tasks
    }
    status = CliRunner().invoke(
        app, ["annotate", "status", "--home", str(tiny_home)], catch_exceptions=False
    )
    assert status.exit_code == 0
    row = catalog.named("annotation_status").to_pylist()[-1]
    assert (row["queued"], row["answered"], row["waiting"]) == (6, 6, 0)
    # importing the same export again changes nothing
    before = catalog.scalar("SELECT count(*) FROM annotations")
    again = annotate.import_export(catalog, settings, backup, catalog.current_round())
    assert again.already_imported and catalog.scalar("SELECT count(*) FROM annotations") == before
    # expert-corrected text is what training reads for those candidates
    corrected = catalog.scalar("SELECT count(*) FROM accepted_texts WHERE corrected")
    n_accepted_by_experts = sum(1 for e in experts if e["decision"] == "accept")
    assert corrected == n_accepted_by_experts


def test_round_killed_before_training_resumes_without_duplicates(harness, tiny_home, monkeypatch):
    from pipelines import modelling

    catalog = Catalog(tiny_home)
    real = modelling.train_round_model

    def crash(*args, **kwargs):
        raise RuntimeError("simulated crash in the train step")

    monkeypatch.setattr(modelling, "train_round_model", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        curation_round(home=str(tiny_home))
    scored = catalog.scalar("SELECT count(*) FROM scores WHERE round = 1")
    queue = read_queue(tiny_home / "annotations" / "queue" / "round-0001.json")
    assert catalog.current_round() == 1 and scored > 0

    monkeypatch.setattr(modelling, "train_round_model", real)
    result = curation_round(home=str(tiny_home))
    assert result["round"] == 1 and catalog.current_round() == 2
    # nothing scored twice, every candidate decided once, the same tasks queued
    assert catalog.scalar("SELECT count(*) FROM scores WHERE round = 1") == scored
    assert (
        catalog.scalar("SELECT count(*) - count(DISTINCT candidate_id) FROM latest_decisions") == 0
    )
    assert read_queue(Path(result["queue"]["queue"])) == queue


def test_simulated_experts_through_the_file_queue(harness, tiny_home):
    catalog = Catalog(tiny_home)
    save_settings(tiny_home, load_settings(tiny_home).with_overrides({"route.margin": 30.0}))
    curation_round(home=str(tiny_home), budget=5)
    runner = CliRunner()
    args = ["annotate", "simulate", "--oracle-field", "gold", "--annotators", "3"]
    args += ["--noise", "1.0", "--noisy", "1", "--home", str(tiny_home)]
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"answered": 5, "annotations": 15}
    # two honest experts outvote the one who always flips: consensus = gold, agreement 2/3
    rows = catalog.query(
        "SELECT l.decision, l.agreement, json_extract_string(c.meta, '$.gold') AS gold "
        "FROM latest_decisions l JOIN candidates c USING (candidate_id) "
        "WHERE l.decided_by = 'expert'"
    ).to_pylist()
    assert len(rows) == 5
    assert all(r["decision"] == r["gold"] and abs(r["agreement"] - 2 / 3) < 1e-9 for r in rows)
    per_annotator = {
        r["annotator"]: r["agreement"]
        for r in catalog.query("SELECT annotator, agreement FROM annotator_agreement").to_pylist()
    }
    assert sorted(per_annotator.values()) == [0.0, 1.0, 1.0]
    # nothing left to answer: a second run adds nothing
    again = runner.invoke(app, args, catch_exceptions=False)
    assert json.loads(again.stdout) == {"answered": 0, "annotations": 0}
