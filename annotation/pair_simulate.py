"""An offline simulated expert for pairwise tasks, answering from a gold preference.

Gold is a preference per candidate: ``candidate`` (its response is better), ``model`` (the
model's own is better) or ``both_bad``. The simulator knows which side shows the candidate
(as the catalog's ``pair_tasks`` does; the task itself does not say) and turns the
preference into the raw choice a person would click (:func:`preference_answer`). Each of
``annotators`` answers the gold, or with probability ``noise`` one of the two other
preferences at random (independently per annotator and task). An annotator whose answer is
``both_bad`` writes the gold rewrite, when the candidate has one, as a person fixing both
would; every annotator leaves a short rationale.

The output has the shape of Label Studio's JSON export, like
:func:`annotation.simulate.simulate_answers`, so it goes through
:func:`annotation.pair_tasks.parse_pair_export` like a real export. Deterministic given ``seed``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from annotation.pair_tasks import PREFERENCES, preference_choice
from annotation.pairwise import PairwiseConfig

_START = datetime(2024, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class PairAnswer:
    """What one simulated expert submits for one task."""

    choice: str  # the raw choice: a, b or both_bad
    preference: str  # what it means: candidate, model or both_bad
    rewrite: str | None
    rationale: str


def preference_answer(
    gold: str,
    side: str,
    rewrite: str | None,
    annotator: int,
    rng: np.random.Generator,
    noise: float,
    cfg: PairwiseConfig,
) -> PairAnswer:
    """One annotator's answer: the gold preference, or with probability ``noise`` another."""
    if gold not in PREFERENCES:
        raise ValueError(f"gold preference must be one of {PREFERENCES}, got {gold!r}")
    preference = gold
    if noise > 0 and rng.random() < noise:
        others = [p for p in PREFERENCES if p != gold]
        preference = others[int(rng.integers(len(others)))]
    return PairAnswer(
        choice=preference_choice(preference, side, cfg),
        preference=preference,
        rewrite=rewrite if preference == "both_bad" and rewrite else None,
        rationale=f"simulated expert {annotator}: {preference.replace('_', ' ')}",
    )


def simulate_pair_answers(
    tasks: list[dict[str, Any]],
    gold: dict[str, str],
    sides: dict[str, str],
    *,
    rewrites: dict[str, str] | None = None,
    annotators: int = 1,
    noise: float = 0.0,
    noisy: int | None = None,
    seed: int = 0,
    cfg: PairwiseConfig | None = None,
) -> list[dict[str, Any]]:
    """Copies of ``tasks`` with ids 1..n and ``annotators`` annotations each.

    ``gold`` and ``sides`` map ``data.candidate_id`` to the gold preference and to the side
    showing the candidate; a task missing from either raises ``KeyError`` naming it. The
    first ``noisy`` annotators (default: all) answer with ``noise``; the others answer gold.
    """
    cfg = PairwiseConfig() if cfg is None else cfg
    if annotators < 1:
        raise ValueError(f"annotators must be >= 1, got {annotators}")
    if not 0.0 <= noise <= 1.0:
        raise ValueError(f"noise must be in [0, 1], got {noise}")
    noisy = annotators if noisy is None else noisy
    rewrites = rewrites or {}
    rng = np.random.default_rng(seed)
    out = []
    annotation_id = 0
    clock = _START
    for t, task in enumerate(tasks, start=1):
        cid = str(task["data"]["candidate_id"])
        if cid not in gold:
            raise KeyError(f"task {t - 1}: no gold preference for candidate {cid!r}")
        if cid not in sides:
            raise KeyError(f"task {t - 1}: no recorded side for candidate {cid!r}")
        exported = copy.deepcopy(task)
        exported["id"] = t
        exported["annotations"] = []
        for user in range(1, annotators + 1):
            answer = preference_answer(
                gold[cid],
                sides[cid],
                rewrites.get(cid),
                user,
                rng,
                noise if user <= noisy else 0.0,
                cfg,
            )
            lead_time = float(rng.gamma(shape=2.0, scale=20.0))
            clock += timedelta(seconds=lead_time)
            stamp = clock.isoformat(timespec="microseconds").replace("+00:00", "Z")
            annotation_id += 1
            result = [
                {
                    "id": f"sim{annotation_id}",
                    "from_name": cfg.from_name,
                    "to_name": cfg.to_name,
                    "type": "choices",
                    "origin": "manual",
                    "value": {"choices": [answer.choice]},
                }
            ]
            for name, text in (
                (cfg.corrected_text_name, answer.rewrite),
                (cfg.rationale_name, answer.rationale),
            ):
                if text:
                    result.append(
                        {
                            "id": f"sim{annotation_id}-{name}",
                            "from_name": name,
                            "to_name": cfg.to_name,
                            "type": "textarea",
                            "origin": "manual",
                            "value": {"text": [text]},
                        }
                    )
            exported["annotations"].append(
                {
                    "id": annotation_id,
                    "completed_by": user,
                    "result": result,
                    "was_cancelled": False,
                    "ground_truth": False,
                    "created_at": stamp,
                    "updated_at": stamp,
                    "lead_time": round(lead_time, 3),
                    "task": t,
                }
            )
        out.append(exported)
    return out
