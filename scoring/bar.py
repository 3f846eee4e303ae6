"""The model-level bar: a high quantile of the quality of the current model's own samples.

Sample ``n_samples`` texts from the current model, score them exactly like candidates
(out-of-fold quality, see ``QualityModel.fit_predict_oof``), and take the ``quantile``-th
quantile (numpy's default linear interpolation). A candidate must beat what the model
already writes on a good day to be worth training on; as the model improves, its samples
score higher and the bar rises. ``scoring.route`` applies the bar with a margin.

Comparable across rounds: the routing bar comes from a classifier refitted every round
(against that round's samples), so its value drifts with the classifier, not only with the
model. The bar is therefore also recorded on a fixed scale (``anchored_bar``): the same
quantile of the quality an *anchor* classifier gives the samples, where the anchor is the
first classifier fitted against the workspace's reference model and is never refitted.
Its inputs (n-grams and the fixed reference model's loss) and weights stay put, so a
higher anchored bar means the model's samples read more like trusted text. The score step
also scores the previous round's samples with the current classifier, so each round holds
both models' bars under one scorer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from scoring.quality import QualityModel


def _validated(sample_quality: np.ndarray | Sequence[float], quantile: float) -> np.ndarray:
    q = np.asarray(sample_quality, dtype=np.float64)
    if q.ndim != 1:
        raise ValueError(f"sample_quality must be 1-D, got shape {q.shape}")
    if q.size == 0:
        raise ValueError("sample_quality is empty: sample the model before setting the bar")
    n_bad = int(np.count_nonzero(~np.isfinite(q)))
    if n_bad:
        raise ValueError(f"sample_quality has {n_bad} NaN/inf value(s) out of {q.size}")
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {quantile!r}")
    return q


def model_level_bar(sample_quality: np.ndarray | Sequence[float], quantile: float) -> float:
    """The ``quantile``-th quantile of the model samples' quality scores."""
    return float(np.quantile(_validated(sample_quality, quantile), quantile))


@dataclass(frozen=True)
class BarSummary:
    """The bar and the distribution it came from, recorded with every round."""

    bar: float
    quantile: float
    n_samples: int
    mean: float
    p50: float
    p90: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarise_bar(sample_quality: np.ndarray | Sequence[float], quantile: float) -> BarSummary:
    """The bar plus mean, median and 90th percentile of the samples' quality."""
    q = _validated(sample_quality, quantile)
    p50, p90 = np.quantile(q, [0.5, 0.9])
    return BarSummary(
        bar=float(np.quantile(q, quantile)),
        quantile=float(quantile),
        n_samples=int(q.size),
        mean=float(q.mean()),
        p50=float(p50),
        p90=float(p90),
    )


def anchored_bar(
    anchor: QualityModel,
    sample_texts: Sequence[str],
    sample_signals: np.ndarray | None,
    quantile: float,
) -> tuple[float, np.ndarray]:
    """(bar, quality per sample) of a model's samples on the anchor classifier's fixed scale.

    ``sample_signals`` are the model signals the anchor was fitted with (None if none).
    """
    quality = anchor.predict(list(sample_texts), sample_signals)
    return model_level_bar(quality, quantile), quality
