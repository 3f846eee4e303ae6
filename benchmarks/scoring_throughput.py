"""Scoring throughput: per-example loss, forward only, our SSM vs transformers' GPT-2 and Mamba-2.

What is measured: tokens per second of the scoring step's inner loop, i.e. a forward pass
under ``torch.inference_mode`` and the mean per-token cross-entropy of every example
(``reduction="none"`` then a per-row mean), on random token ids. The three models have the
same width and vocabulary and are sized to about the same parameter count (printed); all
are randomly initialised from a config (no download).

- ours: ``trainer.model.SSMLanguageModel`` (Mamba-2 SSD, ``kernels.ssd`` dispatch).
- gpt2: ``transformers.GPT2LMHeadModel`` (its default attention: SDPA), as many layers as
  makes its non-embedding parameter count closest to ours.
- mamba2: ``transformers.Mamba2ForCausalLM`` with our d_model / layers / state / head dims
  (without the CUDA kernels of ``mamba_ssm`` it runs its own PyTorch path).

Every (sequence length, model) cell is timed ``--reps`` times, interleaved: each repetition
runs every cell once, in a rotated order, so machine noise hits all models alike; the table
shows the median. A fixed number of tokens per batch (``--batch-tokens``) keeps the work per
call equal across lengths.

Run: ``python benchmarks/scoring_throughput.py [--device cuda] [--lengths 256 1024 4096]``.
Imports only torch, transformers, trainer and kernels (runs where prefect/duckdb are not
installed).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a plain checkout

from trainer.config import ModelConfig  # noqa: E402
from trainer.model import SSMLanguageModel  # noqa: E402


def n_params(model: torch.nn.Module, *, skip: tuple[str, ...] = ()) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if not any(s in n for s in skip))


def build_models(args: argparse.Namespace, max_len: int) -> dict[str, torch.nn.Module]:
    from transformers import GPT2Config, GPT2LMHeadModel, Mamba2Config, Mamba2ForCausalLM

    torch.manual_seed(0)
    cfg = ModelConfig(
        d_model=args.d_model,
        n_layers=args.n_layers,
        d_state=args.d_state,
        headdim=args.headdim,
        expand=2,
        chunk_size=args.chunk_size,
    )
    ours = SSMLanguageModel(cfg)
    target = n_params(ours, skip=("embedding",))

    def gpt2(layers: int) -> GPT2LMHeadModel:
        return GPT2LMHeadModel(
            GPT2Config(
                vocab_size=cfg.vocab_size,
                n_positions=max_len,
                n_embd=cfg.d_model,
                n_layer=layers,
                n_head=max(cfg.d_model // 64, 1),
                bos_token_id=None,
                eos_token_id=None,
            )
        )

    per_layer = n_params(gpt2(2), skip=("wte", "wpe")) - n_params(gpt2(1), skip=("wte", "wpe"))
    layers = max(1, round(target / per_layer))
    mamba = Mamba2ForCausalLM(
        Mamba2Config(
            vocab_size=cfg.vocab_size,
            hidden_size=cfg.d_model,
            num_hidden_layers=cfg.n_layers,
            state_size=cfg.d_state,
            head_dim=cfg.headdim,
            num_heads=cfg.nheads,
            n_groups=cfg.ngroups,
            expand=cfg.expand,
            conv_kernel=cfg.d_conv,
            chunk_size=cfg.chunk_size,
            tie_word_embeddings=True,
        )
    )
    return {"ours": ours, "gpt2": gpt2(layers), "mamba2": mamba}


def logits_of(name: str, model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    return model(ids) if name == "ours" else model(input_ids=ids).logits


@torch.inference_mode()
def per_example_loss(name: str, model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Mean next-token NLL of each row: (batch,) — what the score step computes."""
    logits = logits_of(name, model, ids[:, :-1]).float()  # (b, L - 1, vocab)
    nll = F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten(), reduction="none")
    return nll.view(ids.shape[0], -1).mean(1)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 4096])
    ap.add_argument("--batch-tokens", type=int, default=8192)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--n-layers", type=int, default=4)
    ap.add_argument("--d-state", type=int, default=64)
    ap.add_argument("--headdim", type=int, default=64)
    ap.add_argument("--chunk-size", type=int, default=ModelConfig.chunk_size)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    ap.add_argument("--skip", nargs="*", default=[], help="models to leave out")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    models = build_models(args, max(args.lengths))
    for name in args.skip:
        models.pop(name)
    print(f"device={args.device} dtype={args.dtype} torch={torch.__version__} ", end="")
    import transformers

    print(f"transformers={transformers.__version__} threads={torch.get_num_threads()}")
    print("parameters (total / non-embedding):")
    for name, model in models.items():
        model.to(device=args.device, dtype=dtype).eval()
        emb = n_params(model) - n_params(model, skip=("embedding", "wte", "wpe", "embeddings"))
        print(f"  {name:7s} {n_params(model):>10,d} / {n_params(model) - emb:>10,d}")

    gen = torch.Generator().manual_seed(0)
    batches = {
        L: torch.randint(0, 256, (max(args.batch_tokens // L, 1), L + 1), generator=gen).to(
            args.device
        )
        for L in args.lengths
    }
    cells = [(L, name) for L in args.lengths for name in models]
    for L, name in cells:  # warm-up (allocator, kernels, autotuning)
        per_example_loss(name, models[name], batches[L])
    sync(args.device)
    times: dict[tuple[int, str], list[float]] = {c: [] for c in cells}
    for rep in range(args.reps):
        shift = rep % len(cells)
        for L, name in cells[shift:] + cells[:shift]:
            sync(args.device)
            t0 = time.perf_counter()
            per_example_loss(name, models[name], batches[L])
            sync(args.device)
            times[(L, name)].append(time.perf_counter() - t0)

    names = list(models)
    head = f"{'seq_len':>7} {'batch':>5} " + " ".join(f"{n + ' tok/s':>14}" for n in names)
    ratios = [n for n in names if n != "ours"]
    head += " " + " ".join(f"{'ours/' + n:>12}" for n in ratios if "ours" in models)
    print(head)
    for L in args.lengths:
        b = batches[L].shape[0]
        tps = {n: b * L / statistics.median(times[(L, n)]) for n in names}
        row = f"{L:>7} {b:>5} " + " ".join(f"{tps[n]:>14,.0f}" for n in names)
        if "ours" in models:
            row += " " + " ".join(f"{tps['ours'] / tps[n]:>11.2f}x" for n in ratios)
        print(row)


if __name__ == "__main__":
    main()
