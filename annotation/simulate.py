"""An offline simulated expert: fills import tasks with annotations as Label Studio exports them.

For tests and for evaluating the loop without people: each of ``annotators`` simulated users
answers the gold label, flipped with probability ``noise`` (independently per annotator and
task). The output has the shape of Label Studio's JSON export (https://labelstud.io/guide/
task_format): tasks with ``id`` and ``annotations`` (``id``, ``completed_by`` = user id 1..n,
``result`` with one Choices region, ``was_cancelled``, ``ground_truth``, ``lead_time``,
``created_at``, ``updated_at``, ``task``), so it goes through :func:`annotation.queue.parse_export`
like a real export. Deterministic given ``seed``; timestamps start at 2024-01-01T00:00:00Z.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from annotation.config import AnnotationConfig

_START = datetime(2024, 1, 1, tzinfo=UTC)


def simulate_answers(
    tasks: list[dict[str, Any]],
    gold: dict[str, str],
    annotators: int = 1,
    noise: float = 0.0,
    seed: int = 0,
    *,
    cfg: AnnotationConfig | None = None,
) -> list[dict[str, Any]]:
    """Copies of ``tasks`` with ids 1..n and ``annotators`` annotations each.

    ``gold`` maps ``data.candidate_id`` to the accept or reject choice; a task whose candidate
    has no gold raises ``KeyError``. The input tasks are not modified.
    """
    cfg = AnnotationConfig() if cfg is None else cfg
    if annotators < 1:
        raise ValueError(f"annotators must be >= 1, got {annotators}")
    if not 0.0 <= noise <= 1.0:
        raise ValueError(f"noise must be in [0, 1], got {noise}")
    flip = {cfg.accept: cfg.reject, cfg.reject: cfg.accept}
    rng = np.random.default_rng(seed)
    out = []
    annotation_id = 0
    clock = _START
    for t, task in enumerate(tasks, start=1):
        candidate_id = str(task["data"]["candidate_id"])
        if candidate_id not in gold:
            raise KeyError(f"task {t - 1}: no gold label for candidate {candidate_id!r}")
        truth = gold[candidate_id]
        if truth not in flip:
            raise ValueError(
                f"gold for {candidate_id!r} is {truth!r}, expected one of {cfg.choices}"
            )
        flips = rng.random(annotators) < noise
        lead_times = rng.gamma(shape=2.0, scale=15.0, size=annotators)
        exported = copy.deepcopy(task)
        exported["id"] = t
        exported["annotations"] = []
        for user in range(annotators):
            annotation_id += 1
            clock += timedelta(seconds=float(lead_times[user]))
            stamp = clock.isoformat(timespec="microseconds").replace("+00:00", "Z")
            choice = flip[truth] if flips[user] else truth
            exported["annotations"].append(
                {
                    "id": annotation_id,
                    "completed_by": user + 1,
                    "result": [
                        {
                            "id": f"sim{annotation_id}",
                            "from_name": cfg.from_name,
                            "to_name": cfg.to_name,
                            "type": "choices",
                            "origin": "manual",
                            "value": {"choices": [choice]},
                        }
                    ],
                    "was_cancelled": False,
                    "ground_truth": False,
                    "created_at": stamp,
                    "updated_at": stamp,
                    "lead_time": round(float(lead_times[user]), 3),
                    "task": t,
                }
            )
        out.append(exported)
    return out
