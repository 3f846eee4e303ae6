"""Training throughput: our SSM and transformer against Hugging Face models of the same size.

One training step = forward + cross-entropy + backward + AdamW step, on random byte ids
(vocab 258). Every model has about 6-7M parameters (printed) and is built from a config
with random weights (nothing downloaded):

- ours-ssm:   trainer.model.SSMLanguageModel (Mamba-2 blocks, chunked SSD scan)
- ours-tfm:   trainer.transformer.TransformerLanguageModel (RoPE, SDPA)
- hf-mamba2:  transformers Mamba2ForCausalLM with the same shape as ours-ssm (its torch path:
              no mamba_ssm / causal_conv1d kernels here)
- hf-mamba:   transformers MambaForCausalLM (Mamba-1), d_state 16
- hf-gpt2:    transformers GPT2LMHeadModel with the same shape as ours-tfm

Repetitions are interleaved (one step of each model in turn) so load changes on the machine
hit every model alike; the table gives the median tokens/s and the ratio of ours to each
baseline. On a 1-thread CPU run the step is timed with the process's CPU time
(``time.process_time``), which on an idle machine equals wall time and on a shared one does
not count the time other processes hold the core (``--clock wall`` to time wall-clock). Imports only torch, transformers and our trainer/kernels packages, so it runs
from a source tree with ``PYTHONPATH=.``:

    python benchmarks/train_throughput.py                    # CPU, 1 thread, both shapes
    python benchmarks/train_throughput.py --device cuda --quick
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source tree

from trainer.config import ModelConfig  # noqa: E402
from trainer.models import build_model  # noqa: E402

VOCAB = 258
# ~6.7M parameters each. The SSMs are wider and shallower than the transformers: at equal
# parameters that spends fewer steps outside the matmuls (measured: d 384 x 7 layers trains
# ~1.35x faster than d 256 x 16 layers on CPU, 8 x 256).
SSM_D, SSM_LAYERS = 384, 7
TFM_D, TFM_LAYERS = 256, 8
D_STATE = 64
HEADDIM = 64
SHAPES = {"8x256": (8, 256), "2x1024": (2, 1024)}


def ours(arch: str, chunk_size: int) -> Callable[[], torch.nn.Module]:
    def build() -> torch.nn.Module:
        if arch == "ssm":
            cfg = ModelConfig(
                vocab_size=VOCAB,
                d_model=SSM_D,
                n_layers=SSM_LAYERS,
                d_state=D_STATE,
                headdim=HEADDIM,
                chunk_size=chunk_size,
            )
        else:
            cfg = ModelConfig(
                arch="transformer", vocab_size=VOCAB, d_model=TFM_D, n_layers=TFM_LAYERS
            )
        return build_model(cfg)

    return build


class HFLogits(torch.nn.Module):
    """Wraps a transformers causal LM so that calling it on ids returns logits."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=ids, use_cache=False).logits


def hf_mamba2() -> torch.nn.Module:
    from transformers import Mamba2Config, Mamba2ForCausalLM

    cfg = Mamba2Config(
        vocab_size=VOCAB,
        hidden_size=SSM_D,
        num_hidden_layers=SSM_LAYERS,
        state_size=D_STATE,
        head_dim=HEADDIM,
        num_heads=2 * SSM_D // HEADDIM,
        expand=2,
        n_groups=1,
        conv_kernel=4,
        chunk_size=256,
        tie_word_embeddings=True,
        use_cache=False,
    )
    return HFLogits(Mamba2ForCausalLM(cfg))


def hf_mamba() -> torch.nn.Module:
    from transformers import MambaConfig, MambaForCausalLM

    cfg = MambaConfig(
        vocab_size=VOCAB,
        hidden_size=SSM_D,
        num_hidden_layers=SSM_LAYERS,
        state_size=16,
        expand=2,
        conv_kernel=4,
        tie_word_embeddings=True,
        use_cache=False,
    )
    return HFLogits(MambaForCausalLM(cfg))


def hf_gpt2() -> torch.nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(
        vocab_size=VOCAB,
        n_positions=1024,
        n_embd=TFM_D,
        n_layer=TFM_LAYERS,
        n_head=4,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        tie_word_embeddings=True,
        use_cache=False,
    )
    cfg._attn_implementation = "sdpa"
    return HFLogits(GPT2LMHeadModel(cfg))


class Trainee:
    """A model with its optimiser and a batch of ids; ``step()`` runs one timed train step."""

    def __init__(
        self,
        model: torch.nn.Module,
        ids: torch.Tensor,
        device: torch.device,
        bf16: bool,
        clock: Callable[[], float],
    ):
        self.clock = clock
        self.model = model.to(device).train()
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.ids = ids
        self.device = device
        self.autocast = (
            torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        )

    def step(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = self.clock()
        with self.autocast:
            logits = self.model(self.ids[:, :-1])  # (batch, seq_len, vocab)
        loss = F.cross_entropy(logits.float().flatten(0, 1), self.ids[:, 1:].flatten())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return self.clock() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    ap.add_argument("--reps", type=int, default=5, help="timed steps per model (default 5)")
    ap.add_argument("--quick", action="store_true", help="3 timed steps per model")
    ap.add_argument("--shapes", default=",".join(SHAPES), help=f"subset of {list(SHAPES)}")
    ap.add_argument("--models", default="", help="comma list of model names to run (default all)")
    ap.add_argument("--chunk-size", type=int, default=0, help="SSD chunk (0: per shape)")
    ap.add_argument("--clock", choices=["auto", "wall", "cpu"], default="auto")
    ap.add_argument(
        "--cpu-bf16", action="store_true", help="bf16 autocast on CPU too (every model alike)"
    )
    args = ap.parse_args()

    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    reps = 3 if args.quick else args.reps
    bf16 = device.type == "cuda" or args.cpu_bf16
    clock_name = args.clock
    if clock_name == "auto":
        clock_name = "cpu" if device.type == "cpu" and torch.get_num_threads() == 1 else "wall"
    clock = time.process_time if clock_name == "cpu" else time.perf_counter
    builders: dict[str, Callable[[], torch.nn.Module]] = {
        "ours-ssm": lambda: None,  # replaced per shape (chunk size)
        "ours-tfm": ours("transformer", 0),
        "hf-mamba2": hf_mamba2,
        "hf-mamba": hf_mamba,
        "hf-gpt2": hf_gpt2,
    }
    names = [n for n in args.models.split(",") if n] or list(builders)
    unknown = sorted(set(names) - set(builders))
    if unknown:
        raise SystemExit(f"unknown --models {unknown}; choose from {list(builders)}")
    print(
        f"device={device} threads={torch.get_num_threads() if device.type == 'cpu' else '-'} "
        f"torch={torch.__version__} reps={reps} clock={clock_name} "
        f"autocast={'bf16' if bf16 else 'off (fp32)'}"
    )

    for shape in args.shapes.split(","):
        batch, seq_len = SHAPES[shape]
        chunk = args.chunk_size or 32  # measured fastest of 32/64/128 at 8x256 and 2x1024
        builders["ours-ssm"] = ours("ssm", chunk)
        gen = torch.Generator().manual_seed(0)
        ids = torch.randint(0, VOCAB, (batch, seq_len + 1), generator=gen).to(device)
        trainees: dict[str, Trainee] = {}
        for name in names:
            torch.manual_seed(0)
            trainees[name] = Trainee(builders[name](), ids, device, bf16, clock)
            trainees[name].step()  # warm-up: allocations, lazy init, autotuning
        times: dict[str, list[float]] = {n: [] for n in names}
        for _ in range(reps):
            for name, trainee in trainees.items():
                times[name].append(trainee.step())

        tokens = batch * seq_len
        rate = {n: tokens / statistics.median(t) for n, t in times.items()}
        print(f"\nbatch {batch} x {seq_len} (ours-ssm chunk_size={chunk})")
        print(f"{'model':<10} {'params':>10} {'tok/s':>10} {'ms/step':>9}  ratios")
        for name in names:
            params = sum(p.numel() for p in trainees[name].model.parameters())
            ratios = "  ".join(
                f"{o}/{name}={rate[o] / rate[name]:.2f}x"
                for o in ("ours-ssm", "ours-tfm")
                if o in rate and o != name and name.startswith("hf-")
            )
            ms = 1000 * statistics.median(times[name])
            print(f"{name:<10} {params:>10,} {rate[name]:>10,.0f} {ms:>9.1f}  {ratios}", flush=True)


if __name__ == "__main__":
    main()
