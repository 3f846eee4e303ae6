"""Fuzzed bad input (hypothesis): ingest never crashes, quarantines every bad row, keeps the rest.

Each example is one file (or folder of .txt files) mixing good rows, whose ids and texts
the test knows, with bad ones: invalid UTF-8, NUL bytes, lines longer than ``max_chars``,
wrong types for the text or id field, missing fields, JSON that is not an object, noise,
duplicate ids, and file-level damage (a byte-order mark, CRLF or mixed newlines, blank
lines, a truncated last row, an empty file). Then:

- ``ingest`` does not raise, except :class:`SourceError` for a Parquet file that cannot be
  decoded at all (truncated): Parquet has no row boundaries to resume at, so the file is
  reported as a whole, by name;
- every bad row is in ``quarantine`` with the file, its row number and a reason;
- the good rows are the candidates, each exactly once;
- ingesting the file again adds nothing.

``FUZZED`` counts the inputs tried; ``test_report_fuzz_counts`` prints it (``pytest -s``).
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.catalog import Catalog
from pipelines.config import IngestConfig
from pipelines.ingest import ingest, normalise
from pipelines.sources import SourceError

CFG = IngestConfig(max_chars=300, batch_rows=7)  # small batches: bad rows straddle them
FUZZED: Counter = Counter()
FUZZ = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,  # the same inputs on every run; raise max_examples to search wider
)

# Texts a user could write: any printable character and some whitespace, never only spaces.
TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"))
    | st.sampled_from(" \t\n\r"),
    min_size=1,
    max_size=30,
).filter(lambda t: normalise(t) != "" and not t.startswith("\ufeff"))
ANY_BAD = {
    "invalid_utf8",
    "malformed_json",
    "not_an_object",
    "malformed_csv",
    "missing_text",
    "non_string_text",
    "nul_byte",
    "too_long",
    "empty_text",
    "missing_id",
    "bad_id",
    "duplicate_id",
}
HUGE = st.integers(CFG.max_chars + 1, 3 * CFG.max_chars).map(lambda n: "ab " * (n // 3 + 1))


@dataclass
class Row:
    """One row as written: ``reasons`` is None for a good row, else the acceptable reasons."""

    data: bytes
    reasons: set[str] | None = None
    id: str | None = None
    text: str | None = None


@dataclass
class Case:
    path: Path
    rows: list[tuple[int, Row]]  # (the row number the reader gives it, the row)
    id_field: str | None = "id"
    unreadable: bool = False


def check(case: Case) -> None:
    """Ingest ``case`` twice and compare the catalog with what the rows say."""
    FUZZED[case.path.suffix or "txt"] += 1
    catalog = Catalog(case.path.parent / "home").init()
    try:
        ingest(catalog, str(case.path), id_field=case.id_field, cfg=CFG)
    except SourceError as exc:
        assert case.unreadable, f"unexpected SourceError: {exc}"
        assert str(case.path.resolve()) in str(exc)
        return
    assert not case.unreadable, "a truncated Parquet file was read without error"
    source = str(case.path.resolve())
    bad = {
        r["row"]: r
        for r in catalog.query("SELECT source, row, reason, detail FROM quarantine").to_pylist()
    }
    got = Counter(
        (r["source_id"], r["text"])
        for r in catalog.query("SELECT source_id, text FROM candidates").to_pylist()
    )
    want: Counter = Counter()
    for number, row in case.rows:
        if row.reasons is None:
            want[(row.id, normalise(row.text))] += 1
            assert number not in bad, f"good row {number} quarantined: {bad.get(number)}"
        else:
            assert number in bad, f"bad row {number} ({row.reasons}) not quarantined: {row.data!r}"
            assert bad[number]["reason"] in row.reasons, (number, bad[number], row.data)
            assert bad[number]["source"] == source and bad[number]["detail"] is not None
    assert len(bad) == sum(r.reasons is not None for _, r in case.rows)
    assert got == want
    before = (catalog.scalar("SELECT count(*) FROM candidates"), len(bad))
    report = ingest(catalog, str(case.path), id_field=case.id_field, cfg=CFG)
    assert report.added == 0 and report.quarantined == 0
    after = (
        catalog.scalar("SELECT count(*) FROM candidates"),
        catalog.scalar("SELECT count(*) FROM quarantine"),
    )
    assert after == before


# -- JSONL --------------------------------------------------------------------------------
def _json(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


@st.composite
def jsonl_row(draw, n: int) -> Row:
    ident = f"id-{n}"
    kind = draw(
        st.sampled_from(
            ["good"] * 6
            + ["utf8", "nul_raw", "nul", "huge", "text_type", "id_type", "no_text", "no_id"]
            + ["not_object", "malformed", "noise", "empty"]
        )
    )
    text = draw(TEXT)
    if kind == "good":
        extra = draw(st.dictionaries(st.sampled_from(["lang", "meta", "n"]), st.integers()))
        return Row(_json({"id": ident, "text": text, **extra}), None, ident, text)
    if kind == "utf8":
        return Row(b'{"id": "%s", "text": "caf\xe9 \xff"}' % ident.encode(), {"invalid_utf8"})
    if kind == "nul_raw":  # an unescaped control character is not JSON
        return Row(b'{"id": "%s", "text": "a\x00b"}' % ident.encode(), {"malformed_json"})
    if kind == "nul":
        return Row(_json({"id": ident, "text": text + "\x00"}), {"nul_byte"})
    if kind == "huge":
        return Row(_json({"id": ident, "text": draw(HUGE)}), {"too_long"})
    if kind == "text_type":
        value = draw(
            st.one_of(
                st.integers(),
                st.floats(allow_nan=False),
                st.booleans(),
                st.lists(st.integers(), max_size=2),
                st.just({"t": text}),
                st.none(),
            )
        )
        return Row(_json({"id": ident, "text": value}), {"non_string_text", "missing_text"})
    if kind == "id_type":
        value = draw(st.sampled_from([None, "", [1], {"a": 1}]))
        return Row(_json({"id": value, "text": text}), {"missing_id", "bad_id"})
    if kind == "no_text":
        return Row(_json({"id": ident, "body": text}), {"missing_text"})
    if kind == "no_id":
        return Row(_json({"text": text}), {"missing_id"})
    if kind == "not_object":
        value = draw(
            st.one_of(st.lists(st.integers(), max_size=3), st.integers(), st.text(max_size=5))
        )
        return Row(_json(value), {"not_an_object"})
    if kind == "malformed":
        whole = _json({"id": ident, "text": text})
        return Row(
            whole[: draw(st.integers(1, len(whole) - 1))], {"malformed_json", "invalid_utf8"}
        )
    if kind == "noise":
        noise = draw(st.binary(min_size=1, max_size=40).filter(_is_noise))
        return Row(noise, {"malformed_json", "invalid_utf8", "not_an_object", "missing_text"})
    return Row(
        _json({"id": ident, "text": draw(st.sampled_from(["", "  ", "\n\t"]))}), {"empty_text"}
    )


def _is_noise(data: bytes) -> bool:
    if b"\n" in data or not data.strip():
        return False
    try:
        obj = json.loads(data.removeprefix(b"\xef\xbb\xbf").decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return True
    return not (isinstance(obj, dict) and isinstance(obj.get("text"), str))


@st.composite
def jsonl_case(draw, folder: Path) -> Case:
    rows = [draw(jsonl_row(n)) for n in range(draw(st.integers(0, 14)))]
    _duplicate_ids(draw, rows, lambda r: _json({"id": r.id, "text": r.text + " again"}))
    endings = draw(st.sampled_from(["lf", "crlf", "mixed"]))
    blank = draw(st.booleans())
    out, numbered, line = [], [], 0
    for row in rows:
        if blank and draw(st.booleans()):
            line += 1
            out.append(b"   ")
        line += 1
        numbered.append((line, row))
        out.append(row.data)
    ends = [
        b"\r\n" if endings == "crlf" or (endings == "mixed" and draw(st.booleans())) else b"\n"
        for _ in out
    ]
    body = b"".join(d + e for d, e in zip(out, ends, strict=True))
    if numbered and draw(st.booleans()):  # truncated: the last row loses its end
        last_line, last = numbered[-1]
        cut = draw(st.integers(1, len(last.data)))
        body = body[: len(body) - len(ends[-1]) - cut]
        rest = last.data[: len(last.data) - cut]
        if rest.strip():
            numbered[-1] = (last_line, Row(rest, ANY_BAD))
        else:
            numbered.pop()  # nothing left of it: no row at all
    if draw(st.booleans()):
        body = b"\xef\xbb\xbf" + body
    path = folder / "data.jsonl"
    path.write_bytes(body)
    return Case(path, numbered)


def _duplicate_ids(draw, rows: list[Row], render) -> None:
    """Give some later rows the id of an earlier good row (the later one is the bad one)."""
    good = [r for r in rows if r.reasons is None]
    if good and draw(st.booleans()):
        first = draw(st.sampled_from(good))
        rows.append(Row(render(first), {"duplicate_id"}))


@FUZZ
@given(data=st.data())
def test_fuzzed_jsonl(data):
    with tempfile.TemporaryDirectory() as tmp:
        check(data.draw(jsonl_case(Path(tmp))))


# -- CSV ----------------------------------------------------------------------------------
@st.composite
def csv_case(draw, folder: Path) -> Case:
    lineterminator = draw(st.sampled_from(["\n", "\r\n"]))
    records: list[tuple[str, Row]] = []  # (encoded record text, row)
    n_rows = draw(st.integers(0, 12))

    def render(fields: list[str]) -> str:
        buf = io.StringIO()
        csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator=lineterminator).writerow(fields)
        return buf.getvalue()

    for n in range(n_rows):
        ident, text = f"id-{n}", draw(TEXT)
        kind = draw(
            st.sampled_from(
                ["good"] * 5 + ["utf8", "nul", "huge", "empty", "short", "long", "no_id", "quote"]
            )
        )
        if kind == "good":
            records.append((render([ident, text, "x"]), Row(b"", None, ident, text)))
        elif kind == "utf8":
            records.append((render([ident, "caf\udce9", "x"]), Row(b"", {"invalid_utf8"})))
        elif kind == "nul":
            records.append((render([ident, text + "\x00", "x"]), Row(b"", {"nul_byte"})))
        elif kind == "huge":
            records.append((render([ident, draw(HUGE), "x"]), Row(b"", {"too_long"})))
        elif kind == "empty":
            records.append((render([ident, " ", "x"]), Row(b"", {"empty_text"})))
        elif kind == "short":
            records.append((render([ident]), Row(b"", {"missing_text"})))
        elif kind == "long":
            records.append((render([ident, text, "x", "y"]), Row(b"", {"malformed_csv"})))
        elif kind == "no_id":
            records.append((render(["", text, "x"]), Row(b"", {"missing_id"})))
        else:  # a stray quote after a closed field
            records.append((f'"{ident}","ab"c,"x"{lineterminator}', Row(b"", {"malformed_csv"})))
    good = [r for _, r in records if r.reasons is None]
    if good and draw(st.booleans()):
        first = draw(st.sampled_from(good))
        records.append((render([first.id, first.text, "x"]), Row(b"", {"duplicate_id"})))
    body = render(["id", "text", "note"]) + "".join(text for text, _ in records)
    rows = [(i, row) for i, (_, row) in enumerate(records, start=1)]
    # truncated inside the last record's quoted text (a text with quotes of its own could
    # be cut into a well-formed record: CSV cannot tell, so those are not cut)
    if records and records[-1][0].count('"') <= 6 and draw(st.booleans()):
        last_text = records[-1][0]
        low = len(lineterminator) + 5  # past ',"x"' and the text's closing quote
        cut = draw(st.integers(low, max(low, len(last_text) - 3)))
        body = body[: len(body) - cut]
        rows[-1] = (rows[-1][0], Row(b"", ANY_BAD))
    data = body.encode("utf-8", "surrogateescape")
    if draw(st.booleans()):
        data = b"\xef\xbb\xbf" + data
    path = folder / "data.csv"
    path.write_bytes(data)
    return Case(path, rows)


@FUZZ
@given(data=st.data())
def test_fuzzed_csv(data):
    with tempfile.TemporaryDirectory() as tmp:
        check(data.draw(csv_case(Path(tmp))))


# -- Parquet ------------------------------------------------------------------------------
@st.composite
def parquet_case(draw, folder: Path) -> Case:
    n_rows = draw(st.integers(1, 12))
    layout = draw(
        st.sampled_from(["string"] * 3 + ["int_text", "binary_text", "no_text", "int_id"])
    )
    ids, texts, rows = [], [], []
    for n in range(n_rows):
        ident, text = f"id-{n}", draw(TEXT)
        kind = draw(st.sampled_from(["good"] * 4 + ["null", "nul", "huge", "empty", "no_id"]))
        if layout == "int_id":
            ident = str(n)
        value: object = text
        row = Row(b"", None, ident, text)
        if kind == "null":
            value, row = None, Row(b"", {"missing_text"})
        elif kind == "nul":
            value, row = text + "\x00", Row(b"", {"nul_byte"})
        elif kind == "huge":
            value, row = draw(HUGE), Row(b"", {"too_long"})
        elif kind == "empty":
            value, row = "  ", Row(b"", {"empty_text"})
        elif kind == "no_id" and layout != "int_id":
            ident, row = None, Row(b"", {"missing_id"})
        ids.append(ident)
        texts.append(value)
        rows.append((n + 1, row))
    columns: dict[str, pa.Array] = {
        "id": pa.array([int(i) for i in ids] if layout == "int_id" else ids)
    }
    if layout == "int_text":
        columns["text"] = pa.array(list(range(n_rows)))
        rows = [(i, Row(b"", {"non_string_text"})) for i, _ in rows]
    elif layout == "binary_text":
        columns["text"] = pa.array([b"caf\xe9" for _ in range(n_rows)], pa.binary())
        rows = [(i, Row(b"", {"non_string_text"})) for i, _ in rows]
    elif layout == "no_text":
        columns["body"] = pa.array(texts)
        rows = [(i, Row(b"", {"missing_text"})) for i, _ in rows]
    else:
        columns["text"] = pa.array(texts, pa.string())
    path = folder / "data.parquet"
    pq.write_table(pa.table(columns), path, row_group_size=draw(st.integers(1, 5)))
    unreadable = draw(st.integers(0, 4)) == 0
    if unreadable:  # truncated: the footer is gone
        data = path.read_bytes()
        path.write_bytes(data[: draw(st.integers(0, len(data) - 1))])
    return Case(path, rows, unreadable=unreadable)


@FUZZ
@given(data=st.data())
def test_fuzzed_parquet(data):
    with tempfile.TemporaryDirectory() as tmp:
        check(data.draw(parquet_case(Path(tmp))))


# -- a folder of .txt files ---------------------------------------------------------------
@st.composite
def txt_case(draw, folder: Path) -> Case:
    root = folder / "docs"
    root.mkdir()
    rows = []
    n_files = draw(st.integers(1, 8))
    for n in range(n_files):
        name = f"{n:03d}.txt"
        text = draw(TEXT)
        kind = draw(st.sampled_from(["good"] * 4 + ["bom", "crlf", "utf8", "nul", "huge", "empty"]))
        data, row = text.encode("utf-8"), Row(b"", None, name, text)
        if kind == "bom":
            data = b"\xef\xbb\xbf" + data
        elif kind == "crlf":
            text = text.replace("\n", "\r\n")
            data, row = text.encode("utf-8"), Row(b"", None, name, text)
        elif kind == "utf8":
            data, row = data + b"\xc3(", Row(b"", {"invalid_utf8"})
        elif kind == "nul":
            data, row = data + b"\x00", Row(b"", {"nul_byte"})
        elif kind == "huge":
            data, row = draw(HUGE).encode(), Row(b"", {"too_long"})
        elif kind == "empty":
            data, row = draw(st.sampled_from([b"", b" \n\t "])), Row(b"", {"empty_text"})
        (root / name).write_bytes(data)
        rows.append((n + 1, row))
    return Case(root, rows, id_field=None)


@FUZZ
@given(data=st.data())
def test_fuzzed_txt_folder(data):
    with tempfile.TemporaryDirectory() as tmp:
        check(data.draw(txt_case(Path(tmp))))


# -- fixed cases fuzzing would rarely draw --------------------------------------------------
def test_a_line_of_megabytes_and_an_empty_file(tmp_path):
    path = tmp_path / "big.jsonl"
    path.write_bytes(
        _json({"id": "a", "text": "ok text"})
        + b"\n"
        + _json({"id": "b", "text": "x" * 3_000_000})
        + b"\n"
        + _json({"id": "c", "text": "also fine"})
        + b"\n"
    )
    check(
        Case(
            path,
            [
                (1, Row(b"", None, "a", "ok text")),
                (2, Row(b"", {"too_long"})),
                (3, Row(b"", None, "c", "also fine")),
            ],
        )
    )
    (tmp_path / "e").mkdir()
    empty = tmp_path / "e" / "empty.jsonl"
    empty.write_bytes(b"")
    check(Case(empty, []))
    (tmp_path / "f").mkdir()
    field = tmp_path / "f" / "field.csv"  # a field past the csv module's limit
    field.write_text('id,text\n1,"' + "y" * 200_000 + '"\n2,fine\n')
    check(
        Case(
            field, [(1, Row(b"", {"malformed_csv", "too_long"})), (2, Row(b"", None, "2", "fine"))]
        )
    )


def test_report_fuzz_counts():
    """How many fuzzed inputs the tests above tried (``pytest -s`` shows it)."""
    if not FUZZED:
        pytest.skip("no fuzz test ran in this session")
    print(f"\nfuzzed inputs tried: {sum(FUZZED.values())} ({dict(FUZZED)})")
    assert sum(FUZZED.values()) > 0
