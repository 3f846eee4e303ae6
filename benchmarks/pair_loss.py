"""What training on pairs costs over plain text: the masked loss and the masked packing.

Two measurements, each against the text path it replaces, repetitions interleaved (one of
each in turn) and timed with the process's CPU time (1 thread), medians printed with the
ratio pair / text:

1. **step**: one training step (forward + loss + backward + AdamW) of our SSM on the same
   8 x 256 windows, with the plain mean cross-entropy (text) and with ``masked_loss`` over
   a mask of the pairs' response targets (pair).
2. **pack**: packing the same documents as plain texts (``pack``) and as pairs
   (``pack_examples`` on ``Pair(prompt, response)``, which also builds the mask).

    PYTHONPATH=. python benchmarks/pair_loss.py [--reps 15]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source tree

from trainer.config import ModelConfig  # noqa: E402
from trainer.data import Pair, pack, pack_examples  # noqa: E402
from trainer.models import build_model  # noqa: E402
from trainer.tokenizer import ByteTokenizer  # noqa: E402
from trainer.train import masked_loss  # noqa: E402


def timed(fn) -> float:
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    tok = ByteTokenizer()
    pairs = [
        Pair(f"What does function_{i} of module_{i % 7} do?", f"It returns item {i}. " * 6)
        for i in range(4000)
    ]
    texts = [p.prompt + "\n" + p.response for p in pairs]

    model = build_model(ModelConfig(d_model=128, n_layers=4, d_state=32, headdim=32))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    packed = pack_examples(pairs[:200], 256, tok)
    windows, mask = packed.windows[:8], packed.mask[:8]
    inputs, targets = windows[:, :-1], windows[:, 1:]  # (8, 256)
    print(f"{mask.float().mean():.0%} of the pair targets are counted (responses + EOS)")

    def step(masked: bool) -> None:
        logits = model(inputs)
        if masked:
            loss = masked_loss(logits, targets, mask, mask.sum())
        else:
            loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    cases = {
        "step 8x256: text (mean CE)": lambda: step(False),
        "step 8x256: pair (masked CE)": lambda: step(True),
        f"pack {len(texts)} docs: text": lambda: pack(texts, 256, tok),
        f"pack {len(pairs)} docs: pair (+ mask)": lambda: pack_examples(pairs, 256, tok),
    }
    for fn in cases.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.reps):
        for name, fn in cases.items():
            times[name].append(timed(fn))
    names = list(cases)
    print(f"| case | median CPU ms ({args.reps} reps) |")
    print("|---|---:|")
    for name in names:
        print(f"| {name} | {1000 * statistics.median(times[name]):.1f} |")
    for text_case, pair_case in ((names[0], names[1]), (names[2], names[3])):
        ratio = statistics.median(times[pair_case]) / statistics.median(times[text_case])
        print(f"{pair_case} / {text_case}: {ratio:.2f}x")


if __name__ == "__main__":
    main()
