"""The offline demo corpus: deterministic, disjoint splits, junk in proportion, bad lines present."""

import ast
import json
import re
from collections import Counter

import pytest

from pipelines.demo_corpus import MALFORMED_LINES, build_demo_corpus
from pipelines.junk import JUNK_KINDS
from pipelines.stdlib_text import prose_ratio

SIZES = {"n_trusted": 1000, "n_validation": 200, "n_pool": 1500, "junk_frac": 0.3}  # defaults


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    paths = build_demo_corpus(tmp_path_factory.mktemp("seed0"), seed=0)
    return paths, {split: _read(path) for split, path in paths.items()}


def _read(path):
    rows, bad = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            bad.append(line)
            continue
        (rows if isinstance(row.get("text"), str) and row["text"] else bad).append(row)
    return rows, bad


def test_defaults_and_paths(corpus):
    paths, data = corpus
    assert sorted(paths) == ["pool", "trusted", "validation"]
    assert [p.name for p in paths.values()] == ["trusted.jsonl", "validation.jsonl", "pool.jsonl"]
    assert len(data["trusted"][0]) == SIZES["n_trusted"]
    assert len(data["validation"][0]) == SIZES["n_validation"]
    assert len(data["pool"][0]) == SIZES["n_pool"]
    for split, (rows, _) in data.items():
        assert len({r["id"] for r in rows}) == len(rows)
        assert all(r["id"].startswith(f"{split}-") for r in rows)
        assert all(isinstance(r["source_file"], str) for r in rows)


def test_same_seed_is_byte_identical_and_other_seed_differs(corpus, tmp_path):
    paths, _ = corpus
    from pipelines import stdlib_text

    stdlib_text._read_stdlib_docs.cache_clear()  # re-read the stdlib: extraction is deterministic
    again = build_demo_corpus(tmp_path / "again", seed=0)
    other = build_demo_corpus(tmp_path / "other", seed=1)
    for split in paths:
        assert again[split].read_bytes() == paths[split].read_bytes()
        assert other[split].read_bytes() != paths[split].read_bytes()


def test_splits_are_disjoint(corpus):
    _, data = corpus
    trusted = {r["text"] for r in data["trusted"][0]}
    validation = {r["text"] for r in data["validation"][0]}
    clean = [r["text"] for r in data["pool"][0] if r["kind"] == "clean"]
    assert len(set(clean)) == len(clean)
    assert not trusted & validation
    assert not trusted & set(clean)
    assert not validation & set(clean)
    junk = {r["text"] for r in data["pool"][0] if r["kind"] != "clean"}
    assert not validation & junk  # junk is never made from validation text


def test_junk_kinds_in_proportion(corpus):
    _, data = corpus
    rows = data["pool"][0]
    kinds = Counter(r["kind"] for r in rows)
    n_junk = round(SIZES["n_pool"] * SIZES["junk_frac"])
    assert kinds["clean"] == SIZES["n_pool"] - n_junk
    assert set(kinds) == {"clean", *JUNK_KINDS}
    per_kind = n_junk / len(JUNK_KINDS)
    for kind in JUNK_KINDS:
        assert abs(kinds[kind] - per_kind) <= 1, kind
    assert all(r["gold"] == ("accept" if r["kind"] == "clean" else "reject") for r in rows)


def test_junk_looks_like_its_kind(corpus):
    _, data = corpus
    rows = data["pool"][0]
    known = [r["text"] for r in data["trusted"][0]] + [
        r["text"] for r in rows if r["kind"] == "clean"
    ]
    known_set = set(known)
    known_words = {tuple(sorted(t.split())) for t in known}
    first_clean = {}
    for i, r in enumerate(rows):
        if r["kind"] == "clean":
            first_clean.setdefault(r["text"], i)
    for i, r in enumerate(rows):
        text, kind = r["text"], r["kind"]
        if kind == "exact_duplicate":
            assert text in known_set
            assert first_clean.get(text, -1) < i  # the kept (first) copy is the clean one
        elif kind == "near_duplicate":
            assert text not in known_set
            words = set(text.split())
            assert any(
                len(words & set(k.split())) / len(words | set(k.split())) > 0.7 for k in known
            )
        elif kind == "shuffled":
            assert text not in known_set and tuple(sorted(text.split())) in known_words
        elif kind == "mojibake":
            assert re.search("[\u00c2\u00c3\u00e2][\u0080-\u00ff\u0152-\u2122]", text), text
        elif kind == "boilerplate":
            lines = text.split("\n")
            assert len(lines) >= 9 and len(set(lines)) < len(lines)
        elif kind == "truncated":
            assert 1 <= len(text.split()) <= 10 and not text.endswith((".", "!", "?"))
        elif kind == "repeated":
            counts = Counter(re.split(r"(?<=[.!?]) ", text))
            assert counts.most_common(1)[0][1] >= 8
        elif kind == "code":
            ast.parse(text)
            assert text.startswith(("def ", "async def ", "@"))


def test_malformed_lines(corpus):
    paths, data = corpus
    lines = paths["pool"].read_text(encoding="utf-8").splitlines()
    assert len(lines) == SIZES["n_pool"] + MALFORMED_LINES
    _, bad = data["pool"]
    assert len(bad) == MALFORMED_LINES
    assert sum(isinstance(b, str) for b in bad) == 1  # not valid JSON
    objects = [b for b in bad if isinstance(b, dict)]
    assert sorted(repr(b.get("text", "<missing>")) for b in objects) == [
        "''",
        "'<missing>'",
        "12345",
    ]
    assert all("gold" not in b for b in objects)


def test_clean_texts_are_prose(corpus):
    _, data = corpus
    texts = [r["text"] for r in data["trusted"][0] + data["validation"][0]]
    texts += [r["text"] for r in data["pool"][0] if r["kind"] == "clean"]
    for text in texts:
        assert 200 <= len(text) <= 1500
        assert prose_ratio(text) >= 0.85, text
        assert ">>>" not in text and "\n" not in text
        assert re.search(r"[.!?][\"')]?$", text), text


def test_sizes_are_checked(tmp_path):
    with pytest.raises(ValueError, match="distinct documents"):
        build_demo_corpus(tmp_path, n_trusted=100_000)
    with pytest.raises(ValueError, match="junk_frac"):
        build_demo_corpus(tmp_path, junk_frac=1.5)
    small = build_demo_corpus(
        tmp_path, seed=3, n_trusted=5, n_validation=2, n_pool=16, junk_frac=0.5
    )
    assert sum(1 for _ in small["pool"].open()) == 16 + MALFORMED_LINES
