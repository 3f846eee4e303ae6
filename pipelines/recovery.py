"""Clean up after a killed writer: delete the temporary files it left in the workspace.

Every durable file of a workspace (catalog Parquet, checkpoints, the annotation queue,
settings, ``catalog.duckdb``) is written under a temporary name and renamed into place, so
a process killed mid-write leaves a temporary file that no reader ever opens (readers glob
``*.parquet``; checkpoints are found by exact name). Nothing is lost, but the files would
pile up. Whoever next takes the workspace's writer lock calls :func:`sweep_temp_files`:
holding the lock means no other writer is running, so a temporary file is a leftover.

A name that carries a process id (``.NAME.PID.tmp``, ``NAME.tmp-PID``,
``.catalog.PID.duckdb``) is kept while that process is alive: a reader that creates a
missing empty table (``Catalog.connect``) writes without the lock.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

logger = logging.getLogger("pipelines")

# (pattern, group holding the writer's pid or None)
_TEMP_NAMES = (
    re.compile(r"^\..+\.(\d+)\.tmp$"),  # catalog, export: .NAME.PID.tmp
    re.compile(r"^.+\.tmp-(\d+)$"),  # checkpoints, quality model, resume dirs: NAME.tmp-PID
    re.compile(r"^\.catalog\.(\d+)\.duckdb(?:\.wal)?$"),  # catalog.duckdb being rewritten
    re.compile(r"^.+\.tmp$"),  # settings, queue (mkstemp), demo corpus: no pid
)


def temp_file_pid(name: str) -> int | None | bool:
    """The pid a temporary name carries, None when it carries none, False if not temporary."""
    for pattern in _TEMP_NAMES:
        match = pattern.match(name)
        if match:
            return int(match.group(1)) if match.groups() else None
    return False


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def sweep_temp_files(home: Path) -> list[Path]:
    """Delete temporary files and folders under ``home`` whose writer is gone; returns them.

    Call only while holding the workspace's writer lock.
    """
    removed = []
    # one streaming walk (this runs every time a writer takes the lock): no listing of the
    # whole workspace held or sorted, and no descent into a temporary folder being removed
    for folder, dirs, files in os.walk(home):
        for name in list(dirs) + files:
            pid = temp_file_pid(name)
            if pid is False or (pid is not None and _alive(pid)):
                continue
            path = Path(folder) / name
            if name in dirs and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
                dirs.remove(name)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    removed.sort()
    if removed:
        logger.warning(
            "removed %d temporary file(s) left by an interrupted writer in %s (first: %s)",
            len(removed),
            home,
            removed[0].relative_to(home),
        )
    return removed
