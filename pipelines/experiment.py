"""``datawall experiment``: does the curated data train a better model at equal compute?

The measurement the issue asks for, built into the product (results in the catalog tables
``experiment_runs`` and ``experiment_curves``, summaries in the views
``experiment_summary`` and ``experiment_tokens_to_target``):

1. **Ingest** the pool, validation and trusted sources (idempotent).
2. **Curate**: run ``curation_round`` until the workspace has ``rounds`` finished rounds.
   With an oracle field, every queued hard case is answered by the simulated expert
   (``pipelines.studio.simulate``) after each round; without one they stay pending.
3. **Arms** (:mod:`pipelines.experiment_arms`), all drawn from the pool: ``curated``
   (accepted), ``random`` (a seeded sample with curated's tokens), ``full`` (every pool
   row), ``heuristic`` (rules and dedup only). The validation set is never trained on and
   the trusted set is in no arm; the selection is frozen in ``HOME/experiments/ID``.
4. **Train** a fresh model per arm x seed at the same token budget T (byte tokens, so a
   token is a byte for every arm), evaluating validation bits per byte every T /
   ``eval_points`` tokens. Repetition is counted (``epochs`` = tokens seen / arm tokens)
   and capped: with repetition past about 4 epochs extra passes are worth less than new
   data (Muennighoff et al. 2023, "Scaling Data-Constrained Language Models"), so an arm
   whose T would exceed ``epoch_cap`` passes trains a shorter run that stops at the cap
   (``capped``). The default T is ``epoch_cap`` passes over the smallest arm, so no arm
   is capped.
5. **Tokens-to-target**: the tokens at which the curated arm's mean-over-seeds curve first
   reaches the full arm's mean final bpb (linear interpolation between evaluations),
   and its ratio to T (``experiment_tokens_to_target`` in ``pipelines/sql/views.sql``).

**Pairs.** A pool of prompt/response pairs (ingested with ``prompt_field`` /
``response_field`` or ``messages_field``) makes a pair experiment: the arms hold the pool's
pairs, the runs train on response tokens only, validation is the validation set's pairs and
the metric is **response bits per byte** (bits on the validation responses given their
prompts, per response byte: ``final_val_bpb`` and the curves hold it). The simulated expert
answers the hard pairs from a gold preference field (``candidate`` | ``model`` |
``both_bad``, and ``rewrite_field`` for the rewrite). The token budget counts trained tokens,
prompt tokens included (they fill the windows at the same cost), so "equal tokens" means
equal compute. The run rows carry ``kind`` (``text`` | ``pair``).

Resumable: the experiment id is a digest of the sources and the settings; a finished arm x
seed (its ``experiment_runs`` file) is skipped, a killed one resumes from the trainer's last
checkpoint in ``HOME/experiments/ID/ARM-sSEED``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
from prefect import flow, get_run_logger, task

from pipelines import annotate_pairs, studio
from pipelines.catalog import SCHEMAS, Catalog, now
from pipelines.experiment_arms import (
    ARMS,
    Arm,
    ExperimentError,
    arm_data,
    experiment_kind,
    frozen_arm_ids,
    validation_examples,
)
from pipelines.flows import curation_round, ingest_task, workspace
from pipelines.progress import note, step_bar
from pipelines.settings import Settings, load_settings, resolve_home
from trainer.config import ModelConfig, TrainConfig
from trainer.data import Example
from trainer.train import EVALS, train

logger = logging.getLogger("pipelines")


@dataclass(frozen=True)
class Sources:
    pool: str
    validation: str
    trusted: str
    text_field: str = "text"
    id_field: str | None = None
    # pairs (``datawall ingest``'s options): None for a text pool
    prompt_field: str | None = None
    response_field: str | None = None
    messages_field: str | None = None
    rewrite_field: str | None = None  # pairs: the simulated expert's rewrite

    def pair_fields(self) -> dict[str, str]:
        """The ingest options that make pairs, those given only."""
        fields = {
            "prompt_field": self.prompt_field,
            "response_field": self.response_field,
            "messages_field": self.messages_field,
        }
        return {k: v for k, v in fields.items() if v is not None}


@dataclass(frozen=True)
class RunPlan:
    """How long one arm x seed trains: ``steps`` of ``tokens_per_step`` tokens."""

    budget_tokens: int  # the shared budget T, in whole steps
    steps: int
    capped: bool
    eval_every: int
    tokens_per_step: int


# -- options and identity ------------------------------------------------------------------
def with_options(settings: Settings, **options: Any) -> Settings:
    """``settings`` with the CLI's experiment options applied (None: keep the setting)."""
    overrides = {f"experiment.{k}": v for k, v in options.items() if v is not None}
    try:
        return settings.with_overrides(overrides) if overrides else settings
    except ValueError as exc:
        raise ExperimentError(str(exc)) from None


def _source_digest(spec: str) -> Any:
    """A file's content hash; a folder or ``hf:`` source by name (read again by ingest)."""
    path = Path(spec).expanduser()
    if not path.is_file():
        return spec
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def experiment_id(
    sources: Sources, settings: Settings, oracle_field: str | None, budget: int | None
) -> str:
    """Deterministic id from the sources' contents, the settings and the options.

    The number of seeds is left out: asking for more seeds later extends the same
    experiment instead of starting a new one.
    """
    cfg = settings.to_dict()
    cfg["experiment"] = {k: v for k, v in cfg["experiment"].items() if k != "seeds"}
    parts = {
        "sources": {
            role: _source_digest(getattr(sources, role))
            for role in ("pool", "validation", "trusted")
        },
        "fields": [sources.text_field, sources.id_field, oracle_field],
        **(
            {"pairs": [sources.pair_fields(), sources.rewrite_field]}
            if sources.pair_fields()
            else {}
        ),
        "budget": budget,
        "settings": cfg,
    }
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode())
    return "exp-" + digest.hexdigest()[:12]


# -- step 1-2: ingest and curate --------------------------------------------------------------
# the simulated expert's answers in the oracle field, per kind of experiment
ORACLE_VALUES = {"text": ("accept", "reject"), "pair": ("candidate", "model", "both_bad")}


def check_sources(catalog: Catalog, oracle_field: str | None, text_field: str) -> None:
    """After ingest: a pool and a validation set of the pool's kind exist, and the oracle
    field is in the pool."""
    n_pool = catalog.scalar("SELECT count(*) FROM candidates WHERE role = 'pool'")
    if not n_pool:
        raise ExperimentError(
            f"{catalog.home}: the pool holds no candidates; is --text-field {text_field!r} "
            'right? See the quarantine: datawall sql "SELECT * FROM quarantine"'
        )
    kind = experiment_kind(catalog)
    n_val = catalog.scalar(
        "SELECT count(*) FROM candidates WHERE role = 'validation' AND coalesce(kind, 'text') = ?",
        [kind],
    )
    if not n_val:
        what = (
            "pairs (ingest it with the same prompt/response fields)" if kind == "pair" else "text"
        )
        raise ExperimentError(f"{catalog.home}: the validation set holds no {what}")
    if oracle_field is not None:
        values = ORACLE_VALUES[kind]
        n = catalog.scalar(
            "SELECT count(*) FROM candidates WHERE role = 'pool' "
            "AND list_contains(?, json_extract_string(meta, ?))",
            [list(values), f"$.{oracle_field}"],
        )
        if not n:
            raise ExperimentError(
                f"oracle field {oracle_field!r}: no pool row has it with a value "
                + " or ".join(repr(v) for v in values)
            )


def answer_hard_cases(
    catalog: Catalog, settings: Settings, oracle_field: str, rewrite_field: str | None = None
) -> int:
    """The simulated expert answers every queued hard case from ``oracle_field`` (pairs: the
    pairwise simulator, with ``rewrite_field`` for rewritten responses)."""
    with catalog.writer("datawall experiment: simulated experts"):
        server = studio.studio_from_env(catalog, settings)
        if experiment_kind(catalog) == "pair":  # the pairwise view
            report = annotate_pairs.simulate(catalog, server, oracle_field, rewrite_field)
        else:
            report = studio.simulate(catalog, settings, server, oracle_field)
    return int(report["answered"])


# -- step 4: training -------------------------------------------------------------------------
def run_configs(settings: Settings) -> tuple[ModelConfig, TrainConfig]:
    """The experiment's model (byte tokens) and base training config."""
    exp = settings.experiment
    model = {"tokenizer": "byte"}
    for name in ("d_model", "n_layers", "d_state", "headdim"):
        if getattr(exp, name):
            model[name] = getattr(exp, name)
    train_over: dict[str, Any] = {"checkpoint_every": settings.train.checkpoint_every}
    for name in ("batch_size", "seq_len", "lr"):
        if getattr(exp, name):
            train_over[name] = getattr(exp, name)
    try:
        return (
            dataclasses.replace(settings.model, **model),
            dataclasses.replace(settings.train, **train_over),
        )
    except ValueError as exc:
        raise ExperimentError(f"experiment model: {exc}") from None


def plan_run(
    budget_tokens: int, arm_tokens: int, epoch_cap: float, tokens_per_step: int, eval_points: int
) -> RunPlan:
    """Steps for one arm: the budget T, or fewer when T would pass the arm ``epoch_cap`` times."""
    if budget_tokens <= 0:
        raise ExperimentError(f"the token budget must be > 0, got {budget_tokens}")
    steps_t = budget_tokens // tokens_per_step
    if steps_t < 1:
        raise ExperimentError(
            f"the token budget {budget_tokens} is less than one step "
            f"({tokens_per_step} tokens: batch_size x seq_len)"
        )
    cap_steps = math.floor(epoch_cap * arm_tokens / tokens_per_step)
    capped = cap_steps < steps_t
    steps = max(1, cap_steps) if capped else steps_t
    return RunPlan(
        budget_tokens=steps_t * tokens_per_step,
        steps=steps,
        capped=capped,
        eval_every=max(1, steps_t // eval_points),
        tokens_per_step=tokens_per_step,
    )


def default_budget(arms: list[Arm], epoch_cap: float) -> int:
    """``epoch_cap`` passes over the smallest arm: the largest T that caps no arm."""
    return int(epoch_cap * min(a.tokens for a in arms))


def run_key(exp_id: str, arm: str, seed: int) -> str:
    return f"{exp_id}-{arm}-s{seed}"


def train_arm(
    catalog: Catalog,
    settings: Settings,
    exp_id: str,
    arm: Arm,
    plan: RunPlan,
    validation: list[Example],
    progress: Callable[[int, int, dict], None] | None = None,
    kind: str = "text",
) -> dict[str, Any]:
    """Train a fresh model on ``arm``; write its curve, then its run row (the done marker).

    ``kind`` pair: the bpb is the validation responses' (``val_response_bpb``)."""
    model_cfg, base = run_configs(settings)
    warmup = min(plan.steps, max(1, round(plan.steps * settings.experiment.warmup_frac)))
    train_cfg = dataclasses.replace(
        base, steps=plan.steps, warmup_steps=warmup, eval_every=plan.eval_every, seed=arm.seed
    )
    out_dir = catalog.home / "experiments" / exp_id / f"{arm.name}-s{arm.seed}"
    result = train(arm.texts, validation, model_cfg, train_cfg, out_dir, progress=progress)
    key = run_key(exp_id, arm.name, arm.seed)
    evals = [json.loads(line) for line in (out_dir / EVALS).read_text().splitlines()]
    metric = "val_response_bpb" if kind == "pair" else "val_bpb"
    final_bpb = result.val_response_bpb if kind == "pair" else result.val_bpb
    curve = pa.table(
        {
            "experiment_id": [exp_id] * len(evals),
            "arm": [arm.name] * len(evals),
            "seed": [arm.seed] * len(evals),
            "step": [e["step"] for e in evals],
            "tokens_seen": [e["tokens_seen"] for e in evals],
            "val_bpb": [e[metric] for e in evals],
        }
    )
    catalog.write("experiment_curves", curve, key)
    arm_tokens = arm.tokens
    row = {
        "experiment_id": exp_id,
        "arm": arm.name,
        "seed": arm.seed,
        "n_docs": len(arm.texts),
        "arm_tokens": arm_tokens,
        "budget_tokens": plan.budget_tokens,
        "tokens_seen": result.tokens_seen,
        "epochs": result.tokens_seen / arm_tokens,
        "capped": plan.capped,
        "final_val_bpb": final_bpb,
        "model_path": str(out_dir),
        "settings": json.dumps(
            {"model": model_cfg.to_dict(), "train": train_cfg.to_dict()}, default=list
        ),
        "created_at": now(),
        "wall_s": result.wall_s,
        "n_params": int(json.loads((out_dir / "config.json").read_text()).get("num_params", 0)),
        "kind": kind,
    }
    schema = SCHEMAS["experiment_runs"].append(pa.field("wall_s", pa.float64()))
    schema = schema.append(pa.field("n_params", pa.int64()))
    schema = schema.append(pa.field("kind", pa.string()))
    catalog.write("experiment_runs", pa.Table.from_pylist([row], schema), key)
    return row


def train_arms(
    catalog: Catalog, settings: Settings, exp_id: str, seeds: list[int]
) -> list[dict[str, Any]]:
    """Step 3-4 under the writer lock: freeze the arms, train every arm x seed not done yet."""
    exp = settings.experiment
    run_dir = catalog.home / "experiments" / exp_id
    kind = experiment_kind(catalog)
    validation = validation_examples(catalog, kind)
    done: list[dict[str, Any]] = []
    with catalog.writer(f"datawall experiment {exp_id}"):
        arm_ids = frozen_arm_ids(catalog, run_dir, seeds, kind)
        arms = [arm_data(catalog, arm_ids, name, seed) for seed in seeds for name in ARMS]
        budget = exp.tokens or default_budget(arms, exp.epoch_cap)
        _, train_cfg = run_configs(settings)
        tokens_per_step = train_cfg.batch_size * train_cfg.seq_len
        note(
            f"{kind} experiment {exp_id}: budget {budget:,} tokens per run; arm tokens "
            + ", ".join(f"{a.name} {a.tokens:,}" for a in arms if a.seed == seeds[0])
        )
        for arm in arms:
            key = run_key(exp_id, arm.name, arm.seed)
            if catalog.exists("experiment_runs", key):
                logger.info("%s already trained; skipped", key)
                continue
            plan = plan_run(budget, arm.tokens, exp.epoch_cap, tokens_per_step, exp.eval_points)
            with step_bar(f"train {arm.name} seed {arm.seed}", plan.steps) as progress:
                done.append(
                    train_arm(catalog, settings, exp_id, arm, plan, validation, progress, kind)
                )
        catalog.write_duckdb_file()
    return done


def summary(catalog: Catalog, exp_id: str) -> pa.Table:
    """Per-arm final bpb over seeds and the tokens-to-target (``experiment_summary.sql``)."""
    return catalog.named("experiment_summary", [exp_id])


# -- the flow -----------------------------------------------------------------------------------
@task(name="simulated-experts")
def answer_task(home: str, oracle_field: str, rewrite_field: str | None = None) -> int:
    catalog, settings = workspace(home)
    return answer_hard_cases(catalog, settings, oracle_field, rewrite_field)


@task(name="train-arms")
def train_arms_task(home: str, settings: Settings, exp_id: str) -> int:
    catalog = Catalog(home)
    return len(train_arms(catalog, settings, exp_id, list(range(settings.experiment.seeds))))


@flow(name="experiment")
def experiment(
    pool: str,
    validation: str,
    trusted: str,
    home: str | None = None,
    text_field: str = "text",
    id_field: str | None = None,
    oracle_field: str | None = None,
    budget: int | None = None,
    rounds: int | None = None,
    seeds: int | None = None,
    tokens: int | None = None,
    epoch_cap: float | None = None,
    prompt_field: str | None = None,
    response_field: str | None = None,
    messages_field: str | None = None,
    rewrite_field: str | None = None,
) -> dict[str, Any]:
    """ingest → ``rounds`` curation rounds (+ simulated experts) → four arms x seeds → summary.

    Options left at None take the workspace's ``experiment:`` settings. With
    ``prompt_field``/``response_field`` (or ``messages_field``) every source is read as pairs
    and the experiment compares response bpb (see the module docstring).
    """
    home = str(resolve_home(home))
    catalog = Catalog(home).init()
    settings = with_options(
        load_settings(Path(home)), rounds=rounds, seeds=seeds, tokens=tokens, epoch_cap=epoch_cap
    )
    sources = Sources(
        pool,
        validation,
        trusted,
        text_field,
        id_field,
        prompt_field,
        response_field,
        messages_field,
        rewrite_field,
    )
    exp_id = experiment_id(sources, settings, oracle_field, budget)
    log = get_run_logger()
    with catalog.writer(f"datawall experiment {exp_id}: ingest"):
        for role in ("trusted", "validation", "pool"):
            ingest_task(
                home, getattr(sources, role), role, text_field, id_field, **sources.pair_fields()
            )
    check_sources(catalog, oracle_field, text_field)
    while catalog.current_round() <= settings.experiment.rounds:
        curation_round(home=home, budget=budget)
        if oracle_field is not None:
            answered = answer_task(home, oracle_field, rewrite_field)
            log.info("simulated experts answered %d hard case(s)", answered)
    if oracle_field is not None:  # a run killed between a round and its answers
        answer_task(home, oracle_field, rewrite_field)
    trained = train_arms_task(home, settings, exp_id)
    log.info("experiment %s: %d run(s) trained now", exp_id, trained)
    return {
        "experiment_id": exp_id,
        "trained": trained,
        "summary": summary(catalog, exp_id),
        "kind": experiment_kind(catalog),
    }
