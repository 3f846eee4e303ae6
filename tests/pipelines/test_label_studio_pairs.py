"""A pairwise round against a real Label Studio server on 127.0.0.1 (see tests/ls_server.py):
push, simulated experts answering on the server, pull, expert decisions and rewrites."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from pair_workspace import make_pair_home
from prefect import flow
from typer.testing import CliRunner

from annotation.pair_tasks import TASK_FIELDS
from annotation.pairwise import PairwiseConfig, pairwise_labeling_config
from annotation.studio import _plain
from pipelines import annotate_pairs
from pipelines import studio as studio_step
from pipelines.cli import app
from pipelines.flows import annotate_task, annotation_pull
from pipelines.settings import load_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXPECTED = {
    "candidate": ("accept", "expert_prefers_candidate"),
    "model": ("reject", "below_model_response"),
    "both_bad": ("reject", "both_bad"),
}


def test_pairwise_round_on_a_real_server(harness, label_studio, tmp_path, monkeypatch):
    home = tmp_path / "home"
    catalog = make_pair_home(home, 40)
    monkeypatch.setenv("LABEL_STUDIO_URL", label_studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)
    runner = CliRunner()

    pushed = runner.invoke(app, ["annotate", "push", "--home", str(home)], catch_exceptions=False)
    assert pushed.exit_code == 0, pushed.output
    assert "40 pairwise task(s)" in pushed.stdout

    # the pairwise project: its own title and config, 40 blind tasks, both orders
    server = annotate_pairs.pair_studio(studio_step.studio_from_env(catalog, load_settings(home)))
    assert server.cfg.project_title.endswith(" · pairs")
    project = server.ensure_project()
    config = server.client.projects.get(id=project).label_config
    assert config.strip() == pairwise_labeling_config(PairwiseConfig()).strip()
    tasks = list(server.client.tasks.list(project=project, fields="all"))
    assert len(tasks) == 40
    sides = {
        r["candidate_id"]: r["candidate_side"]
        for r in catalog.query("SELECT candidate_id, candidate_side FROM pair_tasks").to_pylist()
    }
    texts = {
        r["candidate_id"]: r["text"]
        for r in catalog.query("SELECT candidate_id, text FROM candidates").to_pylist()
    }
    shown_first = Counter()
    for task in tasks:
        data = dict(task.data)
        assert set(data) == set(TASK_FIELDS)  # nothing that says which side is whose
        cid = data["candidate_id"]
        assert data[f"response_{sides[cid]}"] == texts[cid]
        shown_first[data["response_a"] == texts[cid]] += 1
        for pred in task.predictions or []:
            assert set(_plain(pred)["result"][0]["value"]["choices"]) <= {"a", "b"}
    assert shown_first[True] >= 8 and shown_first[False] >= 8  # both orders, ~half each

    # three simulated experts answer on the server (one always wrong), then a pull
    args = ["annotate", "simulate", "--oracle-field", "gold", "--rewrite-field", "gold_response"]
    args += ["--annotators", "3", "--noise", "1.0", "--noisy", "1", "--home", str(home)]
    simulated = runner.invoke(app, args, catch_exceptions=False)
    assert simulated.exit_code == 0, simulated.output
    result = json.loads(simulated.stdout)
    assert result["pairs"] == {"answered": 40, "annotations": 120, "rewrites": 13}
    on_server = server.pull(project)[0]
    assert sum(len(t["annotations"]) for t in on_server) == 120

    # mapped back right whichever side showed the candidate
    rows = catalog.query(
        "SELECT l.candidate_id, l.decision, l.reason, l.agreement, "
        "json_extract_string(c.meta, '$.gold') AS gold "
        "FROM latest_decisions l JOIN candidates c USING (candidate_id) "
        "WHERE l.decided_by = 'expert' AND c.source <> 'expert-rewrite'"
    ).to_pylist()
    assert len(rows) == 40
    by_side = Counter()
    for r in rows:
        assert (r["decision"], r["reason"]) == EXPECTED[r["gold"]], r
        assert abs(r["agreement"] - 2 / 3) < 1e-9
        by_side[sides[r["candidate_id"]]] += 1
    assert set(by_side) == {"a", "b"}
    stored = Counter(catalog.query("SELECT choice FROM annotations").column(0).to_pylist())
    assert set(stored) <= {"candidate", "model", "both_bad"} and sum(stored.values()) == 120

    # each rewrite is an accepted pair candidate that says where it came from
    rewrites = catalog.query(
        "SELECT c.candidate_id, c.prompt, c.text, c.meta, c.kind, c.role, l.decision, l.reason "
        "FROM candidates c JOIN latest_decisions l USING (candidate_id) "
        "WHERE c.source = 'expert-rewrite'"
    ).to_pylist()
    assert len(rewrites) == 13
    annotation_ids = {str(a["id"]) for t in on_server for a in t["annotations"]}
    prompts = {
        r["candidate_id"]: r["prompt"]
        for r in catalog.query("SELECT candidate_id, prompt FROM candidates").to_pylist()
    }
    for r in rewrites:
        meta = json.loads(r["meta"])
        assert (r["kind"], r["role"], r["decision"], r["reason"]) == (
            "pair",
            "pool",
            "accept",
            "expert_rewrite",
        )
        assert r["prompt"] == prompts[meta["rewrite_of"]]
        assert meta["annotation_id"].split(":")[1] in annotation_ids

    # a second pull adds nothing
    counts = (
        catalog.scalar("SELECT count(*) FROM annotations"),
        catalog.scalar("SELECT count(*) FROM decisions"),
        catalog.scalar("SELECT count(*) FROM candidates"),
    )
    assert annotation_pull(home=str(home)) == {"label_studio_annotations_new": 0, "decisions": 0}
    assert annotate_pairs.pull(catalog, studio_step.studio_from_env(catalog, load_settings(home)))
    assert (
        catalog.scalar("SELECT count(*) FROM annotations"),
        catalog.scalar("SELECT count(*) FROM decisions"),
        catalog.scalar("SELECT count(*) FROM candidates"),
    ) == counts
    # and a second push (the round's annotate step) imports nothing
    again = push_again(str(home))
    assert again["pairs"]["label_studio"]["imported"] == 0
    assert again["pairs"]["label_studio"]["project_id"] == project
    assert len(server.task_ids(project)) == 40

    # the token is nowhere in the workspace
    for path in home.rglob("*"):
        if path.is_file():
            assert label_studio.token.encode() not in path.read_bytes(), path


@flow(name="push-again")
def push_again(home: str) -> dict:
    """The round's annotate step alone, inside a flow as in a round."""
    return annotate_task(home, 2, "m")
