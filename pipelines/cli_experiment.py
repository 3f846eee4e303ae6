"""`datawall experiment`: curated vs random vs full pool vs heuristics, at equal tokens.

With --prompt-field/--response-field (or --messages-field) the sources are prompt/response
pairs and the arms are compared on response bits per byte."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from pipelines.catalog import WorkspaceBusy
from pipelines.cli_common import Home, fail, open_catalog, out, print_table


def experiment_cmd(
    pool: Annotated[
        str, typer.Option(help="The candidate pool to curate: file, folder or hf:NAME")
    ],
    validation: Annotated[
        str, typer.Option(help="Held-out text the arms are measured on: file, folder or hf:NAME")
    ],
    trusted: Annotated[
        str,
        typer.Option(help="Trusted text (reference model, classifier): file, folder or hf:NAME"),
    ],
    text_field: Annotated[str, typer.Option(help="Field holding the text")] = "text",
    id_field: Annotated[str | None, typer.Option(help="Field holding your own id")] = None,
    oracle_field: Annotated[
        str | None,
        typer.Option(help="Field with accept/reject: simulated experts answer the hard cases"),
    ] = None,
    rounds: Annotated[
        int | None, typer.Option(help="Curation rounds the workspace should have [default: 2]")
    ] = None,
    budget: Annotated[int | None, typer.Option(help="Max hard cases to experts per round")] = None,
    tokens: Annotated[
        int | None,
        typer.Option(help="Token budget T of every run [default: epoch-cap x smallest arm]"),
    ] = None,
    seeds: Annotated[int | None, typer.Option(help="Seeds per arm [default: 3]")] = None,
    epoch_cap: Annotated[
        float | None, typer.Option(help="Most passes over an arm's data [default: 4]")
    ] = None,
    prompt_field: Annotated[
        str | None,
        typer.Option(help="Pairs: field holding the prompt (with --response-field)"),
    ] = None,
    response_field: Annotated[
        str | None, typer.Option(help="Pairs: field holding the response")
    ] = None,
    messages_field: Annotated[
        str | None, typer.Option(help="Pairs: field holding chat messages [{role, content}]")
    ] = None,
    rewrite_field: Annotated[
        str | None,
        typer.Option(help="Pairs: field with the simulated expert's rewritten response"),
    ] = None,
    home: Home = None,
) -> None:
    """Curate the pool, then train fresh models at the same token budget on the curated set,
    a random sample of the same size, the whole pool and heuristics-only filtering.

    On pairs the oracle field holds candidate / model / both_bad and the measure is the
    validation responses' bits per byte (accepted pairs vs all pairs at equal tokens)."""
    from pipelines.experiment import ExperimentError, experiment
    from pipelines.sources import SourceError

    if tokens is not None and tokens <= 0:
        raise fail(f"--tokens must be > 0, got {tokens}", 2)
    catalog = open_catalog(home)
    start, cpu = time.time(), time.process_time()
    try:
        result = experiment(
            pool=pool,
            validation=validation,
            trusted=trusted,
            home=str(catalog.home),
            text_field=text_field,
            id_field=id_field,
            oracle_field=oracle_field,
            budget=budget,
            rounds=rounds,
            seeds=seeds,
            tokens=tokens,
            epoch_cap=epoch_cap,
            prompt_field=prompt_field,
            response_field=response_field,
            messages_field=messages_field,
            rewrite_field=rewrite_field,
        )
    except (ExperimentError, SourceError, WorkspaceBusy) as exc:
        raise fail(str(exc), 2) from None
    table = result["summary"]
    shown = [
        "arm", "seeds", "n_docs", "arm_tokens", "tokens_seen", "epochs", "capped",
        "bpb_mean", "bpb_std", "bpb_min", "bpb_max",
    ]  # fmt: skip
    pairs = result.get("kind") == "pair"
    metric = "response bits per byte" if pairs else "bits per byte"
    print_table(
        table.select(shown), f"experiment {result['experiment_id']}: final validation {metric}"
    )
    rows = {r["arm"]: r for r in table.to_pylist()}
    first = next(iter(rows.values()), {})
    ratio = first.get("tokens_to_target_ratio")
    reached = (
        f"curated reaches the full pool's final bpb {first.get('full_final_bpb', float('nan')):.4f}"
        + (
            f" at {first['tokens_to_target']:,.0f} tokens ({ratio:.2f}x the budget)"
            if ratio is not None
            else " nowhere within the budget (not reached)"
        )
    )
    out.print(reached)
    if pairs and "curated" in rows and "full" in rows:
        cur, full = rows["curated"], rows["full"]
        out.print(
            f"response bpb trained on accepted pairs {cur['bpb_mean']:.4f} vs on all pairs "
            f"{full['bpb_mean']:.4f} at {cur['tokens_seen']:,} vs {full['tokens_seen']:,} "
            f"tokens ({full['bpb_mean'] - cur['bpb_mean']:+.4f} bpb for accepted)",
            soft_wrap=True,
        )
    if "curated" in rows and "random" in rows:
        delta = rows["random"]["bpb_mean"] - rows["curated"]["bpb_mean"]
        out.print(
            f"curated vs random: {delta:+.4f} bpb ({'better' if delta > 0 else 'not better'})"
        )
    out.print(
        f"{time.time() - start:.0f} s wall, {time.process_time() - cpu:.0f} s CPU (this process). "
        f'Query: datawall sql "SELECT * FROM experiment_summary WHERE experiment_id = '
        f"'{result['experiment_id']}'\"",
        soft_wrap=True,
    )
