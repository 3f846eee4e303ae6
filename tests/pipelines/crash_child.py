"""Run ``datawall`` commands in this process and SIGKILL it at the K-th hook point.

Used by tests/pipelines/test_crash.py as a real subprocess::

    python tests/pipelines/crash_child.py ingest SRC --home H [+ score --home H ...]

Commands separated by ``+`` run one after another, as a user would type them.

Environment:
- ``DATAWALL_KILL_LOG``: a file; every hook point appends one line (its name) and flushes,
  so an uninterrupted run tells how many points a step has.
- ``DATAWALL_KILL_AT``: K >= 1 sends ``SIGKILL`` to this process at the K-th point (0 or
  unset: never). The kill is the real signal, not an exception: no ``finally`` block,
  no ``atexit`` handler and no buffered write gets a chance to run.
- ``DATAWALL_PAUSE_UNTIL``: a path; at the first point the process waits (up to 10
  minutes) until that file exists: a writer held mid-step, for the two-writers test.

Hook points wrap the places where state becomes durable, three per write (before the
temporary file, between it and the rename, after the rename): every catalog Parquet file,
every checkpoint file, and each batch of tasks imported into Label Studio.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import pyarrow.parquet as pq

from annotation import studio as ls
from pipelines import catalog as catalog_mod
from trainer import checkpoint

_AT = int(os.environ.get("DATAWALL_KILL_AT", "0") or 0)
_LOG = os.environ.get("DATAWALL_KILL_LOG")
_PAUSE = os.environ.get("DATAWALL_PAUSE_UNTIL")
_count = 0


def point(name: str) -> None:
    """One hook point: log it, and die here if it is the K-th."""
    global _count
    _count += 1
    if _LOG:
        fd = os.open(_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{name}\n".encode())
        finally:
            os.close(fd)
    if _count == _AT:
        os.kill(os.getpid(), signal.SIGKILL)
    if _PAUSE and _count == 1:
        deadline = time.monotonic() + 600
        while not os.path.exists(_PAUSE) and time.monotonic() < deadline:
            time.sleep(0.05)


_orig_write_table = pq.write_table
_orig_catalog_write = catalog_mod.Catalog.write


def _write_table(table, where, *args, **kwargs):
    label = os.path.basename(str(where))
    point(f"parquet {label} before")
    _orig_write_table(table, where, *args, **kwargs)
    point(f"parquet {label} written")


def _catalog_write(self, table, data, key):
    path = _orig_catalog_write(self, table, data, key)
    point(f"catalog {table}/{key} renamed")
    return path


_orig_ckpt_write = checkpoint._atomic_write


def _ckpt_write(path, write) -> None:
    label = f"{path.parent.name}/{path.name}"
    point(f"checkpoint {label} before")
    _orig_ckpt_write(path, lambda tmp: (write(tmp), point(f"checkpoint {label} temp written")))
    point(f"checkpoint {label} renamed")


_orig_push = ls.Studio.push


def _push(self, project_id, tasks, *, on_batch=None):
    def batch_done(n: int) -> None:
        point(f"label-studio imported {n}")
        if on_batch:
            on_batch(n)

    point("label-studio push before")
    return _orig_push(self, project_id, tasks, on_batch=batch_done)


def main(argv: list[str]) -> None:
    pq.write_table = _write_table
    catalog_mod.Catalog.write = _catalog_write
    checkpoint._atomic_write = _ckpt_write
    ls.Studio.push = _push
    from pipelines.cli import app

    commands: list[list[str]] = [[]]
    for arg in argv:
        if arg == "+":
            commands.append([])
        else:
            commands[-1].append(arg)
    for command in commands:
        try:
            code = app(command, standalone_mode=False)  # click returns typer.Exit's code
        except SystemExit as exc:
            code = exc.code
        if code:  # a failed command ends the run with its code, as `a && b` would
            sys.exit(code)
        point(f"command {command[0]} done")


if __name__ == "__main__":
    main(sys.argv[1:])
