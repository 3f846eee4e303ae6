"""Blind pairwise tasks: side draws, task data, the model's guess, parsing and mapping back."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest

from annotation.pair_simulate import simulate_pair_answers
from annotation.pair_tasks import (
    TASK_FIELDS,
    build_pair_tasks,
    draw_side,
    is_pair_task,
    map_choice,
    parse_pair_export,
    preference_choice,
)
from annotation.pairwise import PairwiseConfig
from annotation.queue import AnnotationFormatError

CFG = PairwiseConfig()


def rows(n: int, gap: float | None = 1.0) -> list[dict]:
    return [
        {
            "candidate_id": f"c{i}",
            "round": 3,
            "prompt": f"What does f{i} do?",
            "response": f"candidate response {i}",
            "model_response": f"model response {i}",
            "gap": gap,
            "model_id": "m1",
            "priority": 0.5,
            "candidate_side": None,
        }
        for i in range(n)
    ]


def test_sides_are_a_fair_reproducible_coin():
    sides = [draw_side(f"cand-{i}", 1, "seed") for i in range(2000)]
    share = Counter(sides)["a"] / len(sides)
    assert 0.46 < share < 0.54  # 2000 fair flips: 5 sigma is about +-0.056
    assert sides == [draw_side(f"cand-{i}", 1, "seed") for i in range(2000)]
    # the seed and the round change the draw
    assert sides != [draw_side(f"cand-{i}", 1, "other") for i in range(2000)]
    assert sides != [draw_side(f"cand-{i}", 2, "seed") for i in range(2000)]


def test_task_data_is_blind_and_both_orders_occur():
    tasks, sides = build_pair_tasks(rows(200), "m0", CFG, seed=7)
    assert 70 < Counter(sides)["a"] < 130
    for task, side, row in zip(tasks, sides, rows(200), strict=True):
        data = task["data"]
        assert tuple(data) == TASK_FIELDS  # nothing else: no model/candidate field, no score
        assert data["response_" + side] == row["response"]
        other = "b" if side == "a" else "a"
        assert data["response_" + other] == row["model_response"]
        assert data["round"] == 3 and data["prompt"] == row["prompt"]
        assert is_pair_task(task)
    blob = json.dumps([t["data"] for t in tasks]).lower()
    assert "model" not in blob.replace("model response", "")  # only the shown text says it
    assert "candidate_side" not in blob and "gap" not in blob


def test_prediction_is_the_better_side_with_symmetric_confidence():
    for gap in (2.0, -2.0):
        tasks, sides = build_pair_tasks(rows(40, gap=gap), "m0", CFG, seed=1)
        for task, side in zip(tasks, sides, strict=True):
            (pred,) = task["predictions"]
            guess = pred["result"][0]["value"]["choices"][0]
            better = side if gap > 0 else ("b" if side == "a" else "a")
            assert guess == better
            assert pred["model_version"] == "m1"
            assert math.isclose(pred["score"], 1 / (1 + math.exp(-2.0)))
            assert pred["result"][0]["from_name"] == "preference"
    tasks, _ = build_pair_tasks(rows(3, gap=None), "m0", CFG, seed=1)
    assert all(t["predictions"] == [] for t in tasks)


def test_recorded_side_is_kept():
    given = rows(30)
    for r in given:
        r["candidate_side"] = "b"
    tasks, sides = build_pair_tasks(given, "m0", CFG, seed=1)
    assert set(sides) == {"b"}
    assert all(t["data"]["response_b"].startswith("candidate") for t in tasks)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"prompt": ""}, "row 0 .*prompt must be a non-empty string"),
        ({"model_response": None}, "row 0 .*model_response"),
        ({"round": None}, "row 0 .*round is missing"),
        ({"candidate_side": "c"}, "candidate_side must be a or b"),
    ],
)
def test_bad_rows_name_the_row(change, match):
    bad = rows(1)
    bad[0].update(change)
    with pytest.raises(ValueError, match=match):
        build_pair_tasks(bad, "m0", CFG, seed=0)


def test_repeated_candidate_is_refused():
    with pytest.raises(ValueError, match="repeats row 0"):
        build_pair_tasks(rows(1) + rows(1), "m0", CFG, seed=0)


@pytest.mark.parametrize("side", ["a", "b"])
def test_mapping_back_for_both_orders(side):
    other = "b" if side == "a" else "a"
    assert map_choice(side, side, CFG) == "candidate"
    assert map_choice(other, side, CFG) == "model"
    assert map_choice("both_bad", side, CFG) == "both_bad"
    assert map_choice(None, side, CFG) is None
    for pref in ("candidate", "model", "both_bad"):
        assert map_choice(preference_choice(pref, side, CFG), side, CFG) == pref
    with pytest.raises(ValueError, match="unknown pairwise choice"):
        map_choice("c", side, CFG)


def annotation(ann_id: int, user: int, choice, rewrite=None, rationale=None) -> dict:
    result = []
    if choice is not None:
        result.append(
            {
                "from_name": "preference",
                "to_name": "prompt",
                "type": "choices",
                "value": {"choices": choice if isinstance(choice, list) else [choice]},
            }
        )
    for name, text in (("rewrite", rewrite), ("rationale", rationale)):
        if text is not None:
            result.append(
                {
                    "from_name": name,
                    "to_name": "prompt",
                    "type": "textarea",
                    "value": {"text": [text]},
                }
            )
    return {
        "id": ann_id,
        "completed_by": user,
        "result": result,
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
    }


def export_task(anns: list[dict], **data) -> dict:
    base = {
        "candidate_id": "c1",
        "round": 1,
        "prompt": "Q?",
        "response_a": "A text",
        "response_b": "B text",
    }
    return {"id": 11, "data": {**base, **data}, "annotations": anns}


def test_parser_reads_choice_rewrite_rationale_and_reports_bad_answers():
    task = export_task(
        [
            annotation(1, 1, "a", rewrite="  A better text. ", rationale="clearer"),
            annotation(2, 2, "both_bad", rewrite="B text"),  # a copy of a side: no rewrite
            annotation(3, 3, "c"),  # unknown choice
            annotation(4, 4, ["a", "b"]),  # two choices
            {"id": 5, "result": []},  # no completed_by
            annotation(6, 5, None, rationale="unsure"),  # no preference: kept, no vote
        ]
    )
    parsed = parse_pair_export([task], CFG)
    got = [(r.annotation_id, r.choice, r.corrected_text, r.rationale) for r in parsed.records]
    assert got == [
        (1, "a", "A better text.", "clearer"),
        (2, "both_bad", None, None),
        (6, None, None, "unsure"),
    ]
    assert [(e.task_index, e.annotation_index) for e in parsed.errors] == [(0, 2), (0, 3), (0, 4)]
    assert "unknown choice 'c'" in str(parsed.errors[0])
    assert "candidate c1" in str(parsed.errors[0])


def test_parser_refuses_a_text_export():
    with pytest.raises(AnnotationFormatError, match="prompt missing.*pairwise project"):
        parse_pair_export([{"data": {"candidate_id": "x", "text": "t"}, "annotations": []}])
    with pytest.raises(AnnotationFormatError, match="expected a list"):
        parse_pair_export({"data": {}})  # type: ignore[arg-type]


@pytest.mark.parametrize("noise", [0.0, 1.0])
def test_simulated_expert_round_trip(noise):
    tasks, sides_list = build_pair_tasks(rows(60), "m0", CFG, seed=5)
    sides = {t["data"]["candidate_id"]: s for t, s in zip(tasks, sides_list, strict=True)}
    prefs = ("candidate", "model", "both_bad")
    gold = {f"c{i}": prefs[i % 3] for i in range(60)}
    rewrites = {f"c{i}": f"expert text {i}" for i in range(60) if i % 3 == 2}
    answered = simulate_pair_answers(
        tasks, gold, sides, rewrites=rewrites, annotators=3, noise=noise, noisy=1, seed=0
    )
    assert tasks[0].get("annotations") is None  # inputs untouched
    parsed = parse_pair_export(answered, CFG)
    assert not parsed.errors and len(parsed.records) == 180
    wrong = Counter()
    for rec in parsed.records:
        pref = map_choice(rec.choice, sides[rec.candidate_id], CFG)
        if rec.annotator == "1":
            wrong[pref != gold[rec.candidate_id]] += 1
        else:
            assert pref == gold[rec.candidate_id]
        has_rewrite = pref == "both_bad" and rec.candidate_id in rewrites
        assert (rec.corrected_text is not None) == has_rewrite
        assert rec.rationale.startswith("simulated expert")
    assert wrong[True] == (60 if noise == 1.0 else 0)


def test_simulator_needs_gold_and_side():
    tasks, _ = build_pair_tasks(rows(1), "m0", CFG, seed=5)
    with pytest.raises(KeyError, match="no gold preference"):
        simulate_pair_answers(tasks, {}, {"c0": "a"})
    with pytest.raises(KeyError, match="no recorded side"):
        simulate_pair_answers(tasks, {"c0": "model"}, {})
    with pytest.raises(ValueError, match="gold preference must be"):
        simulate_pair_answers(tasks, {"c0": "accept"}, {"c0": "a"})
