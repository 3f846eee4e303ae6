"""Mamba-2 SSD (state-space duality) scan with a scalar decay per head.

Implements the selective state-space recurrence of Mamba-2 (Dao & Gu, "Transformers are
SSMs: Generalized Models and Efficient Algorithms Through Structured State Space Duality",
ICML 2024), with A restricted to a scalar times identity per head:

    h_t = exp(dt_t * A) * h_{t-1} + dt_t * x_t ⊗ B_t        h: (headdim, dstate) per head
    y_t = h_t · C_t + D * x_t

Implementations behind one dispatch function, ``ssd_scan(..., impl=...)``:

- ``"ref"``:   the specification. Plain PyTorch, fp32, an explicit Python loop over time.
- ``"torch"``: the chunked SSD algorithm (paper, section 6 "block decomposition"): the
  sequence is cut into chunks; inside a chunk the output is a masked quadratic form
  (attention-like, with a segment-sum decay mask); across chunks a state is passed by a
  loop over chunks. O(L * chunk) work, matmul-friendly, runs on CPU and GPU. The chunk size
  defaults to the measured-fastest one for the length (``TORCH_CHUNKS``). With autograd the
  state-passing loop has a hand-written backward (``_PassStates``); without it (scoring)
  temporaries are updated in place and the state passing and readout run chunk by chunk.
- ``"triton"``: fused Triton kernels for the same chunked algorithm, forward and backward
  (``kernels/ssd_triton.py``). Needs CUDA tensors, or ``TRITON_INTERPRET=1`` on the CPU
  (exact but thousands of times slower: for tests). Asking for it where it cannot run raises.
- ``"auto"``:  ``"triton"`` for CUDA tensors when Triton imports, else ``"torch"``; logs the
  choice once (logger ``"kernels"``).

All implementations compute in fp32 (fp64 inputs stay fp64, so gradients can be checked in
double precision); ``y`` comes back in ``x.dtype`` and the final state in the compute dtype.
``ssd_step`` is the O(1)-per-token recurrent form used for generation.
"""

from __future__ import annotations

import logging
import os

import torch
import torch.nn.functional as F
from torch import Tensor

logger = logging.getLogger("kernels")

IMPLS = ("auto", "ref", "torch", "triton")
_auto_logged = False

# Chunk size of the "torch" path when the caller passes none, as (longest length it applies
# to, chunk): the fastest in `benchmarks/scan.py --threads 1 --cpu-time --batch 2 --headdim
# 64 --dstate 64 --sweep-chunks 32 64 128` (the scoring model's shape) on the CPU. Forward
# without autograd (scoring): 32 fastest at 256-4096 (1.2x over 64 at 4096); forward +
# backward: 32 and 64 within noise, 128 0.6-0.85x. So one entry.
TORCH_CHUNKS: tuple[tuple[int, int], ...] = ((1 << 62, 32),)
# Chunk size of the Triton kernels: one (chunk, chunk) tile per program.
TRITON_CHUNK = 64


def torch_chunk_size(seqlen: int) -> int:
    """The measured-fastest chunk size of the "torch" path for this length."""
    for max_len, chunk in TORCH_CHUNKS:
        if seqlen <= max_len:
            return chunk
    return TORCH_CHUNKS[-1][1]


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "yes", "on")


def _triton_unavailable(x: Tensor) -> str | None:
    """Why impl='triton' cannot run on x, or None when it can."""
    if x.dtype == torch.float64:
        return "impl='triton' computes in fp32 and takes fp32/bf16/fp16 inputs, not float64"
    try:
        import triton  # noqa: F401
    except ImportError as exc:
        return f"impl='triton' needs the triton package ({exc}); pip install 'datawall[gpu]'"
    if x.device.type == "cuda" or (x.device.type == "cpu" and _interpreting()):
        return None
    return (
        f"impl='triton' needs CUDA tensors (got device {x.device}); on the CPU it runs only "
        "under TRITON_INTERPRET=1 (for tests)"
    )


def _compute_dtype(x: Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _check_shapes(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D, initial_state):
    if x.dim() != 4:
        raise ValueError(f"x must be (batch, seqlen, nheads, headdim), got {tuple(x.shape)}")
    batch, seqlen, nheads, headdim = x.shape
    if dt.shape != (batch, seqlen, nheads):
        raise ValueError(f"dt must be {(batch, seqlen, nheads)}, got {tuple(dt.shape)}")
    if A.shape != (nheads,):
        raise ValueError(f"A must be ({nheads},), got {tuple(A.shape)}")
    if B.dim() != 4 or B.shape[:2] != (batch, seqlen) or B.shape != C.shape:
        raise ValueError(
            "B and C must both be (batch, seqlen, ngroups, dstate), "
            f"got {tuple(B.shape)} and {tuple(C.shape)}"
        )
    ngroups, dstate = B.shape[2], B.shape[3]
    if nheads % ngroups != 0:
        raise ValueError(f"nheads={nheads} must be a multiple of ngroups={ngroups}")
    if D is not None and D.shape != (nheads,):
        raise ValueError(f"D must be ({nheads},) or None, got {tuple(D.shape)}")
    expected_state = (batch, nheads, headdim, dstate)
    if initial_state is not None and initial_state.shape != expected_state:
        raise ValueError(
            f"initial_state must be {expected_state}, got {tuple(initial_state.shape)}"
        )


def ssd_scan(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    initial_state: Tensor | None = None,
    *,
    impl: str = "auto",
    chunk_size: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Run the SSD recurrence over a whole sequence.

    x: (batch, seqlen, nheads, headdim); dt: (batch, seqlen, nheads), positive;
    A: (nheads,), negative; B, C: (batch, seqlen, ngroups, dstate), nheads % ngroups == 0;
    D: (nheads,) or None; initial_state: (batch, nheads, headdim, dstate) or None.
    Returns y (batch, seqlen, nheads, headdim) in x.dtype and the final state
    (batch, nheads, headdim, dstate) in fp32 (fp64 for fp64 inputs).
    chunk_size: None picks the measured-fastest size for the path and length
    (``torch_chunk_size``, ``TRITON_CHUNK``); "ref" ignores it.
    """
    global _auto_logged
    if impl not in IMPLS:
        raise ValueError(f"unknown ssd_scan impl={impl!r}; choose one of {IMPLS}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    _check_shapes(x, dt, A, B, C, D, initial_state)
    if impl == "auto":
        impl = "triton" if x.device.type == "cuda" and _triton_unavailable(x) is None else "torch"
        if not _auto_logged:
            what = "fused Triton kernels" if impl == "triton" else "chunked SSD in PyTorch"
            logger.info("ssd_scan impl='auto' -> %r (%s)", impl, what)
            _auto_logged = True
    if impl == "ref":
        return _ssd_scan_ref(x, dt, A, B, C, D, initial_state)
    if impl == "triton":
        reason = _triton_unavailable(x)
        if reason is not None:
            raise RuntimeError(reason)
        from kernels.ssd_triton import ssd_scan_triton

        return ssd_scan_triton(x, dt, A, B, C, D, initial_state, chunk_size or TRITON_CHUNK)
    chunk = chunk_size or torch_chunk_size(x.shape[1])
    return _ssd_scan_chunked(x, dt, A, B, C, D, initial_state, chunk)


def ssd_step(
    state: Tensor,
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Advance the recurrence by one token in O(1).

    state: (batch, nheads, headdim, dstate); x: (batch, nheads, headdim); dt: (batch, nheads);
    B, C: (batch, ngroups, dstate). Returns y (batch, nheads, headdim) in x.dtype and the new
    state in fp32 (fp64 for fp64 inputs).
    """
    ct = _compute_dtype(x)
    nheads, ngroups = x.shape[1], B.shape[1]
    heads_per_group = nheads // ngroups
    dt = dt.to(ct)
    B = B.to(ct).repeat_interleave(heads_per_group, dim=1)  # (batch, nheads, dstate)
    C = C.to(ct).repeat_interleave(heads_per_group, dim=1)  # (batch, nheads, dstate)
    decay = torch.exp(dt * A.to(ct))  # (batch, nheads)
    dBx = (dt[..., None] * x.to(ct))[..., None] * B[:, :, None, :]  # (batch, nheads, hd, ds)
    new_state = state.to(ct) * decay[..., None, None] + dBx
    y = torch.einsum("bhpn,bhn->bhp", new_state, C)
    if D is not None:
        y = y + D.to(ct)[:, None] * x.to(ct)
    return y.to(x.dtype), new_state


def _ssd_scan_ref(x, dt, A, B, C, D, initial_state) -> tuple[Tensor, Tensor]:
    """The specification: ssd_step applied token by token."""
    batch, seqlen, nheads, headdim = x.shape
    ct = _compute_dtype(x)
    x_in = x
    # Cast once up front, so gradients accumulate over time in the compute dtype.
    x, dt, A, B, C = (t.to(ct) for t in (x, dt, A, B, C))
    D = None if D is None else D.to(ct)
    state = x.new_zeros(batch, nheads, headdim, B.shape[-1])
    if initial_state is not None:
        state = initial_state.to(ct)
    ys = []
    for t in range(seqlen):
        y_t, state = ssd_step(state, x[:, t], dt[:, t], A, B[:, t], C[:, t], D)
        ys.append(y_t)
    y = torch.stack(ys, dim=1)  # (batch, seqlen, nheads, headdim)
    return y.to(x_in.dtype), state


def _segsum(a: Tensor) -> Tensor:
    """Segment sums: out[..., i, j] = sum(a[..., j+1 : i+1]) for j <= i, else -inf.

    a: (..., T) -> (..., T, T). exp(out) is the lower-triangular decay matrix between
    positions. Computed as a difference of cumulative sums: one pass instead of a masked
    (T, T) cumsum, measured 10-30 % faster forward+backward on the CPU. It loses about
    |cumsum| * eps in the exponent; inside a chunk (T <= a few hundred, a <= 0) that stays
    far below the fp32 parity tolerance.
    """
    T = a.shape[-1]
    cs = torch.cumsum(a, dim=-1)
    lower = torch.ones(T, T, dtype=torch.bool, device=a.device).tril()
    return (cs[..., :, None] - cs[..., None, :]).masked_fill(~lower, float("-inf"))


class _PassStates(torch.autograd.Function):
    """The inter-chunk recurrence S_{c+1} = d_c * S_c + X_c with a hand-written backward.

    forward(X (b, g, c, n, r, p), d (b, g, c, 1, r, 1), S_0 (b, g, n, r, p)) returns the
    states entering each chunk, S_0 .. S_{c-1} as (b, g, c, n, r, p), and the final S_c.
    Autograd through a Python loop records ~3 nodes per chunk and sums broadcast gradients
    per chunk; this backward is one reverse loop of fused multiply-adds,
    G_c = dS_c + d_c * G_{c+1} (G_c: total gradient of S_c), then dX_c = G_{c+1},
    dd_c = sum(G_{c+1} * S_c), dS_0 = G_0, in a few whole-tensor ops.
    """

    @staticmethod
    def forward(ctx, chunk_states: Tensor, decay: Tensor, state0: Tensor):
        nchunks = chunk_states.shape[2]
        prev = chunk_states.new_empty(chunk_states.shape)
        prev[:, :, 0] = state0
        for ci in range(nchunks - 1):
            torch.addcmul(
                chunk_states[:, :, ci], prev[:, :, ci], decay[:, :, ci], out=prev[:, :, ci + 1]
            )
        final = torch.addcmul(chunk_states[:, :, -1], prev[:, :, -1], decay[:, :, -1])
        ctx.save_for_backward(prev, decay)
        return prev, final

    @staticmethod
    def backward(ctx, grad_prev: Tensor | None, grad_final: Tensor | None):
        prev, decay = ctx.saved_tensors
        nchunks = prev.shape[2]
        if grad_prev is None:
            grad_prev = torch.zeros_like(prev)
        grad_x = torch.empty_like(prev)  # grad_x[:, :, c] = G_{c+1}
        if grad_final is None:
            grad_x[:, :, -1] = 0
        else:
            grad_x[:, :, -1] = grad_final
        for ci in range(nchunks - 1, 0, -1):
            torch.addcmul(
                grad_prev[:, :, ci], grad_x[:, :, ci], decay[:, :, ci], out=grad_x[:, :, ci - 1]
            )
        grad_decay = grad_state0 = None
        if ctx.needs_input_grad[1]:
            grad_decay = (grad_x * prev).sum(dim=(3, 5), keepdim=True)  # (b, g, c, 1, r, 1)
        if ctx.needs_input_grad[2]:
            grad_state0 = torch.addcmul(grad_prev[:, :, 0], grad_x[:, :, 0], decay[:, :, 0])
        return grad_x, grad_decay, grad_state0


def _pass_and_read_states(Bg, Cg, w, decay, state) -> tuple[Tensor, Tensor]:
    """Steps 4-6 without autograd, one chunk at a time (see _ssd_scan_chunked).

    Bg, Cg: (b, g, c, l, n); w: (b, g, c, l, r*p); decay: (b, g, c, 1, r, 1);
    state: (b, g, n, r, p). Returns y_off as (b, c, l, g, r, p) and the final state.
    """
    b, g, c, l, n = Bg.shape  # noqa: E741
    r = decay.shape[4]
    rp = w.shape[-1]
    state = state.reshape(b, g, n, rp).clone()
    y_off = w.new_empty(c, b, g, l, rp)
    Bt = Bg.transpose(-1, -2)  # (b, g, c, n, l)
    decay = decay.expand(b, g, c, 1, r, rp // r).reshape(b, g, c, 1, rp)
    for ci in range(c):
        torch.matmul(Cg[:, :, ci], state, out=y_off[ci])
        state.mul_(decay[:, :, ci]).add_(Bt[:, :, ci] @ w[:, :, ci])
    y_off = y_off.view(c, b, g, l, r, rp // r).permute(1, 0, 3, 2, 4, 5)  # (b, c, l, g, r, p)
    return y_off, state.view(b, g, n, r, rp // r)


def _ssd_scan_chunked(x, dt, A, B, C, D, initial_state, chunk_size) -> tuple[Tensor, Tensor]:
    """Chunked SSD: quadratic form inside chunks, state passing between chunks.

    Heads are split as nheads = ngroups * r so B and C are never copied per head, and the
    per-chunk matmuls that share B or C across a group's heads fold the r heads into the
    matrix (one (r * headdim, l) @ (l, dstate) product per chunk instead of r small ones).
    Index names: b batch, g group, r head within group, c chunk, l/s position in chunk,
    p headdim, n dstate. Without autograd (scoring, ``torch.no_grad``) the big temporaries
    are updated in place, which saves a pass and an allocation per step.
    """
    batch, seqlen, nheads, headdim = x.shape
    ngroups, dstate = B.shape[2], B.shape[3]
    r = nheads // ngroups
    ct = _compute_dtype(x)
    x_in = x
    x, dt, A, B, C = (t.to(ct) for t in (x, dt, A, B, C))
    tracked = (x, dt, A, B, C, D, initial_state)
    inplace = not (
        torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tracked)
    )

    # 1. Pad the time axis to a whole number of chunks. Padded steps have dt = 0, so their
    #    decay is exp(0) = 1 and their input dt * x is 0: they leave the state unchanged.
    chunk = min(chunk_size, seqlen)
    nchunks = -(-seqlen // chunk)
    pad = nchunks * chunk - seqlen
    if pad:
        x = F.pad(x, (0, 0, 0, 0, 0, pad))
        dt = F.pad(dt, (0, 0, 0, pad))
        B = F.pad(B, (0, 0, 0, 0, 0, pad))
        C = F.pad(C, (0, 0, 0, 0, 0, pad))
    b, g, c, l, p, n = batch, ngroups, nchunks, chunk, headdim, dstate  # noqa: E741
    length = c * l

    # 2. Layouts. x keeps its natural (b, L, h, p) = (b, c, l, g, r, p) order; the log-decay
    #    a = dt * A goes to (b, h, c, l) = (b, g, r, c, l) so cumulative sums run along l.
    xdt = x * dt[..., None]  # (b, L, h, p)
    a_cum = torch.cumsum((dt * A).view(b, c, l, nheads).permute(0, 3, 1, 2), dim=-1)
    a_cum = a_cum.contiguous()  # (b, h, c, l)
    Bg = B.view(b, c, l, g, n).permute(0, 3, 1, 2, 4)  # (b, g, c, l, n)
    Cg = C.view(b, c, l, g, n).permute(0, 3, 1, 2, 4)  # (b, g, c, l, n)

    # 3. Intra-chunk (diagonal blocks): y_l = sum_{s <= l} (C_l · B_s) exp(a_{s+1..l}) dt_s x_s.
    #    C·B is computed once per group; the decay mask exp(segment sum) once per head.
    upper = torch.ones(l, l, dtype=torch.bool, device=x.device).triu(1)
    seg = a_cum[..., :, None] - a_cum[..., None, :]  # (b, h, c, l, s)
    CB = (Cg @ Bg.transpose(-1, -2))[:, :, None]  # (b, g, 1, c, l, s)
    if inplace:
        scores = seg.masked_fill_(upper, float("-inf")).exp_().view(b, g, r, c, l, l).mul_(CB)
    else:
        scores = seg.masked_fill(upper, float("-inf")).exp_().view(b, g, r, c, l, l) * CB
    xdt_heads = xdt.view(b, c, l, g, r, p).permute(0, 3, 4, 1, 2, 5)  # (b, g, r, c, s, p)
    y_diag = scores @ xdt_heads  # (b, g, r, c, l, p)

    # 4. State contributed by each chunk alone, decayed to the chunk's end, kept transposed
    #    as (n, r * p): B^T @ w, one (n, l) @ (l, r * p) product per (batch, group, chunk),
    #    the layout measured fastest for these shapes with MKL (step 6 then needs no
    #    transpose either). w is dt * x decayed to the chunk's end.
    decay_to_end = torch.exp(a_cum[..., -1:] - a_cum)  # (b, h, c, l)
    w = xdt * decay_to_end.permute(0, 2, 3, 1).reshape(b, length, nheads, 1)  # (b, L, h, p)
    w = w.view(b, c, l, g, r * p).permute(0, 3, 1, 2, 4)  # (b, g, c, l, r*p)

    # 5. Inter-chunk recurrence on chunk boundaries, h_{c+1} = exp(sum of a over chunk c) h_c
    #    + chunk_states[c], as a loop over chunks: linear in the number of chunks (the
    #    one-matmul form with a (c+1, c+1) decay matrix costs c^2 * headdim * dstate).
    #    States are (b, g, n, r, p) here: the transpose of (b, h, p, n).
    chunk_decay = torch.exp(a_cum[..., -1]).view(b, g, r, c).permute(0, 1, 3, 2)  # (b,g,c,r)
    chunk_decay = chunk_decay[..., None, :, None]  # (b, g, c, 1, r, 1)
    if initial_state is None:
        state = xdt.new_zeros(b, g, n, r, p)
    else:
        state = initial_state.to(ct).view(b, g, r, p, n).permute(0, 1, 4, 2, 3)
    if inplace:
        # 4-6 fused, chunk by chunk: the state stays in cache and no (chunks, n, r * p) tensor
        # is materialised (measured 1.4x faster forward at chunk 32, length 4096).
        y_off, final_state = _pass_and_read_states(Bg, Cg, w, chunk_decay, state)
    else:
        chunk_states = Bg.transpose(-1, -2) @ w  # (b, g, c, n, r*p)
        chunk_states = chunk_states.view(b, g, c, n, r, p)
        # The loop with a hand-written backward (_PassStates).
        prev_states, final_state = _PassStates.apply(chunk_states, chunk_decay, state)
        # 6. Off-diagonal blocks: the state entering each chunk read out by C, one
        #    (l, n) @ (n, r * p) product per (batch, group, chunk), decayed from the chunk start.
        y_off = Cg @ prev_states.view(b, g, c, n, r * p)  # (b, g, c, l, r*p)
        y_off = y_off.view(b, g, c, l, r, p).permute(0, 2, 3, 1, 4, 5)  # (b, c, l, g, r, p)
    decay_in = torch.exp(a_cum).permute(0, 2, 3, 1).reshape(b, c, l, g, r, 1)
    y_diag = y_diag.permute(0, 3, 4, 1, 2, 5)  # (b, c, l, g, r, p)
    y = y_off.mul_(decay_in).add_(y_diag) if inplace else y_off * decay_in + y_diag

    # 7. Back to (batch, seqlen, nheads, headdim), drop padding, add the D skip.
    y = y.reshape(b, length, nheads, p)[:, :seqlen]
    if D is not None:
        Dx = D.to(ct)[:, None]
        y = y.addcmul_(Dx, x[:, :seqlen]) if inplace else y + Dx * x[:, :seqlen]
    # (b, g, n, r, p) -> (b, h, p, n)
    final_state = final_state.permute(0, 1, 3, 4, 2).reshape(batch, nheads, headdim, dstate)
    return y.to(x_in.dtype), final_state
