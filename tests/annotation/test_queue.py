"""File queue: atomic import files; Label Studio JSON export parsing with per-annotation errors."""

import json

import pytest

from annotation.queue import (
    AnnotationFormatError,
    parse_export,
    read_queue,
    write_queue,
)


def choice(value, name="decision"):
    return {"from_name": name, "to_name": "text", "type": "choices", "value": {"choices": [value]}}


def textarea(name, *lines):
    return {
        "from_name": name,
        "to_name": "text",
        "type": "textarea",
        "value": {"text": list(lines)},
    }


def annotation(ann_id, user, *result, cancelled=False, updated="2024-01-01T00:00:00Z"):
    return {
        "id": ann_id,
        "completed_by": user,
        "result": list(result),
        "was_cancelled": cancelled,
        "lead_time": 4.5,
        "created_at": updated,
        "updated_at": updated,
    }


def task(task_id, cid, *annotations, text="Original text."):
    return {
        "id": task_id,
        "data": {"candidate_id": cid, "text": text},
        "annotations": list(annotations),
    }


def test_write_queue_is_atomic_and_round_trips(tmp_path):
    tasks = [{"data": {"candidate_id": "a", "text": "é – “quoted”"}, "predictions": []}]
    path = write_queue(tmp_path / "queue" / "round-1.json", tasks)
    assert read_queue(path) == tasks
    assert json.loads(path.read_text(encoding="utf-8")) == tasks
    assert sorted(p.name for p in path.parent.iterdir()) == ["round-1.json"]  # no temp left

    with pytest.raises(ValueError, match="task 0"):
        write_queue(path, [{"no_data": 1}])
    with pytest.raises(ValueError):
        write_queue(path, [{"data": {"x": float("nan")}}])  # not JSON
    assert read_queue(path) == tasks  # the old file survives a failed write
    assert sorted(p.name for p in path.parent.iterdir()) == ["round-1.json"]


def test_parse_export_fields(tmp_path):
    export = [
        task(
            11,
            "c1",
            annotation(
                101,
                5,
                choice("accept"),
                textarea("corrected_text", "Fixed text."),
                textarea("rationale", "Clear", "and useful."),
            ),
            annotation(
                102,
                {"id": 6, "email": "b@x.org", "first_name": "B"},
                choice("reject"),
                textarea("corrected_text", "  Original text. "),  # unchanged → no correction
            ),
            annotation(103, 7, choice("accept"), cancelled=True),
        ),
        {"id": 12, "data": {"candidate_id": "c2", "text": "t"}},  # not annotated yet
    ]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export), encoding="utf-8")
    result = parse_export(path)
    assert result.errors == []
    first, second = result.records
    assert (first.task_id, first.candidate_id, first.annotation_id, first.annotator) == (
        11,
        "c1",
        101,
        "5",
    )
    assert first.choice == "accept"
    assert first.corrected_text == "Fixed text."
    assert first.rationale == "Clear\nand useful."
    assert first.lead_time == 4.5 and first.created_at == "2024-01-01T00:00:00Z"
    assert second.annotator == "6" and second.choice == "reject"
    assert second.corrected_text is None and second.rationale is None
    with_cancelled = parse_export(export, include_cancelled=True).records
    assert [r.was_cancelled for r in with_cancelled] == [False, False, True]


def test_malformed_annotations_are_reported_and_the_rest_parsed():
    export = [
        task(1, "c1", annotation(1, 1, choice("accept"))),
        task(
            2,
            "c2",
            annotation(2, 1, choice("maybe")),
            {"id": 3, "completed_by": 1, "result": "accept"},
            annotation(4, None, choice("reject")),
            "not an object",
            {"completed_by": 2, "result": [choice("accept")]},
            annotation(5, 2, {"from_name": "decision", "value": {"choices": ["accept", "reject"]}}),
            annotation(6, 3, choice("reject")),
            annotation(7, 4, textarea("rationale", "no decision given")),
        ),
    ]
    result = parse_export(export)
    assert [(r.candidate_id, r.annotation_id, r.choice) for r in result.records] == [
        ("c1", 1, "accept"),
        ("c2", 6, "reject"),
        ("c2", 7, None),
    ]
    assert [(e.task_index, e.annotation_index) for e in result.errors] == [
        (1, 0),
        (1, 1),
        (1, 2),
        (1, 3),
        (1, 4),
        (1, 5),
    ]
    problems = [e.problem for e in result.errors]
    assert "unknown choice 'maybe'" in problems[0]
    assert "'result' is not a list" in problems[1]
    assert "completed_by" in problems[2]
    assert "missing 'id'" in problems[4]
    assert "expected one choice" in problems[5]
    assert str(result.errors[0]).startswith("<export>: task 1 (candidate c2), annotation 0:")


def test_bad_file_shapes_raise_with_file_and_task(tmp_path):
    bad_json = tmp_path / "broken.json"
    bad_json.write_text("[{", encoding="utf-8")
    with pytest.raises(AnnotationFormatError, match="broken.json"):
        parse_export(bad_json)
    not_list = tmp_path / "object.json"
    not_list.write_text('{"tasks": []}', encoding="utf-8")
    with pytest.raises(AnnotationFormatError, match="object.json: expected a list"):
        parse_export(not_list)
    no_id = tmp_path / "no_id.json"
    no_id.write_text(json.dumps([task(1, "c1"), {"data": {"text": "x"}}]), encoding="utf-8")
    with pytest.raises(AnnotationFormatError, match=r"no_id.json: task 1: data.candidate_id"):
        parse_export(no_id)
    with pytest.raises(AnnotationFormatError, match="task 0: 'annotations' is not a list"):
        parse_export([{"data": {"candidate_id": "c", "text": "t"}, "annotations": {}}])
