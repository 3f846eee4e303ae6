"""The expert loop against a real Label Studio server on 127.0.0.1 (see tests/ls_server.py)."""

from __future__ import annotations

import dataclasses
import json

import pytest
from typer.testing import CliRunner

from annotation.studio import Studio, StudioConfig, StudioError, _plain
from pipelines import studio as studio_step
from pipelines.catalog import Catalog
from pipelines.cli import app
from pipelines.flows import annotation_pull, curation_round
from pipelines.settings import load_settings, save_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def all_hard(tiny_home):
    """Every rule-passing candidate is a hard case (a band wider than the log-odds range)."""
    save_settings(tiny_home, load_settings(tiny_home).with_overrides({"route.margin": 30.0}))
    return tiny_home


def counts(catalog: Catalog, server: Studio) -> tuple[int, int, int, int]:
    project = server.ensure_project()
    on_server = server.task_ids(project)
    return (
        len(on_server),
        catalog.scalar("SELECT count(*) FROM ls_tasks"),
        catalog.scalar("SELECT count(*) FROM annotations"),
        catalog.scalar("SELECT count(*) FROM latest_decisions WHERE decided_by = 'expert'"),
    )


def test_round_with_three_experts_one_noisy(harness, label_studio, all_hard, monkeypatch):
    monkeypatch.setenv("LABEL_STUDIO_URL", label_studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)
    catalog = Catalog(all_hard)
    settings = load_settings(all_hard)
    result = curation_round(home=str(all_hard), budget=6)
    pushed = result["queue"]["label_studio"]
    assert (pushed["tasks"], pushed["imported"], pushed["recorded"]) == (6, 6, 6)
    server = studio_step.studio_from_env(catalog, settings)
    assert counts(catalog, server) == (6, 6, 0, 0)
    # the model's guess travels with each task as a prediction
    project = server.ensure_project()
    tasks = list(server.client.tasks.list(project=project, fields="all"))
    assert all(
        t.predictions and _plain(t.predictions[0])["model_version"] == result["model_id"]
        for t in tasks
    )

    runner = CliRunner()
    args = ["annotate", "simulate", "--oracle-field", "gold", "--annotators", "3"]
    args += ["--noise", "1.0", "--noisy", "1", "--home", str(all_hard)]
    out = runner.invoke(app, args, catch_exceptions=False)
    assert json.loads(out.stdout) == {"answered": 6, "annotations": 18}
    assert counts(catalog, server) == (6, 6, 18, 6)
    experts = catalog.query(
        "SELECT l.decision, l.agreement, json_extract_string(c.meta, '$.gold') AS gold "
        "FROM latest_decisions l JOIN candidates c USING (candidate_id) WHERE l.decided_by = 'expert'"
    ).to_pylist()
    assert all(e["decision"] == e["gold"] and abs(e["agreement"] - 2 / 3) < 1e-9 for e in experts)
    agreement = catalog.query("SELECT annotator, agreement FROM annotator_agreement").to_pylist()
    assert sorted(a["agreement"] for a in agreement) == [0.0, 1.0, 1.0]

    # the token is nowhere in the workspace: not in the catalog, the queue or the logs
    for path in all_hard.rglob("*"):
        if path.is_file():
            assert label_studio.token.encode() not in path.read_bytes(), path

    # a rerun of push and pull changes nothing
    again = studio_step.push(catalog, settings, server, catalog.current_round(), "m")
    assert (again.imported, again.recorded) == (0, 0)
    assert annotation_pull(home=str(all_hard)) == {
        "label_studio_annotations_new": 0,
        "decisions": 0,
    }
    assert counts(catalog, server) == (6, 6, 18, 6)

    # pulls are incremental: a later answer on one task brings back that task alone
    # (overlap 0 here so the window starts exactly at the watermark)
    exact = Studio(
        dataclasses.replace(server.cfg, pull_overlap_s=0.0), label_studio.token, settings.annotation
    )
    one = sorted(server.task_ids(project).items())[0]
    server.answer(one[1], "accept", server.ensure_users(4)[-1])
    later = studio_step.pull(catalog, settings, exact)
    assert (later.annotations_read, later.annotations_new) == (4, 1)
    assert catalog.scalar("SELECT count(*) FROM ls_pulls") == 2

    # an expert who edits an answer after it was pulled: the new version counts
    noisy_user = server.ensure_users(1)[0]
    gold = {
        r["candidate_id"]: r["g"]
        for r in catalog.query(
            "SELECT candidate_id, json_extract_string(meta, '$.gold') AS g FROM candidates"
        ).to_pylist()
    }
    task = next(t for t in server.pull(project)[0] if t["data"]["candidate_id"] != one[0])
    mine = next(a for a in task["annotations"] if a["completed_by"] == noisy_user)
    server.client.annotations.update(
        id=mine["id"],
        result=[
            {
                "from_name": "decision",
                "to_name": "text",
                "type": "choices",
                "value": {"choices": [gold[task["data"]["candidate_id"]]]},
            }
        ],
    )
    edited = studio_step.pull(catalog, settings, exact)
    assert edited.annotations_new == 1
    assert (
        catalog.scalar(
            "SELECT agreement FROM latest_decisions WHERE candidate_id = ?",
            [task["data"]["candidate_id"]],
        )
        == 1.0
    )
    assert catalog.scalar("SELECT count(*) FROM latest_annotations") == 19

    # the experts' accepts train the next model
    second = curation_round(home=str(all_hard), budget=0)
    accepted_by_experts = catalog.scalar(
        "SELECT count(*) FROM accepted_texts WHERE decided_by = 'expert'"
    )
    assert accepted_by_experts == sum(e["gold"] == "accept" for e in experts)
    assert second["round"] == 2


def test_push_interrupted_by_an_outage_finishes_after_restart(harness, label_studio, all_hard):
    catalog = Catalog(all_hard)
    settings = load_settings(all_hard)
    curation_round(home=str(all_hard), budget=20)  # no server configured: file queue only
    round_ = catalog.current_round() - 1
    cfg = StudioConfig(
        url=label_studio.url, project_title="outage test", batch_size=5, retries=1, backoff_s=0.1
    )
    server = Studio(cfg, label_studio.token, settings.annotation)
    batches = []

    def stop_after_first(n: int) -> None:
        batches.append(n)
        if len(batches) == 1:
            label_studio.stop()

    with pytest.raises(StudioError, match="failed") as err:
        project = server.ensure_project()
        server.push(project, [], on_batch=None)  # warm: the project exists
        studio_step_push_with_hook(catalog, settings, server, round_, stop_after_first)
    assert label_studio.token not in str(err.value)
    assert batches == [5]
    status = studio_step.status(catalog, server)
    assert status["reachable"] is False

    label_studio.start()
    report = studio_step.push(catalog, settings, server, round_, "m")
    assert report.tasks == 20 and report.imported == 15
    assert counts(catalog, server)[:2] == (20, 20)
    rerun = studio_step.push(catalog, settings, server, round_, "m")
    assert (rerun.imported, rerun.recorded) == (0, 0)
    assert counts(catalog, server)[:2] == (20, 20)


def studio_step_push_with_hook(catalog, settings, server, round_, hook):
    """pipelines.studio.push with a callback after each imported batch."""
    original = server.push

    def push(project_id, tasks, *, on_batch=None):
        return original(project_id, tasks, on_batch=hook)

    server.push = push
    try:
        return studio_step.push(catalog, settings, server, round_, "m")
    finally:
        server.push = original


def test_personal_access_tokens_work_like_legacy_tokens(label_studio, tiny_home, monkeypatch):
    from label_studio_sdk import LabelStudio

    pat = LabelStudio(base_url=label_studio.url, api_key=label_studio.token).tokens.create().token
    assert pat.count(".") == 2  # a JWT refresh token, not the legacy token
    monkeypatch.setenv("LABEL_STUDIO_URL", label_studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", pat)
    catalog = Catalog(tiny_home)
    server = studio_step.studio_from_env(catalog, load_settings(tiny_home))
    project = server.ensure_project()
    assert server.ensure_project() == project  # found again by title, not created twice
    assert server.task_ids(project) == {}
    assert pat not in repr(server)
