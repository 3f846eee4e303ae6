"""build_tasks: Label Studio import tasks with the model's guess as a prediction."""

import json
import math

import pyarrow as pa
import pytest
from label_studio_sdk.label_interface import LabelInterface

from annotation.config import AnnotationConfig
from annotation.labeling import labeling_config
from annotation.tasks import build_tasks, model_confidence

CFG = AnnotationConfig()


def rows():
    return [
        {
            "candidate_id": "c1",
            "text": "An expert text.",
            "quality": 0.75,
            "bar": 0.5,
            "learnability": 0.2,
            "loss_model": 3.1,
            "loss_ref": 3.3,
            "round": 2,
            "reason": "hard_band",
        },
        {
            "candidate_id": "c2",
            "text": "A weaker text.",
            "quality": 0.4,
            "bar": 0.5,
            "learnability": float("nan"),
            "loss_model": 4.0,
            "loss_ref": 3.9,
            "round": 2,
            "reason": "hard_band",
        },
    ]


def test_task_shape_and_prediction():
    tasks = build_tasks(rows(), "ssm-r2", CFG)
    assert tasks[0] == {
        "data": {
            "candidate_id": "c1",
            "text": "An expert text.",
            "quality": 0.75,
            "bar": 0.5,
            "learnability": 0.2,
            "loss_model": 3.1,
            "loss_ref": 3.3,
            "round": 2,
            "reason": "hard_band",
        },
        "predictions": [
            {
                "model_version": "ssm-r2",
                "score": 0.75,
                "result": [
                    {
                        "from_name": "decision",
                        "to_name": "text",
                        "type": "choices",
                        "value": {"choices": ["accept"]},
                    }
                ],
            }
        ],
    }
    second = tasks[1]["predictions"][0]
    assert second["result"][0]["value"] == {"choices": ["reject"]}
    assert second["score"] == pytest.approx(0.6)
    assert tasks[1]["data"]["learnability"] is None  # NaN is not JSON
    json.dumps(tasks, allow_nan=False)


def test_arrow_table_gives_the_same_tasks():
    table = pa.Table.from_pylist(rows())
    assert build_tasks(table, "m", CFG) == build_tasks(rows(), "m", CFG)


def test_sdk_validates_tasks_and_predictions():
    li = LabelInterface(labeling_config(CFG))
    for task in build_tasks(rows(), "m", CFG):
        assert li.validate_prediction(task["predictions"][0], return_errors=True) == []
        assert all(task["data"].get(obj.value_name) for obj in li.objects)
        # (LabelInterface.validate_task itself calls validate_prediction() without an argument
        # in label-studio-sdk 2.1.2, so it cannot be used here.)


def test_optional_fields_may_be_absent():
    (task,) = build_tasks([{"candidate_id": 7, "text": "t", "quality": 1, "bar": 1}], "m", CFG)
    assert task["data"]["candidate_id"] == "7"
    assert task["data"]["round"] is None and task["data"]["reason"] is None
    assert task["predictions"][0]["score"] == 0.5


@pytest.mark.parametrize(
    ("quality", "bar", "expected"),
    [(0.5, 0.5, 0.5), (1.0, 0.5, 1.0), (0.0, 0.5, 1.0), (0.75, 0.5, 0.75), (0.9, 0.8, 0.75)],
)
def test_model_confidence(quality, bar, expected):
    assert model_confidence(quality, bar) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"text": None}, "row 1: missing text"),
        ({"text": "  "}, "row 1: text"),
        ({"quality": 1.5}, "row 1: quality"),
        ({"bar": math.nan}, "row 1: bar"),
        ({"candidate_id": "c1"}, "row 1: candidate_id 'c1' repeats row 0"),
    ],
)
def test_bad_rows_name_the_row(patch, message):
    data = rows()
    data[1].update(patch)
    with pytest.raises(ValueError, match=message):
        build_tasks(data, "m", CFG)


def test_model_version_required():
    with pytest.raises(ValueError, match="model_version"):
        build_tasks(rows(), "", CFG)
