"""Crash tests that really kill: each step runs as a subprocess that gets ``SIGKILL``.

For every step (ingest, score + route, train, Label Studio push, Label Studio pull) and
seed, a copy of the same starting workspace runs the step's ``datawall`` commands in
``crash_child.py``, which sends itself ``SIGKILL`` at the K-th durable write (K drawn from
the seed among all the write points an uninterrupted run goes through). The same commands
then run again to completion, and the catalog must equal the one of an uninterrupted run:
the same rows, none lost, none duplicated; every Parquet file readable; no temporary file
left anywhere in the workspace. ``KILLS`` collects the counts, printed at the end.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import modelling
from pipelines.catalog import Catalog
from pipelines.demo_corpus import build_demo_corpus
from pipelines.ingest import ingest
from pipelines.recovery import temp_file_pid
from pipelines.settings import Settings, load_settings, save_settings

# each step: 7 to 8 subprocesses that import torch; minutes on 2 busy cores
pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("crash_child.py")
SEEDS = tuple(range(int(os.environ.get("DATAWALL_CRASH_SEEDS", "3"))))  # kills per step
# Columns that differ between two correct runs: clocks, the workspace's own path, timings.
# ls_pulls.annotations_new counts what that one run stored: a rerun after a kill that came
# after the annotations were written stores nothing new (and must not).
VOLATILE = {"path", "wall_s", "quality_model", "export_file", "annotations_new"}
# step -> (kills, rows lost, rows duplicated), reported by the last test of the module
KILLS: dict[str, list[tuple[int, int, int]]] = {}
KILLED_AT: list[str] = []  # where each kill landed


# -- running a step -----------------------------------------------------------------------
def run_child(
    args: list[str], *, kill_at: int = 0, log: Path | None = None, env: dict | None = None
) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)}
    full_env["DATAWALL_KILL_AT"] = str(kill_at)
    full_env.pop("DATAWALL_KILL_LOG", None)
    if log is not None:
        full_env["DATAWALL_KILL_LOG"] = str(log)
    return subprocess.run(
        [sys.executable, str(CHILD), *args],
        env=full_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def completed(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc


def with_home(commands: list[list[str]], home: Path) -> list[str]:
    """``[[cmd, args...], ...]`` → crash_child argv with ``--home`` on each command."""
    argv: list[str] = []
    for command in commands:
        argv += [*(["+"] if argv else []), *command, "--home", str(home)]
    return argv


# -- comparing catalogs -------------------------------------------------------------------
def table_rows(catalog: Catalog, table: str) -> list[tuple]:
    """Every row of ``table`` as a tuple of its stable columns (no clocks, no paths)."""
    data = catalog.query(f"SELECT * FROM {table}")
    keep = [
        f.name
        for f in data.schema
        if f.name not in VOLATILE and not pa.types.is_timestamp(f.type) and f.name != "id"
    ]
    rows = data.select(keep).to_pylist()
    return [tuple((k, _stable(r[k])) for k in keep) for r in rows]


def _stable(value):
    return round(value, 9) if isinstance(value, float) else value


def diff(reference: list[tuple], got: list[tuple]) -> tuple[int, int]:
    """(rows lost, rows duplicated or extra), as multisets."""
    want, have = Counter(reference), Counter(got)
    return sum((want - have).values()), sum((have - want).values())


def check_files(home: Path) -> None:
    """Every Parquet file readable; no temporary or partial file anywhere in the workspace."""
    leftovers = [p for p in home.rglob("*") if temp_file_pid(p.name) is not False]
    assert not leftovers, f"temporary files left behind: {leftovers[:5]}"
    for path in (home / "lake").rglob("*.parquet"):
        pq.read_table(path)  # raises on a torn file


@dataclass
class Reference:
    """An uninterrupted run of a step: its workspace, its kill points, its tables' rows."""

    home: Path
    points: list[str]
    want: dict[str, list[tuple]]


def reference_run(
    step: str, template: Path, out: Path, commands: list[list[str]], tables: list[str], env=None
) -> Reference:
    home = out / f"{step}-ref" / "home"
    shutil.copytree(template, home)
    log = out / f"{step}-points.log"
    completed(run_child(with_home(commands, home), log=log, env=env))
    check_files(home)
    want = {t: table_rows(Catalog(home), t) for t in tables}
    return Reference(home, log.read_text().splitlines(), want)


def crash_and_rerun(
    step: str,
    template: Path,
    reference: Reference,
    out: Path,
    commands: list[list[str]],
    env_for=lambda seed: {},
) -> list[Path]:
    """Per seed: a copy of ``template`` runs ``commands``, SIGKILLed at a point drawn from
    the seed, then runs them again; its tables must equal ``reference``'s. ``env_for(seed)``
    gives the run's environment. Returns the recovered workspaces."""
    recovered = []
    points = reference.points
    for seed in SEEDS:
        home = out / f"{step}-{seed}" / "home"
        shutil.copytree(template, home)
        env = env_for(seed)
        k = random.Random(f"{step}/{seed}").randint(1, len(points))
        proc = run_child(with_home(commands, home), kill_at=k, env=env)
        assert proc.returncode == -signal.SIGKILL, (
            f"{step} seed {seed}: expected SIGKILL at point {k} ({points[k - 1]}), "
            f"got exit {proc.returncode}\n{proc.stderr[-2000:]}"
        )
        completed(run_child(with_home(commands, home), env=env))
        check_files(home)
        lost = dup = 0
        for table, want in reference.want.items():
            got = table_rows(Catalog(home), table)
            table_lost, table_dup = diff(want, got)
            assert (table_lost, table_dup) == (0, 0), (
                f"{step} killed at point {k} ({points[k - 1]}): table {table} lost "
                f"{table_lost} and duplicated {table_dup} row(s)"
            )
            lost, dup = lost + table_lost, dup + table_dup
        KILLS.setdefault(step, []).append((1, lost, dup))
        KILLED_AT.append(f"{step} seed {seed}: point {k}/{len(points)} ({points[k - 1]})")
        recovered.append(home)
    return recovered


# -- starting workspaces ------------------------------------------------------------------
@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("crash-data")
    paths = build_demo_corpus(out, seed=3, n_trusted=30, n_validation=10, n_pool=30)
    with open(paths["pool"], "a", encoding="utf-8") as fh:  # bad rows for the quarantine
        fh.write('{"id": "bad-1", "text": 42}\n{"id": "bad-2"\n\xff\n')
    return paths


def ingest_commands(sources: dict[str, Path]) -> list[list[str]]:
    return [
        ["ingest", str(sources[role]), "--role", role, "--id-field", "id"]
        for role in ("trusted", "validation", "pool")
    ]


@pytest.fixture(scope="module")
def empty_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("crash-empty") / "home"
    Catalog(home).init()
    # small batches and shards: many durable writes, so kills land between them
    from conftest import TINY  # tests/pipelines/conftest.py: the tiny model and round

    settings = Settings().with_overrides(
        {
            **TINY,
            "route.n_samples": 8,
            "route.sample_bytes": 48,
            "quality.cv_folds": 2,
            "ingest.batch_rows": 8,
            "score.shard_rows": 8,
            "route.margin": 30.0,
            "route.budget": 8,
        }
    )
    save_settings(home, settings)
    return home


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("crash")


INGEST_TABLES = ["candidates", "quarantine", "decisions"]
SCORE_TABLES = ["bars", "samples", "scores", "decisions"]


@pytest.fixture(scope="module")
def ingest_ref(workdir, empty_home, sources) -> Reference:
    return reference_run("ingest", empty_home, workdir, ingest_commands(sources), INGEST_TABLES)


@pytest.fixture(scope="module")
def ingested_home(workdir, ingest_ref) -> Path:
    """Sources ingested and the reference model trained: ready to score."""
    home = workdir / "ingested" / "home"
    shutil.copytree(ingest_ref.home, home)
    modelling.ensure_reference(Catalog(home), load_settings(home))
    return home


@pytest.fixture(scope="module")
def score_ref(workdir, ingested_home) -> Reference:
    return reference_run("score", ingested_home, workdir, [["score"], ["route"]], SCORE_TABLES)


@pytest.fixture(scope="module")
def routed_home(score_ref) -> Path:
    """Scored and routed (the score step's uninterrupted run): ready to push and to train."""
    return score_ref.home


# -- the steps ----------------------------------------------------------------------------
def test_killed_ingest(tmp_path, empty_home, sources, ingest_ref):
    crash_and_rerun("ingest", empty_home, ingest_ref, tmp_path, ingest_commands(sources))


def test_killed_score_and_route(tmp_path, ingested_home, score_ref):
    crash_and_rerun("score+route", ingested_home, score_ref, tmp_path, [["score"], ["route"]])


def test_killed_train(tmp_path, routed_home):
    reference = reference_run("train", routed_home, tmp_path, [["train"]], ["models"])
    recovered = crash_and_rerun("train", routed_home, reference, tmp_path, [["train"]])
    model_id = Catalog(reference.home).scalar("SELECT model_id FROM models WHERE role = 'current'")
    weights = (reference.home / "models" / model_id / "model.safetensors").read_bytes()
    for home in recovered:
        catalog = Catalog(home)
        assert catalog.scalar("SELECT count(*) - count(DISTINCT model_id) FROM models") == 0
        # resumed from its checkpoint, or restarted: the same weights either way
        assert (home / "models" / model_id / "model.safetensors").read_bytes() == weights


@pytest.fixture(scope="module")
def studio_env(label_studio) -> dict[str, str]:
    return {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token}


def _server_tasks(studio_env: dict[str, str], home: Path, project: str) -> list[str]:
    """Candidate ids of the tasks in Label Studio project ``project`` (one per task)."""
    from annotation.studio import Studio, StudioConfig

    settings = load_settings(home)
    server = Studio(
        StudioConfig(url=studio_env["LABEL_STUDIO_URL"], project_title=project),
        studio_env["LABEL_STUDIO_API_KEY"],
        settings.annotation,
    )
    project_id = server.ensure_project()
    return [str(t.data["candidate_id"]) for t in server.client.tasks.list(project=project_id)]


def test_killed_label_studio_push(tmp_path, routed_home, studio_env):
    """Each run pushes to a project of its own; the server must hold one task per hard case."""
    run = f"crash push {tmp_path.name}"

    def env_for(seed) -> dict[str, str]:
        return {**studio_env, "LABEL_STUDIO_PROJECT": f"{run} {seed}"}

    push = [["annotate", "push"]]
    reference = reference_run("push", routed_home, tmp_path, push, ["decisions"], env_for("ref"))
    want = sorted(
        Catalog(reference.home)
        .query("SELECT candidate_id FROM ls_tasks")["candidate_id"]
        .to_pylist()
    )
    queued = Catalog(reference.home).scalar("SELECT count(*) FROM decisions WHERE queued")
    assert want and len(want) == queued
    recovered = crash_and_rerun("push", routed_home, reference, tmp_path, push, env_for)
    for seed, home in zip(SEEDS, recovered, strict=True):
        for attempt in ("recovered", "pushed again"):
            on_server = _server_tasks(studio_env, home, f"{run} {seed}")
            recorded = Catalog(home).query("SELECT candidate_id FROM ls_tasks")
            # one task per hard case on the server, each recorded once in the catalog
            assert sorted(on_server) == want, attempt
            assert sorted(recorded["candidate_id"].to_pylist()) == want, attempt
            completed(run_child(with_home(push, home), env=env_for(seed)))


def test_killed_label_studio_pull(tmp_path, routed_home, studio_env, harness):
    """Tasks pushed and answered by two experts once; each run pulls them into its copy."""
    from prefect.settings import PREFECT_API_URL

    from annotation.studio import Studio, StudioConfig

    project = f"crash pull {tmp_path.name}"
    env = {
        **studio_env,
        "LABEL_STUDIO_PROJECT": project,
        "PREFECT_API_URL": PREFECT_API_URL.value(),
    }
    answered = tmp_path / "answered" / "home"
    shutil.copytree(routed_home, answered)
    completed(run_child(with_home([["annotate", "push"]], answered), env=env))
    server = Studio(
        StudioConfig(url=studio_env["LABEL_STUDIO_URL"], project_title=project),
        studio_env["LABEL_STUDIO_API_KEY"],
        load_settings(answered).annotation,
    )
    project_id = server.ensure_project()
    users = server.ensure_users(2)
    tasks = sorted(server.task_ids(project_id).items())
    for i, (_cid, task_id) in enumerate(tasks):
        for k, user in enumerate(users):
            server.answer(task_id, "accept" if (i + k) % 3 else "reject", user)

    pull = [["annotate", "pull"]]
    tables = ["annotations", "decisions", "ls_pulls"]
    reference = reference_run("pull", answered, tmp_path, pull, tables, env)
    n = Catalog(reference.home).scalar("SELECT count(*) FROM annotations")
    assert n == 2 * len(tasks)
    recovered = crash_and_rerun("pull", answered, reference, tmp_path, pull, lambda seed: env)
    for home in recovered:  # pulling again stores nothing new
        completed(run_child(with_home(pull, home), env=env))
        assert Catalog(home).scalar("SELECT count(*) FROM annotations") == n


def test_two_writers_at_once_one_runs_the_other_refuses(tmp_path, empty_home, sources):
    """Two ``datawall ingest`` of the same source started together on one workspace: the
    one that takes the lock is held at its first write until the other has given up; the
    other exits non-zero at once, naming the holder; the catalog equals one ingest."""
    single = tmp_path / "single" / "home"
    shutil.copytree(empty_home, single)
    ingest(Catalog(single), str(sources["pool"]), id_field="id", cfg=load_settings(single).ingest)

    home = tmp_path / "shared" / "home"
    shutil.copytree(empty_home, home)
    release = tmp_path / "release"
    argv = [sys.executable, str(CHILD), *with_home([ingest_commands(sources)[2]], home)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DATAWALL_PAUSE_UNTIL": str(release)}
    procs = [
        subprocess.Popen(
            argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    try:
        deadline = time.monotonic() + 300
        while all(p.poll() is None for p in procs) and time.monotonic() < deadline:
            time.sleep(0.1)
        finished = [p for p in procs if p.poll() is not None]
        assert len(finished) == 1, "neither writer gave up: both hold the workspace?"
        loser = finished[0]
        winner = procs[1 - procs.index(loser)]
        err = loser.stderr.read()
        assert loser.returncode != 0
        assert f"is being written by pid {winner.pid}" in " ".join(err.split()), err
        assert winner.poll() is None  # still holding the lock, paused mid-ingest
    finally:
        release.touch()
        outs = [p.communicate(timeout=300) for p in procs]
    assert winner.returncode == 0, outs
    for table in INGEST_TABLES:
        got, want = table_rows(Catalog(home), table), table_rows(Catalog(single), table)
        assert Counter(got) == Counter(want), table
    check_files(home)


def test_report_kill_counts():
    """The counts of every kill above (``pytest -s`` shows them): kills x steps, lost, duplicated."""
    if not KILLS:
        pytest.skip("no crash test ran in this session")
    total = [sum(v[i] for runs in KILLS.values() for v in runs) for i in range(3)]
    lines = [f"{'step':12s} kills lost duplicated"]
    for step, runs in KILLS.items():
        kills, lost, dup = (sum(r[i] for r in runs) for i in range(3))
        lines.append(f"{step:12s} {kills:5d} {lost:4d} {dup:10d}")
    lines.append(f"{'total':12s} {total[0]:5d} {total[1]:4d} {total[2]:10d} ({len(KILLS)} steps)")
    print("\n" + "\n".join(KILLED_AT + lines))
    assert total[1] == total[2] == 0
