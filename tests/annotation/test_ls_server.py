"""A real Label Studio server: project, tasks with predictions, an annotation, an outage."""

from __future__ import annotations

import httpx
import pytest
from label_studio_sdk import LabelStudio

LABEL_CONFIG = """
<View>
  <Text name="text" value="$text"/>
  <Choices name="verdict" toName="text" choice="single">
    <Choice value="accept"/>
    <Choice value="reject"/>
  </Choices>
</View>
"""


def _choice(value: str) -> list[dict]:
    return [
        {
            "from_name": "verdict",
            "to_name": "text",
            "type": "choices",
            "value": {"choices": [value]},
        }
    ]


@pytest.mark.integration
def test_label_studio_round_trip_and_outage(label_studio):
    client = LabelStudio(base_url=label_studio.url, api_key=label_studio.token)

    project = client.projects.create(title="datawall smoke", label_config=LABEL_CONFIG)
    imported = client.projects.import_tasks(
        id=project.id,
        request=[
            {
                "data": {"text": "a clean sample", "sample_id": "s1"},
                "predictions": [{"result": _choice("accept"), "model_version": "m1", "score": 0.9}],
            },
            {
                "data": {"text": "a noisy sample", "sample_id": "s2"},
                "predictions": [{"result": _choice("reject"), "model_version": "m1", "score": 0.6}],
            },
        ],
        return_task_ids=True,
    )
    assert imported.task_count == 2
    assert len(imported.task_ids) == 2

    me = client.users.whoami()
    task_id = imported.task_ids[0]
    annotation = client.annotations.create(
        id=task_id, result=_choice("reject"), completed_by=me.id, lead_time=1.5
    )
    assert annotation.task == task_id

    tasks = {task.id: task for task in client.tasks.list(project=project.id)}
    assert set(tasks) == set(imported.task_ids)
    assert {t.data["sample_id"] for t in tasks.values()} == {"s1", "s2"}
    assert all(len(t.predictions) == 1 for t in tasks.values())
    annotated = tasks[task_id].annotations
    assert [a["id"] for a in annotated] == [annotation.id]
    assert annotated[0]["result"][0]["value"]["choices"] == ["reject"]
    assert annotated[0]["completed_by"] == me.id

    url = label_studio.url
    label_studio.stop()
    try:
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{url}/api/projects/", timeout=2)
    finally:
        label_studio.start()

    assert label_studio.url == url
    assert client.projects.get(id=project.id).title == "datawall smoke"
    assert [a.id for a in client.annotations.list(id=task_id)] == [annotation.id]
