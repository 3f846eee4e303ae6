"""Rich progress bars for long steps, as plain callbacks the libraries can call."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)


@contextlib.contextmanager
def progress_bar(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; draws a bar on a terminal, prints every 10% elsewhere (logs, CI)."""
    if not sys.stderr.isatty():
        yield _plain_counter(description, total)
        return
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)


def note(message: str) -> None:
    """One line about a step that has no countable progress (sampling, fitting)."""
    console.print(f"[dim]{message}[/]")


def _plain_counter(description: str, total: int | None) -> Callable[..., None]:
    """Without a terminal: one line per tenth of the work, so logs show progress too."""
    state = {"done": 0, "next": 0.1, "start": time.perf_counter()}

    def advance(n: int = 1, metrics: dict | None = None) -> None:
        state["done"] += n
        if not total or state["done"] / total + 1e-9 < state["next"]:
            return
        while state["done"] / total + 1e-9 >= state["next"]:
            state["next"] += 0.1
        extra = "" if not metrics else " " + _fmt(metrics)
        elapsed = time.perf_counter() - state["start"]
        console.print(f"{description}: {state['done']}/{total} ({elapsed:.0f} s){extra}")

    return advance


def _fmt(metrics: dict) -> str:
    return " ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()
    )


@contextlib.contextmanager
def step_bar(description: str, total: int) -> Iterator[Callable[[int, int, dict], None]]:
    """Progress for training loops: yields ``callback(step, total, metrics)``."""
    if not sys.stderr.isatty():
        tick = _plain_counter(description, total)
        last = {"step": 0}

        def plain(step: int, total_: int, metrics: dict) -> None:
            tick(step - last["step"], metrics)
            last["step"] = step

        yield plain
        return
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(description, total=total, info="")

        def callback(step: int, total_: int, metrics: dict) -> None:
            bar.update(task, completed=step, total=total_, info=_fmt(metrics))

        yield callback
