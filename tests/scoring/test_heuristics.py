import dataclasses
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

import scoring.heuristics as h
from scoring.config import HeuristicConfig
from scoring.heuristics import (
    RULE_REASONS,
    SIGNAL_COLUMNS,
    heuristic_signals,
    rule_flags,
    rule_reasons,
)

PROSE = [
    "Datawall scores every candidate text against the current model before anything is "
    "kept. The score is the mean loss per byte, which tells us how surprising the text is to "
    "the model, together with a learned probability that the text reads like careful human "
    "writing rather than boilerplate or machine output.",
    "When the pool is large, the scoring step runs in shards. Each shard is a Parquet file, "
    "and results are written next to the inputs so that a crashed run can resume where it "
    "stopped. You can inspect the results with any DuckDB client; the tables are described "
    "in the catalog section of this guide.\n\n"
    "If a shard fails twice in a row, it is moved to the quarantine table together with the "
    "error message, and the rest of the round goes on without it.",
    "Hard cases go to expert annotators. They see the text, the model's guess and the "
    "scores, and they decide whether the example should be used for training. An annotator "
    "may also correct the text or give a short rationale, which is stored with the label "
    "and shown to the next reviewer of a similar example.",
    "To install the command-line tool, create a virtual environment with Python 3.11 or "
    "later and run the installer from the project root. The first run downloads nothing: "
    "all defaults are embedded, and the workspace is created in the current directory "
    "unless you set the home directory explicitly (see the configuration page for details).",
]

CODE = """import numpy as np
from pathlib import Path


def load(path):
    data = np.load(path)
    if data.ndim != 2:
        raise ValueError("bad shape")
    return data


class Loader:
    def __init__(self, root):
        self.root = Path(root)

    def __iter__(self):
        for p in sorted(self.root.glob("*.npy")):
            yield load(p)
"""

SMART = "The model\u2019s \u201cnaïve\u201d café guess \u2014 déjà vu \u2014 is often wrong. "
MOJIBAKE = (SMART * 6).encode("utf-8").decode("latin-1")
MOJIBAKE_CP1252 = (SMART * 6).encode("utf-8").decode("cp1252", errors="replace")
REPLACEMENT_CHARS = PROSE[0].replace("e ", "\ufffd ")
REPEATED_LINES = "Subscribe to our newsletter and win a brand new phone today!\n" * 20
FRAGMENT = "See the section below."
SYMBOL_SOUP = " ".join(["@@## $$%% ^^&& **|| ~~<< >>{{ }}[[ ]]== ++--"] * 12)
REPEATED_NGRAMS = " ".join(["buy cheap watches online now from our shop"] * 20)
NO_STOPWORDS = (
    "Cheap watches, discount sunglasses, replica handbags, designer shoes, free shipping, "
    "best prices guaranteed, limited offer, order today, fast delivery worldwide, secure "
    "checkout, genuine leather wallets, premium quality belts, exclusive deals."
)
LONG_WORDS = (
    "the internationalisation of telecommunications and the counterrevolutionary "
    "electroencephalography, with incomprehensibilities in uncharacteristically "
    "interdisciplinary misunderstandings, for institutionalization by disproportionately "
    "compartmentalised representationalism."
)
_UNIQUE = [f"w{chr(97 + i % 26)}{chr(97 + i // 26 % 26)}{chr(97 + i // 676)}x" for i in range(120)]
# "the cat" after every unique word: the top 2-gram holds ~45 % of the characters.
TOP_NGRAM = " ".join(f"{w} the cat" for w in _UNIQUE[:30])
BULLETS = "\n".join(f"- {s.strip()}." for s in PROSE[0].split(",")[:2] + PROSE[2].split(".")[:3])
ELLIPSES = "\n".join(f"{s.strip()}..." for s in PROSE[1].split(".")[:5] if s.strip())
DASHED = " - ".join(PROSE[0].split() + PROSE[2].split())
# 90 distinct words with one 15-word block said twice: 12.5 % of word characters repeat,
# over the 10-gram limit (0.10) but under the 5-gram one (0.15).
_BLOCK = _UNIQUE[90:105]
LONG_REPEAT = " ".join(_BLOCK + _UNIQUE[:45] + _BLOCK + _UNIQUE[45:90])
TABLE = "\n".join(f"{i} {i * 37 % 101} {i * 7.5:.1f} {i**2} {i * 13 % 17}" for i in range(40))


def reasons(texts, cfg=None):
    return rule_reasons(heuristic_signals(texts), cfg or HeuristicConfig()).to_pylist()


def test_prose_passes_every_rule():
    assert reasons(PROSE) == [None] * len(PROSE)
    flags = rule_flags(heuristic_signals(PROSE), HeuristicConfig())
    assert not any(any(col.to_pylist()) for col in flags.columns)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (FRAGMENT, "too_short"),
        (" ".join(PROSE * 25), "too_long"),
        (MOJIBAKE, "mojibake"),
        (MOJIBAKE_CP1252, "mojibake"),
        (REPLACEMENT_CHARS, "mojibake"),
        (SYMBOL_SOUP, "high_symbol"),
        (CODE, "code_like"),
        (REPEATED_LINES, "repeated_lines"),
        (REPEATED_NGRAMS, "repeated_ngrams"),
        (LONG_REPEAT, "repeated_ngrams"),
        (TOP_NGRAM, "top_ngram"),
        (BULLETS, "bullet_lines"),
        (ELLIPSES, "ellipsis_lines"),
        (DASHED, "few_alpha_words"),
        (TABLE, "low_alpha"),
        (NO_STOPWORDS, "few_stopwords"),
        (LONG_WORDS, "odd_word_length"),
    ],
)
def test_each_rule_fires_on_its_junk(text, expected):
    assert reasons([text]) == [expected]
    flags = rule_flags(heuristic_signals([text]), HeuristicConfig())
    assert flags.column(expected).to_pylist() == [True]


def test_every_rule_is_covered_and_ordered():
    assert len(set(RULE_REASONS)) == len(RULE_REASONS) == 14
    assert RULE_REASONS[0] == "too_short"


def test_correct_accents_are_not_mojibake():
    sig = heuristic_signals([SMART * 6, "Ãœber: SÃO PAULO, ÉTÉ, À la carte, Ça va."])
    assert sig.column("mojibake_frac").to_pylist()[0] == 0.0
    assert sig.column("mojibake_frac").to_pylist()[1] == pytest.approx(2 / 41)  # "Ãœ" only
    assert sig.column("non_ascii_frac")[0].as_py() > 0.05


def test_first_failing_rule_wins():
    # A short mojibake fragment fails both; too_short comes first in RULE_REASONS.
    text = "Caf\u00e9 \u2014 na\u00efve".encode().decode("latin-1")
    flags = rule_flags(heuristic_signals([text]), HeuristicConfig())
    assert flags.column("too_short").to_pylist() == flags.column("mojibake").to_pylist() == [True]
    assert reasons([text]) == ["too_short"]


def test_signal_values_on_known_text():
    sig = heuristic_signals(["Hello, World! 42 is #1.\nHello, World! 42 is #1.\n\nEnd…"])
    row = {k: v[0] for k, v in sig.to_pydict().items()}
    assert row["n_chars"] == 53
    assert row["n_words"] == 11
    # words after stripping punctuation: hello world 42 is 1 (x2), end -> 33 chars / 11
    assert row["mean_word_len"] == pytest.approx(33 / 11)
    non_space = 53 - 11
    assert row["alpha_frac"] == pytest.approx(27 / non_space)
    assert row["digit_frac"] == pytest.approx(6 / non_space)
    assert row["symbol_frac"] == pytest.approx(2 / non_space)  # the two '#'
    assert row["upper_frac"] == pytest.approx(5 / 27)
    assert row["non_ascii_frac"] == pytest.approx(1 / 53)
    # line 2 repeats line 1 (23 chars); non-blank line chars: 23 + 23 + 4
    assert row["dup_line_frac"] == pytest.approx(23 / 50)
    assert row["ellipsis_line_frac"] == pytest.approx(1 / 3)
    assert row["stopword_frac"] == pytest.approx(2 / 11)  # "is" twice
    assert row["mojibake_frac"] == 0.0


def test_duplicate_ngrams_count_repeats_only():
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]
    sig = heuristic_signals([" ".join(words + words)])
    # the second copy (10 words, half the word characters) repeats the first
    assert sig.column("dup_ngram_frac")[0].as_py() == pytest.approx(0.5)
    sig = heuristic_signals([" ".join(words + words[:4])])  # a repeated 4-gram is not a 5-gram
    assert sig.column("dup_ngram_frac")[0].as_py() == 0.0


def test_duplicates_do_not_cross_texts():
    line = "The same sentence appears in two different documents of the pool."
    sig = heuristic_signals([line, line])
    assert sig.column("dup_line_frac").to_pylist() == [0.0, 0.0]
    assert sig.column("dup_ngram_frac").to_pylist() == [0.0, 0.0]


def test_prose_with_a_short_snippet_is_not_code():
    text = "\n\n".join(PROSE) + "\n\n    from scoring import route\n    route(frame, bar, cfg)\n"
    assert reasons([text]) == [None]


def test_inputs_arrow_and_nulls():
    texts = [PROSE[0], None, "", MOJIBAKE]
    expected = [None, "too_short", "too_short", "mojibake"]
    assert reasons(texts) == expected
    assert reasons(pa.array(texts, pa.large_string())) == expected
    chunked = pa.chunked_array([pa.array(texts[:2]), pa.array(texts[2:])])
    assert reasons(chunked) == expected
    assert reasons(pa.array(texts).slice(1, 3)) == expected[1:]


def test_batches_agree_with_single_texts(monkeypatch):
    import scoring.heuristics as h

    texts = PROSE + [CODE, MOJIBAKE, REPEATED_LINES, SYMBOL_SOUP, FRAGMENT]
    whole = heuristic_signals(texts)
    monkeypatch.setattr(h, "_BATCH", 3)
    assert heuristic_signals(texts).equals(whole)
    one_by_one = pa.concat_tables([heuristic_signals([t]) for t in texts])
    assert one_by_one.equals(whole)


def test_schema_and_empty_input():
    sig = heuristic_signals([])
    assert sig.num_rows == 0
    assert tuple(sig.column_names) == SIGNAL_COLUMNS
    assert sig.schema.field("n_chars").type == pa.int64()
    assert sig.schema.field("alpha_frac").type == pa.float64()
    out = rule_reasons(sig, HeuristicConfig())
    assert len(out) == 0 and out.type == pa.string()


def test_thresholds_come_from_config():
    cfg = dataclasses.replace(HeuristicConfig(), min_chars=10, min_words=3)
    assert reasons([FRAGMENT], cfg) == [None]
    strict = dataclasses.replace(HeuristicConfig(), min_stopword_frac=0.9)
    assert reasons(PROSE[:1], strict) == ["few_stopwords"]


def test_missing_signal_column_is_a_clear_error():
    sig = heuristic_signals(PROSE).drop_columns(["mojibake_frac"])
    with pytest.raises(ValueError, match="mojibake_frac"):
        rule_reasons(sig, HeuristicConfig())


def test_config_validation_and_round_trip():
    cfg = HeuristicConfig(max_chars=5000)
    assert HeuristicConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="min_alpha_frac"):
        HeuristicConfig(min_alpha_frac=1.5)
    with pytest.raises(ValueError, match="max_chars"):
        HeuristicConfig(min_chars=100, max_chars=50)
    with pytest.raises(ValueError, match="min_words"):
        HeuristicConfig(min_words=2.5)
    with pytest.raises(ValueError, match="unknown key.*min_char"):
        HeuristicConfig.from_dict({"min_char": 3})


def test_vectorised_counts_match_python_for_many_texts():
    rng = np.random.default_rng(0)
    alphabet = list("abcdeXYZ 0123#{}.,\n\u00e9\u4e2d")
    texts = ["".join(rng.choice(alphabet, size=int(n))) for n in rng.integers(0, 60, 200)]
    sig = heuristic_signals(texts).to_pydict()
    for i, t in enumerate(texts):
        non_space = sum(not c.isspace() for c in t)
        letters = sum(c.isalpha() for c in t)
        assert sig["n_chars"][i] == len(t)
        assert sig["n_words"][i] == len(t.split())
        assert sig["alpha_frac"][i] == pytest.approx(letters / non_space if non_space else 0)
        assert sig["symbol_frac"][i] == pytest.approx(
            sum(c in "#{}" for c in t) / non_space if non_space else 0
        )


def test_long_ngram_limit_is_stricter_than_the_5gram_one():
    row = heuristic_signals([LONG_REPEAT]).to_pylist()[0]
    assert 0.10 < row["dup_10gram_frac"] <= row["dup_ngram_frac"] < 0.15
    loose = dataclasses.replace(HeuristicConfig(), max_dup_10gram_frac=0.15)
    assert rule_flags(heuristic_signals([LONG_REPEAT]), loose).column(
        "repeated_ngrams"
    ).to_pylist() == [False]


def test_top_ngram_needs_enough_words():
    short = " ".join(f"{w} the cat" for w in _UNIQUE[:10])  # 30 words < 50
    flags = rule_flags(heuristic_signals([short]), HeuristicConfig())
    assert flags.column("top_ngram").to_pylist() == [False]
    cfg = dataclasses.replace(HeuristicConfig(), top_ngram_min_words=0)
    assert rule_flags(heuristic_signals([short]), cfg).column("top_ngram").to_pylist() == [True]


def test_one_line_is_not_a_bullet_list():
    sig = heuristic_signals(["- " + PROSE[0], BULLETS])
    assert sig.column("bullet_line_frac").to_pylist() == [0.0, 1.0]


def _python_ngram_signals(text: str) -> dict[str, float]:
    """Plain-Python reference for the n-gram signals (definitions in the module docstring)."""
    words = [w.strip(h._WORD_EDGE_PUNCT).lower() for w in text.split()]
    words = [w for w in words if w]
    word_chars = sum(map(len, words))
    out = {}
    for n in range(5, 11):
        seen, covered = set(), [False] * len(words)
        for i in range(len(words) - n + 1):
            gram = tuple(words[i : i + n])
            if gram in seen:
                covered[i : i + n] = [True] * n
            seen.add(gram)
        chars = sum(len(w) for w, c in zip(words, covered, strict=True) if c)
        out["dup_ngram_frac" if n == 5 else f"dup_{n}gram_frac"] = (
            chars / word_chars if word_chars else 0.0
        )
    for n in (2, 3, 4):
        grams = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
        best = max((c * (sum(map(len, g)) + n - 1) for g, c in grams.items() if c > 1), default=0)
        out[f"top_{n}gram_frac"] = best / len(text) if text else 0.0
    return out


def test_ngram_signals_match_python():
    rng = np.random.default_rng(1)
    vocab = ["a", "b", "c", "the", "cat", "sat", "on", "mat", "x.", "(y)", "--"]
    texts = [" ".join(rng.choice(vocab, size=int(n))) for n in rng.integers(0, 40, 150)]
    texts += [LONG_REPEAT, TOP_NGRAM, REPEATED_NGRAMS, PROSE[0]]
    sig = heuristic_signals(texts).to_pylist()
    for text, row in zip(texts, sig, strict=True):
        for name, value in _python_ngram_signals(text).items():
            assert row[name] == pytest.approx(value), (name, text)
