"""The ``datawall`` command line (Typer). ``datawall --help`` lists the commands.

Every command takes ``--home DIR`` (or ``DATAWALL_HOME``) to choose the workspace. Commands
that write hold the workspace's writer lock; ``sql`` and ``report`` never do, so they answer
while a round is running.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from pipelines.catalog import WorkspaceBusy
from pipelines.cli_annotate import annotate_app
from pipelines.cli_common import Home, Lake, err, fail, open_catalog, out, print_table, use_lake
from pipelines.cli_experiment import experiment_cmd
from pipelines.lake import LakeError
from pipelines.settings import load_settings

# No usage telemetry from the ephemeral Prefect server a laptop run starts (it also fails
# noisily where the network is closed); a user who wants it sets the variable.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

app = typer.Typer(
    help="datawall: keep only data above the model's level, send hard cases to experts, "
    "train an SSM on what is accepted.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(annotate_app, name="annotate")
app.command("experiment")(experiment_cmd)


# -- ingest -------------------------------------------------------------------------------
@app.command("ingest")
def ingest_cmd(
    source: Annotated[
        str,
        typer.Argument(
            help="JSONL/Parquet/CSV file, folder of .txt, saved dataset, or hf:NAME[:CONFIG][@SPLIT]"
        ),
    ],
    role: Annotated[str, typer.Option(help="pool | trusted | validation")] = "pool",
    text_field: Annotated[str, typer.Option(help="Field holding the text")] = "text",
    id_field: Annotated[
        str | None, typer.Option(help="Field holding your own id (kept as source_id)")
    ] = None,
    prompt_field: Annotated[
        str | None,
        typer.Option(help="Field holding a pair's prompt (with --response-field): pair candidates"),
    ] = None,
    response_field: Annotated[
        str | None, typer.Option(help="Field holding a pair's response (with --prompt-field)")
    ] = None,
    messages_field: Annotated[
        str | None,
        typer.Option(
            help="Field holding chat messages [{role, content}, ...]: the last (assistant) "
            "message is the response, the earlier ones the prompt"
        ),
    ] = None,
    home: Home = None,
    lake: Lake = None,
) -> None:
    """Read a source: normalise, give stable ids, record exact duplicates, quarantine bad rows.

    With --prompt-field/--response-field or --messages-field the rows are prompt/response
    pairs (candidates of kind 'pair'); otherwise each row is one text.
    """
    from pipelines.config import PairFields
    from pipelines.flows import ingest_task
    from pipelines.progress import progress_bar
    from pipelines.sources import SourceError

    try:
        PairFields(prompt_field, response_field, messages_field)
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    use_lake(home, lake)
    catalog = open_catalog(home)
    try:
        with (
            catalog.writer(f"datawall ingest {source}"),
            progress_bar(f"ingest {Path(source).name}", None) as advance,
        ):
            # the task's plain function: a one-file ingest needs no Prefect server
            summary = ingest_task.fn(
                str(catalog.home),
                source,
                role,
                text_field,
                id_field,
                progress=advance,
                prompt_field=prompt_field,
                response_field=response_field,
                messages_field=messages_field,
            )
    except (SourceError, ValueError, WorkspaceBusy, LakeError) as exc:
        raise fail(str(exc)) from None
    out.print_json(data=summary)
    if summary["quarantined"]:
        err.print(
            f"[yellow]{summary['quarantined']} row(s) quarantined[/]; see them with: "
            'datawall sql "SELECT source, row, reason, detail FROM quarantine"'
        )


# -- round steps --------------------------------------------------------------------------
# Where dedup signing and scoring shards run (pipelines/scale.py); over datawall.yaml's `scale`.
Workers = Annotated[
    str | None,
    typer.Option(
        help="auto | N: 1 runs shards in this process, N > 1 on a local Dask cluster of N "
        "workers, auto a local cluster once the work spans more than one shard "
        "[default: datawall.yaml scale.workers, else auto]"
    ),
]
DaskAddress = Annotated[
    str | None,
    typer.Option(help="Run the shards on this existing Dask cluster (tcp://host:8786)"),
]


def _scale_overrides(home: Path, workers: str | None, dask_address: str | None) -> None:
    """Refuse a bad --workers / --dask-address before any work starts."""
    from pipelines.flows import _with_scale

    try:
        _with_scale(load_settings(home), workers, dask_address)
    except ValueError as exc:
        raise fail(str(exc), 2) from None


@app.command("round")
def round_cmd(
    budget: Annotated[
        int | None, typer.Option(help="Max hard cases sent to experts this round")
    ] = None,
    workers: Workers = None,
    dask_address: DaskAddress = None,
    home: Home = None,
) -> None:
    """One whole round as a Prefect flow: score → route → annotate → train."""
    from pipelines import modelling
    from pipelines.flows import curation_round

    catalog = open_catalog(home, must_exist=True)
    if modelling.scorer_model(catalog) is None and not modelling.trusted_examples(catalog):
        raise fail(
            f"{catalog.home} has no model and no trusted text to train one on; "
            "ingest some first: datawall ingest SOURCE --role trusted"
        )
    _scale_overrides(catalog.home, workers, dask_address)
    try:
        summary = curation_round(
            home=str(catalog.home), budget=budget, workers=workers, dask_address=dask_address
        )
    except WorkspaceBusy as exc:
        raise fail(str(exc)) from None
    out.print_json(data=json.loads(json.dumps(summary, default=str)))


@app.command("dedup")
def dedup_cmd(workers: Workers = None, dask_address: DaskAddress = None, home: Home = None) -> None:
    """Find near-duplicates across the whole catalog (MinHash LSH) and reject all but one."""
    from pipelines.flows import dedup_task

    catalog = open_catalog(home, must_exist=True)
    _scale_overrides(catalog.home, workers, dask_address)
    try:
        with catalog.writer("datawall dedup"):
            summary = dedup_task.fn(
                str(catalog.home), catalog.current_round(), workers, dask_address
            )
    except (ValueError, WorkspaceBusy, LakeError) as exc:
        raise fail(str(exc)) from None
    out.print_json(data=summary)


@app.command("score")
def score_cmd(
    model: Annotated[
        str | None,
        typer.Option(
            help="Score with this model instead of the workspace's current one: "
            "hf:PATH, a local causal-LM checkpoint (save_pretrained folder; needs datawall[hf])"
        ),
    ] = None,
    reference: Annotated[
        str | None,
        typer.Option(help="Reference model instead of the workspace's: hf:PATH"),
    ] = None,
    workers: Workers = None,
    dask_address: DaskAddress = None,
    home: Home = None,
) -> None:
    """Sample the current model, set the bar, and score every undecided candidate
    (prompt/response pairs against the model's own answer)."""
    from pipelines import modelling, scale, score, score_pairs
    from pipelines.flows import _with_scale

    catalog = open_catalog(home, must_exist=True)
    _scale_overrides(catalog.home, workers, dask_address)
    settings = _with_scale(load_settings(catalog.home), workers, dask_address)
    try:
        chosen = {
            k: modelling.hf_model_ref(v)
            for k, v in (("model", model), ("reference", reference))
            if v
        }
    except ValueError as exc:
        raise fail(str(exc)) from None
    with catalog.writer("datawall score"):
        round_ = catalog.current_round()
        ref = chosen.get("reference") or modelling.ensure_reference(catalog, settings)
        current = chosen.get("model") or modelling.scorer_model(catalog) or ref
        try:
            bar = score.model_bar(catalog, settings, round_, current, ref)
            n = scale.score_sharded(catalog, settings, round_, current, ref, bar)
            if n is None:
                n = score.score_candidates(catalog, settings, round_, current, ref, bar)
            n_pairs = score_pairs.score_pairs(catalog, settings, round_, current, ref, bar)
        except RuntimeError as exc:  # e.g. transformers missing for hf:PATH
            raise fail(str(exc)) from None
    out.print(
        f"round {round_}: bar {bar.bar:.4f} (model {current.model_id}); {n} candidates scored"
        + (f", {n_pairs} pairs scored against the model's own answers" if n_pairs else "")
    )


@app.command("route")
def route_cmd(
    budget: Annotated[int | None, typer.Option(help="Max hard cases sent to experts")] = None,
    home: Home = None,
) -> None:
    """Decide accept / reject / hard for the round's scored candidates and pairs."""
    from pipelines import route, score, score_pairs
    from pipelines.flows import _with_budget

    catalog = open_catalog(home, must_exist=True)
    settings = _with_budget(load_settings(catalog.home), budget)
    with catalog.writer("datawall route"):
        round_ = catalog.current_round()
        bar = score.read_bar(catalog, round_)
        if bar is None:
            raise fail(f"round {round_} has no bar yet: run `datawall score` first")
        counts = route.route_round(catalog, settings, round_, bar)
        counts += score_pairs.route_pairs_round(catalog, settings, round_)
    for (decision, reason), n in sorted(counts.items()):
        out.print(f"{decision:7s} {reason:20s} {n}")


@app.command("train")
def train_cmd(
    home: Home = None,
    nproc: Annotated[
        int,
        typer.Option(
            "--nproc",
            min=1,
            help="training processes: >1 launches torchrun (DDP; gloo on CPU, NCCL on GPU)",
        ),
    ] = 1,
) -> None:
    """Continue the current model on trusted + accepted text and register the checkpoint."""
    from pipelines import modelling

    catalog = open_catalog(home, must_exist=True)
    settings = load_settings(catalog.home)
    with catalog.writer("datawall train"):
        reference = modelling.ensure_reference(catalog, settings, nproc=nproc)
        parent = modelling.scorer_model(catalog) or reference
        model = modelling.train_round_model(
            catalog, settings, catalog.current_round(), parent, nproc=nproc
        )
    row = catalog.query(
        "SELECT model_id, val_bpb, steps, train_docs FROM models WHERE model_id = ?",
        [model.model_id],
    )
    print_table(row, "model")


# -- querying -----------------------------------------------------------------------------
@app.command("sql")
def sql_cmd(
    query: Annotated[
        str, typer.Argument(help="A DuckDB SQL query over the catalog's tables and views")
    ],
    format: Annotated[str, typer.Option("--format", "-f", help="table | csv | json")] = "table",
    home: Home = None,
) -> None:
    """Query the catalog with DuckDB SQL (takes no lock: works while a round runs)."""
    import duckdb

    if format not in ("table", "csv", "json"):
        raise fail(f"--format must be table, csv or json, not {format!r}", 2)
    catalog = open_catalog(home, must_exist=True)
    try:
        result = catalog.query(query)
    except duckdb.Error as exc:
        raise fail(str(exc)) from None
    if format == "table":
        print_table(result)
    elif format == "csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(result, sys.stdout.buffer)
    else:
        sys.stdout.write(json.dumps(result.to_pylist(), default=str, ensure_ascii=False) + "\n")


@app.command("report")
def report_cmd(
    home: Home = None,
    round_: Annotated[
        int | None, typer.Option("--round", help="Report this round [default: the last finished]")
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Folder for index.html + PNGs [default: HOME/reports/round-NNNN]"
        ),
    ] = None,
) -> None:
    """A summary of every round in the terminal, and one round's HTML report with figures."""
    from pipelines.report import ReportError, finished_rounds, write_report

    catalog = open_catalog(home, must_exist=True)
    if round_ is None and not finished_rounds(catalog):
        print_table(catalog.named("decision_counts"), "latest decisions")
        err.print("no finished round yet: the HTML report comes after `datawall round`")
        return
    try:
        report = write_report(catalog, round_, out_dir)  # never locks: readers don't
    except ReportError as exc:
        raise fail(str(exc)) from None
    print_table(catalog.named("round_report"), "rounds")
    print_table(catalog.named("decision_counts"), "latest decisions")
    out.print(f"report of round {report.round}: {report.index}", soft_wrap=True)


@app.command("export")
def export_cmd(
    dest: Annotated[Path, typer.Argument(help="Destination folder (empty, or an earlier export)")],
    format: Annotated[
        str, typer.Option("--format", "-f", help="parquet | jsonl | hf | tokens")
    ] = "parquet",
    round_: Annotated[
        int | None, typer.Option("--round", help="Only what was accepted in this round")
    ] = None,
    where: Annotated[
        str | None,
        typer.Option(help='A DuckDB predicate over the export\'s columns, e.g. "quality > 0.9"'),
    ] = None,
    shard_mb: Annotated[int, typer.Option(help="Shard size in MB of text (tokens: of ids)")] = 256,
    push_to_hub: Annotated[
        str | None, typer.Option(help="With --format hf: also push to this Hub repo")
    ] = None,
    home: Home = None,
) -> None:
    """Write the curated set (accepted, expert-corrected text) with provenance and a dataset card."""
    from pipelines.export import ExportError, export

    catalog = open_catalog(home, must_exist=True)
    if push_to_hub and format != "hf":
        raise fail("--push-to-hub needs --format hf", 2)
    start = time.perf_counter()
    try:
        report = export(
            catalog,
            dest,
            format,
            round_=round_,
            where=where,
            shard_bytes=shard_mb << 20,
            push_to_hub=push_to_hub,
        )
    except ExportError as exc:
        raise fail(str(exc), 2) from None
    elapsed = time.perf_counter() - start
    out.print(
        f"{report.rows} rows, {len(report.files)} files, {report.bytes_written / 1e6:.2f} MB "
        f"in {elapsed:.2f} s ({report.rows / max(elapsed, 1e-9):.0f} rows/s, "
        f"{report.bytes_written / 1e6 / max(elapsed, 1e-9):.2f} MB/s) → {report.dest}"
    )


# -- demo & deploy ------------------------------------------------------------------------
@app.command("demo")
def demo_cmd(
    seed: Annotated[int, typer.Option(help="Seed of the demo corpus")] = 0,
    budget: Annotated[int | None, typer.Option(help="Max hard cases sent to experts")] = None,
    home: Home = None,
    lake: Lake = None,
) -> None:
    """Build the offline demo corpus (Python's own docstrings + junk) and its instruction set
    (questions about stdlib functions → docstring summaries, + bad answers), ingest both, run
    one round."""
    from pipelines.demo_corpus import build_demo_corpus
    from pipelines.demo_instruct import build_instruct_set
    from pipelines.flows import curation_round

    start = time.time()
    use_lake(home, lake)
    catalog = open_catalog(home)
    catalog.init()
    data_dir = catalog.home / "demo-data"
    paths = build_demo_corpus(data_dir, seed=seed)
    for role in ("trusted", "validation", "pool"):
        ingest_cmd(str(paths[role]), role=role, text_field="text", id_field="id", home=catalog.home)
    pairs = build_instruct_set(data_dir, seed=seed)  # instruct-{trusted,validation,pool}.jsonl
    for role in ("trusted", "validation", "pool"):
        ingest_cmd(
            str(pairs[role]),
            role=role,
            id_field="id",
            prompt_field="prompt",
            response_field="response",
            home=catalog.home,
        )
    summary = curation_round(home=str(catalog.home), budget=budget)
    out.print_json(data=json.loads(json.dumps(summary, default=str)))
    report_cmd(home=catalog.home)
    out.print(
        f"\n[bold]demo finished in {time.time() - start:.0f} s.[/] Workspace: {catalog.home}\n"
        "Look around:\n"
        f'  {_self_command()} sql "SELECT decision, reason, count(*) FROM latest_decisions '
        f'GROUP BY ALL" --home {catalog.home}\n'
        f"  {_self_command()} report --home {catalog.home}\n"
        f"  duckdb {catalog.home / 'catalog.duckdb'}\n"
        f"Hard cases for Label Studio (import format): {summary['queue']['queue']}",
        soft_wrap=True,
    )


def _self_command() -> str:
    """How this program was called, relative to the working folder when it is inside it."""
    me = Path(sys.argv[0])
    try:
        return str(me.resolve().relative_to(Path.cwd()))
    except ValueError:
        return me.name


@app.command("deploy")
def deploy_cmd(
    prefect_file: Annotated[Path, typer.Option(help="Deployments file")] = Path("flows.yaml"),
) -> None:
    """Register the deployments of flows.yaml with the configured Prefect server."""
    if not prefect_file.exists():
        raise fail(f"{prefect_file}: no such file")
    prefect = Path(sys.executable).with_name("prefect")
    cmd = [str(prefect), "--no-prompt", "deploy", "--prefect-file", str(prefect_file), "--all"]
    raise typer.Exit(subprocess.call(cmd))


if __name__ == "__main__":
    app()
