"""Round trip: tasks → file queue → simulated experts → export file → parse_export → consensus."""

import copy
import json

import numpy as np
import pytest

from annotation.config import AnnotationConfig
from annotation.consensus import annotator_agreement, consensus
from annotation.queue import parse_export, read_queue, write_queue
from annotation.simulate import simulate_answers
from annotation.tasks import build_tasks

CFG = AnnotationConfig()


def hard_rows(n=40, seed=1):
    rng = np.random.default_rng(seed)
    return [
        {
            "candidate_id": f"cand-{i:03d}",
            "text": f"Candidate text number {i}.",
            "quality": float(rng.uniform(0.4, 0.6)),
            "bar": 0.5,
            "learnability": float(rng.normal()),
            "loss_model": 3.0,
            "loss_ref": 3.2,
            "round": 1,
            "reason": "hard_band",
        }
        for i in range(n)
    ]


def gold_for(rows):
    return {r["candidate_id"]: "accept" if i % 3 else "reject" for i, r in enumerate(rows)}


def test_round_trip_without_noise(tmp_path):
    rows = hard_rows()
    gold = gold_for(rows)
    queue = write_queue(tmp_path / "queue.json", build_tasks(rows, "ssm-r1", CFG))
    exported = simulate_answers(read_queue(queue), gold, annotators=3, noise=0.0, seed=0)
    export_path = tmp_path / "export.json"
    export_path.write_text(json.dumps(exported), encoding="utf-8")

    result = parse_export(export_path, CFG)
    assert result.errors == []
    assert len(result.records) == 3 * len(rows)
    assert {r.annotator for r in result.records} == {"1", "2", "3"}
    assert len({r.annotation_id for r in result.records}) == len(result.records)
    votes = consensus(result.records)
    assert {c.candidate_id: c.label for c in votes} == gold
    assert all(c.agreement == 1.0 and c.n_annotations == 3 for c in votes)
    assert annotator_agreement(result.records, votes) == {"1": 1.0, "2": 1.0, "3": 1.0}
    # predictions and data travel through untouched
    assert exported[0]["predictions"][0]["model_version"] == "ssm-r1"
    assert [t["id"] for t in exported] == list(range(1, len(rows) + 1))


def test_noise_is_seeded_and_roughly_the_asked_rate():
    rows = hard_rows(n=400)
    gold = gold_for(rows)
    tasks = build_tasks(rows, "m", CFG)
    before = copy.deepcopy(tasks)
    a = simulate_answers(tasks, gold, annotators=3, noise=0.2, seed=5)
    assert tasks == before  # inputs not modified
    assert a == simulate_answers(tasks, gold, annotators=3, noise=0.2, seed=5)
    assert a != simulate_answers(tasks, gold, annotators=3, noise=0.2, seed=6)
    records = parse_export(a).records
    wrong = np.mean([r.choice != gold[r.candidate_id] for r in records])
    assert 0.15 < wrong < 0.25
    votes = consensus(records)
    majority_wrong = np.mean([c.label != gold[c.candidate_id] for c in votes])
    assert majority_wrong < wrong  # three voters beat one


def test_missing_gold_and_bad_arguments():
    tasks = build_tasks(hard_rows(n=2), "m", CFG)
    with pytest.raises(KeyError, match="cand-001"):
        simulate_answers(tasks, {"cand-000": "accept"})
    with pytest.raises(ValueError):
        simulate_answers(tasks, gold_for(hard_rows(n=2)), annotators=0)
    with pytest.raises(ValueError):
        simulate_answers(tasks, gold_for(hard_rows(n=2)), noise=1.5)
    with pytest.raises(ValueError, match="expected one of"):
        simulate_answers(tasks, {"cand-000": "yes", "cand-001": "no"})
