"""Checkpoints: ``model.safetensors`` + ``config.json`` (+ ``train_state.pt`` for resuming,
+ ``tokenizer.json`` for a model trained with BPE).

The tokenizer travels with the weights: ``load_model`` attaches it to the model (read it back
with ``trainer.tokenizer.tokenizer_of``) and ``load_tokenizer`` reads it alone, so scoring,
sampling and evaluating a checkpoint use the tokenizer it was trained with. A checkpoint
without tokenizer.json (all byte-level ones, including those written before BPE existed)
loads with the byte tokenizer.

Every file is written to a temporary name and moved into place with ``os.replace``;
config.json goes last and records the SHA-256 of the weights, so it acts as the commit
marker: a crash leaves either the previous checkpoint or a detectable mismatch, never a
checkpoint that silently loads wrong weights. Loading uses safe loaders only (safetensors;
``torch.load(weights_only=True)`` for optimizer and RNG state) and turns every problem into a
``CheckpointError`` naming the path.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from trainer.config import ModelConfig
from trainer.models import LanguageModel, build_model
from trainer.tokenizer import BPE_FILE, BPETokenizer, ByteTokenizer, Tokenizer

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
TRAIN_STATE = "train_state.pt"  # optimizer + RNG state, only in resume checkpoints


class CheckpointError(Exception):
    """A checkpoint is missing, corrupted or does not match what was asked for."""

    def __init__(self, path: Path | str, problem: str):
        super().__init__(f"checkpoint {path}: {problem}")
        self.path = Path(path)
        self.problem = problem


def _atomic_write(path: Path, write: Callable[[str], None]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(str(tmp))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_checkpoint(
    path: Path,
    model: LanguageModel,
    meta: dict[str, Any],
    train_state: dict[str, Any] | None = None,
    tokenizer: Tokenizer | None = None,
) -> None:
    """Write model weights (+ ``train_state``, + tokenizer.json for a BPE ``tokenizer``) and
    config.json with ``meta`` into ``path``.

    config.json holds {"model": model.cfg.to_dict(), **meta, "files": {name: sha256}}.
    """
    path = Path(path)
    if tokenizer is not None and tokenizer.kind != model.cfg.tokenizer:
        raise ValueError(
            f"save_checkpoint: a {tokenizer.kind} tokenizer for a model configured with "
            f"tokenizer={model.cfg.tokenizer!r}"
        )
    if model.cfg.tokenizer == "bpe" and not isinstance(tokenizer, BPETokenizer):
        raise ValueError("save_checkpoint: a BPE model needs its BPETokenizer to be saved")
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    _atomic_write(path / WEIGHTS, lambda tmp: save_file(state, tmp))
    files = {WEIGHTS: _sha256(path / WEIGHTS)}
    if isinstance(tokenizer, BPETokenizer):
        text = tokenizer.to_str()
        _atomic_write(path / BPE_FILE, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        files[BPE_FILE] = _sha256(path / BPE_FILE)
    if train_state is not None:
        _atomic_write(path / TRAIN_STATE, lambda tmp: torch.save(train_state, tmp))
        files[TRAIN_STATE] = _sha256(path / TRAIN_STATE)
    config = {"model": model.cfg.to_dict(), **meta, "files": files}
    config_text = json.dumps(config, indent=2)
    _atomic_write(path / CONFIG, lambda tmp: Path(tmp).write_text(config_text))


def read_config(path: Path) -> dict[str, Any]:
    """config.json of a checkpoint directory, checked to be a JSON object."""
    file = Path(path) / CONFIG
    if not file.is_file():
        raise CheckpointError(path, f"missing {CONFIG}")
    try:
        config = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(path, f"{CONFIG} is not valid JSON ({e})") from e
    if not isinstance(config, dict) or "model" not in config:
        raise CheckpointError(path, f"{CONFIG} has no 'model' section")
    return config


def verified_file(path: Path, config: dict[str, Any], name: str) -> Path:
    """``path/name``, checked to exist and to match its SHA-256 in config.json."""
    file = path / name
    if not file.is_file():
        raise CheckpointError(path, f"missing {name}")
    expected = config.get("files", {}).get(name)
    if expected is not None and _sha256(file) != expected:
        raise CheckpointError(path, f"{name} does not match the checksum in {CONFIG}")
    return file


def load_model(
    path: Path | str, device: str | torch.device = "cpu"
) -> tuple[LanguageModel, ModelConfig]:
    """Rebuild the model saved in checkpoint directory ``path``; returns (model, config).

    The architecture comes from the saved config (``model.arch``; checkpoints written before
    the transformer existed have no key and load as the SSM, the default)."""
    path = Path(path)
    config = read_config(path)
    try:
        cfg = ModelConfig.from_dict(config["model"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(path, f"invalid model config ({e})") from e
    file = verified_file(path, config, WEIGHTS)
    try:
        state = load_file(str(file))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(path, f"cannot read {WEIGHTS} ({e})") from e
    model = build_model(cfg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(path, f"weights do not match the model config ({e})") from e
    model.tokenizer = load_tokenizer(path)  # read back by trainer.tokenizer.tokenizer_of
    return model.to(device), cfg


def load_tokenizer(path: Path | str) -> Tokenizer:
    """The tokenizer checkpoint ``path`` was trained with: BPE from its tokenizer.json, or
    bytes when there is none (checkpoints written before BPE existed have none)."""
    path = Path(path)
    config = read_config(path)
    kind = config["model"].get("tokenizer", "byte") if isinstance(config["model"], dict) else None
    if not (path / BPE_FILE).is_file():
        if kind == "bpe":
            raise CheckpointError(path, f"model.tokenizer is 'bpe' but {BPE_FILE} is missing")
        return ByteTokenizer()
    if kind != "bpe":
        raise CheckpointError(path, f"has {BPE_FILE} but model.tokenizer is {kind!r}, not 'bpe'")
    file = verified_file(path, config, BPE_FILE)
    try:
        tok = BPETokenizer.load(file)
    except Exception as e:  # the tokenizers library raises its own exception types
        raise CheckpointError(path, f"cannot read {BPE_FILE} ({e})") from e
    vocab_size = config["model"].get("vocab_size", 0)
    if tok.vocab_size > vocab_size:
        raise CheckpointError(
            path, f"{BPE_FILE} has {tok.vocab_size} ids, more than model.vocab_size={vocab_size}"
        )
    return tok


def load_train_state(path: Path | str) -> dict[str, Any]:
    """The ``train_state`` saved next to the weights (safe unpickling only)."""
    path = Path(path)
    file = verified_file(path, read_config(path), TRAIN_STATE)
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for corrupt files
        raise CheckpointError(path, f"cannot read {TRAIN_STATE} ({e})") from e
