"""Cheap per-text quality signals and hard filtering rules, after Gopher's quality filters.

Method: Rae et al. 2021, "Scaling Language Models: Methods, Analysis & Insights from Training
Gopher", appendix A.1.1 (word count, mean word length, symbol and ellipsis ratios, stop
words, repeated lines and n-grams), with the counting conventions of datatrove's
``GopherQualityFilter`` / ``GopherRepetitionFilter``, plus two signals for our pool:
mojibake and source-code lines.

``heuristic_signals`` is vectorised: Arrow compute kernels split texts into words and lines,
and a code-point lookup table counts character classes in numpy, so there is no Python loop
over texts or words. Texts are processed in batches of ``_BATCH`` to bound memory.

Signals (one row per text; a fraction is 0 when its denominator is 0):

- ``n_chars`` (int): Unicode code points.
- ``n_words`` (int): whitespace-separated tokens (Gopher).
- ``mean_word_len``: mean length of tokens after stripping leading/trailing punctuation,
  over tokens that are not punctuation only (datatrove).
- ``alpha_frac``, ``symbol_frac``, ``digit_frac``: letters / digits / symbols over non-space
  characters. A symbol is any character that is not a letter, digit, whitespace or ordinary
  prose punctuation (``_PROSE_PUNCT``): ``# { } [ ] < > = * _ | \\ ~ ^ @ $ &`` and the like.
- ``upper_frac``: upper-case letters / letters.
- ``non_ascii_frac``: code points >= 128 / characters.
- ``mojibake_frac``: characters inside typical mis-decoded UTF-8 sequences / characters:
  a UTF-8 lead byte read as Latin-1 or cp1252 (``Â``, ``Ã``, ``â`` …) followed by the right
  number of continuation bytes read the same way (``Ã©``, ``â€™``, ``Â\\xa0``), and U+FFFD.
- ``dup_line_frac``: characters in repeated occurrences of a non-blank line (stripped; the
  first occurrence is not counted, as in Gopher/datatrove) / characters in non-blank lines.
- ``dup_ngram_frac``: characters of words covered by a repeated occurrence of a word 5-gram
  (lower-cased, punctuation stripped; first occurrence not counted) / word characters.
  This is Gopher's "duplicate 5-gram character fraction"; ``dup_6gram_frac`` …
  ``dup_10gram_frac`` are the same for 6..10 words. A repeated (n+1)-gram starts where an
  n-gram occurs twice, so each longer n only hashes those starts.
- ``top_2gram_frac``, ``top_3gram_frac``, ``top_4gram_frac``: characters of the most
  frequent word n-gram ("w1 w2 …", words as above, spaces counted) times its count / text
  characters, as datatrove counts it; 0 when no n-gram occurs twice.
- ``stopword_frac``: tokens in ``STOPWORDS`` (lower-cased, punctuation stripped) / tokens.
- ``alpha_word_frac``: tokens holding at least one letter / tokens (Gopher's 80 % rule).
- ``code_line_frac``: characters in lines that look like source code (``_CODE_LINE_RE``:
  ``def``/``class``/``import``/``return``…, a block keyword ending in ``:``, a trailing
  ``{`` ``}`` or ``;``, an ``x = …`` assignment, a bare call ``f(…)``, or bracket density
  >= 10 %) / characters in non-blank lines. Weighted by characters rather than lines so that
  a page of prose with a short code snippet is not called code.
- ``ellipsis_line_frac``: non-blank lines ending in ``...`` or ``…`` / non-blank lines.
- ``bullet_line_frac``: non-blank lines starting with a bullet (``-``, ``•``, ``* `` …) /
  non-blank lines; 0 for a text of one line (a line is not a list).

Rules, checked in the order of ``RULE_REASONS``; a text's reason is the first that fails:

- ``too_short``: ``n_chars < min_chars`` or ``n_words < min_words``
- ``too_long``: ``n_chars > max_chars``
- ``mojibake``: ``mojibake_frac > max_mojibake_frac``
- ``high_symbol``: ``symbol_frac > max_symbol_frac``
- ``code_like``: ``code_line_frac > max_code_line_frac``
- ``repeated_lines``: ``dup_line_frac > max_dup_line_frac``
- ``repeated_ngrams``: ``dup_ngram_frac > max_dup_ngram_frac`` or the n-gram fraction for
  some n in 6..10 above its limit (linear from ``max_dup_ngram_frac`` at 5 to
  ``max_dup_10gram_frac`` at 10, Gopher's 0.15 … 0.10)
- ``top_ngram``: ``top_{2,3,4}gram_frac > max_top_{2,3,4}gram_frac``, for texts of at least
  ``top_ngram_min_words`` words (Gopher calibrated them on 50+ word documents)
- ``bullet_lines``: ``bullet_line_frac > max_bullet_line_frac``
- ``ellipsis_lines``: ``ellipsis_line_frac > max_ellipsis_line_frac``
- ``low_alpha``: ``alpha_frac < min_alpha_frac``
- ``few_alpha_words``: ``alpha_word_frac < min_alpha_word_frac``
- ``few_stopwords``: ``stopword_frac < min_stopword_frac``
- ``odd_word_length``: ``mean_word_len`` outside ``[min_mean_word_len, max_mean_word_len]``

Mojibake comes before the ratios it also trips (C1 control characters count as symbols).
Symbol soup trips the bracket-density test for code lines, so ``high_symbol`` comes before
``code_like``; ordinary source code (a few % symbols) is still reported as ``code_like``,
and the generic ratios (alpha, stop words, word length) come last.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from scoring.config import HeuristicConfig

RULE_REASONS: tuple[str, ...] = (
    "too_short",
    "too_long",
    "mojibake",
    "high_symbol",
    "code_like",
    "repeated_lines",
    "repeated_ngrams",
    "top_ngram",
    "bullet_lines",
    "ellipsis_lines",
    "low_alpha",
    "few_alpha_words",
    "few_stopwords",
    "odd_word_length",
)

SIGNAL_COLUMNS: tuple[str, ...] = (
    "n_chars",
    "n_words",
    "mean_word_len",
    "alpha_frac",
    "symbol_frac",
    "digit_frac",
    "upper_frac",
    "non_ascii_frac",
    "mojibake_frac",
    "dup_line_frac",
    "dup_ngram_frac",
    "dup_6gram_frac",
    "dup_7gram_frac",
    "dup_8gram_frac",
    "dup_9gram_frac",
    "dup_10gram_frac",
    "top_2gram_frac",
    "top_3gram_frac",
    "top_4gram_frac",
    "stopword_frac",
    "alpha_word_frac",
    "code_line_frac",
    "ellipsis_line_frac",
    "bullet_line_frac",
)

# Small English function-word list (articles, pronouns, auxiliaries, prepositions,
# conjunctions); Gopher's own rule uses the 8 words "the be to of and that have with".
_STOPWORD_TEXT = """
    a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing down during each
    few for from further had has have having he her here hers herself him himself his how
    i if in into is it its itself just me more most my myself no nor not now of off on
    once only or other our ours ourselves out over own same she should so some such than
    that the their theirs them themselves then there these they this those through to too
    under until up very was we were what when where which while who whom why will with
    would you your yours yourself yourselves may must might shall
"""
STOPWORDS: frozenset[str] = frozenset(_STOPWORD_TEXT.split())

# Ordinary prose punctuation: not counted as symbols, and stripped from word edges.
_PROSE_PUNCT = ".,;:!?'\"()-/%\u2018\u2019\u201c\u201d\u2013\u2014\u2026"
_WORD_EDGE_PUNCT = _PROSE_PUNCT + "[]{}<>*_`#~^|\\@$&+=«»¡¿"

# A UTF-8 lead byte decoded as Latin-1/cp1252 followed by its continuation bytes decoded
# the same way (0x80-0xBF in Latin-1; cp1252 maps 0x80-0x9F to the punctuation below).
_CONT = "[\\x{80}-\\x{bf}\u20ac\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039"
_CONT += "\u0152\u017d\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a"
_CONT += "\u0153\u017e\u0178]"
_MOJIBAKE_RE = (
    f"[\\x{{c2}}-\\x{{df}}]{_CONT}"
    f"|[\\x{{e0}}-\\x{{ef}}]{_CONT}{{2}}"
    f"|[\\x{{f0}}-\\x{{f4}}]{_CONT}{{3}}"
    "|\\x{fffd}"
)

_CODE_LINE_RE = (
    r"^(?:def |class |import |from [\w.]+ import |return\b|raise |yield |elif |else:|try:"
    r"|except\b|finally:|lambda |async def |await |#include|#define|#!/|//|/\*"
    r"|var |let |const |function\b|public |private |protected |static |package |using "
    r"|fn |impl |pub |func |struct |SELECT |INSERT |\$ |>>> )"
    r"|^(?:if|for|while|with|elif|def|class) .*:$"
    r"|[{};]$|^[}\])]"
    r"|^[A-Za-z_][\w.\[\]'\"]*\s*[-+*/%|&]?=[^=]"
    r"|^[\w.]+\(.*\)[;,]?$"
)
_BRACKET_RE = r"[(){}\[\]<>=;]"
_BULLET_RE = "^(?:[-\u2022\u2023\u2043\u25aa\u25cf\u25e6\u00b7]|\\* )"  # - • ‣ ⁃ ▪ ● ◦ · "* "

_BATCH = 1024  # texts per internal batch (small batches stay in cache: ~1.6x faster than 8192)
_TABLE_SIZE = 0x30000  # code points past this are rare; they count as symbols
_LETTER, _DIGIT, _UPPER, _SPACE, _SYMBOL, _NON_ASCII = 1, 2, 4, 8, 16, 32
_DUP_NGRAMS = (5, 6, 7, 8, 9, 10)  # Gopher: duplicate n-gram character fractions
_TOP_NGRAMS = (2, 3, 4)  # Gopher: character fraction of the most frequent n-gram
# Odd 64-bit multipliers for polynomial hashes: of word-id n-grams here (and the doc id),
# of character shingles in scoring.dedup.
HASH_MULTIPLIERS = np.array(
    [
        0x9E3779B97F4A7C15,
        0xC2B2AE3D27D4EB4F,
        0x165667B19E3779F9,
        0xD6E8FEB86659FD93,
        0xFF51AFD7ED558CCD,
        0xC4CEB9FE1A85EC53,
        0x27D4EB2F165667C5,
        0x94D049BB133111EB,
    ],
    dtype=np.uint64,
)
_DOC_MULT = HASH_MULTIPLIERS[5]


@functools.cache
def _char_classes() -> np.ndarray:
    """Bit flags per code point (``_LETTER`` …); built once per process (~0.1 s)."""
    table = np.full(_TABLE_SIZE + 1, _SYMBOL, dtype=np.uint8)
    punct = set(_PROSE_PUNCT)
    for cp in range(_TABLE_SIZE):
        ch = chr(cp)
        if ch.isalpha() or unicodedata.category(ch).startswith("M"):
            table[cp] = _LETTER | (_UPPER if ch.isupper() else 0)
        elif ch.isdigit():
            table[cp] = _DIGIT
        elif ch.isspace():
            table[cp] = _SPACE
        elif ch in punct:
            table[cp] = 0
    return table


def as_string_array(texts: pa.Array | pa.ChunkedArray | Sequence[str]) -> pa.Array:
    """One Arrow string array (nulls as empty strings) from an Arrow array or a sequence."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks() if texts.num_chunks else pa.array([], pa.string())
    elif not isinstance(texts, pa.Array):
        texts = pa.array(list(texts), type=pa.string())
    if not (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type)):
        raise ValueError(f"texts must be strings, got Arrow type {texts.type}")
    return pc.fill_null(texts, "") if texts.null_count else texts


def _bounds(lengths: np.ndarray) -> np.ndarray:
    """Segment lengths -> offsets of length n + 1."""
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    return out


def _segment_sum(values: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Sum of ``values[bounds[i]:bounds[i + 1]]`` for every segment i (empty segments: 0)."""
    if len(values) == 0:
        return np.zeros(len(bounds) - 1, dtype=np.int64)
    out = np.add.reduceat(values, np.minimum(bounds[:-1], len(values) - 1), dtype=np.int64)
    out[bounds[1:] == bounds[:-1]] = 0
    return out


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = num.astype(np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def _np(arr: pa.Array) -> np.ndarray:
    return arr.to_numpy(zero_copy_only=False)


def _repeat_flags(keys: np.ndarray) -> np.ndarray:
    """True where ``keys[i]`` already occurred at a smaller index (not a first occurrence)."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    repeat = np.zeros(len(keys), dtype=bool)
    repeat[order[1:]] = sorted_keys[1:] == sorted_keys[:-1]
    return repeat


def _char_signals(arr: pa.Array, n_chars: np.ndarray) -> dict[str, np.ndarray]:
    offsets_type = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(arr.buffers()[1], dtype=offsets_type)[
        arr.offset : arr.offset + len(arr) + 1
    ]
    data = arr.buffers()[2]
    raw = bytes(memoryview(data)[offsets[0] : offsets[-1]]) if data is not None else b""
    codes = np.frombuffer(raw.decode("utf-8").encode("utf-32-le"), dtype="<u4")
    flags = _char_classes()[np.minimum(codes, _TABLE_SIZE)]
    flags |= np.where(codes >= 128, _NON_ASCII, 0).astype(np.uint8)
    # One histogram of (text, class-bit combination), then a count per class bit.
    doc = np.repeat(np.arange(len(arr), dtype=np.int64), n_chars)
    hist = np.bincount(doc * 64 + flags, minlength=len(arr) * 64).reshape(len(arr), 64)
    combos = np.arange(64)

    def count(bit: int) -> np.ndarray:
        return hist[:, (combos & bit) > 0].sum(axis=1)

    letters = count(_LETTER)
    non_space = n_chars - count(_SPACE)
    mojibake = n_chars - _np(pc.utf8_length(pc.replace_substring_regex(arr, _MOJIBAKE_RE, "")))
    return {
        "alpha_frac": _ratio(letters, non_space),
        "symbol_frac": _ratio(count(_SYMBOL), non_space),
        "digit_frac": _ratio(count(_DIGIT), non_space),
        "upper_frac": _ratio(count(_UPPER), letters),
        "non_ascii_frac": _ratio(count(_NON_ASCII), n_chars),
        "mojibake_frac": _ratio(mojibake, n_chars),
    }


def _dup_stats(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per key: (not its first occurrence, number of occurrences), in O(n).

    Arrow's hash-based ``dictionary_encode`` numbers distinct keys in order of first
    appearance, so a position is a first occurrence exactly when its number is new, i.e.
    larger than every number before it.
    """
    if len(keys) == 0:
        return np.zeros(0, dtype=bool), np.zeros(0, dtype=np.int64)
    ids = _np(pc.dictionary_encode(pa.array(keys)).indices).astype(np.int64)
    seen = np.maximum.accumulate(ids)
    repeat = np.zeros(len(keys), dtype=bool)
    repeat[1:] = ids[1:] <= seen[:-1]
    return repeat, np.bincount(ids)[ids]


def _ngram_signals(
    ids: np.ndarray,
    word_len: np.ndarray,
    n_kept: np.ndarray,
    word_chars: np.ndarray,
    text_chars: np.ndarray,
) -> dict[str, np.ndarray]:
    """Repeated and top word n-gram character fractions over the kept words of each text.

    ``ids`` are word ids in text order, ``word_len`` their lengths and ``n_kept`` the words
    per text. An n-gram's key is a polynomial hash of its word ids and its text, grown one
    word at a time. Repeated n-grams for n > 5 can only start where the (n-1)-gram occurs
    twice, so each longer n only looks at those starts.
    """
    n_docs = len(n_kept)
    n = len(ids)
    bounds = _bounds(n_kept)
    doc = np.repeat(np.arange(n_docs, dtype=np.int64), n_kept)
    end_of = bounds[1:][doc]  # exclusive end of each word's text
    cum_len = _bounds(word_len)
    out: dict[str, np.ndarray] = {}
    ids = ids.astype(np.uint64) + np.uint64(1)
    key = doc.astype(np.uint64) * _DOC_MULT  # the text is part of every key
    starts = np.arange(n, dtype=np.int64)
    for size in range(1, _DUP_NGRAMS[-1] + 1):
        valid = starts + size <= end_of[starts]
        starts, key = starts[valid], key[valid]
        with np.errstate(over="ignore"):
            key = key * HASH_MULTIPLIERS[0] + ids[starts + size - 1] * HASH_MULTIPLIERS[1]
        if size not in _TOP_NGRAMS and size not in _DUP_NGRAMS:
            continue
        repeat, count = _dup_stats(key)
        chars = cum_len[starts + size] - cum_len[starts]
        if size in _TOP_NGRAMS:
            top = np.zeros(n_docs, dtype=np.int64)
            multi = count > 1
            spaced = chars[multi] + (size - 1)  # the n-gram as "w1 w2 ...", as datatrove counts
            np.maximum.at(top, doc[starts[multi]], count[multi] * spaced)
            out[f"top_{size}gram_frac"] = _ratio(top, text_chars)
        if size in _DUP_NGRAMS:
            repeat_starts = starts[repeat]
            diff = np.bincount(repeat_starts, minlength=n + 1) - np.bincount(
                repeat_starts + size, minlength=n + 1
            )
            covered = np.cumsum(diff[:n]) > 0
            covered_chars = _segment_sum(word_len * covered, bounds)
            name = "dup_ngram_frac" if size == _DUP_NGRAMS[0] else f"dup_{size}gram_frac"
            out[name] = _ratio(covered_chars, word_chars)
            keep = count > 1  # only an n-gram seen twice can extend to a repeated (n+1)-gram
            starts, key = starts[keep], key[keep]
    return out


def _word_signals(arr: pa.Array, n_chars: np.ndarray) -> dict[str, np.ndarray]:
    tokens = pc.utf8_split_whitespace(arr)  # leading/trailing space gives "" tokens
    bounds = _bounds(_np(pc.list_value_length(tokens)))
    flat = tokens.flatten()
    non_empty = _np(pc.utf8_length(flat)) > 0
    n_words = _segment_sum(non_empty, bounds)
    has_letter = _np(pc.match_substring_regex(flat, r"\pL"))
    words = pc.utf8_lower(pc.utf8_trim(flat, characters=_WORD_EDGE_PUNCT))
    word_len = _np(pc.utf8_length(words))
    keep = word_len > 0
    n_kept = _segment_sum(keep, bounds)
    word_chars = _segment_sum(word_len, bounds)
    stop = _np(pc.is_in(words, value_set=pa.array(sorted(STOPWORDS))))
    ids = _np(pc.dictionary_encode(words.filter(pa.array(keep))).indices)
    out = {
        "n_words": n_words,
        "mean_word_len": _ratio(word_chars, n_kept),
        "stopword_frac": _ratio(_segment_sum(stop, bounds), n_words),
        "alpha_word_frac": _ratio(_segment_sum(has_letter & non_empty, bounds), n_words),
    }
    out.update(_ngram_signals(ids, word_len[keep], n_kept, word_chars, n_chars))
    return out


def _line_signals(arr: pa.Array) -> dict[str, np.ndarray]:
    line_lists = pc.split_pattern(arr, "\n")
    bounds = _bounds(_np(pc.list_value_length(line_lists)))
    lines = pc.utf8_trim_whitespace(line_lists.flatten())
    line_len = _np(pc.utf8_length(lines)).astype(np.int64)
    non_blank = line_len > 0
    line_chars = _segment_sum(line_len, bounds)

    doc = np.repeat(np.arange(len(arr), dtype=np.int64), bounds[1:] - bounds[:-1])
    ids = _np(pc.dictionary_encode(lines).indices).astype(np.int64)
    key = doc * (int(ids.max(initial=0)) + 1) + ids
    repeat = np.zeros(len(lines), dtype=bool)
    repeat[non_blank] = _repeat_flags(key[non_blank])

    brackets = _np(pc.count_substring_regex(lines, _BRACKET_RE))
    code = _np(pc.match_substring_regex(lines, _CODE_LINE_RE)) | (
        (brackets >= 2) & (brackets * 10 >= line_len)
    )
    ellipsis = _np(pc.ends_with(lines, "...")) | _np(pc.ends_with(lines, "\u2026"))
    bullet = _np(pc.match_substring_regex(lines, _BULLET_RE))
    n_non_blank = _segment_sum(non_blank, bounds)
    bullets = np.where(n_non_blank >= 2, _segment_sum(bullet, bounds), 0)  # one line: no list
    return {
        "bullet_line_frac": _ratio(bullets, n_non_blank),
        "dup_line_frac": _ratio(_segment_sum(line_len * repeat, bounds), line_chars),
        "code_line_frac": _ratio(_segment_sum(line_len * code, bounds), line_chars),
        "ellipsis_line_frac": _ratio(_segment_sum(ellipsis, bounds), n_non_blank),
    }


def _signals_batch(arr: pa.Array) -> pa.Table:
    n_chars = _np(pc.utf8_length(arr)).astype(np.int64)
    cols = {"n_chars": n_chars}
    cols.update(_char_signals(arr, n_chars))
    cols.update(_word_signals(arr, n_chars))
    cols.update(_line_signals(arr))
    return pa.table({name: cols[name] for name in SIGNAL_COLUMNS})


def heuristic_signals(texts: pa.Array | pa.ChunkedArray | Sequence[str]) -> pa.Table:
    """One row of signals per text (see the module docstring); null texts count as ""."""
    arr = as_string_array(texts)
    batches = [_signals_batch(arr.slice(i, _BATCH)) for i in range(0, len(arr), _BATCH)]
    if not batches:
        return _signals_batch(pa.array([""], pa.string())).slice(0, 0)
    return pa.concat_tables(batches)


def _dup_ngram_limits(cfg: HeuristicConfig) -> list[tuple[str, float]]:
    """(signal, threshold) for n = 5..10: Gopher's limits fall linearly from n=5 to n=10."""
    lo, hi = _DUP_NGRAMS[0], _DUP_NGRAMS[-1]
    out = []
    for size in _DUP_NGRAMS:
        t = (size - lo) / (hi - lo)
        limit = (1 - t) * cfg.max_dup_ngram_frac + t * cfg.max_dup_10gram_frac
        out.append(("dup_ngram_frac" if size == lo else f"dup_{size}gram_frac", limit))
    return out


def rule_flags(signals: pa.Table, cfg: HeuristicConfig) -> pa.Table:
    """One boolean column per rule in ``RULE_REASONS``: True where the text fails it."""
    missing = [c for c in SIGNAL_COLUMNS if c not in signals.column_names]
    if missing:
        raise ValueError(f"signals table is missing column(s) {missing}")
    s = {c: _np(signals.column(c).combine_chunks()) for c in SIGNAL_COLUMNS}
    flags = {
        "too_short": (s["n_chars"] < cfg.min_chars) | (s["n_words"] < cfg.min_words),
        "too_long": s["n_chars"] > cfg.max_chars,
        "mojibake": s["mojibake_frac"] > cfg.max_mojibake_frac,
        "high_symbol": s["symbol_frac"] > cfg.max_symbol_frac,
        "code_like": s["code_line_frac"] > cfg.max_code_line_frac,
        "repeated_lines": s["dup_line_frac"] > cfg.max_dup_line_frac,
        "repeated_ngrams": np.any(
            [s[col] > limit for col, limit in _dup_ngram_limits(cfg)], axis=0
        ),
        "top_ngram": (s["n_words"] >= cfg.top_ngram_min_words)
        & (
            (s["top_2gram_frac"] > cfg.max_top_2gram_frac)
            | (s["top_3gram_frac"] > cfg.max_top_3gram_frac)
            | (s["top_4gram_frac"] > cfg.max_top_4gram_frac)
        ),
        "bullet_lines": s["bullet_line_frac"] > cfg.max_bullet_line_frac,
        "ellipsis_lines": s["ellipsis_line_frac"] > cfg.max_ellipsis_line_frac,
        "low_alpha": s["alpha_frac"] < cfg.min_alpha_frac,
        "few_alpha_words": s["alpha_word_frac"] < cfg.min_alpha_word_frac,
        "few_stopwords": s["stopword_frac"] < cfg.min_stopword_frac,
        "odd_word_length": (s["mean_word_len"] < cfg.min_mean_word_len)
        | (s["mean_word_len"] > cfg.max_mean_word_len),
    }
    return pa.table({name: flags[name] for name in RULE_REASONS})


def rule_reasons(signals: pa.Table, cfg: HeuristicConfig) -> pa.Array:
    """The first failing rule's code from ``RULE_REASONS`` per text; null = passes all."""
    flags = np.stack([_np(col.combine_chunks()) for col in rule_flags(signals, cfg).columns])
    if flags.shape[1] == 0:
        return pa.array([], pa.string())
    first = flags.argmax(axis=0)
    fails = flags.any(axis=0)
    indices = pa.array(first, type=pa.int32(), mask=~fails)
    return pc.take(pa.array(RULE_REASONS, pa.string()), indices)
