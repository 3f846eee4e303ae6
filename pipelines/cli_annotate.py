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
    from pipelines import annotate, studio

    catalog = open_catalog(home, must_exist=True)
    settings = load_settings(catalog.home)
    with catalog.writer("datawall annotate push"):
        round_ = catalog.current_round()
        model_id = (
            catalog.scalar("SELECT model_id FROM bars WHERE round = ?", [round_]) or "unknown"
        )
        path, n = annotate.push(catalog, settings, round_, model_id)
        out.print(f"{n} task(s) in {path}")
        server = studio.studio_from_env(catalog, settings)
        if server is not None:
            try:
                report = studio.push(catalog, settings, server, round_, model_id)
            except StudioError as exc:
                raise fail(f"{exc}; nothing is lost: run the push again when it is back") from None
            out.print(
                f"Label Studio {report.server} project {report.project_id}: {report.tasks} "
                f"pending task(s), {report.imported} imported now"
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
    out.print(
        f"{report.annotations_new} new annotation(s) of {report.annotations_read} read, "
        f"{report.malformed} skipped, {report.decisions} expert decision(s)"
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
    from pipelines import studio

    catalog = open_catalog(home, must_exist=True)
    print_table(catalog.named("annotation_status"), "annotation status")
    server = studio.studio_from_env(catalog, load_settings(catalog.home))
    if server is not None:
        out.print_json(data=studio.status(catalog, server))


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
    home: Home = None,
) -> None:
    """Answer pending hard cases from a gold column, through the same path a person's takes."""
    from annotation.studio import StudioError
    from pipelines import studio

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
    except (ValueError, StudioError, WorkspaceBusy) as exc:
        raise fail(str(exc)) from None
    out.print_json(data=result)
