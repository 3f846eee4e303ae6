"""The pair step of a round on a tiny workspace with hand-written prompt/response candidates.

The model is trained to answer eight questions (their answers also form the trusted text
the quality classifier learns from); the pool holds, for each question, its right answer,
the answer to another question, and the right answer's words shuffled into salad.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pytest

from pipelines.catalog import SCHEMAS, Catalog, now
from pipelines.modelling import ModelRef
from pipelines.score import count_to_score, model_bar
from pipelines.score_pairs import (
    count_pairs_to_score,
    has_pool_pairs,
    route_pairs_round,
    score_pairs,
)
from pipelines.settings import Settings, save_settings
from scoring.loss import shuffle_words
from trainer.config import ModelConfig, TrainConfig
from trainer.data import render_prefix
from trainer.train import train

pytestmark = pytest.mark.slow

QA = [
    ("What does abs do?", "Return the absolute value of the argument."),
    ("What does len do?", "Return the number of items in a container."),
    ("What does ord do?", "Return the Unicode code point for a one-character string."),
    ("What does hex do?", "Return the hexadecimal representation of an integer."),
    ("What does sorted do?", "Return a new list containing all items in ascending order."),
    ("What does round do?", "Round a number to a given precision in decimal digits."),
    ("What does repr do?", "Return the canonical string representation of the object."),
    ("What does callable do?", "Return whether the object is callable, like a function."),
]
SETTINGS = {
    "route.n_samples": 24,
    "route.sample_bytes": 96,
    "quality.cv_folds": 3,
    "quality.n_features": 4096,
    "quality.calibrate_min_per_class": 6,
    "pairs.max_response_bytes": 96,
    "pairs.budget": 2,
}


# This pool tests the model's judgement, so the answer rules are off: salad loses the
# answer's final full stop (unfinished_response), and each "other" answer is also the good
# answer of another question (generic_response would take both).
MODEL_ONLY = {"pairs.unfinished_min_words": 0, "pairs.generic_min_prompts": 0}


def candidate(cid: str, role: str, text: str, prompt: str | None = None) -> dict:
    return {
        "candidate_id": cid,
        "content_hash": hashlib.sha256(f"{prompt}\x1f{text}".encode()).hexdigest(),
        "source": "hand",
        "source_id": cid,
        "row": 0,
        "role": role,
        "text": text,
        "n_chars": len(text),
        "meta": None,
        "ingest_id": "test",
        "round": 1,
        "ingested_at": now(),
        "kind": "pair" if prompt is not None else "text",
        "prompt": prompt,
    }


def pool_rows() -> list[dict]:
    rows = []
    for i, (question, answer) in enumerate(QA):
        other = QA[(i + 3) % len(QA)][1]
        rows.append(candidate(f"good-{i}", "pool", answer, question))
        rows.append(candidate(f"other-{i}", "pool", other, question))
        rows.append(candidate(f"salad-{i}", "pool", shuffle_words(answer + " " + other), question))
    rows.append(candidate("loop", "pool", "the same line\n" * 6, QA[0][0]))
    rows.append(candidate("short", "pool", "Its absolute value.", QA[0][0]))
    rows.append(candidate("plain", "pool", "A plain pool text goes the text way, not this one."))
    return rows


@pytest.fixture(scope="module")
def answerer(tmp_path_factory) -> ModelRef:
    """A model trained to answer: the questions' layout with their answers."""
    docs = [render_prefix(q) + a for q, a in QA] * 4 + [a for _, a in QA]
    model_dir = tmp_path_factory.mktemp("answerer")
    train(
        docs,
        [],
        ModelConfig(d_model=64, n_layers=2, d_state=16, headdim=16),
        TrainConfig(seq_len=128, batch_size=8, steps=300, warmup_steps=10, checkpoint_every=0),
        model_dir,
    )
    return ModelRef("answerer", Path(model_dir), "reference")


def make_workspace(
    home: Path, pool: list[dict] | None = None, **overrides
) -> tuple[Catalog, Settings]:
    """The answers as trusted text, the hand-written pool (or ``pool``), tiny settings."""
    catalog = Catalog(home).init()
    settings = Settings().with_overrides({**SETTINGS, **overrides})
    save_settings(home, settings)
    trusted = [candidate(f"t-{i}", "trusted", a) for i, (_, a) in enumerate(QA)]
    rows = pool_rows() if pool is None else pool
    table = pa.Table.from_pylist(trusted + rows, SCHEMAS["candidates"])
    catalog.write("candidates", table, "hand")
    return catalog, settings


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, answerer) -> tuple[Catalog, Settings, ModelRef]:
    home = tmp_path_factory.mktemp("pairs") / "home"
    catalog, settings = make_workspace(home, **MODEL_ONLY)
    return catalog, settings, answerer


def test_losers_are_below_the_model_response_and_reruns_add_nothing(workspace):
    catalog, settings, model = workspace
    assert has_pool_pairs(catalog)
    # the text path leaves pairs alone; the pair path takes every pool pair
    assert count_to_score(catalog, 1) == 1
    assert count_pairs_to_score(catalog, 1) == 3 * len(QA) + 2
    bar = model_bar(catalog, settings, 1, model, model)
    assert score_pairs(catalog, settings, 1, model, model, bar) == 3 * len(QA) + 2
    counts = route_pairs_round(catalog, settings, 1)

    scores = {r["candidate_id"]: r for r in catalog.query("SELECT * FROM pair_scores").to_pylist()}
    text_of = {r["candidate_id"]: r["text"] for r in pool_rows()}
    decided = {r["candidate_id"]: r for r in catalog.query("SELECT * FROM decisions").to_pylist()}
    assert set(scores) == set(decided) == {r["candidate_id"] for r in pool_rows()} - {"plain"}
    for cid, row in scores.items():
        if cid == "loop":
            continue
        own = row["model_response"]
        assert own is not None and "### Question" not in own and "What does" not in own
        assert len(own.encode()) <= 96
        assert row["gap"] == pytest.approx(row["score"] - row["own_score"])
    # the model answers its questions: its own answer is the right one (greedy or not)
    assert sum(scores[f"good-{i}"]["model_response"] == a for i, (_, a) in enumerate(QA)) >= 6
    for i in range(len(QA)):
        for loser in (f"other-{i}", f"salad-{i}"):
            d = decided[loser]
            assert (d["decision"], d["reason"], d["decided_by"]) == (
                "reject",
                "below_model_response",
                "model",
            ), (loser, scores[loser])
        assert decided[f"good-{i}"]["reason"] != "below_model_response"
    assert (decided["loop"]["decision"], decided["loop"]["reason"]) == ("reject", "repeated_lines")
    assert decided["loop"]["decided_by"] == "rule"
    assert decided["short"]["decided_by"] == "model"  # no rule judges an answer by its length
    for d in decided.values():
        assert d["reason"] and d["model_id"] == "answerer"
        if d["decided_by"] == "model":
            assert 0 < d["quality"] < 1 and 0 < d["bar"] < 1
    queued = {k for k, d in decided.items() if d["queued"]}
    assert len(queued) <= 2
    # an expert is never asked to choose between two identical answers
    assert all(scores[k]["model_response"] != text_of[k] for k in queued)
    for k, d in decided.items():
        if d["decision"] == "hard" and scores[k]["model_response"] == text_of[k]:
            assert not d["queued"] and d["priority"] == 0
    assert sum(counts.values()) == len(decided)

    # a rerun of the round scores nothing new and decides nothing twice
    n_scores, n_decisions = len(scores), catalog.scalar("SELECT count(*) FROM decisions")
    assert score_pairs(catalog, settings, 1, model, model, bar) == 0
    route_pairs_round(catalog, settings, 1)
    assert catalog.scalar("SELECT count(*) FROM pair_scores") == n_scores
    assert catalog.scalar("SELECT count(*) FROM decisions") == n_decisions


def test_a_killed_step_resumes_with_the_same_answers(tmp_path, answerer):
    catalog, settings = make_workspace(tmp_path / "home", **{"score.shard_rows": 8}, **MODEL_ONLY)
    bar = model_bar(catalog, settings, 1, answerer, answerer)
    total = score_pairs(catalog, settings, 1, answerer, answerer, bar)
    files = catalog.files("pair_scores")
    assert len(files) == -(-total // 8)  # one file per shard of score.shard_rows pairs
    before = catalog.query("SELECT * FROM pair_scores ORDER BY candidate_id").to_pylist()
    lost = catalog.query(f"SELECT count(*) AS n FROM '{files[0]}'").to_pylist()[0]["n"]
    Path(files[0]).unlink()  # as if the run died before writing this shard
    assert score_pairs(catalog, settings, 1, answerer, answerer, bar) == lost
    after = catalog.query("SELECT * FROM pair_scores ORDER BY candidate_id").to_pylist()
    assert [(r["candidate_id"], r["model_response"], r["gap"]) for r in after] == [
        (r["candidate_id"], r["model_response"], r["gap"]) for r in before
    ]


def test_answer_rules_reject_generic_and_unfinished_responses(tmp_path, answerer):
    canned = "Please refer to the official docs for details."
    cut = QA[4][1].rstrip(".").rsplit(" ", 2)[0]  # "Return a new list ... in"
    pool = [
        candidate("canned-0", "pool", canned, QA[0][0]),
        candidate("canned-1", "pool", canned, QA[1][0]),
        candidate("cut", "pool", cut, QA[4][0]),
        candidate("good", "pool", QA[2][1], QA[2][0]),
        candidate("plain", "pool", "A plain pool text goes the text way, not this one."),
    ]
    catalog, settings = make_workspace(tmp_path / "home", pool)
    # the canned answer of another ingest counts too: the set is over the whole catalog
    other = candidate("canned-2", "trusted", canned, QA[3][0])  # not pool: does not count
    catalog.write("candidates", pa.Table.from_pylist([other], SCHEMAS["candidates"]), "more")
    bar = model_bar(catalog, settings, 1, answerer, answerer)
    assert score_pairs(catalog, settings, 1, answerer, answerer, bar) == 4
    route_pairs_round(catalog, settings, 1)
    decided = {
        r["candidate_id"]: (r["decision"], r["reason"], r["decided_by"])
        for r in catalog.query("SELECT * FROM decisions").to_pylist()
    }
    assert decided["canned-0"] == decided["canned-1"] == ("reject", "generic_response", "rule")
    assert decided["cut"] == ("reject", "unfinished_response", "rule")
    assert decided["good"][2] == "model"
    rules = catalog.query("SELECT candidate_id, rule_reason, model_response FROM pair_scores")
    by_id = {r["candidate_id"]: r for r in rules.to_pylist()}
    assert by_id["cut"]["rule_reason"] == "unfinished_response"
    assert by_id["canned-0"]["model_response"] is None  # a rule's reject is not answered


def test_curation_round_scores_and_routes_pool_pairs(harness, tiny_home):
    from pipelines.flows import curation_round
    from scoring.pairs import PAIR_REASONS

    catalog = Catalog(tiny_home)
    rows = [candidate(f"pair-{i}", "pool", a, q) for i, (q, a) in enumerate(QA)]
    rows.append(candidate("pair-loop", "pool", "the same line\n" * 6, QA[0][0]))
    catalog.write("candidates", pa.Table.from_pylist(rows, SCHEMAS["candidates"]), "pairs")
    result = curation_round(home=str(tiny_home))

    assert sum(result["pairs"].values()) == len(rows)
    ids = [r["candidate_id"] for r in rows]
    scored = catalog.query("SELECT * FROM pair_scores").to_pylist()
    assert sorted(r["candidate_id"] for r in scored) == sorted(ids)
    assert all(r["model_response"] is not None for r in scored if r["rule_reason"] is None)
    # the text path never saw them
    assert (
        catalog.scalar("SELECT count(*) FROM scores WHERE list_contains(?, candidate_id)", [ids])
        == 0
    )
    decided = catalog.query(
        "SELECT * FROM decisions WHERE list_contains(?, candidate_id)", [ids]
    ).to_pylist()
    assert len(decided) == len(rows)
    for d in decided:
        if d["candidate_id"] == "pair-loop":
            assert (d["reason"], d["decided_by"]) == ("repeated_lines", "rule")
        else:
            assert d["reason"] in PAIR_REASONS and d["decided_by"] == "model"
    rounds = catalog.query("SELECT round FROM rounds").to_pylist()
    assert rounds == [{"round": 1}]
