"""Hard prompt/response pairs to experts, blind, and their answers back into the catalog.

A queued hard pair (a ``hard`` decision with ``queued``, on a ``kind = 'pair'`` candidate;
query ``queued_pairs``) becomes a pairwise task showing its prompt, the candidate's response
and the model's own response (``pair_scores.model_response``) as "A" and "B" in an order
drawn per candidate (:func:`annotation.pair_tasks.draw_side`, seeded per workspace).

- :func:`push` writes ``HOME/annotations/queue/round-NNNN-pairs.json``;
  :func:`push_server` sends the same tasks to the workspace's second Label Studio project
  ("… · pairs"). Both first record each new task's side in ``pair_tasks``: an answer can
  always be mapped back, and a task pushed again (a later round, the server after the file)
  shows the same sides and the same model response.
- :func:`import_parsed` stores each annotation once, with ``choice`` mapped from ``a``/``b``
  to ``candidate``/``model`` (or ``both_bad``) through ``pair_tasks``, takes the consensus
  per candidate and writes the expert decision: candidate → accept
  (``expert_prefers_candidate``), model → reject (``below_model_response``), both bad →
  reject (``both_bad``). Every distinct rewrite becomes a new pair candidate (same prompt,
  role pool, source ``expert-rewrite``, meta naming the candidate, annotator and annotation)
  with an ``accept`` decision by the expert (``expert_rewrite``). A second import or pull of
  the same answers adds nothing.
- :func:`simulate` answers pending pairs from a gold preference field of the source (and an
  optional gold rewrite field), through the file path or the live server.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from annotation.consensus import consensus
from annotation.pair_simulate import preference_answer, simulate_pair_answers
from annotation.pair_tasks import build_pair_tasks, map_choice, parse_pair_export
from annotation.pairwise import PairwiseConfig
from annotation.queue import ParseResult, read_queue, write_queue
from annotation.studio import Studio
from pipelines.annotate import (
    ImportReport,
    annotation_history,
    expert_decision,
    new_annotation_row,
    stored_versions,
)
from pipelines.catalog import SCHEMAS, Catalog, now
from pipelines.ingest import candidate_id as make_candidate_id
from pipelines.ingest import content_hash, normalise

log = logging.getLogger("pipelines")

PAIRS_TITLE_SUFFIX = " · pairs"
PROJECT_TITLE_MAX = 50  # Label Studio's limit on project titles
REWRITE_SOURCE = "expert-rewrite"
# expert preference → (decision, reason)
EXPERT_DECISIONS = {
    "candidate": ("accept", "expert_prefers_candidate"),
    "model": ("reject", "below_model_response"),
    "both_bad": ("reject", "both_bad"),
}


def pairwise_config() -> PairwiseConfig:
    """The pairwise job's names (the defaults; not a ``datawall.yaml`` section yet)."""
    return PairwiseConfig()


def workspace_seed(catalog: Catalog) -> str:
    """The seed of the side draws: fixed per workspace, not shown in any task."""
    return hashlib.sha256(f"pairs\x1f{catalog.home}".encode()).hexdigest()[:16]


def queue_path(catalog: Catalog, round_: int) -> Path:
    return catalog.home / "annotations" / "queue" / f"round-{round_:04d}-pairs.json"


def queued_pairs(catalog: Catalog, round_: int | None) -> list[dict[str, Any]]:
    """Queued, unanswered hard pairs (of one round, or all when None), in priority order.

    Raises ``ValueError`` naming the candidate when a pair has no model response to show
    (it was queued without a ``pair_scores`` row).
    """
    rows = catalog.named("queued_pairs", {"round": round_}).to_pylist()
    for row in rows:
        # an empty answer is an answer (a young model may stop at once); only a missing one
        # means the pair was never scored
        if row["model_response"] is None:
            raise ValueError(
                f"queued pair {row['candidate_id']} (round {row['round']}) has no model "
                "response in pair_scores: score the round's pairs before pushing them"
            )
    return rows


def tasks_for(
    catalog: Catalog, round_: int | None, model_id: str
) -> tuple[list[dict[str, Any]], int]:
    """The blind tasks of the queued pairs, after recording new sides in ``pair_tasks``.

    Returns (tasks, number of pair_tasks rows written now).
    """
    rows = queued_pairs(catalog, round_)
    tasks, sides = build_pair_tasks(rows, model_id, pairwise_config(), workspace_seed(catalog))
    new = [
        {
            "candidate_id": row["candidate_id"],
            "round": int(row["round"]),
            "candidate_side": side,
            "model_response": row["model_response"],
            "model_id": row["model_id"] or model_id,
            "pushed_at": now(),
        }
        for row, side in zip(rows, sides, strict=True)
        if row["candidate_side"] is None
    ]
    if new:
        digest = hashlib.sha256(
            json.dumps(sorted((r["candidate_id"], r["candidate_side"]) for r in new)).encode()
        ).hexdigest()[:16]
        catalog.write(
            "pair_tasks", pa.Table.from_pylist(new, SCHEMAS["pair_tasks"]), f"sides-{digest}"
        )
    return tasks, len(new)


def push(catalog: Catalog, round_: int, model_id: str) -> tuple[Path | None, int]:
    """Write the round's queued hard pairs as a Label Studio import file.

    Returns (file, number of tasks); no file when the round queued no pairs.
    """
    tasks, _ = tasks_for(catalog, round_, model_id)
    if not tasks:
        return None, 0
    return write_queue(queue_path(catalog, round_), tasks), len(tasks)


# -- the live server ------------------------------------------------------------------------
def pair_studio(studio: Studio) -> Studio:
    """The workspace's pairwise project on the same server: the text project's title + " · pairs"."""
    base = studio.cfg.project_title[: PROJECT_TITLE_MAX - len(PAIRS_TITLE_SUFFIX)].rstrip()
    return studio.sibling(base + PAIRS_TITLE_SUFFIX, pairwise_config())


@dataclass
class PairPushReport:
    server: str
    project_id: int
    tasks: int
    imported: int
    recorded: int


def push_server(catalog: Catalog, studio: Studio, round_: int, model_id: str) -> PairPushReport:
    """Send every queued, unanswered hard pair to the pairwise project (idempotent).

    ``studio`` is the workspace's (text) Studio; the pairwise sibling is derived from it.
    """
    from pipelines.studio import record_tasks

    server = pair_studio(studio)
    tasks, _ = tasks_for(catalog, None, model_id)
    project_id = server.ensure_project()
    mapping, imported = server.push(project_id, tasks)
    recorded = record_tasks(catalog, server, project_id, mapping, round_)
    return PairPushReport(server.cfg.url, project_id, len(tasks), imported, recorded)


def pull(catalog: Catalog, studio: Studio) -> ImportReport:
    """Bring the pairwise project's new answers back (incremental, idempotent).

    Does nothing (and creates no project) while the workspace has never made a pair task.
    """
    from pipelines.studio import pull_project

    if not catalog.scalar("SELECT count(*) FROM pair_tasks"):
        return ImportReport(file=f"{studio.cfg.url} (no pair tasks)")
    return pull_project(catalog, pair_studio(studio), parse_pair_export, import_parsed)


# -- answers back -----------------------------------------------------------------------------
def import_export(
    catalog: Catalog, tasks: list[dict[str, Any]], origin: str, key: str, round_: int
) -> ImportReport:
    """Store a pairwise export (the pair tasks of a Label Studio JSON export)."""
    return import_parsed(catalog, parse_pair_export(tasks, pairwise_config()), origin, key, round_)


def import_parsed(
    catalog: Catalog, parsed: ParseResult, origin: str, key: str, round_: int
) -> ImportReport:
    """Store parsed pairwise annotations once each; then decisions and rewrites.

    ``key`` names the output files; the annotations file is written last and marks the
    import complete, so a crash in between is redone by the next import or pull.
    """
    cfg = pairwise_config()
    report = ImportReport(file=origin)
    report.annotations_read = len(parsed.records)
    report.malformed = len(parsed.errors)
    report.errors.extend(str(e) for e in parsed.errors)
    pairs = {
        r["candidate_id"]: r
        for r in catalog.query(
            "SELECT c.candidate_id, c.prompt, t.candidate_side FROM candidates c "
            "JOIN (SELECT candidate_id, arg_min(candidate_side, pushed_at) AS candidate_side "
            "      FROM pair_tasks GROUP BY candidate_id) t USING (candidate_id) "
            "WHERE coalesce(c.kind, 'text') = 'pair'"
        ).to_pylist()
    }
    seen = stored_versions(catalog)
    stamp = now()
    new_rows = []
    for rec in parsed.records:
        pair = pairs.get(rec.candidate_id)
        if pair is None:
            report.malformed += 1
            report.errors.append(
                f"{origin}: task {rec.task_id}, annotation {rec.annotation_id}: candidate "
                f"{rec.candidate_id!r} has no pair task in this workspace (not a pair, or its "
                "side was never recorded), so its answer cannot be mapped"
            )
            continue
        try:
            preference = map_choice(rec.choice, pair["candidate_side"], cfg)
        except ValueError as exc:
            report.malformed += 1
            report.errors.append(
                f"{origin}: task {rec.task_id}, annotation {rec.annotation_id}: {exc}"
            )
            continue
        row = new_annotation_row(rec, seen, preference, round_, origin, stamp)
        if row is not None:
            new_rows.append(row)
    report.annotations_new = len(new_rows)
    decisions = _expert_decisions(catalog, new_rows, round_, stamp)
    rewrites, rewrite_decisions = _rewrites(catalog, new_rows, pairs, round_, stamp, key)
    report.decisions = len(decisions)
    report.rewrites = len(rewrites)
    if rewrites:
        catalog.write("candidates", pa.Table.from_pylist(rewrites, SCHEMAS["candidates"]), key)
    if decisions or rewrite_decisions:
        catalog.write(
            "decisions",
            pa.Table.from_pylist(decisions + rewrite_decisions, SCHEMAS["decisions"]),
            key,
        )
    # the annotations file goes last: it marks the import complete
    catalog.write("annotations", pa.Table.from_pylist(new_rows, SCHEMAS["annotations"]), key)
    for line in report.errors:
        log.warning("%s", line)
    return report


def _expert_decisions(
    catalog: Catalog, new_rows: list[dict[str, Any]], round_: int, stamp: Any
) -> list[dict[str, Any]]:
    """The consensus decision of every candidate touched, over all its annotations so far."""
    out = []
    for agreed in consensus(annotation_history(catalog, new_rows)):
        if agreed.label not in EXPERT_DECISIONS:  # a tie (or no vote): the pair stays hard
            continue
        decision, reason = EXPERT_DECISIONS[agreed.label]
        out.append(
            expert_decision(agreed.candidate_id, round_, decision, reason, agreed.agreement, stamp)
        )
    return out


def _rewrites(
    catalog: Catalog,
    new_rows: list[dict[str, Any]],
    pairs: dict[str, dict[str, Any]],
    round_: int,
    stamp: Any,
    key: str,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A new accepted pair candidate for every distinct rewrite not stored yet."""
    candidates: dict[str, dict[str, Any]] = {}
    for row in new_rows:
        if not row["corrected_text"]:
            continue
        text = normalise(row["corrected_text"])
        if not text:
            continue
        original = row["candidate_id"]
        prompt = pairs[original]["prompt"]
        chash = pair_hash(prompt, text)
        cid = make_candidate_id(REWRITE_SOURCE, original, chash)
        candidates.setdefault(
            cid,
            {
                "candidate_id": cid,
                "content_hash": chash,
                "source": REWRITE_SOURCE,
                "source_id": row["annotation_id"],
                "row": None,
                "role": "pool",
                "text": text,
                "n_chars": len(text),
                "meta": json.dumps(
                    {
                        "rewrite_of": original,
                        "annotator": row["annotator"],
                        "annotation_id": row["annotation_id"],
                    }
                ),
                "ingest_id": key,
                "round": round_,
                "ingested_at": stamp,
                "kind": "pair",
                "prompt": prompt,
            },
        )
    if candidates:
        present = set(
            catalog.query(
                "SELECT candidate_id FROM candidates WHERE list_contains(?, candidate_id)",
                [sorted(candidates)],
            )
            .column(0)
            .to_pylist()
        )
        candidates = {cid: row for cid, row in candidates.items() if cid not in present}
    rows = list(candidates.values())
    decisions = [
        expert_decision(r["candidate_id"], round_, "accept", "expert_rewrite", None, stamp)
        for r in rows
    ]
    return rows, decisions


def pair_hash(prompt: str, response: str) -> str:
    """Content hash of a pair: prompt and response, so a pair never equals a plain text.

    The same formula as ingest's pair hash, so exact dedup sees a rewrite equal to an
    ingested pair.
    """
    return content_hash(f"{prompt}\x1e{response}")


# -- the simulated expert -------------------------------------------------------------------
def pending_gold(
    catalog: Catalog, oracle_field: str, rewrite_field: str | None
) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """(gold preference, gold rewrite, candidate side) of the queued pairs no expert answered.

    Raises ``ValueError`` when a pending pair has no candidate/model/both_bad in
    ``oracle_field`` (naming how many and the first).
    """
    params = {
        "gold": f"$.{oracle_field}",
        "rewrite": f"$.{rewrite_field}" if rewrite_field else None,
    }
    rows = catalog.named("pending_pair_gold", params).to_pylist()
    missing = [r["candidate_id"] for r in rows if r["gold"] not in EXPERT_DECISIONS]
    if missing:
        raise ValueError(
            f"{len(missing)} pending pair(s) have no candidate/model/both_bad in field "
            f"{oracle_field!r} (first: {missing[0]})"
        )
    gold = {r["candidate_id"]: r["gold"] for r in rows}
    rewrites = {r["candidate_id"]: r["gold_response"] for r in rows if r["gold_response"]}
    sides = {r["candidate_id"]: r["candidate_side"] for r in rows if r["candidate_side"]}
    return gold, rewrites, sides


def simulate(
    catalog: Catalog,
    studio: Studio | None,
    oracle_field: str,
    rewrite_field: str | None = None,
    *,
    annotators: int = 1,
    noise: float = 0.0,
    noisy: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Answer every pending hard pair that has a task, as ``annotators`` simulated experts.

    Without a server the answers go through the file-queue export path; with one they are
    created on the pairwise project (``Studio.answer``, as a person's would) and pulled back.
    """
    cfg = pairwise_config()
    gold, rewrites, sides = pending_gold(catalog, oracle_field, rewrite_field)
    gold = {cid: g for cid, g in gold.items() if cid in sides}  # only pairs with a task
    if not gold:
        return {"answered": 0, "annotations": 0, "rewrites": 0}
    noisy = annotators if noisy is None else noisy
    if studio is None:
        tasks = _queued_tasks(catalog, set(gold))
        answered = simulate_pair_answers(
            tasks,
            gold,
            sides,
            rewrites=rewrites,
            annotators=annotators,
            noise=noise,
            noisy=noisy,
            seed=seed,
            cfg=cfg,
        )
        key = (
            "simulate-pairs-"
            + hashlib.sha256(json.dumps(answered, sort_keys=True).encode()).hexdigest()[:16]
        )
        parsed = parse_pair_export(answered, cfg)
        report = import_parsed(catalog, parsed, "simulated experts", key, catalog.current_round())
        return {
            "answered": len(tasks),
            "annotations": report.annotations_new,
            "rewrites": report.rewrites,
        }
    server = pair_studio(studio)
    project_id = server.ensure_project()
    ids = server.task_ids(project_id)
    users = server.ensure_users(annotators)
    answered_already = {t["data"].get("candidate_id") for t in server.pull(project_id)[0]}
    rng = np.random.default_rng(seed)
    created = 0
    for cid in sorted(gold):
        if cid not in ids or cid in answered_already:
            continue
        for k, user in enumerate(users, start=1):
            answer = preference_answer(
                gold[cid], sides[cid], rewrites.get(cid), k, rng, noise if k <= noisy else 0.0, cfg
            )
            server.answer(
                ids[cid],
                answer.choice,
                user,
                corrected_text=answer.rewrite,
                rationale=answer.rationale,
            )
            created += 1
    report = pull(catalog, studio)
    return {
        "answered": created // max(annotators, 1),
        "annotations": report.annotations_new,
        "rewrites": report.rewrites,
    }


def _queued_tasks(catalog: Catalog, wanted: set[str]) -> list[dict[str, Any]]:
    """The pair tasks of the queue files for ``wanted`` candidates (latest file wins)."""
    tasks: dict[str, dict[str, Any]] = {}
    for path in sorted((catalog.home / "annotations" / "queue").glob("round-*-pairs.json")):
        for task in read_queue(path):
            cid = str(task["data"]["candidate_id"])
            if cid in wanted:
                tasks[cid] = task
    return [tasks[cid] for cid in sorted(tasks)]


def status(catalog: Catalog, studio: Studio | None) -> dict[str, Any]:
    """Pairs queued, answered and waiting; and the pairwise project's view when configured."""
    counts = catalog.query(
        "SELECT count(*) AS queued, "
        "count(*) FILTER (WHERE l.decided_by = 'expert') AS answered, "
        "count(*) FILTER (WHERE l.decided_by <> 'expert') AS waiting "
        "FROM (SELECT DISTINCT candidate_id FROM decisions WHERE queued) q "
        "JOIN latest_decisions l USING (candidate_id) JOIN candidates c USING (candidate_id) "
        "WHERE coalesce(c.kind, 'text') = 'pair'"
    ).to_pylist()[0]
    out: dict[str, Any] = {"pairs": counts}
    if studio is None or not catalog.scalar("SELECT count(*) FROM pair_tasks"):
        return out
    server = pair_studio(studio)
    try:
        project_id = server.ensure_project()
        out["project_id"] = project_id
        out["tasks_on_server"] = len(server.task_ids(project_id))
        out["annotated_on_server"] = len(server.pull(project_id)[0])
    except Exception as exc:  # noqa: BLE001 - status reports, it does not fail
        out["error"] = str(exc)
    return out
