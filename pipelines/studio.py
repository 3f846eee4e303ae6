"""Label Studio in the loop: configuration, push, pull, status and the simulated expert.

Configuration comes from the environment, never from code or the catalog:
``LABEL_STUDIO_URL`` (no URL: the file queue stays the default) and
``LABEL_STUDIO_API_KEY`` (a legacy token or a personal access token), or, when
``LABEL_STUDIO_SECRET_BLOCK`` names one, a Prefect ``Secret`` block holding the token.
``LABEL_STUDIO_PROJECT`` overrides the project title (default: one per workspace).

- ``push``: the round's queued hard cases become tasks with the model's guess; the task
  ids are recorded in ``ls_tasks``. A rerun imports only what the project lacks.
- ``pull``: every annotated task comes back through the same parser and consensus as a
  file export; annotations are stored once each, so a rerun changes nothing.
- ``simulate``: answers pending hard cases from a gold column of the ingested source,
  through the server's API as a person's answer would arrive (or through the file queue
  when no server is configured).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from annotation.queue import ParseResult, parse_export, read_queue
from annotation.simulate import simulate_answers
from annotation.studio import Studio, StudioConfig
from annotation.tasks import build_tasks
from pipelines.annotate import ImportReport, import_parsed
from pipelines.catalog import SCHEMAS, Catalog, now
from pipelines.settings import Settings


def studio_from_env(catalog: Catalog, settings: Settings) -> Studio | None:
    """The configured Label Studio, or None when ``LABEL_STUDIO_URL`` is not set."""
    url = os.environ.get("LABEL_STUDIO_URL", "").strip()
    if not url:
        return None
    token = os.environ.get("LABEL_STUDIO_API_KEY", "").strip() or _token_from_block()
    if not token:
        raise ValueError(
            "LABEL_STUDIO_URL is set but no token: set LABEL_STUDIO_API_KEY, or name a Prefect "
            "Secret block holding it in LABEL_STUDIO_SECRET_BLOCK"
        )
    digest = hashlib.sha256(str(catalog.home).encode()).hexdigest()[:8]
    title = os.environ.get("LABEL_STUDIO_PROJECT") or f"datawall {catalog.home.name} {digest}"
    return Studio(
        StudioConfig(url=url.rstrip("/"), project_title=title), token, settings.annotation
    )


def _token_from_block() -> str | None:
    name = os.environ.get("LABEL_STUDIO_SECRET_BLOCK", "").strip()
    if not name:
        return None
    from prefect.blocks.system import Secret

    return Secret.load(name).get()


@dataclass
class PushReport:
    server: str
    project_id: int
    tasks: int
    imported: int
    recorded: int


def push(
    catalog: Catalog, settings: Settings, studio: Studio, round_: int, model_id: str
) -> PushReport:
    """Send every queued, unanswered hard case to Label Studio (idempotent)."""
    rows = catalog.named("queued_tasks", {"round": None}).to_pylist()
    tasks = build_tasks(rows, model_version=model_id, cfg=settings.annotation)
    project_id = studio.ensure_project()
    mapping, imported = studio.push(project_id, tasks)
    recorded = record_tasks(catalog, studio, project_id, mapping, round_)
    return PushReport(studio.cfg.url, project_id, len(tasks), imported, recorded)


def record_tasks(
    catalog: Catalog, studio: Studio, project_id: int, mapping: dict[str, int], round_: int
) -> int:
    """Record in ``ls_tasks`` the candidate → task ids of ``project_id`` not recorded yet."""
    known = set(
        catalog.query(
            "SELECT candidate_id FROM ls_tasks WHERE project_id = ? AND server = ?",
            [project_id, studio.cfg.url],
        )
        .column(0)
        .to_pylist()
    )
    new = sorted((cid, tid) for cid, tid in mapping.items() if cid not in known)
    if new:
        stamp = now()
        table = pa.Table.from_pylist(
            [
                {
                    "candidate_id": cid,
                    "task_id": tid,
                    "project_id": project_id,
                    "server": studio.cfg.url,
                    "round": round_,
                    "pushed_at": stamp,
                }
                for cid, tid in new
            ],
            SCHEMAS["ls_tasks"],
        )
        key = "push-" + hashlib.sha256(json.dumps(new).encode()).hexdigest()[:16]
        catalog.write("ls_tasks", table, key)
    return len(new)


def pull(catalog: Catalog, settings: Settings, studio: Studio) -> ImportReport:
    """Bring back what changed on the server since the last pull; store only new annotations.

    The watermark is the latest task ``updated_at`` the server reported (``ls_pulls``),
    minus ``pull_overlap_s`` (a second) of overlap; annotations already stored are skipped by id, so the
    overlap costs nothing and a crash between import and watermark loses nothing.
    """
    return pull_project(
        catalog,
        studio,
        lambda tasks: parse_export(tasks, settings.annotation),
        import_parsed,
    )


def pull_project(
    catalog: Catalog,
    studio: Studio,
    parse: Callable[[list[dict[str, Any]]], ParseResult],
    store: Callable[[Catalog, ParseResult, str, str, int], ImportReport],
) -> ImportReport:
    """:func:`pull` for any project: ``parse`` reads the tasks, ``store`` imports them."""
    project_id = studio.ensure_project()
    last = catalog.scalar(
        "SELECT max(watermark) FROM ls_pulls WHERE server = ? AND project_id = ?",
        [studio.cfg.url, project_id],
    )
    since = None if last is None else last - dt.timedelta(seconds=studio.cfg.pull_overlap_s)
    tasks, latest = studio.pull(project_id, since=since)
    parsed = parse(tasks)
    fingerprint = sorted(
        (r.candidate_id, str(r.annotation_id), r.updated_at or "") for r in parsed.records
    )
    key = "pull-" + hashlib.sha256(json.dumps([project_id, fingerprint]).encode()).hexdigest()[:16]
    origin = f"{studio.cfg.url} project {project_id}"
    if catalog.exists("annotations", key):
        report = ImportReport(
            file=origin, annotations_read=len(parsed.records), already_imported=True
        )
    else:
        report = store(catalog, parsed, origin, key, catalog.current_round())
    if latest is not None and (last is None or latest > last):
        row = {
            "server": studio.cfg.url,
            "project_id": project_id,
            "watermark": latest,
            "tasks": len(tasks),
            "annotations_new": report.annotations_new,
            "pulled_at": now(),
        }
        catalog.write("ls_pulls", pa.Table.from_pylist([row], SCHEMAS["ls_pulls"]), key)
    return report


def pending_gold(catalog: Catalog, oracle_field: str) -> dict[str, str]:
    """Gold answers for queued hard cases no expert has answered yet."""
    rows = catalog.named("pending_gold", [f"$.{oracle_field}"]).to_pylist()
    missing = [r["candidate_id"] for r in rows if r["gold"] not in ("accept", "reject")]
    if missing:
        raise ValueError(
            f"{len(missing)} pending candidate(s) have no accept/reject in field "
            f"{oracle_field!r} (first: {missing[0]})"
        )
    return {r["candidate_id"]: r["gold"] for r in rows}


def simulate(
    catalog: Catalog,
    settings: Settings,
    studio: Studio | None,
    oracle_field: str,
    *,
    annotators: int = 1,
    noise: float = 0.0,
    noisy: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Answer every pending hard case from ``oracle_field``, as ``annotators`` experts.

    The first ``noisy`` annotators (default: all) flip the gold answer with probability
    ``noise``. With a server, answers are created through its API and pulled back; without
    one, they go through the file-queue export path.
    """
    gold = pending_gold(catalog, oracle_field)
    noisy = annotators if noisy is None else noisy
    if not gold:
        return {"answered": 0, "annotations": 0}
    if studio is None:
        tasks = [t for t in _queued_tasks(catalog) if t["data"]["candidate_id"] in gold]
        answered = simulate_answers(tasks, gold, annotators=annotators, noise=0.0, seed=seed)
        _flip(answered, gold, noise, noisy, seed, settings)
        parsed = parse_export(answered, settings.annotation)
        key = (
            "simulate-"
            + hashlib.sha256(json.dumps(answered, sort_keys=True).encode()).hexdigest()[:16]
        )
        report = import_parsed(catalog, parsed, "simulated experts", key, catalog.current_round())
        return {"answered": len(tasks), "annotations": report.annotations_new}
    project_id = studio.ensure_project()
    ids = studio.task_ids(project_id)
    users = studio.ensure_users(annotators)
    rng = np.random.default_rng(seed)
    created = 0
    answered_already = {t["data"].get("candidate_id") for t in studio.pull(project_id)[0]}
    for cid in sorted(gold):
        if cid not in ids or cid in answered_already:
            continue
        for k, user in enumerate(users):
            choice = gold[cid]
            if k < noisy and rng.random() < noise:
                choice = "reject" if choice == "accept" else "accept"
            studio.answer(ids[cid], choice, user, rationale=f"simulated expert {k + 1}")
            created += 1
    report = pull(catalog, settings, studio)
    return {"answered": created // max(annotators, 1), "annotations": report.annotations_new}


def _queued_tasks(catalog: Catalog) -> list[dict[str, Any]]:
    tasks = []
    for path in sorted((catalog.home / "annotations" / "queue").glob("round-*.json")):
        if not path.name.endswith("-pairs.json"):  # pairwise tasks: pipelines.annotate_pairs
            tasks.extend(read_queue(path))
    return tasks


def _flip(
    answered: list[dict[str, Any]],
    gold: dict[str, str],
    noise: float,
    noisy: int,
    seed: int,
    settings: Settings,
) -> None:
    """Flip the first ``noisy`` annotators' choices with probability ``noise``, in place."""
    rng = np.random.default_rng(seed)
    for task in answered:
        for k, ann in enumerate(task["annotations"]):
            if k < noisy and rng.random() < noise:
                for region in ann["result"]:
                    if region.get("from_name") == settings.annotation.from_name:
                        truth = gold[task["data"]["candidate_id"]]
                        region["value"]["choices"] = ["reject" if truth == "accept" else "accept"]


def status(catalog: Catalog, studio: Studio | None) -> dict[str, Any]:
    """Queue counts from the catalog, plus the server's view when one is configured."""
    out: dict[str, Any] = {"server": None}
    if studio is None:
        return out
    out["server"] = studio.cfg.url
    try:
        project_id = studio.ensure_project()
        out["project_id"] = project_id
        out["tasks_on_server"] = len(studio.task_ids(project_id))
        out["annotated_on_server"] = len(studio.pull(project_id)[0])
        out["reachable"] = True
    except Exception as exc:  # noqa: BLE001 - status reports, it does not fail
        out["reachable"] = False
        out["error"] = str(exc)
    out["recorded_tasks"] = catalog.scalar(
        "SELECT count(*) FROM ls_tasks WHERE server = ?", [studio.cfg.url]
    )
    return out
