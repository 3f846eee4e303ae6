"""The demo instruction set: sizes, junk share, gold fields, disjoint splits, determinism."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from pipelines.catalog import Catalog
from pipelines.config import PairFields
from pipelines.demo_instruct import JUNK_KINDS, build_instruct_set, read_definitions
from pipelines.ingest import ingest
from pipelines.stdlib_text import MIN_CHARS

SIZES = {"trusted": 300, "validation": 60, "pool": 300}  # the defaults


@pytest.fixture(scope="module")
def instruct(tmp_path_factory):
    paths = build_instruct_set(tmp_path_factory.mktemp("seed0"), seed=0)
    rows = {
        split: [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        for split, path in paths.items()
    }
    return paths, rows


def test_files_sizes_and_fields(instruct):
    paths, rows = instruct
    assert {s: p.name for s, p in paths.items()} == {
        "trusted": "instruct-trusted.jsonl",
        "validation": "instruct-validation.jsonl",
        "pool": "instruct-pool.jsonl",
    }
    assert {s: len(r) for s, r in rows.items()} == SIZES
    for split, split_rows in rows.items():
        assert len({r["id"] for r in split_rows}) == len(split_rows)
        for r in split_rows:
            assert r["id"].startswith(f"instruct-{split}-")
            assert isinstance(r["prompt"], str) and f"`{r['name']}`" in r["prompt"]
            assert isinstance(r["response"], str) and r["response"].strip()
    # a few templates, not one
    assert len({r["prompt"].replace(r["name"], "X") for r in rows["trusted"]}) >= 4


def test_junk_share_kinds_and_gold(instruct):
    _, rows = instruct
    pool = rows["pool"]
    kinds = Counter(r["kind"] for r in pool)
    n_junk = round(0.35 * SIZES["pool"])
    assert kinds["clean"] == SIZES["pool"] - n_junk
    assert set(kinds) - {"clean"} == set(JUNK_KINDS)
    per_kind = [kinds[k] for k in JUNK_KINDS]
    assert sum(per_kind) == n_junk and max(per_kind) - min(per_kind) <= 1
    for r in pool:
        if r["kind"] == "clean":
            assert r["gold"] == "candidate" and "gold_response" not in r
            # shorter than any text demo document: never a near-duplicate of one
            assert 40 <= len(r["response"]) < MIN_CHARS
        else:
            assert r["gold"] == "both_bad"
            assert r["gold_response"] != r["response"] and len(r["gold_response"]) >= 40
    # every clean answer is a docstring summary: prose ending like a sentence
    assert all(r["response"][-1] in ".!?)'\"" for r in pool if r["kind"] == "clean")


def test_junk_kinds_look_like_their_names(instruct):
    _, rows = instruct
    by_kind: dict[str, list[dict]] = {}
    for r in rows["pool"]:
        by_kind.setdefault(r["kind"], []).append(r)
    # the true answer of every trusted and pool question (a junk row's is its gold_response)
    true_answers = {
        r.get("gold_response", r["response"]) for s in ("trusted", "pool") for r in rows[s]
    }
    validation_answers = {r["response"] for r in rows["validation"]}
    for r in by_kind["wrong_answer"]:
        assert r["response"] in true_answers  # another question's answer: fluent, but wrong
        assert r["response"] not in validation_answers  # no validation leak into the pool
    for r in by_kind["truncated"]:
        assert r["gold_response"].startswith(r["response"])
        assert len(r["response"]) < len(r["gold_response"])
    for r in by_kind["shuffled"]:
        assert sorted(r["response"].split()) == sorted(r["gold_response"].split())
    for r in by_kind["echo"]:
        assert r["prompt"] in r["response"]
    for r in by_kind["mojibake"]:
        assert "\u00e2\u20ac" in r["response"]  # a UTF-8 quote read as cp1252
    for r in by_kind["repeated"]:
        first = r["response"].split(". ")[0]
        assert r["response"].count(first) >= 3
    for r in by_kind["code"]:
        assert r["response"].startswith(("def ", "class ", "async def ", "@"))


def test_no_question_in_two_splits(instruct):
    _, rows = instruct
    names = [{r["name"] for r in split_rows} for split_rows in rows.values()]
    prompts = [{r["prompt"] for r in split_rows} for split_rows in rows.values()]
    for group in (names, prompts):
        assert sum(len(g) for g in group) == len(set().union(*group)) == sum(SIZES.values())


def test_same_seed_is_byte_identical_other_seed_differs(instruct, tmp_path):
    from pipelines import demo_instruct

    paths, _ = instruct
    demo_instruct._read_definitions.cache_clear()  # reading is deterministic too
    again = build_instruct_set(tmp_path / "again", seed=0)
    other = build_instruct_set(tmp_path / "other", seed=1)
    for split, path in paths.items():
        assert again[split].read_bytes() == path.read_bytes()
        assert other[split].read_bytes() != path.read_bytes()


def test_sizes_are_checked(tmp_path):
    with pytest.raises(ValueError, match="documents"):
        build_instruct_set(tmp_path, n_pool=len(read_definitions()))
    with pytest.raises(ValueError, match="junk_frac"):
        build_instruct_set(tmp_path, junk_frac=2.0)


def test_ingests_as_pairs_without_quarantine(instruct, tmp_path):
    paths, rows = instruct
    catalog = Catalog(tmp_path / "home").init()
    spec = PairFields(prompt_field="prompt", response_field="response")
    for role in ("trusted", "validation", "pool"):
        report = ingest(catalog, str(paths[role]), role=role, id_field="id", pair=spec)
        assert (report.added, report.quarantined) == (SIZES[role], 0)
    got = catalog.query(
        "SELECT json_extract_string(meta, '$.gold') AS gold, count(*) AS n FROM candidates "
        "WHERE kind = 'pair' AND role = 'pool' GROUP BY ALL ORDER BY gold"
    ).to_pylist()
    n_junk = round(0.35 * SIZES["pool"])
    assert got == [
        {"gold": "both_bad", "n": n_junk},
        {"gold": "candidate", "n": SIZES["pool"] - n_junk},
    ]
