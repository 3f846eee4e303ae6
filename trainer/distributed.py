"""Data-parallel training over several processes: ``torchrun`` + DistributedDataParallel.

``launch`` writes the job (texts, configs, out_dir) to ``out_dir/launch/job.json`` and runs
``python -m torch.distributed.run --standalone --nproc_per_node N -m trainer.distributed``;
every process then calls ``trainer.train.train`` on the same job. Inside ``train``:

- the process group uses NCCL on GPUs (one GPU per process, ``cuda:LOCAL_RANK``) and gloo
  on CPUs;
- every rank draws the same global batch (same seed, same ``BatchIterator``) and trains on
  its own contiguous slice of ``batch_size / world_size`` rows; DDP averages the gradients,
  so a step equals a single-process step on the whole batch (up to float summation order);
- rank 0 alone evaluates and writes checkpoints, resume state and metrics.

The run stays resumable and idempotent exactly as in one process: calling ``train`` (or
``launch``) again on the same out_dir continues or returns the finished result.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.distributed as dist

from trainer.config import ModelConfig, TrainConfig
from trainer.data import Example, Pair

logger = logging.getLogger("trainer")

JOB_DIR = "launch"


def world() -> tuple[int, int]:
    """(rank, world_size) of this process; (0, 1) when not started by torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def setup(device: torch.device) -> torch.device:
    """Join the process group if torchrun started this process; returns the device to use.

    A no-op (returning ``device``) for a single process.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def mean_across_ranks(value: torch.Tensor) -> torch.Tensor:
    """The mean of a scalar tensor over all ranks (itself in one process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / dist.get_world_size()


def _to_json(examples: Sequence[Example]) -> list:
    """Texts stay strings; a pair becomes {"prompt", "response"} (``_from_json`` reads it)."""
    return [e._asdict() if isinstance(e, Pair) else e for e in examples]


def _from_json(items: list) -> list[Example]:
    return [Pair(**e) if isinstance(e, dict) else e for e in items]


def launch(
    train_texts: Sequence[Example],
    val_texts: Sequence[Example],
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    out_dir: Path,
    *,
    nproc: int,
    init_from: Path | None = None,
) -> None:
    """Train in ``nproc`` processes with torchrun; the result is the checkpoint in out_dir.

    Read it back with ``trainer.train.train`` on the same arguments (it returns a finished
    run without training) or ``trainer.checkpoint.load_model``.
    """
    if nproc < 1:
        raise ValueError(f"launch: nproc must be >= 1, got {nproc}")
    if train_cfg.batch_size % nproc:
        raise ValueError(
            f"launch: batch_size={train_cfg.batch_size} must be a multiple of nproc={nproc} "
            "(each process trains on batch_size / nproc rows of the global batch)"
        )
    out_dir = Path(out_dir)
    job_dir = out_dir / JOB_DIR
    job_dir.mkdir(parents=True, exist_ok=True)
    job = {
        "train_texts": _to_json(train_texts),
        "val_texts": _to_json(val_texts),
        "model": model_cfg.to_dict(),
        "train": train_cfg.to_dict(),
        "out_dir": str(out_dir.resolve()),
        "init_from": None if init_from is None else str(init_from),  # as train() records it
    }
    job_file = job_dir / "job.json"
    tmp = job_dir / f".job.json.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(job))
    os.replace(tmp, job_file)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "trainer.distributed",
        str(job_file),
    ]
    logger.info("launching %d training processes: %s", nproc, " ".join(cmd))
    env = os.environ | {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    done = subprocess.run(cmd, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"torchrun with {nproc} processes failed (exit code {done.returncode}) training "
            f"{out_dir}; its output is above; run again to resume from the last checkpoint"
        )
    shutil.rmtree(job_dir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of each torchrun process: ``python -m trainer.distributed JOB.json``."""
    from trainer.train import train  # here: trainer.train imports this module

    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 1:
        raise SystemExit("usage: python -m trainer.distributed JOB.json (written by launch)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s rank %(process)d %(message)s")
    job = json.loads(Path(args[0]).read_text())
    try:
        train(
            _from_json(job["train_texts"]),
            _from_json(job["val_texts"]),
            ModelConfig.from_dict(job["model"]),
            TrainConfig.from_dict(job["train"]),
            Path(job["out_dir"]),
            init_from=None if job["init_from"] is None else Path(job["init_from"]),
        )
    finally:
        gc.collect()  # the DDP wrapper and its reducer go before the process group
        if dist.is_initialized():
            dist.destroy_process_group()
    # Leave without the interpreter's teardown: gloo's threads could still be torn down by
    # static destructors there ("terminate called without an active exception", seen
    # once in a few runs on a loaded machine), turning a finished run into a failed one.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
