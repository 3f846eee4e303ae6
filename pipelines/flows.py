"""Prefect flows: one curation round, ingest, and the annotation pull.

Flows read like the recipe in DESIGN.md; each task is a thin wrapper around one step
function. Only the Label Studio tasks touch the network, and only they retry (on top of the
client's own backoff). Deployments and schedules are declared in ``flows.yaml``.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
from prefect import flow, get_run_logger, task

from pipelines import annotate, dedup, modelling, route, scale, score, score_pairs, studio
from pipelines.catalog import SCHEMAS, Catalog, now
from pipelines.config import PairFields, ScaleConfig
from pipelines.ingest import ingest
from pipelines.modelling import ModelRef
from pipelines.progress import progress_bar
from pipelines.settings import Settings, load_settings, resolve_home


def workspace(home: str | None) -> tuple[Catalog, Settings]:
    path = resolve_home(home)
    catalog = Catalog(path).init()
    return catalog, load_settings(path)


# -- tasks --------------------------------------------------------------------------------
@task(name="ingest")
def ingest_task(
    home: str,
    source: str,
    role: str,
    text_field: str,
    id_field: str | None,
    progress: Callable[[int], None] | None = None,
    prompt_field: str | None = None,
    response_field: str | None = None,
    messages_field: str | None = None,
) -> dict[str, Any]:
    """Ingest one source with the workspace's settings; returns the report's summary.

    ``prompt_field``/``response_field`` or ``messages_field``: a source of prompt/response pairs.
    """
    catalog, settings = workspace(home)
    report = ingest(
        catalog,
        source,
        role=role,
        text_field=text_field,
        id_field=id_field,
        cfg=settings.ingest,
        progress=progress,
        pair=PairFields(prompt_field, response_field, messages_field),
    )
    return report.summary()


@task(name="dedup")
def dedup_task(
    home: str, round_: int, workers: int | str | None = None, dask_address: str | None = None
) -> dict[str, int | str]:
    """Near-duplicates across the whole catalog → ``reject / near_duplicate`` decisions.

    Signing runs over shards (on Dask when ``scale`` says so); clustering stays global.
    """
    catalog, settings = workspace(home)
    settings = _with_scale(settings, workers, dask_address)
    total = dedup.count_unsigned(catalog, settings.dedup)
    with progress_bar(f"dedup round {round_}", total) as advance:
        signed = scale.sign_sharded(catalog, settings, round_, progress=advance)
        report = dedup.dedup(catalog, settings.dedup, round_, progress=advance)
    report.signed += signed
    return report.summary()


@task(name="models")
def models_task(home: str) -> tuple[ModelRef, ModelRef]:
    """The round's scorer and the reference model, training the reference if needed."""
    catalog, settings = workspace(home)
    reference = modelling.ensure_reference(catalog, settings, nproc=settings.scale.train_nproc)
    return modelling.scorer_model(catalog) or reference, reference


@task(name="score")
def score_task(
    home: str,
    round_: int,
    current: ModelRef,
    reference: ModelRef,
    budget: int | None,
    workers: int | str | None = None,
    dask_address: str | None = None,
) -> score.Bar:
    """The bar (in the flow's process), then the candidates' scores (sharded, see ``scale``)."""
    catalog, settings = workspace(home)
    settings = _with_scale(_with_budget(settings, budget), workers, dask_address)
    bar = score.model_bar(catalog, settings, round_, current, reference)
    n = scale.score_sharded(catalog, settings, round_, current, reference, bar)
    if n is None:
        n = score.score_candidates(catalog, settings, round_, current, reference, bar)
    get_run_logger().info("round %d: bar %.4f, %d candidates scored", round_, bar.bar, n)
    return bar


@task(name="route")
def route_task(home: str, round_: int, bar: score.Bar, budget: int | None) -> dict[str, int]:
    catalog, settings = workspace(home)
    counts = route.route_round(catalog, _with_budget(settings, budget), round_, bar)
    return {f"{d}/{r}": n for (d, r), n in sorted(counts.items())}


@task(name="pairs")
def pairs_task(
    home: str, round_: int, current: ModelRef, reference: ModelRef, bar: score.Bar
) -> dict[str, int]:
    """Prompt/response pairs against the model's own answer: score, then route."""
    catalog, settings = workspace(home)
    n = score_pairs.score_pairs(catalog, settings, round_, current, reference, bar)
    counts = score_pairs.route_pairs_round(catalog, settings, round_)
    get_run_logger().info("round %d: %d pairs scored against the model's own answers", round_, n)
    return {f"{d}/{r}": k for (d, r), k in sorted(counts.items())}


@task(name="annotate")
def annotate_task(home: str, round_: int, model_id: str) -> dict[str, Any]:
    """The queue file always (a record of what was asked); Label Studio when configured."""
    catalog, settings = workspace(home)
    path, n = annotate.push(catalog, settings, round_, model_id)
    out: dict[str, Any] = {"queue": str(path), "tasks": n}
    from pipelines import annotate_pairs  # hard prompt/response pairs: the pairwise view

    pair_path, n_pairs = annotate_pairs.push(catalog, round_, model_id)
    if pair_path is not None:
        out["pairs"] = {"queue": str(pair_path), "tasks": n_pairs}
    server = studio.studio_from_env(catalog, settings)
    if server is not None:
        out["label_studio"] = dataclasses.asdict(label_studio_push_task(home, round_, model_id))
        if pair_path is not None or catalog.scalar("SELECT count(*) FROM pair_tasks"):
            out.setdefault("pairs", {})["label_studio"] = label_studio_push_pairs_task(
                home, round_, model_id
            )
    return out


@task(name="label-studio-push", retries=2, retry_delay_seconds=10)
def label_studio_push_task(home: str, round_: int, model_id: str) -> studio.PushReport:
    """Network step: retried by Prefect on top of the client's own backoff."""
    catalog, settings = workspace(home)
    server = studio.studio_from_env(catalog, settings)
    return studio.push(catalog, settings, server, round_, model_id)


@task(name="label-studio-push-pairs", retries=2, retry_delay_seconds=10)
def label_studio_push_pairs_task(home: str, round_: int, model_id: str) -> dict[str, Any]:
    """The queued hard pairs to the workspace's pairwise project."""
    from pipelines import annotate_pairs

    catalog, settings = workspace(home)
    server = studio.studio_from_env(catalog, settings)
    return dataclasses.asdict(annotate_pairs.push_server(catalog, server, round_, model_id))


@task(name="label-studio-pull", retries=2, retry_delay_seconds=10)
def label_studio_pull_task(home: str) -> dict[str, Any]:
    catalog, settings = workspace(home)
    server = studio.studio_from_env(catalog, settings)
    report = studio.pull(catalog, settings, server)
    from pipelines import annotate_pairs

    pairs = annotate_pairs.pull(catalog, server)  # nothing while no pair was ever pushed
    return {
        "annotations_new": report.annotations_new + pairs.annotations_new,
        "decisions": report.decisions + pairs.decisions,
        "rewrites": pairs.rewrites,
    }


@task(name="train")
def train_task(home: str, round_: int, parent: ModelRef) -> ModelRef:
    """Continue ``parent``; ``scale.train_nproc`` > 1 trains in that many torchrun processes."""
    catalog, settings = workspace(home)
    nproc = settings.scale.train_nproc
    return modelling.train_round_model(catalog, settings, round_, parent, nproc=nproc)


@task(name="finish-round")
def finish_round_task(
    home: str,
    round_: int,
    current: ModelRef,
    reference: ModelRef,
    bar: score.Bar,
    new_model: ModelRef,
    budget: int | None,
    started_at: Any,
) -> dict[str, Any]:
    catalog, settings = workspace(home)
    return finish_round(
        catalog,
        _with_budget(settings, budget),
        round_,
        current,
        reference,
        bar,
        new_model,
        started_at,
    )


def _with_budget(settings: Settings, budget: int | None) -> Settings:
    return settings if budget is None else settings.with_overrides({"route.budget": budget})


def _with_scale(
    settings: Settings, workers: int | str | None, dask_address: str | None
) -> Settings:
    """``--workers`` / ``--dask-address`` (or the deployment's parameters) over datawall.yaml."""
    overrides: dict[str, Any] = {}
    if workers is not None:
        overrides["scale.workers"] = ScaleConfig.parse_workers(workers)
    if dask_address:
        overrides["scale.dask_address"] = dask_address
    return settings.with_overrides(overrides) if overrides else settings


def finish_round(
    catalog: Catalog,
    settings: Settings,
    round_: int,
    current: ModelRef,
    reference: ModelRef,
    bar: score.Bar,
    new_model: ModelRef,
    started_at: Any,
) -> dict[str, Any]:
    """Record the round in ``rounds``; from now on ``current_round`` is the next one."""
    counts = Counter(
        dict(
            (r["decision"], r["n"])
            for r in catalog.query(
                "SELECT decision, count(*) AS n FROM decisions WHERE round = ? "
                "AND decided_by <> 'expert' GROUP BY 1",
                [round_],
            ).to_pylist()
        )
    )
    queued = catalog.scalar("SELECT count(*) FROM decisions WHERE round = ? AND queued", [round_])
    n_scored = catalog.scalar("SELECT count(*) FROM scores WHERE round = ?", [round_])
    val_bpb = catalog.scalar("SELECT val_bpb FROM models WHERE model_id = ?", [new_model.model_id])
    row = {
        "round": round_,
        "model_id": current.model_id,
        "ref_model_id": reference.model_id,
        "bar": bar.bar,
        "n_scored": n_scored,
        "n_accept": counts["accept"],
        "n_reject": counts["reject"],
        "n_hard": counts["hard"],
        "n_queued": queued,
        "new_model_id": new_model.model_id,
        "val_bpb": val_bpb,
        "settings": settings.to_json(),
        "started_at": started_at,
        "finished_at": now(),
    }
    # The bar on the comparable (anchored) scale and the classifier's calibration.
    schema = SCHEMAS["rounds"]
    extra = score.round_bar_columns(catalog, round_)
    for name, value in extra.items():
        row[name] = value
        schema = schema.append(pa.field(name, pa.float64()))
    catalog.write("rounds", pa.Table.from_pylist([row], schema), f"round-{round_:04d}")
    return {k: v for k, v in row.items() if k != "settings"}


# -- flows --------------------------------------------------------------------------------
@flow(name="curation-round", log_prints=True)
def curation_round(
    home: str | None = None,
    budget: int | None = None,
    workers: int | str | None = None,
    dask_address: str | None = None,
) -> dict[str, Any]:
    """dedup → score → route → annotate → train, on what the workspace holds.

    Prompt/response pairs in the pool are scored and routed after the text, against the
    model's own answer to each prompt (``pipelines.score_pairs``).

    With no model yet, the reference model is first trained on the trusted set. ``workers``
    and ``dask_address`` override the workspace's ``scale`` settings (where dedup signing
    and scoring shards run: see ``pipelines.scale``).
    """
    home = str(resolve_home(home))
    catalog = Catalog(home).init()
    with catalog.writer("curation round"):
        round_ = catalog.current_round()
        started_at = now()
        dedup_task(home, round_, workers, dask_address)
        current, reference = models_task(home)
        bar = score_task(home, round_, current, reference, budget, workers, dask_address)
        decisions = route_task(home, round_, bar, budget)
        pairs = (
            pairs_task(home, round_, current, reference, bar)
            if score_pairs.has_pool_pairs(catalog)
            else {}
        )
        queue = annotate_task(home, round_, current.model_id)
        new_model = train_task(home, round_, current)
        summary = finish_round_task(
            home, round_, current, reference, bar, new_model, budget, started_at
        )
    get_run_logger().info("round %d finished: %s", round_, decisions)
    return {**summary, "decisions": decisions, "pairs": pairs, "queue": queue}


@flow(name="ingest")
def ingest_flow(
    source: str,
    home: str | None = None,
    role: str = "pool",
    text_field: str = "text",
    id_field: str | None = None,
    prompt_field: str | None = None,
    response_field: str | None = None,
    messages_field: str | None = None,
) -> dict[str, Any]:
    """Ingest one source (file, folder, saved dataset or ``hf:NAME``) into the workspace;
    with ``prompt_field``/``response_field`` or ``messages_field``, as prompt/response pairs."""
    home = str(resolve_home(home))
    PairFields(prompt_field, response_field, messages_field)  # a bad combination fails first
    catalog = Catalog(home).init()
    with catalog.writer(f"ingest {source}"):
        return ingest_task(
            home,
            source,
            role,
            text_field,
            id_field,
            prompt_field=prompt_field,
            response_field=response_field,
            messages_field=messages_field,
        )


@flow(name="annotation-pull")
def annotation_pull(home: str | None = None) -> dict[str, Any]:
    """Pull the experts' answers from Label Studio (when configured) and import every
    export dropped in ``HOME/annotations/inbox/``.

    Imported files move to ``inbox/done/``; a file that fails stays, with the error logged.
    """
    catalog, settings = workspace(home)
    inbox = catalog.home / "annotations" / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    done = inbox / "done"
    logger = get_run_logger()
    totals: Counter = Counter()
    with catalog.writer("annotation pull"):
        round_ = catalog.current_round()
        if studio.studio_from_env(catalog, settings) is not None:
            pulled = label_studio_pull_task(str(catalog.home))
            totals["label_studio_annotations_new"] += pulled["annotations_new"]
            totals["decisions"] += pulled["decisions"]
            if pulled["rewrites"]:
                totals["rewrites"] += pulled["rewrites"]
        for path in sorted(inbox.glob("*.json")):
            try:
                report = annotate.import_export(catalog, settings, path, round_)
            except ValueError as exc:
                logger.error("%s", exc)
                totals["failed_files"] += 1
                continue
            for err in report.errors:
                logger.warning("%s", err)
            totals["files"] += 1
            totals["annotations_new"] += report.annotations_new
            totals["decisions"] += report.decisions
            if report.rewrites:
                totals["rewrites"] += report.rewrites
            done.mkdir(exist_ok=True)
            Path(path).replace(done / path.name)
    return dict(totals)
