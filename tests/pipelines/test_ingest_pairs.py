"""Ingest of prompt/response pairs: every format, chat messages, quarantine, hashes, dedup."""

from __future__ import annotations

import csv
import json
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from pipelines.catalog import Catalog
from pipelines.cli import app
from pipelines.config import IngestConfig, PairFields
from pipelines.dedup import dedup
from pipelines.ingest import content_hash, ingest, normalise, pair_hash
from pipelines.ingest_pairs import render_messages
from scoring.config import DedupConfig

QA = PairFields(prompt_field="question", response_field="answer")
CHAT = PairFields(messages_field="messages")
Q1 = "What does `json.dumps` do?"
A1 = "Serialize an object to a JSON formatted string."
Q2 = "What does `os.path.join` do?"
A2 = "Join one or more path components intelligently into a single path."


def write_jsonl(path: Path, rows: list[dict | str]) -> str:
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return str(path)


def pairs(catalog: Catalog) -> list[dict]:
    return catalog.query(
        "SELECT source_id, kind, prompt, text, n_chars, content_hash, meta FROM candidates "
        "ORDER BY row"
    ).to_pylist()


def quarantined(catalog: Catalog) -> list[tuple[int, str]]:
    rows = catalog.query("SELECT row, reason FROM quarantine ORDER BY row").to_pylist()
    return [(r["row"], r["reason"]) for r in rows]


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return Catalog(tmp_path / "home").init()


def test_prompt_response_jsonl_becomes_pair_candidates(tmp_path, catalog):
    src = write_jsonl(
        tmp_path / "qa.jsonl",
        [
            {"id": "a", "question": f"  {Q1} ", "answer": A1.replace(" ", "  "), "gold": "x"},
            {"id": "b", "question": Q2, "answer": A2, "text": "an unused text column"},
        ],
    )
    report = ingest(catalog, src, id_field="id", pair=QA)
    assert (report.added, report.quarantined) == (2, 0)
    got = pairs(catalog)
    assert [(r["kind"], r["prompt"], r["text"]) for r in got] == [
        ("pair", Q1, A1),
        ("pair", Q2, A2),
    ]
    assert got[0]["n_chars"] == len(A1)
    assert got[0]["content_hash"] == pair_hash(Q1, A1)
    # extra columns (gold fields for the simulated expert) land in meta; the pair fields do not
    assert json.loads(got[0]["meta"]) == {"gold": "x"}
    assert json.loads(got[1]["meta"]) == {"text": "an unused text column"}


def test_pair_hash_never_equals_a_text_hash():
    assert pair_hash(Q1, A1) != content_hash(A1)
    assert pair_hash(Q1, A1) != content_hash(f"{Q1}\n{A1}")
    assert pair_hash(Q1, A1) != pair_hash(Q2, A1)
    assert pair_hash("a\x1eb", "c") == content_hash("a\x1eb\x1ec")  # the separator, as documented


def test_a_pair_and_a_text_with_the_same_response_are_not_duplicates(tmp_path, catalog):
    ingest(catalog, write_jsonl(tmp_path / "t.jsonl", [{"text": A1}]))
    report = ingest(
        catalog, write_jsonl(tmp_path / "p.jsonl", [{"question": Q1, "answer": A1}]), pair=QA
    )
    assert (report.added, report.duplicates) == (1, 0)
    kinds = catalog.query("SELECT kind, count(*) AS n FROM candidates GROUP BY kind ORDER BY kind")
    assert kinds.to_pylist() == [{"kind": "pair", "n": 1}, {"kind": "text", "n": 1}]


def test_exact_duplicate_pairs_and_reingest(tmp_path, catalog):
    rows = [
        {"question": Q1, "answer": A1},
        {"question": Q1 + "  ", "answer": A1},  # same pair after normalisation
        {"question": Q2, "answer": A1},  # same answer, other question: not a duplicate
        {"question": Q1, "answer": A2},  # same question, other answer: not a duplicate
        {"question": "", "answer": A1},
    ]
    src = write_jsonl(tmp_path / "qa.jsonl", rows)
    first = ingest(catalog, src, pair=QA)
    assert (first.added, first.duplicates, first.quarantined) == (3, 1, 1)
    dup = catalog.query(
        "SELECT c.row, k.row AS kept FROM decisions d JOIN candidates c USING (candidate_id) "
        "JOIN candidates k ON k.candidate_id = d.duplicate_of WHERE d.reason = 'exact_duplicate'"
    ).to_pylist()
    assert dup == [{"row": 2, "kept": 1}]
    before = [catalog.scalar(f"SELECT count(*) FROM {t}") for t in ("candidates", "decisions")]
    again = ingest(catalog, src, pair=QA)
    assert (again.added, again.duplicates, again.quarantined) == (0, 0, 0)
    after = [catalog.scalar(f"SELECT count(*) FROM {t}") for t in ("candidates", "decisions")]
    assert after == before == [4, 1]
    # the same file read as plain text is another ingest: its texts are not pairs
    as_text = ingest(catalog, src, text_field="answer")
    assert as_text.added == 2 and as_text.duplicates == 3


def test_killed_pair_ingest_resumes_with_the_same_ids(tmp_path, catalog, killed_in_second_batch):
    # no id field: ids count occurrences of each pair, replayed from the finished batches
    rows = [{"question": f"Question {i % 9}?", "answer": f"Answer {i % 6}."} for i in range(25)]
    src = write_jsonl(tmp_path / "qa.jsonl", rows)
    cfg = IngestConfig(batch_rows=10)
    clean = Catalog(tmp_path / "clean").init()
    ingest(clean, src, pair=QA, cfg=cfg)
    with killed_in_second_batch():
        ingest(catalog, src, pair=QA, cfg=cfg)
    ingest(catalog, src, pair=QA, cfg=cfg)
    query = "SELECT candidate_id, prompt, text FROM candidates ORDER BY candidate_id"
    assert catalog.query(query).to_pylist() == clean.query(query).to_pylist()
    assert len(catalog.query(query)) == 25
    dups = "SELECT candidate_id, duplicate_of FROM decisions ORDER BY candidate_id"
    assert catalog.query(dups).to_pylist() == clean.query(dups).to_pylist()


def test_messages_render_as_prompt():
    assert render_messages([("user", "Hi?")]) == "Hi?"
    turns = [("system", "Be brief."), ("user", "Hi?"), ("assistant", "Hello."), ("user", "Bye?")]
    assert render_messages(turns) == "System: Be brief.\nUser: Hi?\nAssistant: Hello.\nUser: Bye?"


def test_messages_jsonl_and_quarantine_reasons_with_rows(tmp_path, catalog):
    def chat(*turns):
        return [{"role": r, "content": c} for r, c in turns]

    rows = [
        {"id": "ok1", "messages": chat(("user", Q1), ("assistant", A1))},
        {"id": "ok2", "messages": chat(("system", "Be brief."), ("user", Q2), ("assistant", A2))},
        {"id": "m1", "messages": "not a list"},
        {"id": "m2", "messages": {"role": "user"}},
        {"id": "m3", "messages": [{"role": "user"}, {"role": "assistant", "content": A1}]},
        {"id": "m4", "messages": chat(("tool", "x"), ("assistant", A1))},
        {"id": "m5", "messages": chat(("user", Q1), ("assistant", A1), ("user", "and?"))},
        {"id": "m6", "messages": []},
        {"id": "m7", "messages": chat(("user", "nul\x00"), ("assistant", A1))},
        {"id": "m8", "messages": chat(("user", Q1), ("assistant", "x" * 500))},
        {"id": "m9", "messages": chat(("assistant", A1))},
        {"id": "m10", "messages": chat(("user", Q1), ("assistant", "   "))},
        {"id": "m11"},
        {"id": "m12", "messages": [3, {"role": "assistant", "content": A1}]},
        {"id": "m13", "messages": chat(("user", ["parts"]), ("assistant", A1))},
    ]
    src = write_jsonl(tmp_path / "chat.jsonl", rows)
    report = ingest(catalog, src, id_field="id", pair=CHAT, cfg=IngestConfig(max_chars=300))
    assert report.added == 2
    assert quarantined(catalog) == [
        (3, "messages_not_list"),
        (4, "messages_not_list"),
        (5, "bad_message"),
        (6, "unknown_role"),
        (7, "no_final_assistant"),
        (8, "no_final_assistant"),
        (9, "nul_byte"),
        (10, "too_long"),
        (11, "empty_prompt"),
        (12, "empty_response"),
        (13, "missing_messages"),
        (14, "bad_message"),
        (15, "bad_message"),
    ]
    details = catalog.query("SELECT row, detail FROM quarantine ORDER BY row").to_pylist()
    assert "message 0 has no 'content'" in details[2]["detail"]
    assert "'tool'" in details[3]["detail"]
    assert "message 0" in details[11]["detail"]
    got = pairs(catalog)
    assert [(r["prompt"], r["text"]) for r in got] == [
        (Q1, A1),
        (f"System: Be brief.\nUser: {Q2}", A2),
    ]
    assert (
        ingest(catalog, src, id_field="id", pair=CHAT, cfg=IngestConfig(max_chars=300)).added == 0
    )


def test_prompt_response_quarantine_reasons(tmp_path, catalog):
    rows = [
        {"question": Q1, "answer": A1},
        {"answer": A1},
        {"question": None, "answer": A1},
        {"question": 7, "answer": A1},
        {"question": " \n ", "answer": A1},
        {"question": Q1},
        {"question": Q1, "answer": ["a", "list"]},
        {"question": Q1, "answer": "\t"},
        {"question": Q1, "answer": "nul\x00byte"},
        {"question": "q" * 301, "answer": A1},
        "not json",
    ]
    report = ingest(
        catalog, write_jsonl(tmp_path / "qa.jsonl", rows), pair=QA, cfg=IngestConfig(max_chars=300)
    )
    assert report.added == 1
    assert quarantined(catalog) == [
        (2, "missing_prompt"),
        (3, "missing_prompt"),
        (4, "non_string_prompt"),
        (5, "empty_prompt"),
        (6, "missing_response"),
        (7, "non_string_response"),
        (8, "empty_response"),
        (9, "nul_byte"),
        (10, "too_long"),
        (11, "malformed_json"),
    ]
    source = catalog.scalar("SELECT DISTINCT source FROM quarantine")
    assert source == str((tmp_path / "qa.jsonl").resolve())


def test_parquet_csv_and_saved_dataset(tmp_path, catalog):
    messages = pa.array(
        [
            [{"role": "user", "content": Q1}, {"role": "assistant", "content": A1}],
            [{"role": "user", "content": Q2}, {"role": "user", "content": A2}],
        ]
    )
    pq.write_table(pa.table({"messages": messages}), tmp_path / "chat.parquet")
    pq.write_table(
        pa.table({"question": [Q1, Q2, None], "answer": [A2, A1, A1]}), tmp_path / "qa.parquet"
    )
    with open(tmp_path / "chat.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "messages"])
        chat = [{"role": "user", "content": "CSV question?"}, {"role": "assistant", "content": A1}]
        writer.writerow(["c1", json.dumps(chat)])
        writer.writerow(["c2", "[not json"])
    import datasets

    datasets.Dataset.from_dict(
        {"prompt": ["Saved question?"], "response": ["A saved answer."]}
    ).save_to_disk(str(tmp_path / "saved"))

    a = ingest(catalog, str(tmp_path / "chat.parquet"), pair=CHAT)
    assert (a.added, dict(a.quarantine_reasons)) == (1, {"no_final_assistant": 1})
    b = ingest(catalog, str(tmp_path / "qa.parquet"), pair=QA)
    assert (b.added, dict(b.quarantine_reasons)) == (2, {"missing_prompt": 1})
    c = ingest(catalog, str(tmp_path / "chat.csv"), id_field="id", pair=CHAT)
    assert (c.added, dict(c.quarantine_reasons)) == (1, {"messages_not_list": 1})
    d = ingest(
        catalog,
        str(tmp_path / "saved"),
        pair=PairFields(prompt_field="prompt", response_field="response"),
    )
    assert d.added == 1
    got = {(r["prompt"], r["text"]) for r in pairs(catalog)}
    assert got == {
        (Q1, A1),
        (Q1, A2),
        (Q2, A1),
        ("CSV question?", A1),
        ("Saved question?", "A saved answer."),
    }
    assert catalog.scalar("SELECT count(*) FROM candidates WHERE kind IS DISTINCT FROM 'pair'") == 0


def test_pair_fields_are_checked():
    with pytest.raises(ValueError, match="go together"):
        PairFields(prompt_field="q")
    with pytest.raises(ValueError, match="one or the other"):
        PairFields(prompt_field="q", response_field="a", messages_field="m")
    with pytest.raises(ValueError, match="both 'q'"):
        PairFields(prompt_field="q", response_field="q")
    assert not PairFields().is_pair and CHAT.is_pair and QA.names() == ("question", "answer")


def test_near_duplicate_signing_uses_prompt_and_response(tmp_path, catalog):
    answer = "Return True."  # the same short answer to different questions: not duplicates
    long_answer = (
        "Return a new sorted list from the items in iterable, using the key function to "
        "extract a comparison key from each element and reverse to flip the order of results."
    )
    rows = [
        {
            "id": "q1",
            "question": "What does `os.path.isdir` return for a folder?",
            "answer": answer,
        },
        {"id": "q2", "question": "What does `str.isdigit` give for '123'?", "answer": answer},
        {"id": "q3", "question": "What does `sorted` do?", "answer": long_answer},
        {"id": "q4", "question": "What does `sorted` do?", "answer": long_answer + " Stable."},
    ]
    ingest(catalog, write_jsonl(tmp_path / "qa.jsonl", rows), id_field="id", pair=QA)
    report = dedup(catalog, DedupConfig(), round_=1)
    rejected = catalog.query(
        "SELECT c.source_id, k.source_id AS kept FROM decisions d JOIN candidates c "
        "USING (candidate_id) JOIN candidates k ON k.candidate_id = d.duplicate_of "
        "WHERE d.reason = 'near_duplicate'"
    ).to_pylist()
    assert rejected == [{"source_id": "q4", "kept": "q3"}]
    assert report.rejected == 1


def test_cli_ingest_pairs(tmp_path):
    home = tmp_path / "home"
    src = write_jsonl(tmp_path / "qa.jsonl", [{"id": "a", "q": Q1, "r": A1}, {"id": "b", "q": Q2}])
    runner = CliRunner()
    args = ["ingest", src, "--prompt-field", "q", "--response-field", "r", "--id-field", "id"]
    result = runner.invoke(app, [*args, "--home", str(home)])
    assert result.exit_code == 0, result.output
    assert '"added": 1' in result.output and '"missing_response": 1' in result.output
    assert Catalog(home).scalar("SELECT prompt FROM candidates WHERE kind = 'pair'") == Q1
    bad = runner.invoke(app, ["ingest", src, "--prompt-field", "q", "--home", str(home)])
    assert bad.exit_code == 2 and "go together" in bad.output


# -- fuzzed chat rows (hypothesis, small) ---------------------------------------------------
FUZZ_CFG = IngestConfig(max_chars=200, batch_rows=5)  # small batches: bad rows straddle them
CONTENT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")) | st.sampled_from(" \n"),
    min_size=1,
    max_size=20,
).filter(lambda t: normalise(t) != "" and not t.startswith("\ufeff"))
BAD_CHATS = {
    "not_list": (
        st.one_of(st.integers(), st.text(max_size=5), st.just({"role": "user"})),
        {"messages_not_list"},
    ),
    "no_content": (
        st.just([{"role": "user"}, {"role": "assistant", "content": "a"}]),
        {"bad_message"},
    ),
    "content_type": (
        st.just([{"role": "user", "content": 3}, {"role": "assistant", "content": "a"}]),
        {"bad_message"},
    ),
    "role": (
        st.sampled_from(["tool", "User", "", 1]).map(
            lambda r: [{"role": r, "content": "q"}, {"role": "assistant", "content": "a"}]
        ),
        {"unknown_role", "bad_message"},
    ),
    "last_user": (
        st.just([{"role": "assistant", "content": "a"}, {"role": "user", "content": "q"}]),
        {"no_final_assistant"},
    ),
    "nul": (
        st.just([{"role": "user", "content": "q\x00"}, {"role": "assistant", "content": "a"}]),
        {"nul_byte"},
    ),
    "huge": (
        st.just([{"role": "user", "content": "ab " * 80}, {"role": "assistant", "content": "a"}]),
        {"too_long"},
    ),
    "answer_only": (st.just([{"role": "assistant", "content": "a"}]), {"empty_prompt"}),
}


@st.composite
def chat_rows(draw) -> list[tuple[dict, tuple[str, str] | set[str]]]:
    """Rows and, for each, the (prompt, response) it must give or the reasons it may get."""
    out = []
    for n in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["good"] * 4 + sorted(BAD_CHATS)))
        if kind == "good":
            before = draw(
                st.lists(
                    st.tuples(st.sampled_from(["system", "user", "assistant"]), CONTENT), max_size=2
                )
            )
            turns = [*before, ("user", draw(CONTENT))]
            answer = draw(CONTENT)
            messages = [{"role": r, "content": c} for r, c in [*turns, ("assistant", answer)]]
            prompt = normalise(render_messages([(r, normalise(c)) for r, c in turns]))
            out.append(({"id": f"r{n}", "messages": messages}, (prompt, normalise(answer))))
        else:
            strategy, reasons = BAD_CHATS[kind]
            out.append(({"id": f"r{n}", "messages": draw(strategy)}, reasons))
    return out


@settings(
    max_examples=15, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(rows=chat_rows())
def test_fuzzed_chat_rows(rows):
    with tempfile.TemporaryDirectory() as tmp:
        src = write_jsonl(Path(tmp) / "chat.jsonl", [r for r, _ in rows])
        catalog = Catalog(Path(tmp) / "home").init()
        ingest(catalog, src, id_field="id", pair=CHAT, cfg=FUZZ_CFG)
        bad = {
            r["row"]: r["reason"]
            for r in catalog.query("SELECT row, reason FROM quarantine").to_pylist()
        }
        got = {
            r["row"]: (r["prompt"], r["text"])
            for r in catalog.query("SELECT row, prompt, text FROM candidates").to_pylist()
        }
        for number, (_, expected) in enumerate(rows, start=1):
            if isinstance(expected, set):
                assert bad.get(number) in expected, (number, rows[number - 1])
            else:
                assert got.get(number) == expected, (number, rows[number - 1])
        assert len(bad) + len(got) == len(rows)
        again = ingest(catalog, src, id_field="id", pair=CHAT, cfg=FUZZ_CFG)
        assert again.added == again.quarantined == 0
