"""What the `datawall` commands share: consoles, the --home option, errors, tables."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pipelines.catalog import Catalog
from pipelines.lake import LakeError, record_lake
from pipelines.settings import resolve_home

out = Console(width=None if sys.stdout.isatty() else 160)  # logs: no 80-column squeeze
err = Console(stderr=True, soft_wrap=True)

Home = Annotated[
    Path | None,
    typer.Option(
        "--home", envvar="DATAWALL_HOME", help="Workspace folder [default: ./datawall-home]"
    ),
]


Lake = Annotated[
    str | None,
    typer.Option(
        "--lake",
        help="Keep this workspace's Parquet lake at this fsspec URL (s3://bucket/prefix, "
        "file:///path); recorded in HOME/datawall.yaml [default: HOME/lake]",
    ),
]


def use_lake(home: Path | None, lake: str | None) -> None:
    """Record ``--lake`` as the workspace's lake before anything opens the catalog."""
    if lake:
        try:
            record_lake(resolve_home(home), lake)
        except (ValueError, LakeError) as exc:
            raise fail(str(exc), 2) from None


def open_catalog(home: Path | None, must_exist: bool = False) -> Catalog:
    try:
        catalog = Catalog(resolve_home(home))
    except (ValueError, LakeError) as exc:  # a bad storage setting, a missing fsspec backend
        raise fail(str(exc), 2) from None
    if must_exist and not catalog.initialised:
        err.print(f"[red]error:[/] no datawall workspace at {catalog.home}")
        raise typer.Exit(2)
    return catalog


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/] {message}")
    return typer.Exit(code)


def print_table(table, title: str | None = None) -> None:
    view = Table(title=title, show_lines=False)
    for name in table.column_names:
        view.add_column(name)
    for row in table.to_pylist():
        view.add_row(*("" if v is None else fmt(v) for v in row.values()))
    out.print(view)


def fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
