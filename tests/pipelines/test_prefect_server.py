"""A real Prefect server on 127.0.0.1: deploy flows.yaml, trigger the round, see it complete."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from pipelines.catalog import Catalog

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def prefect_server(tmp_path):
    """`prefect server start` in its own PREFECT_HOME; yields the environment to talk to it."""
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(f"{env['PREFECT_API_URL']}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.time() > deadline:
                raise RuntimeError(
                    f"prefect server did not start:\n{(tmp_path / 'server.log').read_text()}"
                )
            time.sleep(1)
        yield env
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def run(cmd: list[str], env: dict, timeout: int = 180) -> str:
    result = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def test_deployed_round_runs_on_a_process_worker(prefect_server, tiny_home):
    env = {**prefect_server, "DATAWALL_HOME": str(tiny_home)}
    run([str(BIN / "prefect"), "work-pool", "create", "datawall", "--type", "process"], env)
    out = run([str(BIN / "datawall"), "deploy", "--prefect-file", str(REPO / "flows.yaml")], env)
    assert "nightly-round" in out and "hourly-annotation-pull" in out

    api = env["PREFECT_API_URL"]
    deployments = httpx.post(f"{api}/deployments/filter", json={}, timeout=10).json()
    by_name = {d["name"]: d for d in deployments}
    assert set(by_name) == {"nightly-round", "hourly-annotation-pull", "ingest"}
    assert not by_name["ingest"]["schedules"]
    nightly = by_name["nightly-round"]
    assert nightly["schedules"][0]["schedule"]["cron"] == "0 2 * * *"
    assert by_name["hourly-annotation-pull"]["schedules"][0]["schedule"]["interval"] == 3600

    out = run(
        [
            str(BIN / "prefect"),
            "deployment",
            "run",
            "curation-round/nightly-round",
            "--param",
            f"home={tiny_home}",
        ],
        env,
    )
    flow_run_id = re.search(r"UUID:\s*([0-9a-f-]{36})", out).group(1)
    worker = subprocess.run(
        [
            str(BIN / "prefect"),
            "worker",
            "start",
            "--pool",
            "datawall",
            "--type",
            "process",
            "--run-once",
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    state = httpx.get(f"{api}/flow_runs/{flow_run_id}", timeout=10).json()["state"]
    assert state["type"] == "COMPLETED", (
        f"{state}\n{worker.stdout[-3000:]}\n{worker.stderr[-3000:]}"
    )
    catalog = Catalog(tiny_home)
    assert catalog.scalar("SELECT count(*) FROM rounds") == 1
    assert catalog.scalar("SELECT count(*) FROM latest_decisions WHERE role = 'pool'") > 0
