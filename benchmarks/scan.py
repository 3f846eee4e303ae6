"""Benchmark the SSD scan implementations (kernels/ssd.py), forward + backward and forward only.

Every implementation runs on the same inputs in one process; repetitions are interleaved
(ref, torch, triton, ref, torch, ...) so a busy machine slows all of them alike, and the
median is reported. Per row: time, tokens/s, time per 1k positions (flat if the cost is
linear in the length), and the ratio to the "torch" path and to "ref" where "ref" ran.
A least-squares line time = a + b * length per implementation shows the growth.

    python benchmarks/scan.py                                   # CPU: ref (short) + torch
    python benchmarks/scan.py --sweep-chunks 16 32 64 128 256   # pick the torch chunk size
    python benchmarks/scan.py --device cuda                     # + triton, bandwidth
    git show main:kernels/ssd.py > /tmp/ssd_main.py             # before/after, one process:
    python benchmarks/scan.py --threads 1 --baseline /tmp/ssd_main.py

Columns "ms" and "tokens/s" are forward + backward; "fwd ms" is the forward alone under
torch.no_grad() (the scoring path). Times are process CPU time with --cpu-time (steadier
than wall time on a shared machine; use it with --threads 1).
--baseline FILE adds a column "base": FILE's ssd_scan(impl="torch"), e.g. an older
kernels/ssd.py, timed interleaved with the current one.

On CUDA the Triton path is also timed forward-only, and its achieved memory bandwidth is
reported: bytes of the inputs and outputs (each counted once) divided by the time.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kernels.ssd import ssd_scan, torch_chunk_size


@dataclass(frozen=True)
class Variant:
    """One column of the benchmark: an implementation and its chunk size (None: default)."""

    impl: str
    chunk: int | None = None

    @property
    def name(self) -> str:
        return self.impl if self.chunk is None else f"{self.impl}[{self.chunk}]"


def make_inputs(args, seqlen: int, device: str) -> dict[str, torch.Tensor | None]:
    g = torch.Generator().manual_seed(0)
    b, h, p, n, ng = args.batch, args.nheads, args.headdim, args.dstate, args.ngroups

    def randn(*shape):
        return torch.randn(*shape, generator=g)

    dtype = getattr(torch, args.dtype)
    inputs = {
        "x": randn(b, seqlen, h, p),
        "dt": F.softplus(randn(b, seqlen, h) - 1.0),
        "A": -torch.exp(randn(h) * 0.5),
        "B": randn(b, seqlen, ng, n) / n**0.5,
        "C": randn(b, seqlen, ng, n) / n**0.5,
        "D": randn(h),
        "initial_state": None,
    }
    return {
        k: None if v is None else v.to(device=device, dtype=dtype).requires_grad_(True)
        for k, v in inputs.items()
    }


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


BASELINE = {}  # "scan": ssd_scan of --baseline FILE


def load_baseline(path: str) -> None:
    spec = importlib.util.spec_from_file_location("ssd_baseline", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"--baseline {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    BASELINE["scan"] = module.ssd_scan


def _scan(inputs, variant: Variant):
    if variant.impl == "base":
        return BASELINE["scan"](**inputs, impl="torch", chunk_size=variant.chunk)
    return ssd_scan(**inputs, impl=variant.impl, chunk_size=variant.chunk)


CLOCK = {"now": time.perf_counter}


def time_once(inputs, variant: Variant, device: str, backward: bool = True) -> float:
    """Seconds for one forward (+ backward of y.sum() + state.sum())."""
    _sync(device)
    start = CLOCK["now"]()
    if backward:
        y, state = _scan(inputs, variant)
        (y.float().sum() + state.sum()).backward()
    else:
        with torch.no_grad():
            _scan(inputs, variant)
    _sync(device)
    return CLOCK["now"]() - start


def io_bytes(inputs, with_grads: bool) -> int:
    """Bytes a scan must move at least: inputs read and y + final state written (forward);
    with_grads adds the backward's reads (inputs again, dy) and writes (every input grad)."""
    ins = sum(v.numel() * v.element_size() for v in inputs.values() if v is not None)
    x = inputs["x"]
    b, _, h, p = x.shape
    n = inputs["B"].shape[-1]
    outs = x.numel() * x.element_size() + b * h * p * n * 4
    if not with_grads:
        return ins + outs
    return ins + outs + (ins + x.numel() * x.element_size()) + ins


def fit_line(lengths: list[int], times: list[float]) -> tuple[float, float, float]:
    """Least squares time = a + b * length: (a, b, R^2)."""
    n = len(lengths)
    mx, my = sum(lengths) / n, sum(times) / n
    sxx = sum((x - mx) ** 2 for x in lengths)
    sxy = sum((x - mx) * (y - my) for x, y in zip(lengths, times, strict=True))
    slope = sxy / sxx
    icpt = my - slope * mx
    ss_res = sum((y - icpt - slope * x) ** 2 for x, y in zip(lengths, times, strict=True))
    ss_tot = sum((y - my) ** 2 for y in times)
    return icpt, slope, 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--lengths", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--nheads", type=int, default=8)
    ap.add_argument("--headdim", type=int, default=32)
    ap.add_argument("--dstate", type=int, default=32)
    ap.add_argument("--ngroups", type=int, default=1)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--impls", nargs="+", help="default: ref torch (+ triton on cuda)")
    ap.add_argument("--ref-max-len", type=int, default=512, help="ref only up to this length")
    ap.add_argument("--sweep-chunks", type=int, nargs="*", default=[], help="torch chunks")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    ap.add_argument("--baseline", help="an ssd.py whose torch path is timed as 'base'")
    ap.add_argument("--cpu-time", action="store_true", help="process CPU time, not wall")
    args = ap.parse_args()
    if args.cpu_time:
        if args.device == "cuda":
            raise SystemExit("--cpu-time measures the CPU; drop it with --device cuda")
        CLOCK["now"] = time.process_time
    if args.baseline:
        load_baseline(args.baseline)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is visible")
    impls = args.impls or (
        ["ref", "torch", "triton"] if args.device == "cuda" else ["ref", "torch"]
    )
    if args.baseline and "base" not in impls:
        impls = [*impls, "base"]

    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(
        f"# ssd_scan forward+backward on {device_name} ({torch.get_num_threads()} threads), "
        f"batch {args.batch}, nheads {args.nheads}, headdim {args.headdim}, dstate "
        f"{args.dstate}, ngroups {args.ngroups}, {args.dtype}; median of {args.reps} "
        f"interleaved reps; {'process CPU' if args.cpu_time else 'wall'} time"
    )
    print(
        f"{'length':>6} {'impl':>12} {'ms':>10} {'tokens/s':>12} {'ms/1k pos':>10} "
        f"{'vs torch':>9} {'vs ref':>8} {'fwd ms':>9} {'fwd vs torch':>12}"
    )
    medians: dict[str, dict[int, float]] = {}
    best_chunks: dict[int, tuple[int, float]] = {}
    bandwidth: list[tuple[int, float, float, float, float]] = []
    for seqlen in args.lengths:
        inputs = make_inputs(args, seqlen, args.device)
        variants = [Variant(i) for i in impls if i != "ref" or seqlen <= args.ref_max_len]
        variants += [Variant("torch", q) for q in args.sweep_chunks]
        times: dict[Variant, list[float]] = {v: [] for v in variants}
        nograd: dict[Variant, list[float]] = {v: [] for v in variants}
        fwd_times: list[float] = []
        with_fwd = args.device == "cuda" and "triton" in impls
        for v in variants:  # warm-up: kernel compilation, allocator
            time_once(inputs, v, args.device)
        if with_fwd:
            time_once(inputs, Variant("triton"), args.device, backward=False)
        for _ in range(args.reps):
            for v in variants:
                for t in inputs.values():
                    if t is not None:
                        t.grad = None
                times[v].append(time_once(inputs, v, args.device))
                nograd[v].append(time_once(inputs, v, args.device, backward=False))
            if with_fwd:
                fwd_times.append(time_once(inputs, Variant("triton"), args.device, False))
        med = {v: statistics.median(ts) for v, ts in times.items()}
        med_fwd = {v: statistics.median(ts) for v, ts in nograd.items()}
        base_fwd = med_fwd.get(Variant("torch"))
        for v, t in med.items():
            medians.setdefault(v.name, {})[seqlen] = t
        base = med.get(Variant("torch"))
        ref = med.get(Variant("ref"))
        tokens = args.batch * seqlen
        for v, t in med.items():
            vs_torch = f"{base / t:8.2f}x" if base else "-"
            vs_ref = f"{ref / t:7.2f}x" if ref else "-"
            t_fwd = med_fwd[v]
            fwd_vs = f"{base_fwd / t_fwd:11.2f}x" if base_fwd else "-"
            print(
                f"{seqlen:>6} {v.name:>12} {t * 1e3:10.2f} {tokens / t:12.0f} "
                f"{t * 1e3 / seqlen * 1000:10.2f} {vs_torch:>9} {vs_ref:>8} "
                f"{t_fwd * 1e3:9.2f} {fwd_vs:>12}"
            )
        swept = {
            v.chunk or torch_chunk_size(seqlen): t for v, t in med.items() if v.impl == "torch"
        }
        if swept:
            q = min(swept, key=swept.get)
            best_chunks[seqlen] = (q, swept[q])
        if with_fwd:
            t_fwd = statistics.median(fwd_times)
            t_fb = med[Variant("triton")]
            bandwidth.append(
                (
                    seqlen,
                    t_fwd,
                    io_bytes(inputs, False) / t_fwd / 1e9,
                    t_fb,
                    io_bytes(inputs, True) / t_fb / 1e9,
                )
            )

    print("\n# time = a + b * length (least squares over the lengths each impl ran)")
    print(
        f"{'impl':>12} {'a ms':>9} {'b ms/1k pos':>12} {'R^2':>7} {'t(max)/t(min)':>14} {'L ratio':>8}"
    )
    for name, per_len in medians.items():
        if len(per_len) < 2:
            continue
        lens = sorted(per_len)
        a, b, r2 = fit_line(lens, [per_len[n] for n in lens])
        growth = per_len[lens[-1]] / per_len[lens[0]]
        print(
            f"{name:>12} {a * 1e3:9.2f} {b * 1e6:12.3f} {r2:7.4f} {growth:14.2f} "
            f"{lens[-1] / lens[0]:8.1f}"
        )
    if best_chunks:
        print("\n# fastest torch chunk size per length (default chunk now in use)")
        for seqlen, (q, t) in best_chunks.items():
            print(
                f"{seqlen:>6} chunk {q:>4} {t * 1e3:10.2f} ms   default {torch_chunk_size(seqlen)}"
            )
    if bandwidth:
        print("\n# triton achieved bandwidth: bytes of inputs + outputs (+ grads) / time")
        print(
            f"{'length':>6} {'fwd ms':>9} {'fwd GB/s':>9} {'fwd+bwd ms':>11} {'fwd+bwd GB/s':>13}"
        )
        for seqlen, tf, bf, tfb, bfb in bandwidth:
            print(f"{seqlen:>6} {tf * 1e3:9.3f} {bf:9.1f} {tfb * 1e3:11.3f} {bfb:13.1f}")


if __name__ == "__main__":
    main()
