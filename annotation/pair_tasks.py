"""Blind pairwise tasks: sides drawn per candidate, the model's guess, and answers mapped back.

A task shows the candidate's response and the model's own response as "A" and "B". Which
side holds the candidate is drawn per candidate from a seeded hash (:func:`draw_side`), so
about half the tasks show the candidate first, and the same candidate, round and seed always
give the same side. The task's ``data`` is exactly ``candidate_id``, ``round``, ``prompt``,
``response_a``, ``response_b``: nothing names the model or the candidate, and no score that
differs by side is shown. The side is kept out of the task, in the catalog's ``pair_tasks``
table, written before the task leaves (pipelines.annotate_pairs).

The model's guess travels as a Label Studio prediction (https://labelstud.io/guide/predictions):
the side the system thinks better (the candidate's when ``gap = score - own_score > 0``, else
the model's), with ``score`` = sigmoid(|gap|), a confidence in [0.5, 1).

:func:`parse_pair_export` reads answers back (one record per annotation, ``choice`` the raw
``a``/``b``/``both_bad``); :func:`map_choice` turns a raw choice into the preference stored
in the catalog: ``candidate``, ``model`` or ``both_bad``.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa

from annotation.pairwise import PairwiseConfig
from annotation.queue import (
    AnnotationError,
    AnnotationFormatError,
    AnnotationRecord,
    ParseResult,
    _BadAnnotation,
    _export_tasks,
    _record,
    _task_data,
)
from annotation.tasks import _finite

TASK_FIELDS = ("candidate_id", "round", "prompt", "response_a", "response_b")
PREFERENCES = ("candidate", "model", "both_bad")


def draw_side(candidate_id: str, round_: int, seed: str | int) -> str:
    """The side ("a" or "b") that shows the candidate's response: a fair, seeded coin.

    One bit of SHA-256 over (seed, round, candidate_id): independent across candidates,
    reproducible, and not guessable from the task without the seed.
    """
    digest = hashlib.sha256(f"{seed}\x1f{round_}\x1f{candidate_id}".encode()).digest()
    return "a" if digest[0] & 1 == 0 else "b"


def other_side(side: str) -> str:
    return {"a": "b", "b": "a"}[side]


def map_choice(choice: str | None, candidate_side: str, cfg: PairwiseConfig) -> str | None:
    """A raw choice (``a``/``b``/``both_bad``) as a preference (candidate/model/both_bad)."""
    if choice is None:
        return None
    if choice == cfg.both_bad:
        return "both_bad"
    if choice == cfg.side_choice(candidate_side):
        return "candidate"
    if choice == cfg.side_choice(other_side(candidate_side)):
        return "model"
    raise ValueError(f"unknown pairwise choice {choice!r}, expected one of {cfg.choices}")


def preference_choice(preference: str, candidate_side: str, cfg: PairwiseConfig) -> str:
    """The raw choice an expert makes to express ``preference`` (inverse of map_choice)."""
    if preference == "both_bad":
        return cfg.both_bad
    if preference == "candidate":
        return cfg.side_choice(candidate_side)
    if preference == "model":
        return cfg.side_choice(other_side(candidate_side))
    raise ValueError(f"preference must be one of {PREFERENCES}, got {preference!r}")


def build_pair_tasks(
    rows: pa.Table | list[dict[str, Any]],
    model_version: str,
    cfg: PairwiseConfig,
    seed: str | int,
) -> tuple[list[dict[str, Any]], list[str]]:
    """One blind task per queued hard pair, and the candidate's side of each, in row order.

    Rows need ``candidate_id``, ``round``, ``prompt``, ``response`` (the candidate's) and
    ``model_response`` (non-empty strings; round an int); ``gap`` (float or None) gives the
    model's guess and ``model_id`` its model_version (else ``model_version``). A row's
    ``candidate_side`` ("a"/"b"), when set, is kept (a task pushed before keeps its sides);
    else it is drawn with :func:`draw_side`. Raises ``ValueError`` naming the row index for
    a missing or bad value and for a candidate seen twice.
    """
    if not isinstance(model_version, str) or not model_version:
        raise ValueError("model_version must be a non-empty string")
    records = rows.to_pylist() if isinstance(rows, pa.Table) else list(rows)
    tasks: list[dict[str, Any]] = []
    sides: list[str] = []
    seen: dict[str, int] = {}
    for i, row in enumerate(records):
        if not isinstance(row, dict):
            raise ValueError(f"row {i}: expected a mapping, got {type(row).__name__}")
        for name in ("candidate_id", "prompt", "response", "model_response"):
            value = row.get(name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(
                    f"row {i} (candidate {row.get('candidate_id')!r}): {name} must be a "
                    f"non-empty string, got {value!r}"
                )
        cid = row["candidate_id"]
        if row.get("round") is None:
            raise ValueError(f"row {i} (candidate {cid!r}): round is missing")
        first = seen.setdefault(cid, i)
        if first != i:
            raise ValueError(f"row {i}: candidate_id {cid!r} repeats row {first}")
        round_ = int(row["round"])
        side = row.get("candidate_side") or draw_side(cid, round_, seed)
        if side not in ("a", "b"):
            raise ValueError(f"row {i} (candidate {cid!r}): candidate_side must be a or b")
        shown = {side: row["response"], other_side(side): row["model_response"]}
        data = {
            "candidate_id": cid,
            "round": round_,
            "prompt": row["prompt"],
            "response_a": shown["a"],
            "response_b": shown["b"],
        }
        task: dict[str, Any] = {"data": data, "predictions": []}
        gap = _finite(row.get("gap"))
        if gap is not None and gap != 0.0:
            better = side if gap > 0 else other_side(side)
            task["predictions"].append(
                {
                    "model_version": str(row.get("model_id") or model_version),
                    "score": 1.0 / (1.0 + math.exp(-abs(gap))),
                    "result": [
                        {
                            "from_name": cfg.from_name,
                            "to_name": cfg.to_name,
                            "type": "choices",
                            "value": {"choices": [cfg.side_choice(better)]},
                        }
                    ],
                }
            )
        tasks.append(task)
        sides.append(side)
    return tasks, sides


def is_pair_task(task: Any) -> bool:
    """Whether an import/export task is a pairwise one (its data has the two responses)."""
    data = task.get("data") if isinstance(task, dict) else None
    return isinstance(data, dict) and "response_a" in data and "response_b" in data


def parse_pair_export(
    obj_or_path: list[dict[str, Any]] | Path | str,
    cfg: PairwiseConfig | None = None,
    *,
    include_cancelled: bool = False,
) -> ParseResult:
    """Flatten a pairwise project's JSON export into one record per (non-cancelled) annotation.

    ``choice`` is the raw exported choice (``a``, ``b``, ``both_bad``; None without a
    preference region); ``corrected_text`` the rewrite, None when empty or equal to either
    response shown. A file that is not a list of tasks, or a task without ``candidate_id``,
    ``prompt``, ``response_a`` and ``response_b``, raises :class:`AnnotationFormatError`; a
    malformed annotation (unknown choice, several choices, bad text) lands in ``errors``
    with its task and annotation index and the rest is read.
    """
    cfg = PairwiseConfig() if cfg is None else cfg
    tasks, source = _export_tasks(obj_or_path)
    records: list[AnnotationRecord] = []
    errors: list[AnnotationError] = []
    for t, task in enumerate(tasks):
        where = f"{source}: task {t}"
        data, cid = _task_data(task, where)
        for name in ("prompt", "response_a", "response_b"):
            if not isinstance(data.get(name), str):
                raise AnnotationFormatError(
                    f"{where} (candidate {cid}): data.{name} missing or not a string; "
                    "is this an export of the pairwise project?"
                )
        annotations = task.get("annotations") or []
        if not isinstance(annotations, list):
            raise AnnotationFormatError(f"{where}: 'annotations' is not a list")
        task_id = task.get("id") if isinstance(task.get("id"), int) else None
        shown = {data["response_a"].strip(), data["response_b"].strip()}
        for a, ann in enumerate(annotations):
            try:
                rec = _record(ann, task_id, str(cid), data["response_a"], cfg)  # type: ignore[arg-type]
            except _BadAnnotation as exc:
                errors.append(AnnotationError(source, t, a, str(cid), str(exc)))
                continue
            if rec.corrected_text is not None and rec.corrected_text in shown:
                rec = replace(rec, corrected_text=None)
            if include_cancelled or not rec.was_cancelled:
                records.append(rec)
    return ParseResult(records, errors)
