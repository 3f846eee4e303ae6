"""Learned quality probability: P(text is trusted human writing | text), a hashed-n-gram
logistic regression in the style of the GPT-3 / PaLM quality classifiers (Brown et al. 2020,
appendix A; Chowdhery et al. 2022), retrained every round on the active-learning labels.

Positives are trusted human text and expert-accepted candidates; negatives are the current
model's own samples, expert rejects and rule rejects. Features are stateless
(``HashingVectorizer``: character 3-5-grams inside word boundaries plus word 1-2-grams, each
block L2-normalised, no fitted vocabulary), so scoring needs no vocabulary and shards freely,
plus optional numeric *model signals* (standardised), e.g. bits per byte under the reference
model: n-grams alone tell human text from the model's samples but not from word salad, which
the reference model's loss does (measured on the demo pool: AUC clean vs word-shuffled 0.55
with n-grams only, 0.84 with the loss alone).
The classifier is ``LogisticRegression(class_weight="balanced")`` (liblinear), wrapped in
``CalibratedClassifierCV`` (sigmoid / Platt) when ``cfg.calibrate`` and every class has
at least ``cfg.calibrate_min_per_class`` examples: balanced weights shift the raw
probabilities, and the bar compares probabilities across rounds, so they should mean what
they say.

``fit_predict_oof`` gives out-of-fold probabilities for the training texts themselves
(stratified, seeded K-fold), so the model's own samples — which are negatives in training —
get honest scores for the model-level bar instead of memorised ones.

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
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from threadpoolctl import threadpool_limits

from scoring.config import QualityConfig

Texts = Sequence[str] | pa.Array | pa.ChunkedArray

_FORMAT_VERSION = 1


def uncertainty(p: np.ndarray | Sequence[float]) -> np.ndarray:
    """``1 - |2p - 1|``: 1 at p = 0.5, 0 at p in {0, 1}. Shape preserved."""
    p = np.asarray(p, dtype=np.float64)
    return 1.0 - np.abs(2.0 * p - 1.0)


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
        # numeric model signals (e.g. bits per byte under the reference model), standardised
        self.signal_mean: np.ndarray | None = None
        self.signal_std: np.ndarray | None = None
        self.n_positive = 0
        self.n_negative = 0
        self.calibrated = False

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

    def _make_estimator(self, y: np.ndarray) -> Any:
        logreg = LogisticRegression(
            C=self.cfg.C,
            solver="liblinear",  # fast and deterministic on sparse, high-dimensional input
            class_weight="balanced",
            max_iter=self.cfg.max_iter,
            random_state=self.cfg.seed,
        )
        self.calibrated = (
            self.cfg.calibrate and int(np.bincount(y).min()) >= self.cfg.calibrate_min_per_class
        )
        if not self.calibrated:
            return logreg
        folds = StratifiedKFold(self.cfg.cv_folds, shuffle=True, random_state=self.cfg.seed)
        return CalibratedClassifierCV(logreg, method="sigmoid", cv=folds)

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
        x, y = self._training_set(
            positive_texts, negative_texts, positive_signals, negative_signals
        )
        with threadpool_limits(1, user_api="blas"):
            self._estimator = self._make_estimator(y).fit(x, y)
        self.n_positive, self.n_negative = int(y.sum()), int(len(y) - y.sum())
        return self

    def fit_predict_oof(
        self,
        positive_texts: Texts,
        negative_texts: Texts,
        positive_signals: np.ndarray | None = None,
        negative_signals: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Out-of-fold P(positive) for (positives, negatives), then fit on all of them.

        Stratified K-fold with ``k = min(cfg.cv_folds, smallest class size)``, shuffled with
        ``cfg.seed``; each text is scored by a model that never saw it.
        """
        x, y = self._training_set(
            positive_texts, negative_texts, positive_signals, negative_signals
        )
        k = min(self.cfg.cv_folds, int(np.bincount(y).min()))
        folds = StratifiedKFold(k, shuffle=True, random_state=self.cfg.seed)
        with threadpool_limits(1, user_api="blas"):
            est = self._make_estimator(y)
            oof = cross_val_predict(est, x, y, cv=folds, method="predict_proba")
            self._estimator = self._make_estimator(y).fit(x, y)
        self.n_positive, self.n_negative = int(y.sum()), int(len(y) - y.sum())
        p = oof[:, 1]
        return p[: self.n_positive], p[self.n_positive :]

    def predict(self, texts: Texts, signals: np.ndarray | None = None) -> np.ndarray:
        """P(positive) per text, float64, shape (n_texts,)."""
        if not self.is_fitted:
            raise ValueError("QualityModel is not fitted; call fit() or load() first")
        docs = _as_list(texts, "texts")
        if not docs:
            return np.zeros(0, dtype=np.float64)
        x = self.features(docs, signals)
        with threadpool_limits(1, user_api="blas"):
            p = self._estimator.predict_proba(x)[:, 1]
        return p.astype(np.float64)

    def metadata(self) -> dict[str, Any]:
        return {
            "format_version": _FORMAT_VERSION,
            "config": self.cfg.to_dict(),
            "n_positive": self.n_positive,
            "n_negative": self.n_negative,
            "calibrated": self.calibrated,
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
