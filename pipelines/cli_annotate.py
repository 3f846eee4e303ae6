"""`datawall annotate …`: hard cases to experts (file queue or Label Studio) and back."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipelines.catalog import WorkspaceBusy
from pipelines.cli_common import Home, err, fail, open_catalog, out, print_table
from pipelines.settings import load_settings

annotate_app = typer.Typer(help="Hard cases for experts: push, import, pull, status, simulate.")


# -- annotation ---------------------------------------------------------------------------
@annotate_app.command("push")
def annotate_push(home: Home = None) -> None:
    """Write the round's queued hard cases to the import file; to Label Studio when configured."""
    from annotation.studio import StudioError
    from pipelines import annotate, annotate_pairs, studio

    catalog = open_catalog(home, must_exist=True)
    settings = load_settings(catalog.home)
    with catalog.writer("datawall annotate push"):
        round_ = catalog.current_round()
        model_id = (
            catalog.scalar("SELECT model_id FROM bars WHERE round = ?", [round_]) or "unknown"
        )
        path, n = annotate.push(catalog, settings, round_, model_id)
        out.print(f"{n} task(s) in {path}")
        try:
            pair_path, n_pairs = annotate_pairs.push(catalog, round_, model_id)
        except ValueError as exc:
            raise fail(str(exc)) from None
        if pair_path is not None:
            out.print(f"{n_pairs} pairwise task(s) in {pair_path}")
        server = studio.studio_from_env(catalog, settings)
        if server is not None:
            try:
                report = studio.push(catalog, settings, server, round_, model_id)
                pairs = None
                if catalog.scalar("SELECT count(*) FROM pair_tasks"):
                    pairs = annotate_pairs.push_server(catalog, server, round_, model_id)
            except StudioError as exc:
                raise fail(f"{exc}; nothing is lost: run the push again when it is back") from None
            for what in (report, pairs):
                if what is not None:
                    out.print(
                        f"Label Studio {what.server} project {what.project_id}: {what.tasks} "
                        f"pending task(s), {what.imported} imported now"
                    )


@annotate_app.command("import")
def annotate_import(
    file: Annotated[
        Path, typer.Argument(help="A Label Studio JSON export", exists=True, dir_okay=False)
    ],
    home: Home = None,
) -> None:
    """Read a Label Studio JSON export back: annotations, consensus, expert decisions."""
    from pipelines import annotate

    catalog = open_catalog(home, must_exist=True)
    settings = load_settings(catalog.home)
    try:
        with catalog.writer("datawall annotate import"):
            report = annotate.import_export(catalog, settings, file, catalog.current_round())
    except (ValueError, WorkspaceBusy) as exc:
        raise fail(str(exc)) from None
    for line in report.errors:
        err.print(f"[yellow]skipped:[/] {line}")
    if report.already_imported:
        out.print(f"{file}: already imported; nothing changed")
        return
    rewrites = f", {report.rewrites} rewrite(s) as new candidates" if report.rewrites else ""
    out.print(
        f"{report.annotations_new} new annotation(s) of {report.annotations_read} read, "
        f"{report.malformed} skipped, {report.decisions} expert decision(s){rewrites}"
    )


@annotate_app.command("pull")
def annotate_pull(home: Home = None) -> None:
    """Pull answers from Label Studio (when configured) and import exports in HOME/annotations/inbox/."""
    from pipelines.flows import annotation_pull

    catalog = open_catalog(home, must_exist=True)
    out.print_json(data=annotation_pull(home=str(catalog.home)))


@annotate_app.command("status")
def annotate_status(home: Home = None) -> None:
    """Hard cases queued, answered and waiting, per round; and the server's view."""
    from pipelines import annotate_pairs, studio

    catalog = open_catalog(home, must_exist=True)
    print_table(catalog.named("annotation_status"), "annotation status")
    server = studio.studio_from_env(catalog, load_settings(catalog.home))
    if server is not None:
        out.print_json(data=studio.status(catalog, server))
    if catalog.scalar("SELECT count(*) FROM pair_tasks"):
        out.print_json(data=annotate_pairs.status(catalog, server))


@annotate_app.command("simulate")
def annotate_simulate(
    oracle_field: Annotated[str, typer.Option(help="Source column holding accept/reject")],
    annotators: Annotated[int, typer.Option(min=1, help="Simulated experts per task")] = 1,
    noise: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Chance a noisy expert flips")
    ] = 0.0,
    noisy: Annotated[
        int | None, typer.Option(help="How many experts are noisy [default: all]")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed")] = 0,
    rewrite_field: Annotated[
        str | None,
        typer.Option(
            help="Pairs: source column with the response an expert writes when both are bad"
        ),
    ] = None,
    home: Home = None,
) -> None:
    """Answer pending hard cases from a gold column, through the same path a person's takes.

    Texts read accept/reject from the column; prompt/response pairs read candidate, model or
    both_bad from the same column and answer the blind pairwise tasks.
    """
    from annotation.studio import StudioError
    from pipelines import annotate_pairs, studio

    catalog = open_catalog(home, must_exist=True)
    settings = load_settings(catalog.home)
    try:
        with catalog.writer("datawall annotate simulate"):
            result = studio.simulate(
                catalog,
                settings,
                studio.studio_from_env(catalog, settings),
                oracle_field,
                annotators=annotators,
                noise=noise,
                noisy=noisy,
                seed=seed,
            )
            if catalog.scalar("SELECT count(*) FROM pair_tasks"):
                pairs = annotate_pairs.simulate(
                    catalog,
                    studio.studio_from_env(catalog, settings),
                    oracle_field,
                    rewrite_field,
                    annotators=annotators,
                    noise=noise,
                    noisy=noisy,
                    seed=seed,
                )
                if pairs["answered"]:
                    result["pairs"] = pairs
    except (ValueError, StudioError, WorkspaceBusy) as exc:
        raise fail(str(exc)) from None
    out.print_json(data=result)
