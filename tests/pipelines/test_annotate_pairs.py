"""Hard pairs through the file queue: push, simulated experts, import, rewrites, idempotence."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from pair_workspace import make_pair_home

from annotation.pair_simulate import simulate_pair_answers
from annotation.queue import read_queue
from pipelines import annotate, annotate_pairs, studio
from pipelines.settings import Settings

EXPECTED = {
    "candidate": ("accept", "expert_prefers_candidate"),
    "model": ("reject", "below_model_response"),
    "both_bad": ("reject", "both_bad"),
}


def side_map(catalog) -> dict[str, str]:
    rows = catalog.query("SELECT candidate_id, candidate_side FROM pair_tasks").to_pylist()
    return {r["candidate_id"]: r["candidate_side"] for r in rows}


def gold_of(catalog) -> dict[str, str]:
    rows = catalog.query(
        "SELECT candidate_id, json_extract_string(meta, '$.gold') AS g FROM candidates "
        "WHERE kind = 'pair' AND source <> 'expert-rewrite'"
    ).to_pylist()
    return {r["candidate_id"]: r["g"] for r in rows}


def test_push_records_sides_first_and_keeps_them(tmp_path):
    catalog = make_pair_home(tmp_path / "home", 60)
    path, n = annotate_pairs.push(catalog, 1, "m")
    assert n == 60 and path.name == "round-0001-pairs.json"
    recorded = side_map(catalog)
    assert len(recorded) == 60
    assert 15 < Counter(recorded.values())["a"] < 45  # both orders, about half each
    responses = {
        r["candidate_id"]: (r["text"], r["model_response"])
        for r in catalog.query(
            "SELECT c.candidate_id, c.text, s.model_response FROM candidates c "
            "JOIN pair_scores s USING (candidate_id)"
        ).to_pylist()
    }
    for task in read_queue(path):
        data = task["data"]
        assert set(data) == {"candidate_id", "round", "prompt", "response_a", "response_b"}
        side = recorded[data["candidate_id"]]
        other = "b" if side == "a" else "a"
        cand, model = responses[data["candidate_id"]]
        assert (data[f"response_{side}"], data[f"response_{other}"]) == (cand, model)
    # a second push (the server after the file, or a rerun) shows the same sides
    before = path.read_bytes()
    annotate_pairs.push(catalog, 1, "m")
    assert path.read_bytes() == before
    assert catalog.scalar("SELECT count(*) FROM pair_tasks") == 60
    # pairs stay out of the text path
    _, n_text = annotate.push(catalog, Settings(), 1, "m")
    assert n_text == 0
    assert studio.simulate(catalog, Settings(), None, "gold") == {"answered": 0, "annotations": 0}


def test_the_rounds_annotate_step_writes_the_pair_queue(tmp_path):
    from pipelines.flows import annotate_task

    home = tmp_path / "home"
    make_pair_home(home, 5)
    out = annotate_task.fn(str(home), 1, "m")
    assert out["tasks"] == 0 and out["pairs"]["tasks"] == 5
    assert out["pairs"]["queue"].endswith("round-0001-pairs.json")


def test_no_pairs_no_file(tmp_path):
    from pipelines.catalog import Catalog

    catalog = Catalog(tmp_path / "home").init()
    assert annotate_pairs.push(catalog, 1, "m") == (None, 0)


def test_simulated_round_maps_back_and_rewrites_become_candidates(tmp_path):
    catalog = make_pair_home(tmp_path / "home", 30)
    annotate_pairs.push(catalog, 1, "m")
    result = annotate_pairs.simulate(
        catalog, None, "gold", "gold_response", annotators=3, noise=1.0, noisy=1, seed=3
    )
    assert result == {"answered": 30, "annotations": 90, "rewrites": 10}
    gold = gold_of(catalog)
    experts = catalog.query(
        "SELECT candidate_id, decision, reason, agreement FROM latest_decisions "
        "WHERE decided_by = 'expert' AND source <> 'expert-rewrite'"
    ).to_pylist()
    assert len(experts) == 30
    for e in experts:  # majority of 3 with one always-wrong expert: the gold, 2/3 agreement
        assert (e["decision"], e["reason"]) == EXPECTED[gold[e["candidate_id"]]]
        assert abs(e["agreement"] - 2 / 3) < 1e-9
    choices = Counter(catalog.query("SELECT choice FROM annotations").column(0).to_pylist())
    assert set(choices) <= {"candidate", "model", "both_bad"}
    assert sum(choices.values()) == 90

    rewrites = catalog.query(
        "SELECT c.*, l.decision, l.reason, l.decided_by FROM candidates c "
        "JOIN latest_decisions l USING (candidate_id) WHERE c.source = 'expert-rewrite'"
    ).to_pylist()
    assert len(rewrites) == 10
    prompts = dict(
        (r["candidate_id"], r["prompt"])
        for r in catalog.query("SELECT candidate_id, prompt FROM candidates").to_pylist()
    )
    for r in rewrites:
        meta = json.loads(r["meta"])
        assert set(meta) == {"rewrite_of", "annotator", "annotation_id"}
        assert gold[meta["rewrite_of"]] == "both_bad"
        assert (r["kind"], r["role"], r["prompt"]) == ("pair", "pool", prompts[meta["rewrite_of"]])
        assert r["text"].startswith("An expert's answer") and "  " not in r["text"]  # normalised
        assert (r["decision"], r["reason"], r["decided_by"]) == (
            "accept",
            "expert_rewrite",
            "expert",
        )
    # nothing is pending any more; a second simulate does nothing
    assert annotate_pairs.simulate(catalog, None, "gold", "gold_response")["answered"] == 0


def test_import_of_an_export_file_is_idempotent_and_reports_bad_answers(tmp_path):
    catalog = make_pair_home(tmp_path / "home", 9)
    path, _ = annotate_pairs.push(catalog, 1, "m")
    tasks = read_queue(path)
    answered = simulate_pair_answers(
        tasks,
        gold_of(catalog),
        side_map(catalog),
        rewrites={t["data"]["candidate_id"]: "Rewritten by hand." for t in tasks},
        annotators=2,
        seed=0,
    )
    answered[0]["annotations"][0]["result"][0]["value"]["choices"] = ["neither"]
    stranger = json.loads(json.dumps(answered[1]))
    stranger["data"]["candidate_id"] = "not-a-pair"
    export = tmp_path / "export.json"
    export.write_text(json.dumps([*answered, stranger]))

    report = annotate.import_export(catalog, Settings(), export, 1)
    assert (report.annotations_read, report.annotations_new, report.malformed) == (19, 17, 3)
    assert report.decisions == 9 and report.rewrites == 3
    assert any("unknown choice 'neither'" in e for e in report.errors)
    assert any("not-a-pair" in e and "no pair task" in e for e in report.errors)
    assert catalog.scalar("SELECT count(*) FROM annotations") == 17

    again = annotate.import_export(catalog, Settings(), export, 1)
    assert again.already_imported
    # the same answers under another name: stored once, no new decision or rewrite
    copy = tmp_path / "copy.json"
    copy.write_text(json.dumps(answered, indent=1))
    third = annotate.import_export(catalog, Settings(), copy, 1)
    assert (third.annotations_new, third.decisions, third.rewrites) == (0, 0, 0)
    assert catalog.scalar("SELECT count(*) FROM annotations") == 17
    assert catalog.scalar("SELECT count(*) FROM candidates WHERE source = 'expert-rewrite'") == 3


def test_pending_gold_names_a_pair_without_gold(tmp_path):
    catalog = make_pair_home(tmp_path / "home", 3)
    annotate_pairs.push(catalog, 1, "m")
    with pytest.raises(ValueError, match="3 pending pair.*'verdict'"):
        annotate_pairs.simulate(catalog, None, "verdict")


def test_a_tie_leaves_the_pair_hard(tmp_path):
    catalog = make_pair_home(tmp_path / "home", 6)
    annotate_pairs.push(catalog, 1, "m")
    result = annotate_pairs.simulate(catalog, None, "gold", annotators=2, noise=1.0, noisy=1)
    assert (result["answered"], result["annotations"], result["rewrites"]) == (6, 12, 0)
    assert catalog.scalar("SELECT count(*) FROM decisions WHERE decided_by = 'expert'") == 0
    assert catalog.scalar("SELECT count(*) FROM latest_decisions WHERE decision = 'hard'") == 6


def test_cli_import_and_status(tmp_path):
    from typer.testing import CliRunner

    from pipelines.cli import app

    home = tmp_path / "home"
    catalog = make_pair_home(home, 6)
    runner = CliRunner()
    pushed = runner.invoke(app, ["annotate", "push", "--home", str(home)], catch_exceptions=False)
    assert "6 pairwise task(s)" in pushed.stdout
    tasks = read_queue(annotate_pairs.queue_path(catalog, 1))
    answered = simulate_pair_answers(
        tasks, gold_of(catalog), side_map(catalog), rewrites={"p0002": "Fixed."}, annotators=1
    )
    export = tmp_path / "export.json"
    export.write_text(json.dumps(answered))
    args = ["annotate", "import", str(export), "--home", str(home)]
    imported = runner.invoke(app, args, catch_exceptions=False)
    assert imported.exit_code == 0, imported.output
    assert "6 new annotation(s)" in imported.stdout and "1 rewrite(s)" in imported.stdout
    status = runner.invoke(app, ["annotate", "status", "--home", str(home)])
    assert '"answered": 6' in status.stdout and '"waiting": 0' in status.stdout


def test_an_empty_own_answer_is_never_queued_and_a_missing_one_is_refused(tmp_path):
    """A young model may stop at once: a pair against an empty answer is not blind (one side
    is empty), so the route keeps it hard and unqueued. A queued pair with no pair_scores row
    at all is refused at push, naming it."""
    import pyarrow as pa

    from pipelines.catalog import SCHEMAS
    from pipelines.score_pairs import route_pairs_round

    catalog = make_pair_home(tmp_path / "home", 3)
    rows = catalog.query("SELECT * FROM pair_scores ORDER BY candidate_id").to_pylist()
    for row in rows:
        row["score"], row["own_score"] = 0.1, 0.0  # hard: inside the margin
    rows[0]["model_response"] = ""
    for p in (catalog.home / "lake" / "pair_scores").glob("test-*.parquet"):
        p.unlink()  # replaced by the rows below
    catalog.write("pair_scores", pa.Table.from_pylist(rows, SCHEMAS["pair_scores"]), "again")
    route_pairs_round(catalog, Settings(), 1)
    latest = {
        r["candidate_id"]: (r["decision"], r["queued"])
        for r in catalog.query("SELECT * FROM latest_decisions").to_pylist()
    }
    assert latest[rows[0]["candidate_id"]] == ("hard", False)
    assert latest[rows[1]["candidate_id"]] == ("hard", True)
    _, n = annotate_pairs.push(catalog, 1, "m")
    assert n == 2

    missing = make_pair_home(tmp_path / "other", 1)
    missing_id = missing.query("SELECT candidate_id FROM pair_scores").to_pylist()[0]
    for p in (missing.home / "lake" / "pair_scores").glob("test-*.parquet"):
        p.unlink()
    with pytest.raises(ValueError, match=f"queued pair {missing_id['candidate_id']}"):
        annotate_pairs.push(missing, 1, "m")
