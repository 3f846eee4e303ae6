"""The file queue: Label Studio import files out, Label Studio JSON exports in.

Without a Label Studio server, :func:`write_queue` writes the tasks as an import file
(a JSON list of tasks, https://labelstud.io/guide/tasks#Basic-Label-Studio-JSON-format) that
can be loaded in the UI later; :func:`parse_export` reads the project's "JSON" export (a list
of tasks, each with ``annotations``, https://labelstud.io/guide/task_format) back into flat
:class:`AnnotationRecord` rows.

Export annotation fields used: ``id``, ``completed_by`` (an int user id, or an object with
``id``/``email`` in some export shapes), ``result`` (regions with ``from_name``, ``type`` and
``value``: ``{"choices": [..]}`` for Choices, ``{"text": [..]}`` for TextArea),
``was_cancelled`` (a skipped task), ``lead_time`` (seconds), ``created_at``, ``updated_at``.

Errors: a file that is not a JSON list, or a task without ``data.candidate_id`` / ``data.text``,
raises :class:`AnnotationFormatError` naming the file and task index. A malformed single
annotation does not stop the file: it is returned in ``ParseResult.errors`` and the rest is read.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from annotation.config import AnnotationConfig


class AnnotationFormatError(ValueError):
    """A Label Studio file whose shape cannot be read; the message names file and task."""


@dataclass(frozen=True)
class AnnotationRecord:
    """One annotation of one task, flattened. ``annotator`` is the user id as a string."""

    task_id: int | None
    candidate_id: str
    annotation_id: int | str
    annotator: str
    choice: str | None
    corrected_text: str | None
    rationale: str | None
    was_cancelled: bool
    lead_time: float | None
    created_at: str | None
    updated_at: str | None


@dataclass(frozen=True)
class AnnotationError:
    """An annotation that was skipped, and why."""

    source: str
    task_index: int
    annotation_index: int
    candidate_id: str
    problem: str

    def __str__(self) -> str:
        return (
            f"{self.source}: task {self.task_index} (candidate {self.candidate_id}), "
            f"annotation {self.annotation_index}: {self.problem}"
        )


@dataclass(frozen=True)
class ParseResult:
    records: list[AnnotationRecord]
    errors: list[AnnotationError]


def write_queue(path: Path, tasks: list[dict[str, Any]]) -> Path:
    """Write ``tasks`` as a Label Studio import file, atomically (temp file + ``os.replace``)."""
    path = Path(path)
    for i, task in enumerate(tasks):
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise ValueError(f"task {i}: expected a dict with a 'data' object")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(tasks, f, ensure_ascii=False, indent=1, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_queue(path: Path) -> list[dict[str, Any]]:
    """The tasks of an import (or export) file written by :func:`write_queue` or Label Studio."""
    tasks, _ = _load(Path(path))
    return tasks


def parse_export(
    obj_or_path: list[dict[str, Any]] | Path | str,
    cfg: AnnotationConfig | None = None,
    *,
    include_cancelled: bool = False,
) -> ParseResult:
    """Flatten a Label Studio JSON export into one record per (non-cancelled) annotation.

    ``corrected_text`` is None when empty or equal to the task's text (ignoring surrounding
    whitespace); ``choice`` is None when the annotation has no decision region. Tasks without
    ``annotations`` give no records.
    """
    cfg = AnnotationConfig() if cfg is None else cfg
    tasks, source = _export_tasks(obj_or_path)
    records: list[AnnotationRecord] = []
    errors: list[AnnotationError] = []
    for t, task in enumerate(tasks):
        where = f"{source}: task {t}"
        data, candidate_id = _task_data(task, where)
        text = data.get("text")
        if not isinstance(text, str):
            raise AnnotationFormatError(f"{where}: data.text missing or not a string")
        annotations = task.get("annotations")
        annotations = [] if annotations is None else annotations
        if not isinstance(annotations, list):
            raise AnnotationFormatError(f"{where}: 'annotations' is not a list")
        task_id = task.get("id") if isinstance(task.get("id"), int) else None
        for a, ann in enumerate(annotations):
            try:
                record = _record(ann, task_id, str(candidate_id), text, cfg)
            except _BadAnnotation as exc:
                errors.append(AnnotationError(source, t, a, str(candidate_id), str(exc)))
                continue
            if include_cancelled or not record.was_cancelled:
                records.append(record)
    return ParseResult(records, errors)


class _BadAnnotation(Exception):
    pass


def _export_tasks(obj_or_path: list[dict[str, Any]] | Path | str) -> tuple[list[Any], str]:
    """The tasks of an export given as a file or as its parsed JSON, and a source name for
    messages (the path, or ``<export>``); anything but a list of tasks raises."""
    if isinstance(obj_or_path, str | os.PathLike):
        return _load(Path(obj_or_path))
    if not isinstance(obj_or_path, list):
        raise AnnotationFormatError("<export>: expected a list of tasks")
    return obj_or_path, "<export>"


def _task_data(task: Any, where: str) -> tuple[dict[str, Any], str | int]:
    """A task's ``data`` object and its ``candidate_id``; a task without them raises."""
    if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
        raise AnnotationFormatError(f"{where}: expected an object with a 'data' object")
    data = task["data"]
    candidate_id = data.get("candidate_id")
    if not isinstance(candidate_id, str | int) or isinstance(candidate_id, bool):
        raise AnnotationFormatError(f"{where}: data.candidate_id missing or not a string")
    return data, candidate_id


def _load(path: Path) -> tuple[list[Any], str]:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AnnotationFormatError(f"{path}: cannot read a JSON document ({exc})") from exc
    if not isinstance(obj, list):
        raise AnnotationFormatError(f"{path}: expected a list of tasks, got {type(obj).__name__}")
    return obj, str(path)


def _record(
    ann: Any, task_id: int | None, candidate_id: str, text: str, cfg: AnnotationConfig
) -> AnnotationRecord:
    if not isinstance(ann, dict):
        raise _BadAnnotation(f"expected an object, got {type(ann).__name__}")
    annotation_id = ann.get("id")
    if not isinstance(annotation_id, int | str) or isinstance(annotation_id, bool):
        raise _BadAnnotation("missing 'id'")
    annotator = _annotator(ann.get("completed_by"))
    result = ann.get("result", [])
    if not isinstance(result, list):
        raise _BadAnnotation("'result' is not a list")
    choice = corrected = rationale = None
    for r, region in enumerate(result):
        if not isinstance(region, dict) or not isinstance(region.get("value"), dict):
            raise _BadAnnotation(f"result {r}: expected an object with a 'value' object")
        name, value = region.get("from_name"), region["value"]
        if name == cfg.from_name:
            choices = value.get("choices")
            if not isinstance(choices, list) or len(choices) != 1:
                raise _BadAnnotation(f"result {r}: expected one choice, got {choices!r}")
            if choices[0] not in cfg.choices:
                raise _BadAnnotation(
                    f"result {r}: unknown choice {choices[0]!r}, expected one of {cfg.choices}"
                )
            choice = choices[0]
        elif name in (cfg.corrected_text_name, cfg.rationale_name):
            lines = value.get("text")
            if isinstance(lines, str):
                lines = [lines]
            if not isinstance(lines, list) or not all(isinstance(x, str) for x in lines):
                raise _BadAnnotation(f"result {r}: {name} text must be a list of strings")
            joined = "\n".join(lines).strip() or None
            if name == cfg.corrected_text_name:
                corrected = None if joined == text.strip() else joined
            else:
                rationale = joined
    lead_time = ann.get("lead_time")
    return AnnotationRecord(
        task_id=task_id,
        candidate_id=candidate_id,
        annotation_id=annotation_id,
        annotator=annotator,
        choice=choice,
        corrected_text=corrected,
        rationale=rationale,
        was_cancelled=bool(ann.get("was_cancelled", False)),
        lead_time=float(lead_time) if isinstance(lead_time, int | float) else None,
        created_at=_str_or_none(ann.get("created_at")),
        updated_at=_str_or_none(ann.get("updated_at")),
    )


def _annotator(completed_by: Any) -> str:
    """User id as a string; the id rather than the email, so that int and object forms agree."""
    if isinstance(completed_by, dict):
        for key in ("id", "email"):
            value = completed_by.get(key)
            if isinstance(value, int | str) and not isinstance(value, bool) and str(value):
                return str(value)
        raise _BadAnnotation("'completed_by' object has neither 'id' nor 'email'")
    if (
        isinstance(completed_by, int | str)
        and not isinstance(completed_by, bool)
        and completed_by != ""
    ):
        return str(completed_by)
    raise _BadAnnotation(f"missing or bad 'completed_by': {completed_by!r}")


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
