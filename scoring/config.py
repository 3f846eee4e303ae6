"""Typed, frozen configs for the scoring stages: heuristics, quality classifier, routing.

Each config validates itself in ``__post_init__`` (a ``ValueError`` names the field) and
round-trips through plain dicts (``to_dict`` / ``from_dict``) so it can be saved as JSON
or YAML next to every round and loaded back with CLI overrides applied on top.
Heuristic defaults follow the Gopher quality filters (Rae et al. 2021, "Scaling Language
Models: Methods, Analysis & Insights from Training Gopher", appendix A.1.1).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any, Self


class _DictConfig:
    """``to_dict`` / ``from_dict`` and field type checks shared by the configs below."""

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)  # type: ignore[call-overload]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ValueError(
                f"{cls.__name__}: unknown key(s) {unknown}; valid keys are {sorted(names)}"
            )
        return cls(**data)

    def _check_types(self) -> None:
        """Check every field against its annotation; ints become floats, lists tuples."""
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            name, kind, value = f.name, hints[f.name], getattr(self, f.name)
            where = f"{type(self).__name__}.{name}"
            if kind is bool:
                if not isinstance(value, bool):
                    raise ValueError(f"{where} must be a bool, got {value!r}")
            elif kind is int:
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError(f"{where} must be an int, got {value!r}")
            elif kind is float:
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError(f"{where} must be a number, got {value!r}")
                if not math.isfinite(value):
                    raise ValueError(f"{where} must be finite, got {value!r}")
                object.__setattr__(self, name, float(value))
            elif typing.get_origin(kind) is tuple:  # tuple[int, int]: an n-gram range
                ok = (
                    isinstance(value, list | tuple)
                    and len(value) == 2
                    and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
                )
                if not ok:
                    raise ValueError(f"{where} must be a pair of ints, got {value!r}")
                object.__setattr__(self, name, tuple(value))
                lo, hi = value
                if not 1 <= lo <= hi:
                    raise ValueError(f"{where} must satisfy 1 <= low <= high, got {value!r}")


def _require(cond: bool, where: str, msg: str, value: object) -> None:
    if not cond:
        raise ValueError(f"{where} {msg}, got {value!r}")


def _fraction(cfg: object, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        _require(0.0 <= value <= 1.0, f"{type(cfg).__name__}.{name}", "must be in [0, 1]", value)


@dataclass(frozen=True)
class HeuristicConfig(_DictConfig):
    """Thresholds for ``scoring.heuristics.rule_reasons``; see that module for each signal.

    Fractions are in [0, 1]. Gopher's values where Gopher has the rule (word count, mean
    word length 3–10, duplicate-line characters 0.2, duplicate n-gram characters 0.15 at
    n=5 down to 0.10 at n=10, top n-gram characters 0.20/0.18/0.16 for n=2/3/4, bullet lines
    0.9, ellipsis lines 0.3, words with a letter 0.8).
    """

    min_chars: int = 80
    max_chars: int = 20_000
    min_words: int = 12
    min_alpha_frac: float = 0.7  # letters / non-space chars
    max_symbol_frac: float = 0.1  # symbols / non-space chars
    max_mojibake_frac: float = 0.002  # chars in mojibake sequences / chars
    max_dup_line_frac: float = 0.2  # chars in repeated lines / line chars (Gopher 0.2)
    max_dup_ngram_frac: float = 0.15  # chars in repeated word 5-grams (Gopher 0.15)
    max_dup_10gram_frac: float = 0.10  # ... 10-grams (Gopher 0.10); 6..9 interpolated
    max_top_2gram_frac: float = 0.20  # chars in the most frequent word 2-gram (Gopher)
    max_top_3gram_frac: float = 0.18  # ... 3-gram (Gopher)
    max_top_4gram_frac: float = 0.16  # ... 4-gram (Gopher)
    # Gopher's corpus had 50+ words per document; in a shorter text one phrase said twice
    # ("the factory function ... the factory function") trips the top n-gram limits.
    top_ngram_min_words: int = 50
    max_bullet_line_frac: float = 0.9  # lines starting with a bullet (Gopher 0.9)
    max_ellipsis_line_frac: float = 0.3  # lines ending with an ellipsis (Gopher 0.3)
    min_alpha_word_frac: float = 0.8  # words with a letter (Gopher 0.8)
    min_stopword_frac: float = 0.1  # stop words / words
    min_mean_word_len: float = 3.0  # Gopher: 3
    max_mean_word_len: float = 10.0  # Gopher: 10
    max_code_line_frac: float = 0.5  # chars in code-looking lines / line chars

    def __post_init__(self) -> None:
        self._check_types()
        name = type(self).__name__
        _require(self.min_chars >= 0, f"{name}.min_chars", "must be >= 0", self.min_chars)
        _require(
            self.max_chars > self.min_chars,
            f"{name}.max_chars",
            f"must be > min_chars ({self.min_chars})",
            self.max_chars,
        )
        _require(self.min_words >= 0, f"{name}.min_words", "must be >= 0", self.min_words)
        _require(
            self.top_ngram_min_words >= 0,
            f"{name}.top_ngram_min_words",
            "must be >= 0",
            self.top_ngram_min_words,
        )
        _fraction(
            self,
            "min_alpha_frac",
            "max_symbol_frac",
            "max_mojibake_frac",
            "max_dup_line_frac",
            "max_dup_ngram_frac",
            "max_dup_10gram_frac",
            "max_top_2gram_frac",
            "max_top_3gram_frac",
            "max_top_4gram_frac",
            "max_bullet_line_frac",
            "max_ellipsis_line_frac",
            "min_alpha_word_frac",
            "min_stopword_frac",
            "max_code_line_frac",
        )
        _require(
            0.0 <= self.min_mean_word_len < self.max_mean_word_len,
            f"{name}.min_mean_word_len",
            f"must be >= 0 and < max_mean_word_len ({self.max_mean_word_len})",
            self.min_mean_word_len,
        )


@dataclass(frozen=True)
class QualityConfig(_DictConfig):
    """Hashed n-gram features + logistic regression for ``scoring.quality.QualityModel``."""

    n_features: int = 2**18  # hash buckets per feature block (char and word)
    char_ngram_range: tuple[int, int] = (3, 5)  # char_wb: n-grams inside word boundaries
    word_ngram_range: tuple[int, int] = (1, 2)
    # Inverse L2 strength. Hashed, L2-normalised n-grams carry little weight each, so 10
    # fits better than sklearn's 1 (held-out AUC on word-shuffled prose 0.96 vs 0.84).
    C: float = 10.0
    max_iter: int = 1000
    cv_folds: int = 5  # folds for out-of-fold scores and for calibration
    seed: int = 0
    calibrate: bool = True  # calibrate on out-of-fold scores, when there is enough data
    calibrate_min_per_class: int = 20  # fewer examples in a class: skip calibration
    calibration_method: str = "sigmoid"  # "sigmoid" (Platt) or "isotonic"
    ece_bins: int = 10  # equal-width bins of the expected calibration error

    def __post_init__(self) -> None:
        self._check_types()
        name = type(self).__name__
        _require(self.n_features >= 16, f"{name}.n_features", "must be >= 16", self.n_features)
        _require(self.C > 0, f"{name}.C", "must be > 0", self.C)
        _require(self.max_iter >= 1, f"{name}.max_iter", "must be >= 1", self.max_iter)
        _require(self.cv_folds >= 2, f"{name}.cv_folds", "must be >= 2", self.cv_folds)
        _require(self.seed >= 0, f"{name}.seed", "must be >= 0", self.seed)
        _require(
            self.calibration_method in ("sigmoid", "isotonic"),
            f"{name}.calibration_method",
            "must be 'sigmoid' or 'isotonic'",
            self.calibration_method,
        )
        _require(self.ece_bins >= 1, f"{name}.ece_bins", "must be >= 1", self.ece_bins)
        # 2x so that every training fold of fit_predict_oof can still be calibrated.
        _require(
            self.calibrate_min_per_class >= 2 * self.cv_folds,
            f"{name}.calibrate_min_per_class",
            f"must be >= 2 * cv_folds ({2 * self.cv_folds})",
            self.calibrate_min_per_class,
        )


@dataclass(frozen=True)
class RouteConfig(_DictConfig):
    """The model-level bar, its uncertainty band and the expert budget (``scoring.route``)."""

    bar_quantile: float = 0.9  # bar = this quantile of the model samples' quality
    margin: float = 1.0  # half-width of the "hard" band around the bar, in units of `scale`
    scale: str = "logit"  # compare quality and bar as "logit" (log-odds) or "probability"
    budget: int = 50  # max hard cases queued for experts per round
    priority_eps: float = 0.05  # priority = uncertainty * (eps + max(learnability, 0))
    # floor of the quality spread in uncertainty = 2 * Phi(-|quality - bar| / sd), in units of
    # `margin`: with no spread, a candidate at the band's edge has uncertainty 2 * Phi(-2)
    min_sd: float = 0.5
    # "already learnt": learnability <= -learnt_margin (bits per byte) or the model's loss
    # at or below the median loss of its own samples
    learnt_margin: float = 0.5
    # "incoherent": word order saves the reference model less than it saves all but this
    # share of trusted texts (``scoring.loss.order_gain``); 0 turns the check off
    coherence_quantile: float = 0.01
    n_samples: int = 512  # texts sampled from the current model to set the bar
    sample_bytes: int = 256  # length of each sample (the model is byte-level)
    sample_temperature: float = 1.0  # sampling temperature for the bar samples
    sample_seed: int = 0

    def __post_init__(self) -> None:
        self._check_types()
        name = type(self).__name__
        _require(
            0.0 < self.bar_quantile <= 1.0,
            f"{name}.bar_quantile",
            "must be in (0, 1]",
            self.bar_quantile,
        )
        _require(self.margin > 0, f"{name}.margin", "must be > 0", self.margin)
        _require(
            self.scale in ("logit", "probability"),
            f"{name}.scale",
            "must be 'logit' or 'probability'",
            self.scale,
        )
        _require(self.budget >= 0, f"{name}.budget", "must be >= 0", self.budget)
        _require(self.priority_eps > 0, f"{name}.priority_eps", "must be > 0", self.priority_eps)
        _require(self.min_sd > 0, f"{name}.min_sd", "must be > 0", self.min_sd)
        _require(
            self.learnt_margin >= 0, f"{name}.learnt_margin", "must be >= 0", self.learnt_margin
        )
        _fraction(self, "coherence_quantile")
        _require(self.n_samples >= 1, f"{name}.n_samples", "must be >= 1", self.n_samples)
        _require(self.sample_bytes >= 1, f"{name}.sample_bytes", "must be >= 1", self.sample_bytes)
        _require(
            self.sample_temperature > 0,
            f"{name}.sample_temperature",
            "must be > 0",
            self.sample_temperature,
        )
        _require(self.sample_seed >= 0, f"{name}.sample_seed", "must be >= 0", self.sample_seed)


@dataclass(frozen=True)
class DedupConfig(_DictConfig):
    """Near-duplicate detection (``scoring.dedup``): MinHash over character shingles + LSH.

    Two texts are near-duplicates when the Jaccard similarity of their sets of
    ``shingle_size``-character shingles (lower-cased, whitespace runs as one space) is at
    least ``threshold``. ``bands`` × ``rows`` of the ``num_perm`` signature values form the
    LSH buckets; 0 and 0 (the default) chooses them for ``threshold`` by minimising the
    expected false-positive and false-negative areas, weighted by ``recall_weight``
    (``scoring.dedup.lsh_params``; pairs are verified afterwards, so misses weigh more).
    ``scheme`` is ``"oph"`` (one-permutation hashing with optimal densification: one hash
    per shingle, the fast default) or ``"kperm"`` (classic MinHash, one hash function per
    signature value: the reference, ``num_perm`` times the hashing work).
    """

    threshold: float = 0.8  # Jaccard similarity of shingle sets
    num_perm: int = 128  # signature length
    shingle_size: int = 5  # characters per shingle
    seed: int = 0
    bands: int = 0  # LSH bands; 0 with rows = 0: chosen from threshold
    rows: int = 0  # signature values per band
    recall_weight: float = 0.9  # auto bands/rows: weight of missed pairs vs. extra LSH pairs
    scheme: str = "oph"  # "oph" | "kperm"
    verify: bool = True  # drop LSH pairs whose estimated similarity is below threshold
    batch_docs: int = 1024  # texts signed per batch (bounds memory; small batches stay in cache)
    memory_limit_mb: int = 256  # DuckDB's limit for the global bucket join; it spills past it
    cluster_batch: int = 65_536  # LSH buckets clustered (and decisions written) per batch

    def __post_init__(self) -> None:
        self._check_types()
        name = type(self).__name__
        _require(
            0.0 < self.threshold < 1.0, f"{name}.threshold", "must be in (0, 1)", self.threshold
        )
        _require(
            8 <= self.num_perm <= 1024, f"{name}.num_perm", "must be in [8, 1024]", self.num_perm
        )
        _require(
            1 <= self.shingle_size <= 32,
            f"{name}.shingle_size",
            "must be in [1, 32]",
            self.shingle_size,
        )
        _require(self.seed >= 0, f"{name}.seed", "must be >= 0", self.seed)
        _require(
            (self.bands == 0) == (self.rows == 0),
            f"{name}.bands",
            f"and rows must both be 0 (auto) or both > 0 (rows={self.rows})",
            self.bands,
        )
        _require(
            self.bands >= 0 and self.rows >= 0 and self.bands * self.rows <= self.num_perm,
            f"{name}.bands",
            f"* rows ({self.rows}) must be <= num_perm ({self.num_perm})",
            self.bands,
        )
        _require(
            self.scheme in ("oph", "kperm"),
            f"{name}.scheme",
            "must be 'oph' or 'kperm'",
            self.scheme,
        )
        _require(
            0.0 < self.recall_weight < 1.0,
            f"{name}.recall_weight",
            "must be in (0, 1)",
            self.recall_weight,
        )
        _require(self.batch_docs >= 1, f"{name}.batch_docs", "must be >= 1", self.batch_docs)
        _require(
            self.cluster_batch >= 1, f"{name}.cluster_batch", "must be >= 1", self.cluster_batch
        )
        _require(
            self.memory_limit_mb >= 64,
            f"{name}.memory_limit_mb",
            "must be >= 64",
            self.memory_limit_mb,
        )


@dataclass(frozen=True)
class PairsConfig(_DictConfig):
    """The per-example bar of prompt/response pairs (``scoring.pairs``, ``datawall.yaml``
    section ``pairs:``): a candidate response against the model's own answer to its prompt.
    """

    margin: float = 1.0  # |score - own_score| below it: a hard case (log-odds units)
    budget: int = 50  # hard pairs queued for experts per round
    max_response_bytes: int = 256  # the model's own answer stops here (or at EOS)
    temperature: float = 0.7  # of the own answer; 0 = greedy
    # log-odds per bit/byte of relevance (the bits per byte of the response its prompt
    # explains under the reference model): a right answer's prompt explains ~0.1-0.4
    # bit/byte, another question's ~0, so 16 turns that into a few log-odds
    relevance_weight: float = 16.0
    max_quality_logit: float = 3.0  # the classifier's vote, clipped to +-this (log-odds)
    # log-odds per bit/byte of order gain below the trusted texts' floor (word salad) ...
    coherence_weight: float = 2.0
    coherence_min_words: int = 8  # ... for responses of at least this many words
    max_prompt_bytes: int = 1024  # a longer prompt keeps its end (next to the answer)
    seed: int = 0  # of the own answers; each shard draws from (seed, round, shard)
    # rule unfinished_response: a response of at least this many words whose end is not
    # terminal punctuation (``scoring.pairs.unfinished``); 0 turns the rule off
    unfinished_min_words: int = 6
    # rule generic_response: the same response to at least this many distinct prompts of
    # the pool (``scoring.pairs.GENERIC_SQL``) ...; 0 turns the rule off
    generic_min_prompts: int = 2
    generic_min_words: int = 5  # ... with at least this many words

    def __post_init__(self) -> None:
        self._check_types()
        name = type(self).__name__
        _require(self.margin > 0, f"{name}.margin", "must be > 0", self.margin)
        _require(self.budget >= 0, f"{name}.budget", "must be >= 0", self.budget)
        _require(
            self.max_response_bytes >= 1,
            f"{name}.max_response_bytes",
            "must be >= 1",
            self.max_response_bytes,
        )
        _require(self.temperature >= 0, f"{name}.temperature", "must be >= 0", self.temperature)
        _require(
            self.relevance_weight >= 0,
            f"{name}.relevance_weight",
            "must be >= 0",
            self.relevance_weight,
        )
        _require(
            self.max_quality_logit > 0,
            f"{name}.max_quality_logit",
            "must be > 0",
            self.max_quality_logit,
        )
        _require(
            self.coherence_weight >= 0,
            f"{name}.coherence_weight",
            "must be >= 0",
            self.coherence_weight,
        )
        _require(
            self.coherence_min_words >= 0,
            f"{name}.coherence_min_words",
            "must be >= 0",
            self.coherence_min_words,
        )
        _require(
            self.max_prompt_bytes >= 0,
            f"{name}.max_prompt_bytes",
            "must be >= 0",
            self.max_prompt_bytes,
        )
        _require(self.seed >= 0, f"{name}.seed", "must be >= 0", self.seed)
        _require(
            self.unfinished_min_words >= 0,
            f"{name}.unfinished_min_words",
            "must be >= 0 (0: rule off)",
            self.unfinished_min_words,
        )
        _require(
            self.generic_min_prompts == 0 or self.generic_min_prompts >= 2,
            f"{name}.generic_min_prompts",
            "must be 0 (rule off) or >= 2 (one prompt makes every response generic)",
            self.generic_min_prompts,
        )
        _require(
            self.generic_min_words >= 1,
            f"{name}.generic_min_words",
            "must be >= 1",
            self.generic_min_words,
        )
