"""Label Studio import tasks for hard candidates, with the model's guess as a prediction.

Format (Label Studio docs, "Import pre-annotated data", https://labelstud.io/guide/predictions,
and "Label Studio Task Format", https://labelstud.io/guide/task_format): a task is
``{"data": {...}, "predictions": [...]}``; ``data`` keys are the ``$variables`` of the labeling
config; a prediction is ``{"model_version", "score", "result"}`` where ``score`` (0..1) lets the
Data Manager sort tasks by model confidence and ``result`` holds regions
``{"from_name", "to_name", "type": "choices", "value": {"choices": [...]}}``.

The model's guess is ``accept`` when ``quality >= bar``, else ``reject``; its confidence is
the distance from the bar scaled to the room on that side (:func:`model_confidence`).
"""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa

from annotation.config import AnnotationConfig

REQUIRED_FIELDS = ("candidate_id", "text", "quality", "bar")
OPTIONAL_FLOATS = ("learnability", "loss_model", "loss_ref")


def model_confidence(quality: float, bar: float) -> float:
    """Confidence in the guess, in [0.5, 1]: 0.5 at the bar, 1 at quality 0 or 1.

    accept (quality >= bar): 0.5 + 0.5 * (quality - bar) / (1 - bar)
    reject (quality <  bar): 0.5 + 0.5 * (bar - quality) / bar
    """
    if quality >= bar:
        return 0.5 if bar >= 1.0 else 0.5 + 0.5 * (quality - bar) / (1.0 - bar)
    return 0.5 + 0.5 * (bar - quality) / bar


def build_tasks(
    rows: pa.Table | list[dict[str, Any]],
    model_version: str,
    cfg: AnnotationConfig,
) -> list[dict[str, Any]]:
    """One import task per row (a routed hard candidate), in row order.

    Rows need ``candidate_id``, ``text``, ``quality`` and ``bar`` (both in [0, 1]); the
    optional ``learnability``, ``loss_model``, ``loss_ref`` (floats), ``round`` (int) and
    ``reason`` (str) become ``None`` when absent or not finite. Raises ``ValueError`` naming
    the row index for bad values and for a ``candidate_id`` seen twice.
    """
    if not isinstance(model_version, str) or not model_version:
        raise ValueError("model_version must be a non-empty string")
    records = rows.to_pylist() if isinstance(rows, pa.Table) else list(rows)
    tasks = []
    seen: dict[str, int] = {}
    for i, row in enumerate(records):
        data = _task_data(row, i)
        first = seen.setdefault(data["candidate_id"], i)
        if first != i:
            raise ValueError(f"row {i}: candidate_id {data['candidate_id']!r} repeats row {first}")
        guess = cfg.accept if data["quality"] >= data["bar"] else cfg.reject
        prediction = {
            "model_version": model_version,
            "score": model_confidence(data["quality"], data["bar"]),
            "result": [
                {
                    "from_name": cfg.from_name,
                    "to_name": cfg.to_name,
                    "type": "choices",
                    "value": {"choices": [guess]},
                }
            ],
        }
        tasks.append({"data": data, "predictions": [prediction]})
    return tasks


def _task_data(row: Any, i: int) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise ValueError(f"row {i}: expected a mapping, got {type(row).__name__}")
    missing = [f for f in REQUIRED_FIELDS if row.get(f) is None]
    if missing:
        raise ValueError(f"row {i}: missing {', '.join(missing)}")
    candidate_id, text = row["candidate_id"], row["text"]
    if not isinstance(candidate_id, str | int) or isinstance(candidate_id, bool):
        raise ValueError(f"row {i}: candidate_id must be a string or int, got {candidate_id!r}")
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"row {i}: text must be a non-empty string")
    data: dict[str, Any] = {"candidate_id": str(candidate_id), "text": text}
    for name in ("quality", "bar"):
        value = _finite(row[name])
        if value is None or not 0.0 <= value <= 1.0:
            raise ValueError(f"row {i}: {name} must be a number in [0, 1], got {row[name]!r}")
        data[name] = value
    for name in OPTIONAL_FLOATS:
        data[name] = _finite(row.get(name))
    round_ = row.get("round")
    data["round"] = None if round_ is None else int(round_)
    reason = row.get("reason")
    data["reason"] = None if reason is None else str(reason)
    return data


def _finite(value: Any) -> float | None:
    """``float(value)`` when it is a finite number, else None (JSON has no NaN)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None
