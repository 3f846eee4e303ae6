"""The training loop: pack text, train a language model with AdamW, evaluate, checkpoint.

nanoGPT-style: one function, ``train``, that reads top to bottom. Resumable and idempotent:

- every ``checkpoint_every`` steps the exact state (weights, optimizer, step, data position,
  RNG) goes to ``out_dir/resume/step_NNNNNNNN/`` (written under a temporary name, then
  renamed); calling ``train`` again on the same ``out_dir`` continues from it, and the
  final weights equal those of an uninterrupted run;
- on finish the final checkpoint (``config.json`` with ``"complete": true``) is written and
  ``resume/`` deleted; calling ``train`` on a finished ``out_dir`` returns its result.

Optimiser: AdamW with weight decay only on matrices and conv kernels (in_proj, out_proj,
conv1d weights); embeddings (tied with the head), norms, biases, A_log, D and dt_bias are not
decayed (as in Mamba). Schedule: linear warmup, then cosine to lr * min_lr_ratio. On CUDA the
forward runs under bf16 autocast (weights, optimizer state and the loss stay fp32);
``TrainConfig.compile`` wraps the model in ``torch.compile``.

Tokenizer: bytes by default; with ``ModelConfig.tokenizer="bpe"`` a fresh run learns
byte-level BPE on its training texts before packing, a continued run (``init_from``) or a
resumed one reuses the checkpoint's, and every checkpoint saves it as tokenizer.json.

Training examples are plain texts or prompt/response pairs (``trainer.data.Pair``). A pair
is trained on its response only: the loss is the mean cross-entropy over the counted
targets, sum(ce * mask) / sum(mask), with the prompt's targets masked out (trainer.data). A
run without pairs has no mask and keeps the plain mean over every target, bit for bit. Under
DDP each rank's slice is weighted by the global count of counted targets (every rank draws
the whole batch, so it knows it without communication): rank r's loss is
sum_r(ce * mask) * world_size / sum(mask), and DDP's average of the ranks' gradients is the
gradient of the global batch's masked mean, however the counted targets fall on the ranks.

Every step appends {"step", "loss", "lr", "tokens_seen", "tok_per_s", "elapsed_s"} to
``out_dir/metrics.jsonl`` (a resumed run first drops the lines past its resume point) and
logs it every ``steps / 20`` steps. Every validation (each ``eval_every`` steps and at the
end) appends {"step", "tokens_seen", "val_bpb"} to ``out_dir/evals.jsonl``, the curve of
validation loss against tokens seen; with pairs in the validation set it also holds
"val_text_bpb" and "val_response_bpb" (bits on texts only, on responses only; ``val_bpb`` is
over everything counted). Under torchrun the same function trains with DDP (see
trainer.distributed).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from trainer import distributed
from trainer.checkpoint import (
    CONFIG,
    CheckpointError,
    load_model,
    load_tokenizer,
    load_train_state,
    read_config,
    save_checkpoint,
)
from trainer.config import ModelConfig, TrainConfig
from trainer.data import BatchIterator, Example, Pair, example_text, has_pairs, pack_examples
from trainer.evaluate import CorpusBits, corpus_bits
from trainer.models import LanguageModel, build_model
from trainer.tokenizer import BPETokenizer, ByteTokenizer, Tokenizer

logger = logging.getLogger("trainer")

RESUME_DIR = "resume"
METRICS = "metrics.jsonl"
EVALS = "evals.jsonl"  # validation bits per byte against tokens seen
_STEP_DIR = re.compile(r"^step_(\d{8})$")


@dataclass
class TrainResult:
    out_dir: Path
    steps: int
    tokens_seen: int
    val_bpb: float  # NaN when there were no validation texts
    final_loss: float
    losses: list[float]  # training loss of every step
    wall_s: float  # training time summed over all sessions of this run
    resumed_from_step: int  # 0 for a run that was never interrupted
    tokens_per_s: float = math.nan  # tokens_seen / wall_s (all processes together)
    # over the validation texts only / the validation pairs' responses only; NaN if none
    val_text_bpb: float = math.nan
    val_response_bpb: float = math.nan


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate for 0-based ``step``: linear warmup, then cosine to lr * min_lr_ratio."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return cfg.lr * (cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * cosine)


def make_optimizer(model: LanguageModel, cfg: TrainConfig) -> torch.optim.AdamW:
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2 or "embedding" in n]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


_PAIR_MARK = (2**64 - 1).to_bytes(8, "little")  # no text is that long: a pair starts here


def data_fingerprint(texts: Sequence[Example]) -> str:
    """SHA-256 over the training texts and pairs (prompt and response), so a resume never
    mixes two datasets. A text-only corpus hashes as it always did."""
    h = hashlib.sha256()

    def add(text: str) -> None:
        data = text.encode("utf-8", errors="replace")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)

    for t in texts:
        if isinstance(t, Pair):
            h.update(_PAIR_MARK)
            add(t.prompt)
            add(t.response)
        else:
            add(t)
    return h.hexdigest()


def _nan_to_none(value: float) -> float | None:
    return None if math.isnan(value) else value


def _none_to_nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def latest_resume_dir(out_dir: Path) -> Path | None:
    root = Path(out_dir) / RESUME_DIR
    if not root.is_dir():
        return None
    steps = sorted(p for p in root.iterdir() if _STEP_DIR.match(p.name) and p.is_dir())
    return steps[-1] if steps else None


def _result_from_config(out_dir: Path, config: dict[str, Any]) -> TrainResult:
    return TrainResult(
        out_dir=out_dir,
        steps=config["step"],
        tokens_seen=config["tokens_seen"],
        val_bpb=_none_to_nan(config.get("val_bpb")),
        final_loss=config["final_loss"],
        losses=list(config["losses"]),
        wall_s=config["wall_s"],
        resumed_from_step=config["resumed_from_step"],
        tokens_per_s=config.get("tokens_per_s", math.nan),
        val_text_bpb=_none_to_nan(config.get("val_text_bpb")),
        val_response_bpb=_none_to_nan(config.get("val_response_bpb")),
    )


def _check_same_run(path: Path, config: dict[str, Any], expected: dict[str, Any]) -> None:
    for key, value in expected.items():
        if config.get(key) != value:
            raise CheckpointError(
                path,
                f"was written by a different run ({key!r} differs); "
                "use another out_dir or delete this one",
            )


def _save_resume(out_dir: Path, model, meta: dict[str, Any], train_state: dict) -> None:
    """Write resume state to resume/step_N.tmp, rename to resume/step_N, drop older ones."""
    root = out_dir / RESUME_DIR
    final = root / f"step_{meta['step']:08d}"
    tmp = root / f"{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    save_checkpoint(tmp, model, meta, train_state=train_state, tokenizer=model.tokenizer)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in root.iterdir():
        if old != final:
            shutil.rmtree(old, ignore_errors=True)


def _restart_metrics(out_dir: Path, step: int) -> None:
    """Keep only the metrics and evals of steps <= ``step`` (where a resumed run continues)."""
    for name in (METRICS, EVALS):
        file = out_dir / name
        if not file.exists():
            continue
        lines = file.read_text().splitlines()
        kept = [line for line in lines if json.loads(line)["step"] <= step]
        tmp = file.with_name(f".{name}.tmp-{os.getpid()}")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, file)


def _log_eval(out_dir: Path, step: int, tokens_seen: int, bits: CorpusBits, pairs: bool) -> None:
    record = {"step": step, "tokens_seen": tokens_seen, "val_bpb": bits.bpb}
    if pairs:  # a validation set with pairs: texts and responses apart as well
        record["val_text_bpb"] = _nan_to_none(bits.text_bpb)
        record["val_response_bpb"] = _nan_to_none(bits.response_bpb)
    with open(out_dir / EVALS, "a") as f:
        f.write(json.dumps(record) + "\n")


def masked_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor,
    n_counted: torch.Tensor | int,
    world_size: int = 1,
) -> torch.Tensor:
    """Mean cross-entropy over the counted targets of the global batch, from one rank's slice.

    ``logits`` (b, seq_len, vocab), ``targets`` and ``mask`` (b, seq_len) are this rank's rows;
    ``n_counted`` is the number of counted targets in the whole batch (all ranks). Returns
    sum(ce * mask) * world_size / n_counted, so the mean over ranks (DDP's gradient average)
    is sum over the batch of ce * mask / n_counted. A batch with nothing counted (a window
    of prompt tokens only) gives 0 and no gradient, never NaN.
    """
    ce = F.cross_entropy(
        logits.float().flatten(0, 1), targets.flatten(), reduction="none"
    )  # (b * seq_len,)
    total = (ce * mask.flatten().to(ce.dtype)).sum()
    return total * world_size / max(int(n_counted), 1)


def run_tokenizer(
    model_cfg: ModelConfig,
    train_texts: Sequence[Example],
    init_from: Path | None,
    resume: Path | None,
) -> Tokenizer:
    """The tokenizer of a run: the starting checkpoint's (``init_from``) or the interrupted
    run's (``resume``) when there is one, never retrained; otherwise bytes, or BPE learnt
    on ``train_texts`` with ``model_cfg.vocab_size`` ids."""
    source = init_from if init_from is not None else resume
    if source is not None:
        tok = load_tokenizer(source)
        if tok.kind != model_cfg.tokenizer:
            raise CheckpointError(
                source, f"holds a {tok.kind} tokenizer; the run asks for {model_cfg.tokenizer}"
            )
        return tok
    if model_cfg.tokenizer == "bpe":
        tok = BPETokenizer.train([example_text(t) for t in train_texts], model_cfg.vocab_size)
        logger.info("trained a byte-level BPE tokenizer: %d ids", tok.vocab_size)
        return tok
    return ByteTokenizer()


def train(
    train_texts: Sequence[Example],
    val_texts: Sequence[Example],
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    out_dir: Path,
    *,
    init_from: Path | None = None,
    progress: Callable[[int, int, dict], None] | None = None,
) -> TrainResult:
    """Train (or resume, or return the finished result of) a run in ``out_dir``.

    ``train_texts`` / ``val_texts``: plain texts and ``Pair``s (trained and measured on the
    response only). ``init_from``: a checkpoint directory whose weights start the run (fresh optimizer).
    ``progress(step, total_steps, {"loss", "lr", "tok_per_s"})`` after every step, with
    ``step`` counting completed steps (1..total_steps); on rank 0 only under torchrun.
    """
    out_dir = Path(out_dir)
    cfg = train_cfg
    if not train_texts:
        raise ValueError("train: train_texts is empty; nothing to train on")
    run_id = {
        "model": model_cfg.to_dict(),
        "train": cfg.to_dict() | {"betas": list(cfg.betas)},  # as it reads back from JSON
        "data_fingerprint": data_fingerprint(train_texts),
        "init_from": None if init_from is None else str(init_from),
    }

    # 1. A finished run in out_dir: return its result.
    if (out_dir / CONFIG).is_file():
        config = read_config(out_dir)
        if config.get("complete"):
            _check_same_run(out_dir, config, run_id)
            logger.info("%s already holds a finished run; not training again", out_dir)
            shutil.rmtree(out_dir / RESUME_DIR, ignore_errors=True)  # crash after final save
            return _result_from_config(out_dir, config)

    # 2. Model, optimiser, data. Under torchrun: join the group, train a slice of each batch.
    device = distributed.setup(resolve_device(cfg.device))
    rank, world_size = distributed.world()
    if cfg.batch_size % world_size:
        raise ValueError(
            f"train: batch_size={cfg.batch_size} must be a multiple of the {world_size} processes"
        )
    rows = slice(rank * cfg.batch_size // world_size, (rank + 1) * cfg.batch_size // world_size)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    model = build_model(model_cfg)
    if init_from is not None:
        init_model, init_cfg = load_model(init_from)
        if init_cfg != model_cfg:
            raise CheckpointError(init_from, f"model config {init_cfg} differs from {model_cfg}")
        model.load_state_dict(init_model.state_dict())
    model.to(device)
    optimizer = make_optimizer(model, cfg)
    resume = latest_resume_dir(out_dir)
    tokenizer = run_tokenizer(model_cfg, train_texts, init_from, resume)
    model.tokenizer = tokenizer  # travels with the model (trainer.tokenizer.tokenizer_of)
    packed = pack_examples(train_texts, cfg.seq_len, tokenizer)
    batches = BatchIterator(packed.windows, cfg.batch_size, cfg.seed, mask=packed.mask)
    val_pairs = has_pairs(val_texts)
    logger.info(
        "training %d-parameter %s on %s x %d: %d sequences of %d tokens, %d steps",
        model.num_params(),
        model_cfg.arch,
        device,
        world_size,
        len(batches.data),
        cfg.seq_len,
        cfg.steps,
    )

    # 3. Continue from resume state if a previous call was interrupted.
    step, losses, wall_before = 0, [], 0.0
    if resume is not None:
        meta = read_config(resume)
        _check_same_run(resume, meta, run_id)
        resumed, _ = load_model(resume, device)
        model.load_state_dict(resumed.state_dict())
        state = load_train_state(resume)
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        np.random.set_state(tuple(meta["numpy_rng"]))
        step, losses, wall_before = meta["step"], meta["losses"], meta["wall_s"]
        batches.position = meta["data_position"]
        logger.info("resumed from %s at step %d", resume, step)
    resumed_from_step = step
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        _restart_metrics(out_dir, step)

    # 4. The loop.
    forward = model
    if world_size > 1:
        forward = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if cfg.compile:
        forward = torch.compile(forward)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.type == "cuda"
        else contextlib.nullcontext()
    )
    tokens_per_step = cfg.batch_size * cfg.seq_len
    log_every = max(1, cfg.steps // 20)
    model.train()
    t_start = time.perf_counter()
    while step < cfg.steps:
        t0 = time.perf_counter()
        lr = lr_at(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        inputs, targets, mask = batches.next_masked()
        inputs, targets = (t[rows].to(device, non_blocking=True) for t in (inputs, targets))
        with autocast:
            logits = forward(inputs)  # (batch / world_size, seq_len, vocab)
        if mask is None:  # every target counts: the plain mean (text-only runs, unchanged)
            loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
        else:  # pairs: only response targets count, weighted by the global batch's count
            loss = masked_loss(logits, targets, mask[rows].to(device), mask.sum(), world_size)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # DDP: gradients averaged over ranks = gradient of the global batch
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        step += 1
        losses.append(distributed.mean_across_ranks(loss).item())
        now = time.perf_counter()
        stats = {"loss": losses[-1], "lr": lr, "tok_per_s": tokens_per_step / (now - t0)}
        if rank == 0:
            record = {"step": step, **stats, "tokens_seen": step * tokens_per_step}
            record["elapsed_s"] = wall_before + now - t_start
            with open(out_dir / METRICS, "a") as f:
                f.write(json.dumps(record) + "\n")
            if step % log_every == 0 or step == cfg.steps:
                logger.info(
                    "step %d/%d loss %.4f lr %.2e %.0f tok/s, %d tokens seen",
                    step,
                    cfg.steps,
                    *stats.values(),
                    record["tokens_seen"],
                )
            if progress is not None:
                progress(step, cfg.steps, stats)
        eval_now = cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.steps
        if eval_now and val_texts and rank == 0:
            bits = corpus_bits(model, val_texts, cfg.seq_len, cfg.batch_size, tokenizer=tokenizer)
            logger.info("step %d val bpb %.4f", step, bits.bpb)
            _log_eval(out_dir, step, step * tokens_per_step, bits, val_pairs)
        save_now = cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < cfg.steps
        if save_now and rank == 0:
            meta = run_id | {
                "step": step,
                "tokens_seen": step * tokens_per_step,
                "losses": losses,
                "wall_s": wall_before + time.perf_counter() - t_start,
                "data_position": batches.position,
                "numpy_rng": [
                    v.tolist() if isinstance(v, np.ndarray) else v for v in np.random.get_state()
                ],
            }
            train_state = {"optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state()}
            _save_resume(out_dir, model, meta, train_state)

    # 5. Evaluate, write the final checkpoint, drop the resume state (rank 0; others wait).
    wall_s = wall_before + time.perf_counter() - t_start
    if rank != 0:
        distributed.barrier()
        return _result_from_config(out_dir, read_config(out_dir))
    bits = CorpusBits(0.0, 0, 0.0, 0)  # no validation set: every bpb is NaN
    if val_texts:
        bits = corpus_bits(model, val_texts, cfg.seq_len, cfg.batch_size, tokenizer=tokenizer)
    val_bpb = bits.bpb
    tokens_seen = step * tokens_per_step
    if val_texts:
        _log_eval(out_dir, step, tokens_seen, bits, val_pairs)
    logger.info(
        "finished %d steps in %.1fs (%.0f tok/s); val bpb %.4f",
        step,
        wall_s,
        tokens_seen / wall_s,
        val_bpb,
    )
    meta = run_id | {
        "complete": True,
        "step": step,
        "tokens_seen": step * tokens_per_step,
        "val_bpb": _nan_to_none(val_bpb),
        "val_text_bpb": _nan_to_none(bits.text_bpb),
        "val_response_bpb": _nan_to_none(bits.response_bpb),
        "final_loss": losses[-1],
        "losses": losses,
        "wall_s": wall_s,
        "resumed_from_step": resumed_from_step,
        "num_params": model.num_params(),
        "tokens_per_s": tokens_seen / wall_s if wall_s > 0 else math.nan,
        "world_size": world_size,
    }
    save_checkpoint(out_dir, model, meta, tokenizer=tokenizer)
    shutil.rmtree(out_dir / RESUME_DIR, ignore_errors=True)
    distributed.barrier()
    return _result_from_config(out_dir, meta)
