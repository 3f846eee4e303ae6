"""The annotate step, embedded default: a file queue in Label Studio's import format.

``push`` writes the round's queued hard cases to ``HOME/annotations/queue/round-NNNN.json``
(importable into any Label Studio project with the config from ``annotation``), each
task carrying the model's guess as a prediction. ``import_export`` reads a Label Studio
JSON export back: every annotation is stored once (by its id), a consensus is taken per
candidate over all its annotations so far, and the consensus becomes an ``expert``
decision. Re-importing the same export changes nothing. An export of the pairwise project
(tasks with ``response_a``/``response_b``) goes to :mod:`pipelines.annotate_pairs`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from annotation.consensus import consensus
from annotation.pair_tasks import is_pair_task
from annotation.queue import AnnotationRecord, ParseResult, parse_export, read_queue, write_queue
from annotation.tasks import build_tasks
from pipelines.catalog import SCHEMAS, Catalog, now
from pipelines.settings import Settings


def queue_path(catalog: Catalog, round_: int) -> Path:
    return catalog.home / "annotations" / "queue" / f"round-{round_:04d}.json"


def push(catalog: Catalog, settings: Settings, round_: int, model_id: str) -> tuple[Path, int]:
    """Write the round's queued hard cases as Label Studio tasks; returns (file, n_tasks)."""
    rows = catalog.named("queued_tasks", {"round": round_}).to_pylist()
    tasks = build_tasks(rows, model_version=model_id, cfg=settings.annotation)
    path = write_queue(queue_path(catalog, round_), tasks)
    return path, len(tasks)


@dataclass
class ImportReport:
    file: str
    annotations_read: int = 0
    annotations_new: int = 0
    malformed: int = 0
    decisions: int = 0
    errors: list[str] = field(default_factory=list)
    already_imported: bool = False
    rewrites: int = 0  # pairwise answers: rewrites stored as new accepted pair candidates


def import_export(catalog: Catalog, settings: Settings, path: Path, round_: int) -> ImportReport:
    """Store a Label Studio JSON export's annotations and the experts' decisions."""
    path = Path(path).resolve()
    key = "import-" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    if catalog.exists("annotations", key):
        return ImportReport(file=str(path), already_imported=True)
    tasks = read_queue(path)
    pairs = [t for t in tasks if is_pair_task(t)]
    if not pairs:
        parsed = parse_export(path, settings.annotation)
        return import_parsed(catalog, parsed, str(path), key, round_)
    # an export of the pairwise project (or both projects' tasks in one file)
    from pipelines import annotate_pairs

    report = annotate_pairs.import_export(catalog, pairs, str(path), key + "-pairs", round_)
    texts = [t for t in tasks if not is_pair_task(t)]
    if texts:
        more = import_parsed(
            catalog, parse_export(texts, settings.annotation), str(path), key, round_
        )
        for name in ("annotations_read", "annotations_new", "malformed", "decisions"):
            setattr(report, name, getattr(report, name) + getattr(more, name))
        report.errors.extend(more.errors)
    else:  # mark the file imported under its own key too
        catalog.write("annotations", pa.Table.from_pylist([], SCHEMAS["annotations"]), key)
    return report


def import_parsed(
    catalog: Catalog, parsed: ParseResult, origin: str, key: str, round_: int
) -> ImportReport:
    """Store parsed annotations once each, then the consensus of every touched candidate.

    ``key`` names the output files; the annotations file is written last and marks the
    import complete, so a crash in between is redone by the next import or pull.
    """
    report = ImportReport(file=origin)
    report.annotations_read = len(parsed.records)
    report.malformed = len(parsed.errors)
    known_candidates = set(
        catalog.query("SELECT candidate_id FROM candidates").column(0).to_pylist()
    )
    seen = stored_versions(catalog)
    stamp = now()
    new_rows = []
    for rec in parsed.records:
        if rec.candidate_id not in known_candidates:
            report.malformed += 1
            report.errors.append(
                f"{origin}: task {rec.task_id}: candidate {rec.candidate_id!r} is not in this workspace"
            )
            continue
        row = new_annotation_row(rec, seen, rec.choice, round_, origin, stamp)
        if row is not None:
            new_rows.append(row)
    report.annotations_new = len(new_rows)
    decisions = []
    for agreed in consensus(annotation_history(catalog, new_rows)):
        if agreed.label is None:
            continue
        decisions.append(
            expert_decision(
                agreed.candidate_id,
                round_,
                agreed.label,
                f"expert_{agreed.label}",
                agreed.agreement,
                stamp,
            )
        )
    report.decisions = len(decisions)
    if decisions:
        catalog.write("decisions", pa.Table.from_pylist(decisions, SCHEMAS["decisions"]), key)
    # the annotations file goes last: it marks the import complete
    catalog.write("annotations", pa.Table.from_pylist(new_rows, SCHEMAS["annotations"]), key)
    return report


# The steps below are shared with the pairwise import (pipelines.annotate_pairs): both
# store annotations the same way and take consensus over the same history.


def stored_versions(catalog: Catalog) -> set[tuple[str, str]]:
    """The (annotation_id, updated_at or "") of every stored annotation version."""
    return {
        (r["annotation_id"], r["updated_at"] or "")
        for r in catalog.query("SELECT annotation_id, updated_at FROM annotations").to_pylist()
    }


def new_annotation_row(
    rec: AnnotationRecord,
    seen: set[tuple[str, str]],
    choice: str | None,
    round_: int,
    origin: str,
    stamp: object,
) -> dict | None:
    """The ``annotations`` row of ``rec`` (storing ``choice``), or None when this version
    is in ``seen`` already; a new version is added to ``seen``.

    Label Studio numbers annotations per server, so the stored id is qualified by the
    candidate to stay unique; an edited annotation (new ``updated_at``) is a new version.
    """
    annotation_id = f"{rec.candidate_id}:{rec.annotation_id}"
    version = (annotation_id, rec.updated_at or "")
    if version in seen:
        return None
    seen.add(version)
    return {
        "annotation_id": annotation_id,
        "task_id": None if rec.task_id is None else str(rec.task_id),
        "candidate_id": rec.candidate_id,
        "round": round_,
        "annotator": rec.annotator,
        "choice": choice,
        "corrected_text": rec.corrected_text,
        "rationale": rec.rationale,
        "export_file": origin,
        "created_at": rec.created_at,
        "updated_at": rec.updated_at,
        "imported_at": stamp,
    }


def expert_decision(
    candidate_id: str,
    round_: int,
    decision: str,
    reason: str,
    agreement: float | None,
    stamp: object,
) -> dict:
    """A ``decisions`` row made by the experts: no model, bar, quality or queue fields."""
    return {
        "candidate_id": candidate_id,
        "round": round_,
        "decision": decision,
        "reason": reason,
        "decided_by": "expert",
        "model_id": None,
        "bar": None,
        "quality": None,
        "priority": None,
        "queued": False,
        "duplicate_of": None,
        "agreement": agreement,
        "decided_at": stamp,
    }


def annotation_history(catalog: Catalog, new_rows: list[dict]) -> list[AnnotationRecord]:
    """Every annotation of the candidates ``new_rows`` touch, stored and new (new versions
    win), as records for :func:`annotation.consensus.consensus`; [] when none is touched."""
    touched = sorted({r["candidate_id"] for r in new_rows})
    if not touched:
        return []
    previous = catalog.query(
        "SELECT * FROM latest_annotations WHERE list_contains(?, candidate_id)", [touched]
    ).to_pylist()
    latest = {r["annotation_id"]: r for r in previous}
    latest.update({r["annotation_id"]: r for r in new_rows})  # new versions win
    return [_record_from_row(r) for r in latest.values()]


def _record_from_row(row: dict) -> AnnotationRecord:
    return AnnotationRecord(
        task_id=row["task_id"],
        candidate_id=row["candidate_id"],
        annotation_id=row["annotation_id"],
        annotator=row["annotator"],
        choice=row["choice"],
        corrected_text=row["corrected_text"],
        rationale=row["rationale"],
        was_cancelled=False,
        lead_time=None,
        created_at=row["created_at"],
        updated_at=row.get("updated_at"),
    )
