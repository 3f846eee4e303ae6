"""Temporary files a killed writer left are swept by the next writer; live writers' are kept."""

from __future__ import annotations

import os
import subprocess
import sys

from pipelines.catalog import Catalog
from pipelines.recovery import temp_file_pid


def test_the_next_writer_sweeps_what_a_dead_writer_left(tmp_path, caplog):
    catalog = Catalog(tmp_path / "home").init()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)  # exited and reaped: no such process now
    lake = catalog.home / "lake" / "candidates"
    left = [
        lake / f".k-00000.parquet.{dead_pid}.tmp",
        catalog.home / "models" / "m" / f".model.safetensors.tmp-{dead_pid}",
        catalog.home / "models" / "m" / "resume" / f"step_00000006.tmp-{dead_pid}" / "config.json",
        catalog.home / "annotations" / "queue" / ".round-0001.json.x1y2.tmp",
    ]
    live = lake / f".k-00001.parquet.{os.getpid()}.tmp"  # a writer still running
    kept = [lake / "k-00002.parquet", catalog.home / "models" / "m" / "model.safetensors"]
    for path in [*left, live, *kept]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"partial")
    with caplog.at_level("WARNING", logger="pipelines"), catalog.writer("test"):
        pass
    assert not any(p.exists() for p in left)
    assert not (catalog.home / "models" / "m" / "resume" / f"step_00000006.tmp-{dead_pid}").exists()
    assert live.exists() and all(p.exists() for p in kept)
    assert "interrupted writer" in caplog.text
    assert temp_file_pid("k.parquet") is False and temp_file_pid(".a.12.tmp") == 12
