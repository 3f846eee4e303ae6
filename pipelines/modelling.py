"""The model registry: which checkpoint scores this round, and training new ones.

- The **reference model** is trained once on the trusted set (role ``trusted``) and
  validated on the ``validation`` role. It is the "irreducible loss" model of RHO-LOSS.
- A **Hugging Face model** (``hf:PATH``, any local causal-LM checkpoint ``transformers``
  can load: a folder written by ``save_pretrained`` with its tokenizer) can stand in for
  the current scorer of a round (``datawall score --model hf:PATH``) or for the reference.
  Its bits per byte map token losses to the UTF-8 bytes of the decoded text
  (``scoring.loss.hf_example_bpb``). Needs the optional extra ``datawall[hf]``.
- The **current model** scores a round. Before any round has trained one, the reference
  model is the current model. Each round trains a new current model, continued from the
  previous one, on trusted + accepted text (expert-corrected where an expert fixed it).
- **Pairs** (candidates of kind ``pair``) train as ``trainer.data.Pair(prompt, response)``:
  on the response tokens only. Trusted, accepted and validation pairs are read the same
  way as texts; with pairs in the validation set the ``models`` row also holds
  ``val_response_bpb`` (bits per byte of the validation responses given their prompts).

Checkpoints live in ``HOME/models/MODEL_ID``; ``trainer.train`` makes training resumable
and idempotent in that folder, so a killed round resumes training where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pyarrow as pa
import torch

from pipelines.catalog import SCHEMAS, Catalog, now
from pipelines.progress import step_bar
from pipelines.settings import Settings
from scoring.loss import LossScorer
from trainer.checkpoint import (
    CONFIG,
    WEIGHTS,
    CheckpointError,
    load_model,
    read_config,
    verified_file,
)
from trainer.data import Example, Pair
from trainer.distributed import launch
from trainer.train import TrainResult, train

logger = logging.getLogger("pipelines")


@dataclass(frozen=True)
class ModelRef:
    model_id: str
    path: Path
    role: str


def _digest(*parts: object) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\x1f")
    return h.hexdigest()[:12]


def _examples(rows: list[dict]) -> list[Example]:
    """Rows with text, kind, prompt → plain texts and ``Pair(prompt, response)``s."""
    return [Pair(r["prompt"], r["text"]) if r["kind"] == "pair" else r["text"] for r in rows]


def role_examples(catalog: Catalog, role: str) -> list[Example]:
    """The texts and pairs of ``role`` (duplicates left out, in content order)."""
    return _examples(catalog.named("role_texts", [role]).to_pylist())


def trusted_texts(catalog: Catalog) -> list[str]:
    """The text of every trusted candidate, a pair's response included: the quality
    classifier's positives (it judges text and responses alike)."""
    return catalog.named("role_texts", ["trusted"]).column("text").to_pylist()


def trusted_examples(catalog: Catalog) -> list[Example]:
    return role_examples(catalog, "trusted")


def validation_texts(catalog: Catalog) -> list[Example]:
    """The validation set as the trainer measures it: texts and pairs."""
    return role_examples(catalog, "validation")


def _data_key(examples: list[Example]) -> list:
    """An order-free description of training data for a model id: the sorted texts (as it
    always was for text), plus the sorted (prompt, response) pairs when there are any."""
    texts = sorted(e for e in examples if not isinstance(e, Pair))
    pairs = sorted([e.prompt, e.response] for e in examples if isinstance(e, Pair))
    return [texts, pairs] if pairs else texts


def checkpoint_problem(path: Path) -> str | None:
    """Why the checkpoint in ``path`` cannot be loaded (naming the file), or None if sound.

    Checks what ``load_model`` would trip on without building the model: config.json is a
    JSON object with a model section, every file it lists is there and matches its
    SHA-256 (a truncated or garbled model.safetensors fails here). Cached per file state,
    so asking again costs a few ``stat`` calls.
    """
    path = Path(path)
    try:
        stamp = tuple(
            (p.name, p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(path.iterdir())
            if p.is_file()
        )
    except OSError as exc:
        return f"checkpoint {path}: cannot list it ({exc.strerror})"
    return _checkpoint_problem(str(path), stamp)


@lru_cache(maxsize=64)
def _checkpoint_problem(path: str, stamp: tuple) -> str | None:
    try:
        config = read_config(Path(path))
        files = config.get("files")
        if not isinstance(files, dict) or WEIGHTS not in files:
            raise CheckpointError(path, f"{CONFIG} lists no checksum for {WEIGHTS}")
        for name in files:
            verified_file(Path(path), config, name)
    except CheckpointError as exc:
        return str(exc)
    return None


def latest_model(catalog: Catalog, role: str) -> ModelRef | None:
    """The newest registered model of ``role`` whose checkpoint is sound.

    A newer one that is missing or corrupted is skipped with a warning naming the file, so
    the previous model keeps scoring (and training continues from it) until it is fixed.
    """
    rows = catalog.query(
        "SELECT model_id, path FROM models WHERE role = ? ORDER BY created_at DESC, model_id",
        [role],
    ).to_pylist()
    for row in rows:
        problem = checkpoint_problem(Path(row["path"]))
        if problem is None:
            return ModelRef(row["model_id"], Path(row["path"]), role)
        logger.warning("skipping %s model %s: %s", role, row["model_id"], problem)
    return None


def scorer_model(catalog: Catalog) -> ModelRef | None:
    """The model that scores the next round: the latest trained one, else the reference."""
    return latest_model(catalog, "current") or latest_model(catalog, "reference")


def ensure_reference(catalog: Catalog, settings: Settings, *, nproc: int = 1) -> ModelRef:
    """Train and register the reference model if the workspace has none."""
    existing = latest_model(catalog, "reference")
    if existing is not None:
        return existing
    texts = trusted_examples(catalog)
    if not texts:
        raise RuntimeError(
            f"{catalog.home}: no trusted text to train the reference model on; "
            "ingest some with `datawall ingest SOURCE --role trusted`"
        )
    model_id = "ref-" + _digest(
        _data_key(texts), settings.model.to_dict(), settings.train.to_dict()
    )
    return _train_and_register(
        catalog,
        settings,
        model_id,
        "reference",
        texts,
        init_from=None,
        parent=None,
        round_=0,
        nproc=nproc,
    )


def train_round_model(
    catalog: Catalog, settings: Settings, round_: int, parent: ModelRef, *, nproc: int = 1
) -> ModelRef:
    """Continue ``parent`` on trusted + accepted text and pairs; register it for ``round_``."""
    accepted = catalog.query(
        "SELECT text, kind, prompt FROM accepted_texts ORDER BY md5(text), candidate_id"
    )
    texts = trusted_examples(catalog) + _examples(accepted.to_pylist())
    model_id = f"r{round_:03d}-" + _digest(
        parent.model_id, _data_key(texts), settings.model.to_dict(), settings.train.to_dict()
    )
    existing = catalog.query("SELECT model_id, path FROM models WHERE model_id = ?", [model_id])
    if existing.num_rows:  # registered before (a rerun): reused unless its files broke since
        path = Path(existing.column("path")[0].as_py())
        if checkpoint_problem(path) is None:
            return ModelRef(model_id, path, "current")
    return _train_and_register(
        catalog,
        settings,
        model_id,
        "current",
        texts,
        init_from=parent.path,
        parent=parent.model_id,
        round_=round_,
        nproc=nproc,
    )


def _train_and_register(
    catalog: Catalog,
    settings: Settings,
    model_id: str,
    role: str,
    texts: list[Example],
    *,
    init_from: Path | None,
    parent: str | None,
    round_: int,
    nproc: int = 1,
) -> ModelRef:
    """Train in ``out_dir`` (``nproc`` > 1: torchrun processes, read back by ``train``)."""
    out_dir = catalog.home / "models" / model_id
    problem = checkpoint_problem(out_dir) if (out_dir / CONFIG).exists() else None
    if problem is not None:  # a finished run whose files broke since: train it again
        aside = out_dir.with_name(f"{model_id}.corrupt")
        logger.warning("%s; moving it to %s and training %s again", problem, aside, model_id)
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(out_dir, aside)
    validation = validation_texts(catalog)
    if nproc > 1:
        launch(
            texts,
            validation,
            settings.model,
            settings.train,
            out_dir,
            nproc=nproc,
            init_from=init_from,
        )
    with step_bar(f"train {model_id}", settings.train.steps) as progress:
        result: TrainResult = train(
            texts,
            validation,
            settings.model,
            settings.train,
            out_dir,
            init_from=init_from,
            progress=progress,
        )
    model, _ = load_model(out_dir)
    row = {
        "model_id": model_id,
        "round": round_,
        "role": role,
        "parent_id": parent,
        "path": str(out_dir),
        "n_params": sum(p.numel() for p in model.parameters()),
        "steps": result.steps,
        "tokens_seen": result.tokens_seen,
        "train_docs": len(texts),
        "val_bpb": result.val_bpb,
        "wall_s": result.wall_s,
        "config": json.dumps(
            {"model": settings.model.to_dict(), "train": settings.train.to_dict()}
        ),
        "created_at": now(),
        # an extra column (NULL in older files, and where the validation set has no pairs)
        "val_response_bpb": None
        if math.isnan(result.val_response_bpb)
        else result.val_response_bpb,
    }
    schema = SCHEMAS["models"].append(pa.field("val_response_bpb", pa.float64()))
    catalog.write("models", pa.Table.from_pylist([row], schema), f"model-{model_id}")
    return ModelRef(model_id, out_dir, role)


@lru_cache(maxsize=4)
def _load_cached(path: str, mtime_ns: int) -> torch.nn.Module:
    model, _ = load_model(Path(path))
    model.eval()
    return model


def load(ref: ModelRef) -> torch.nn.Module:
    """Load a registered checkpoint (cached per process, keyed by the file's mtime)."""
    weights = ref.path / "model.safetensors"
    return _load_cached(str(ref.path), weights.stat().st_mtime_ns)


# -- Hugging Face checkpoints as scorers ----------------------------------------------------
HF_PREFIX = "hf:"


def hf_model_ref(spec: str) -> ModelRef:
    """``hf:PATH`` → a ModelRef whose id changes whenever a file of the checkpoint changes."""
    if not spec.startswith(HF_PREFIX):
        raise ValueError(f"{spec!r}: expected hf:PATH (a folder written by save_pretrained)")
    path = Path(spec[len(HF_PREFIX) :]).expanduser().resolve()
    if not (path / "config.json").is_file():
        raise ValueError(
            f"{spec}: {path} has no config.json; expected a local folder written by "
            "save_pretrained (model and tokenizer)"
        )
    files = sorted(
        (p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in path.iterdir() if p.is_file()
    )
    name = "".join(c if c.isalnum() or c in "._-" else "-" for c in path.name)[:40]
    return ModelRef(f"hf-{name}-{_digest(str(path), files)}", path, "hf")


@lru_cache(maxsize=2)
def _load_hf(path: str, stamp: str) -> tuple[torch.nn.Module, object]:
    try:
        import transformers
    except ImportError as exc:
        raise RuntimeError(
            "scoring with hf:PATH needs transformers: pip install 'datawall[hf]'"
        ) from exc
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModelForCausalLM.from_pretrained(path)
    model.eval()
    return model, tokenizer


def load_scorer(ref: ModelRef) -> LossScorer:
    """The model behind ``ref`` as a scorer (bits per byte, samples), of either kind."""
    if ref.role == "hf":
        return LossScorer(*_load_hf(str(ref.path), ref.model_id))
    return LossScorer(load(ref))
