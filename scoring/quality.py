"""Learned quality probability: P(text is trusted human writing | text), a hashed-n-gram
logistic regression in the style of the GPT-3 / PaLM quality classifiers (Brown et al. 2020,
appendix A; Chowdhery et al. 2022), retrained every round on the active-learning labels.

Positives are trusted human text and expert-accepted candidates; negatives are the current
model's own samples, expert rejects and rule rejects. Features are stateless
(``HashingVectorizer``: character 3-5-grams inside word boundaries plus word 1-2-grams, each
block L2-normalised, no fitted vocabulary), so scoring needs no vocabulary and shards freely,
plus optional numeric *model signals* (standardised). The score step passes the reference
model's *order gain* (``scoring.loss.order_gain``: bits per byte saved by the real word
order): n-grams alone tell human text from the model's samples but hardly from word salad
(demo pool: AUC clean vs word-shuffled 0.55 with n-grams only). Raw loss would separate
word salad too, but a model's own samples sit at its entropy, below or above human text
depending on its training, so as a feature it learns a sample-vs-human direction that flips
from model to model and rejected clean text on the demo.
The classifier is an ensemble of ``cfg.cv_folds`` ``LogisticRegression(class_weight=
"balanced")`` members (liblinear), one per fold of a stratified, seeded K-fold split:

1. Each member is fitted on K-1 folds and gives decision scores for its held-out fold, so
   every training text gets one out-of-fold (OOF) score from a member that never saw it.
2. A calibrator (``cfg.calibration_method``: "sigmoid", Platt 1999, or "isotonic",
   Zadrozny & Elkan 2002) is fitted on those OOF scores, when ``cfg.calibrate`` and every
   class has at least ``cfg.calibrate_min_per_class`` examples (as ``CalibratedClassifierCV``
   with ``ensemble=True`` does, without refitting the members). Balanced class weights
   shift raw probabilities; after calibration P(positive) means what it says, which the
   bar needs.
3. The training texts' own probabilities (``fit_predict_oof``) are honest twice over: the
   OOF score of step 1 goes through a calibrator fitted on the *other* folds' scores.
4. The calibration report (``self.calibration``, saved in the sidecar and with the round)
   gives the Brier score and the expected calibration error (ECE, Guo et al. 2017) of the
   OOF probabilities before (``brier_raw``, ``ece_raw``: the members' own logistic output)
   and after calibration (``brier``, ``ece``).

A new text's quality is the mean of the members' calibrated probabilities, and its
*uncertainty* is their disagreement: the standard deviation of the members' calibrated
log-odds (a subsampled ensemble, in the spirit of bagging, at no extra fitting cost).
Routing uses it to rank hard cases (``scoring.route``).

Fitting and prediction run with single-threaded BLAS: liblinear's level-1 BLAS calls on
2 * n_features-long vectors gain nothing from threads, and on a busy machine a multi-threaded
OpenBLAS waiting for a descheduled thread made fits 5-10x slower (measured on 2 shared cores).
Parallelism belongs one level up (one process per shard).

Persistence: ``save`` writes the fitted scikit-learn estimator with ``joblib`` (a pickle:
load only files this project wrote) and a JSON sidecar ``<path>.json`` with the config,
training counts and library versions; both are written to a temporary name and renamed.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import joblib
import numpy as np
import pyarrow as pa
import scipy.sparse as sp
import sklearn
from scipy.special import expit
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from scoring.config import QualityConfig

Texts = Sequence[str] | pa.Array | pa.ChunkedArray

_FORMAT_VERSION = 2


def uncertainty(p: np.ndarray | Sequence[float]) -> np.ndarray:
    """``1 - |2p - 1|``: 1 at p = 0.5, 0 at p in {0, 1}. Shape preserved."""
    p = np.asarray(p, dtype=np.float64)
    return 1.0 - np.abs(2.0 * p - 1.0)


def logit(p: np.ndarray | Sequence[float]) -> np.ndarray:
    """Log-odds ``log(p / (1 - p))`` with ``p`` clipped to [1e-6, 1 - 1e-6]."""
    q = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1.0 - 1e-6)
    return np.log(q) - np.log1p(-q)


def expected_calibration_error(
    p: np.ndarray | Sequence[float], y: np.ndarray | Sequence[int], bins: int = 10
) -> float:
    """ECE: sum over equal-width probability bins of (bin share) * |mean p - positive rate|.

    Guo et al. 2017, "On Calibration of Modern Neural Networks", eq. 3, for the positive
    class. 0 for a perfectly calibrated classifier.
    """
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if p.shape != y.shape or p.ndim != 1:
        raise ValueError(f"p and y must be 1-D of one length, got {p.shape} and {y.shape}")
    if p.size == 0:
        return 0.0
    which = np.minimum((p * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.mean() * abs(p[inside].mean() - y[inside].mean())
    return float(total)


def _as_list(texts: Texts, what: str) -> list[str]:
    if isinstance(texts, pa.ChunkedArray | pa.Array):
        texts = texts.to_pylist()
    elif isinstance(texts, str):
        raise ValueError(f"{what} must be a sequence of texts, got a single str")
    out = list(texts)
    if any(t is None for t in out):
        raise ValueError(f"{what} contains null texts")
    return out


def _atomic_write(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class QualityModel:
    """Hashed n-gram logistic regression giving P(positive) for texts."""

    def __init__(self, cfg: QualityConfig | None = None) -> None:
        self.cfg = cfg if cfg is not None else QualityConfig()
        self._char = HashingVectorizer(
            analyzer="char_wb",
            ngram_range=self.cfg.char_ngram_range,
            n_features=self.cfg.n_features,
            alternate_sign=False,
            norm="l2",
        )
        self._word = HashingVectorizer(
            analyzer="word",
            ngram_range=self.cfg.word_ngram_range,
            n_features=self.cfg.n_features,
            alternate_sign=False,
            norm="l2",
        )
        self._estimator: Any = None
        # numeric model signals (e.g. the reference model's order gain), standardised
        self.signal_mean: np.ndarray | None = None
        self.signal_std: np.ndarray | None = None
        self.n_positive = 0
        self.n_negative = 0
        self.calibrated = False
        self.calibration: dict[str, Any] = {}  # Brier / ECE before and after, on OOF data

    @property
    def is_fitted(self) -> bool:
        return self._estimator is not None

    def features(self, texts: Texts, signals: np.ndarray | None = None) -> sp.csr_matrix:
        """Sparse features: [char_wb block | word block | standardised signals, if fitted with any].

        ``signals`` is an (n_texts, k) float array of model signals, required exactly when the
        model was fitted with signals.
        """
        docs = _as_list(texts, "texts")
        blocks = [self._char.transform(docs), self._word.transform(docs)]
        if self.signal_mean is not None:
            if signals is None:
                raise ValueError(
                    f"this quality model uses {len(self.signal_mean)} model signal(s); pass signals"
                )
            z = (_signal_array(signals, len(docs)) - self.signal_mean) / self.signal_std
            blocks.append(sp.csr_matrix(z))
        elif signals is not None:
            raise ValueError("this quality model was fitted without model signals")
        return sp.hstack(blocks, format="csr")

    def _training_set(
        self,
        positive_texts: Texts,
        negative_texts: Texts,
        positive_signals: np.ndarray | None = None,
        negative_signals: np.ndarray | None = None,
    ) -> tuple[sp.csr_matrix, np.ndarray]:
        pos = _as_list(positive_texts, "positive_texts")
        neg = _as_list(negative_texts, "negative_texts")
        for what, side in (("positive_texts", pos), ("negative_texts", neg)):
            if len(side) < 2:
                raise ValueError(f"{what} needs at least 2 examples, got {len(side)}")
        if (positive_signals is None) != (negative_signals is None):
            raise ValueError("give signals for both positives and negatives, or for neither")
        signals = None
        self.signal_mean = self.signal_std = None
        if positive_signals is not None:
            signals = np.vstack(
                [
                    _signal_array(positive_signals, len(pos)),
                    _signal_array(negative_signals, len(neg)),
                ]
            )
            self.signal_mean = signals.mean(axis=0)
            self.signal_std = np.where(signals.std(axis=0) > 0, signals.std(axis=0), 1.0)
        y = np.concatenate([np.ones(len(pos), dtype=np.int64), np.zeros(len(neg), np.int64)])
        return self.features(pos + neg, signals), y

    def _logreg(self) -> LogisticRegression:
        return LogisticRegression(
            C=self.cfg.C,
            solver="liblinear",  # fast and deterministic on sparse, high-dimensional input
            class_weight="balanced",
            max_iter=self.cfg.max_iter,
            random_state=self.cfg.seed,
        )

    def _calibrator(self, scores: np.ndarray, y: np.ndarray) -> Any:
        """A 1-D map from a member's decision score to a probability, fitted on OOF scores."""
        if self.cfg.calibration_method == "isotonic":
            return IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(scores, y)
        # Platt scaling: a logistic regression on the score alone, (almost) unregularised.
        return LogisticRegression(C=1e6, solver="lbfgs").fit(scores[:, None], y)

    @staticmethod
    def _apply(calibrator: Any, scores: np.ndarray) -> np.ndarray:
        if calibrator is None:
            return expit(scores)  # the raw logistic regression's probability
        if isinstance(calibrator, IsotonicRegression):
            return np.asarray(calibrator.predict(scores), dtype=np.float64)
        return calibrator.predict_proba(scores[:, None])[:, 1]

    def _fit_members(self, x: sp.csr_matrix, y: np.ndarray) -> np.ndarray:
        """Steps 1-4 of the module docstring; returns the honest calibrated OOF P(positive)."""
        k = min(self.cfg.cv_folds, int(np.bincount(y, minlength=2).min()))
        folds = list(StratifiedKFold(k, shuffle=True, random_state=self.cfg.seed).split(x, y))
        raw = np.zeros(len(y), dtype=np.float64)
        members = []
        with threadpool_limits(1, user_api="blas"):
            for train_idx, test_idx in folds:  # 1. one member per fold, OOF decision scores
                member = self._logreg().fit(x[train_idx], y[train_idx])
                raw[test_idx] = member.decision_function(x[test_idx])
                members.append(member)
        self.calibrated = (
            self.cfg.calibrate
            and int(np.bincount(y, minlength=2).min()) >= self.cfg.calibrate_min_per_class
        )
        # 2. the calibrator maps OOF scores to probabilities; 3. its own honest OOF version
        calibrator = self._calibrator(raw, y) if self.calibrated else None
        honest = expit(raw)
        if self.calibrated:
            for train_idx, test_idx in folds:
                part = self._calibrator(raw[train_idx], y[train_idx])
                honest[test_idx] = self._apply(part, raw[test_idx])
        self._estimator = {"members": members, "calibrator": calibrator}
        # 4. calibration report: the same OOF predictions before and after calibration
        self.calibration = {
            "method": self.cfg.calibration_method if self.calibrated else "none",
            "n": len(y),
            "folds": k,
            "brier_raw": float(np.mean((expit(raw) - y) ** 2)),
            "ece_raw": expected_calibration_error(expit(raw), y, self.cfg.ece_bins),
            "brier": float(np.mean((honest - y) ** 2)),
            "ece": expected_calibration_error(honest, y, self.cfg.ece_bins),
        }
        self.n_positive, self.n_negative = int(y.sum()), int(len(y) - y.sum())
        return honest

    def fit(
        self,
        positive_texts: Texts,
        negative_texts: Texts,
        positive_signals: np.ndarray | None = None,
        negative_signals: np.ndarray | None = None,
    ) -> Self:
        """Fit on positives (label 1) and negatives (label 0); each needs >= 2 texts.

        Optional ``*_signals`` are (n, k) arrays of model signals appended to the n-grams.
        """
        self.fit_predict_oof(positive_texts, negative_texts, positive_signals, negative_signals)
        return self

    def fit_predict_oof(
        self,
        positive_texts: Texts,
        negative_texts: Texts,
        positive_signals: np.ndarray | None = None,
        negative_signals: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Fit, and return the out-of-fold P(positive) for (positives, negatives).

        Stratified K-fold with ``k = min(cfg.cv_folds, smallest class size)``, shuffled with
        ``cfg.seed``; each text is scored by a member that never saw it, through a
        calibrator that never saw it either.
        """
        x, y = self._training_set(
            positive_texts, negative_texts, positive_signals, negative_signals
        )
        p = self._fit_members(x, y)
        return p[: self.n_positive], p[self.n_positive :]

    def predict_with_uncertainty(
        self, texts: Texts, signals: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(P(positive), spread) per text, float64, shape (n_texts,) each.

        P is the mean of the members' calibrated probabilities; the spread is the standard
        deviation of the members' calibrated log-odds (clipped at p in [1e-6, 1 - 1e-6]): how
        much the answer depends on which part of the labelled data the classifier saw.
        """
        if not self.is_fitted:
            raise ValueError("QualityModel is not fitted; call fit() or load() first")
        docs = _as_list(texts, "texts")
        if not docs:
            return np.zeros(0, dtype=np.float64), np.zeros(0, dtype=np.float64)
        x = self.features(docs, signals)
        with threadpool_limits(1, user_api="blas"):
            probs = np.stack(  # (n_members, n_texts)
                [
                    self._apply(self._estimator["calibrator"], m.decision_function(x))
                    for m in self._estimator["members"]
                ]
            )
        return probs.mean(axis=0), logit(probs).std(axis=0)

    def predict(self, texts: Texts, signals: np.ndarray | None = None) -> np.ndarray:
        """P(positive) per text, float64, shape (n_texts,)."""
        return self.predict_with_uncertainty(texts, signals)[0]

    def metadata(self) -> dict[str, Any]:
        return {
            "format_version": _FORMAT_VERSION,
            "config": self.cfg.to_dict(),
            "n_positive": self.n_positive,
            "n_negative": self.n_negative,
            "calibrated": self.calibrated,
            "calibration": self.calibration,
            "sklearn_version": sklearn.__version__,
            "signal_mean": None if self.signal_mean is None else self.signal_mean.tolist(),
            "signal_std": None if self.signal_std is None else self.signal_std.tolist(),
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the estimator to ``path`` (joblib) and metadata to ``<path>.json``."""
        if not self.is_fitted:
            raise ValueError("QualityModel is not fitted; nothing to save")
        path = Path(path)
        sidecar = path.with_name(path.name + ".json")
        _atomic_write(path, lambda tmp: joblib.dump(self._estimator, tmp))
        text = json.dumps(self.metadata(), indent=2, sort_keys=True)
        _atomic_write(sidecar, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> QualityModel:
        """Load a model written by ``save`` (trusted files only: joblib unpickles)."""
        path = Path(path)
        sidecar = path.with_name(path.name + ".json")
        if not path.is_file() or not sidecar.is_file():
            raise FileNotFoundError(f"quality model needs both {path} and {sidecar}")
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        if meta.get("format_version") != _FORMAT_VERSION:
            raise ValueError(
                f"{sidecar}: format_version {meta.get('format_version')!r}, "
                f"expected {_FORMAT_VERSION}"
            )
        if meta.get("sklearn_version") != sklearn.__version__:
            warnings.warn(
                f"{path} was saved with scikit-learn {meta.get('sklearn_version')}, "
                f"loading with {sklearn.__version__}",
                stacklevel=2,
            )
        model = cls(QualityConfig.from_dict(meta["config"]))
        model._estimator = joblib.load(path)
        model.n_positive = int(meta["n_positive"])
        model.n_negative = int(meta["n_negative"])
        model.calibrated = bool(meta["calibrated"])
        model.calibration = dict(meta.get("calibration") or {})
        if meta.get("signal_mean") is not None:
            model.signal_mean = np.asarray(meta["signal_mean"], dtype=np.float64)
            model.signal_std = np.asarray(meta["signal_std"], dtype=np.float64)
        return model


def _signal_array(signals: np.ndarray, n: int) -> np.ndarray:
    arr = np.asarray(signals, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] != n:
        raise ValueError(f"signals must have shape ({n}, k), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("signals must be finite")
    return arr
