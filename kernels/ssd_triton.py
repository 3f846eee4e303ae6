"""Fused Triton kernels for the Mamba-2 SSD scan, forward and backward.

The same chunked algorithm as ``kernels.ssd._ssd_scan_chunked`` (Dao & Gu 2024, section 6;
the kernel split follows the structure of state-spaces/mamba's ``ssd_*`` Triton kernels,
written anew here for a scalar decay per head and whole (headdim, dstate) tiles):

Forward, one launch each:
  1. ``_chunk_cumsum_fwd``   a_t = dt_t * A; its cumulative sum inside each chunk.
  2. ``_chunk_state_fwd``    the state each chunk adds on its own, decayed to its end.
  3. ``_state_passing_fwd``  h_{c+1} = exp(sum a over chunk c) * h_c + state_c, sequential in
                             c, parallel over (batch, head, state entries); keeps the state
                             entering every chunk for the backward pass.
  4. ``_chunk_scan_fwd``     y = intra-chunk quadratic form + C_l h_c exp(acs_l) + D x.

Backward, one launch each:
  5. ``_chunk_dstate_bwd``   d(state entering chunk c) from that chunk's outputs.
  6. ``_state_passing_bwd``  the reverse recurrence: gradient of every chunk's state, and of
                             ``initial_state``.
  7. ``_chunk_scan_bwd``     one fused kernel per chunk for dx, ddt, dB, dC and the decay
                             gradient (reverse cumsum inside the chunk), with per-chunk
                             partial sums for dA and dD.
The only work left to PyTorch is summing small partials: dA and dD over (batch, chunk),
and dB, dC over the heads that share a group (kernels write them per head, so no atomics).

Every program holds a whole (chunk, headdim) and (chunk, dstate) tile, padded to powers of two
of at least 16 (``tl.dot`` needs that) and masked. All arithmetic is fp32; fp16/bf16 inputs are
loaded and upcast. ``tl.dot`` runs in IEEE fp32 for fp32 inputs (so parity with ``ref`` holds
to fp32 rounding) and in TF32 for 16-bit inputs, whose own rounding is coarser.

Runs on CUDA, or on the CPU under ``TRITON_INTERPRET=1`` (exact, slow: for tests only).
Only long-standing ``triton.language`` features are used, so Triton >= 3.0 works.
"""

import torch
import triton
import triton.language as tl
from torch import Tensor

_f32 = tl.float32


@triton.jit
def _chunk_cumsum_fwd(dt_ptr, A_ptr, acs_ptr, L, H, NC, Q: tl.constexpr, BLOCK_Q: tl.constexpr):
    pid_bh = tl.program_id(0)
    c = tl.program_id(1)
    bi = (pid_bh // H).to(tl.int64)
    hi = pid_bh % H
    offs_l = tl.arange(0, BLOCK_Q)
    t = c * Q + offs_l
    valid = (offs_l < Q) & (t < L)
    # Steps past the end of the sequence get dt = 0: decay 1, no input.
    dt = tl.load(dt_ptr + (bi * L + t) * H + hi, mask=valid, other=0.0).to(_f32)
    a = dt * tl.load(A_ptr + hi).to(_f32)
    acs = tl.cumsum(a, axis=0)
    tl.store(acs_ptr + (pid_bh.to(tl.int64) * NC + c) * Q + offs_l, acs, mask=offs_l < Q)


@triton.jit
def _chunk_state_fwd(
    x_ptr,
    dt_ptr,
    B_ptr,
    acs_ptr,
    states_ptr,
    L,
    H,
    G,
    NC,
    P,
    N,
    HPG,
    Q: tl.constexpr,
    BLOCK_Q: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_N: tl.constexpr,
    DOT_PREC: tl.constexpr,
):
    pid_bh = tl.program_id(0)
    c = tl.program_id(1)
    bi = (pid_bh // H).to(tl.int64)
    hi = pid_bh % H
    gi = hi // HPG
    offs_l = tl.arange(0, BLOCK_Q)
    offs_p = tl.arange(0, BLOCK_P)
    offs_n = tl.arange(0, BLOCK_N)
    t = c * Q + offs_l
    valid = (offs_l < Q) & (t < L)
    row = bi * L + t  # (Q,) flat (batch, time) index

    x = tl.load(
        x_ptr + (row[:, None] * H + hi) * P + offs_p[None, :],
        mask=valid[:, None] & (offs_p[None, :] < P),
        other=0.0,
    ).to(_f32)  # (Q, P)
    dt = tl.load(dt_ptr + row * H + hi, mask=valid, other=0.0).to(_f32)
    Bm = tl.load(
        B_ptr + (row[:, None] * G + gi) * N + offs_n[None, :],
        mask=valid[:, None] & (offs_n[None, :] < N),
        other=0.0,
    ).to(_f32)  # (Q, N)
    acs_base = acs_ptr + (pid_bh.to(tl.int64) * NC + c) * Q
    acs = tl.load(acs_base + offs_l, mask=offs_l < Q, other=0.0)
    alast = tl.load(acs_base + Q - 1)
    w = tl.where(valid, tl.exp(tl.where(valid, alast - acs, 0.0)) * dt, 0.0)  # (Q,)
    s = tl.dot(tl.trans(x * w[:, None]), Bm, input_precision=DOT_PREC)  # (P, N)
    st_base = states_ptr + (pid_bh.to(tl.int64) * NC + c) * P * N
    tl.store(
        st_base + offs_p[:, None] * N + offs_n[None, :],
        s,
        mask=(offs_p[:, None] < P) & (offs_n[None, :] < N),
    )


@triton.jit
def _state_passing_fwd(
    states_ptr,
    acs_ptr,
    init_ptr,
    prev_ptr,
    final_ptr,
    NC,
    PN,
    Q: tl.constexpr,
    HAS_INIT: tl.constexpr,
    BLOCK: tl.constexpr,
):
    pid_bh = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    m = offs < PN
    if HAS_INIT:
        h = tl.load(init_ptr + pid_bh * PN + offs, mask=m, other=0.0).to(_f32)
    else:
        h = tl.zeros((BLOCK,), dtype=_f32)
    for c in range(0, NC):
        tl.store(prev_ptr + (pid_bh * NC + c) * PN + offs, h, mask=m)
        s = tl.load(states_ptr + (pid_bh * NC + c) * PN + offs, mask=m, other=0.0)
        alast = tl.load(acs_ptr + (pid_bh * NC + c) * Q + Q - 1)
        h = tl.exp(alast) * h + s
    tl.store(final_ptr + pid_bh * PN + offs, h, mask=m)


@triton.jit
def _chunk_scan_fwd(
    x_ptr,
    dt_ptr,
    B_ptr,
    C_ptr,
    D_ptr,
    acs_ptr,
    prev_ptr,
    y_ptr,
    L,
    H,
    G,
    NC,
    P,
    N,
    HPG,
    Q: tl.constexpr,
    BLOCK_Q: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HAS_D: tl.constexpr,
    DOT_PREC: tl.constexpr,
):
    pid_bh = tl.program_id(0)
    c = tl.program_id(1)
    bi = (pid_bh // H).to(tl.int64)
    hi = pid_bh % H
    gi = hi // HPG
    offs_l = tl.arange(0, BLOCK_Q)
    offs_p = tl.arange(0, BLOCK_P)
    offs_n = tl.arange(0, BLOCK_N)
    t = c * Q + offs_l
    valid = (offs_l < Q) & (t < L)
    row = bi * L + t
    mask_xp = valid[:, None] & (offs_p[None, :] < P)
    mask_bn = valid[:, None] & (offs_n[None, :] < N)

    x = tl.load(x_ptr + (row[:, None] * H + hi) * P + offs_p[None, :], mask=mask_xp, other=0.0)
    x = x.to(_f32)  # (Q, P)
    dt = tl.load(dt_ptr + row * H + hi, mask=valid, other=0.0).to(_f32)
    bc_offs = (row[:, None] * G + gi) * N + offs_n[None, :]
    Bm = tl.load(B_ptr + bc_offs, mask=mask_bn, other=0.0).to(_f32)  # (Q, N)
    Cm = tl.load(C_ptr + bc_offs, mask=mask_bn, other=0.0).to(_f32)  # (Q, N)
    acs = tl.load(acs_ptr + (pid_bh.to(tl.int64) * NC + c) * Q + offs_l, mask=offs_l < Q, other=0.0)
    hp = tl.load(
        prev_ptr + (pid_bh.to(tl.int64) * NC + c) * P * N + offs_p[:, None] * N + offs_n[None, :],
        mask=(offs_p[:, None] < P) & (offs_n[None, :] < N),
        other=0.0,
    )  # (P, N): state entering this chunk

    # Intra-chunk: y_l = sum_{s <= l} (C_l . B_s) exp(acs_l - acs_s) dt_s x_s.
    causal = (offs_l[:, None] >= offs_l[None, :]) & valid[None, :]
    decay = tl.where(causal, tl.exp(tl.where(causal, acs[:, None] - acs[None, :], 0.0)), 0.0)
    cb = tl.dot(Cm, tl.trans(Bm), input_precision=DOT_PREC)  # (Q, Q)
    y = tl.dot(cb * decay * dt[None, :], x, input_precision=DOT_PREC)  # (Q, P)
    # Inter-chunk: the entering state, decayed to position l and read out by C_l.
    y_off = tl.dot(Cm, tl.trans(hp), input_precision=DOT_PREC)  # (Q, P)
    y += y_off * tl.exp(acs)[:, None]
    if HAS_D:
        y += tl.load(D_ptr + hi).to(_f32) * x
    tl.store(
        y_ptr + (row[:, None] * H + hi) * P + offs_p[None, :],
        y.to(y_ptr.dtype.element_ty),
        mask=mask_xp,
    )


@triton.jit
def _chunk_dstate_bwd(
    dy_ptr,
    C_ptr,
    acs_ptr,
    dloc_ptr,
    L,
    H,
    G,
    NC,
    P,
    N,
    HPG,
    Q: tl.constexpr,
    BLOCK_Q: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_N: tl.constexpr,
    DOT_PREC: tl.constexpr,
):
    """d(state entering chunk c)[p, n] from this chunk: sum_l exp(acs_l) dy_l[p] C_l[n]."""
    pid_bh = tl.program_id(0)
    c = tl.program_id(1)
    bi = (pid_bh // H).to(tl.int64)
    hi = pid_bh % H
    gi = hi // HPG
    offs_l = tl.arange(0, BLOCK_Q)
    offs_p = tl.arange(0, BLOCK_P)
    offs_n = tl.arange(0, BLOCK_N)
    t = c * Q + offs_l
    valid = (offs_l < Q) & (t < L)
    row = bi * L + t
    dy = tl.load(
        dy_ptr + (row[:, None] * H + hi) * P + offs_p[None, :],
        mask=valid[:, None] & (offs_p[None, :] < P),
        other=0.0,
    ).to(_f32)
    Cm = tl.load(
        C_ptr + (row[:, None] * G + gi) * N + offs_n[None, :],
        mask=valid[:, None] & (offs_n[None, :] < N),
        other=0.0,
    ).to(_f32)
    acs = tl.load(acs_ptr + (pid_bh.to(tl.int64) * NC + c) * Q + offs_l, mask=offs_l < Q, other=0.0)
    d = tl.dot(tl.trans(dy * tl.exp(acs)[:, None]), Cm, input_precision=DOT_PREC)  # (P, N)
    tl.store(
        dloc_ptr + (pid_bh.to(tl.int64) * NC + c) * P * N + offs_p[:, None] * N + offs_n[None, :],
        d,
        mask=(offs_p[:, None] < P) & (offs_n[None, :] < N),
    )


@triton.jit
def _state_passing_bwd(
    dloc_ptr,
    acs_ptr,
    dfinal_ptr,
    dstates_ptr,
    dinit_ptr,
    NC,
    PN,
    Q: tl.constexpr,
    HAS_DFINAL: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Reverse of h_{c+1} = exp(alast_c) h_c + s_c: g_c = dloc_c + exp(alast_c) g_{c+1}.

    dstates[c] = g_{c+1} is the gradient of chunk c's own state s_c (and of h_{c+1});
    g_0 is the gradient of the initial state.
    """
    pid_bh = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    m = offs < PN
    if HAS_DFINAL:
        g = tl.load(dfinal_ptr + pid_bh * PN + offs, mask=m, other=0.0).to(_f32)
    else:
        g = tl.zeros((BLOCK,), dtype=_f32)
    for i in range(0, NC):
        c = NC - 1 - i
        tl.store(dstates_ptr + (pid_bh * NC + c) * PN + offs, g, mask=m)
        alast = tl.load(acs_ptr + (pid_bh * NC + c) * Q + Q - 1)
        dloc = tl.load(dloc_ptr + (pid_bh * NC + c) * PN + offs, mask=m, other=0.0)
        g = dloc + tl.exp(alast) * g
    tl.store(dinit_ptr + pid_bh * PN + offs, g, mask=m)


@triton.jit
def _chunk_scan_bwd(
    x_ptr,
    dt_ptr,
    A_ptr,
    B_ptr,
    C_ptr,
    D_ptr,
    acs_ptr,
    prev_ptr,
    dstates_ptr,
    dy_ptr,
    dx_ptr,
    ddt_ptr,
    dBh_ptr,
    dCh_ptr,
    dA_part_ptr,
    dD_part_ptr,
    L,
    H,
    G,
    NC,
    P,
    N,
    HPG,
    Q: tl.constexpr,
    BLOCK_Q: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HAS_D: tl.constexpr,
    DOT_PREC: tl.constexpr,
):
    """Every per-position gradient of one chunk, given d(state leaving it) from step 6.

    With decay[l, s] = exp(acs_l - acs_s) (s <= l), xt_s = dt_s x_s, hp the entering state and
    dS the gradient of the state the chunk adds (``dstates``):
      dC_l  = sum_s M[l, s] B_s + exp(acs_l) dy_l hp,         M[l, s] = (dy_l . x_s) decay dt_s
      dB_s  = sum_l M[l, s] C_l + exp(alast - acs_s) dt_s x_s dS
      dxt_s = sum_l (C_l . B_s) decay dy_l + exp(alast - acs_s) dS B_s;  dx = dt dxt + D dy
      d acs from every exp() above, then da = reverse cumsum of d acs; ddt = x . dxt + A da.
    """
    pid_bh = tl.program_id(0)
    c = tl.program_id(1)
    bi = (pid_bh // H).to(tl.int64)
    hi = pid_bh % H
    gi = hi // HPG
    offs_l = tl.arange(0, BLOCK_Q)
    offs_p = tl.arange(0, BLOCK_P)
    offs_n = tl.arange(0, BLOCK_N)
    t = c * Q + offs_l
    valid = (offs_l < Q) & (t < L)
    row = bi * L + t
    mask_xp = valid[:, None] & (offs_p[None, :] < P)
    mask_bn = valid[:, None] & (offs_n[None, :] < N)
    mask_pn = (offs_p[:, None] < P) & (offs_n[None, :] < N)
    chunk_id = pid_bh.to(tl.int64) * NC + c

    x_offs = (row[:, None] * H + hi) * P + offs_p[None, :]
    x = tl.load(x_ptr + x_offs, mask=mask_xp, other=0.0).to(_f32)  # (Q, P)
    dy = tl.load(dy_ptr + x_offs, mask=mask_xp, other=0.0).to(_f32)  # (Q, P)
    dt = tl.load(dt_ptr + row * H + hi, mask=valid, other=0.0).to(_f32)  # (Q,)
    bc_offs = (row[:, None] * G + gi) * N + offs_n[None, :]
    Bm = tl.load(B_ptr + bc_offs, mask=mask_bn, other=0.0).to(_f32)  # (Q, N)
    Cm = tl.load(C_ptr + bc_offs, mask=mask_bn, other=0.0).to(_f32)  # (Q, N)
    acs = tl.load(acs_ptr + chunk_id * Q + offs_l, mask=offs_l < Q, other=0.0)
    alast = tl.load(acs_ptr + chunk_id * Q + Q - 1)
    pn_offs = chunk_id * P * N + offs_p[:, None] * N + offs_n[None, :]
    hp = tl.load(prev_ptr + pn_offs, mask=mask_pn, other=0.0)  # (P, N)
    dS = tl.load(dstates_ptr + pn_offs, mask=mask_pn, other=0.0)  # (P, N)

    causal = (offs_l[:, None] >= offs_l[None, :]) & valid[None, :]
    decay = tl.where(causal, tl.exp(tl.where(causal, acs[:, None] - acs[None, :], 0.0)), 0.0)
    cb = tl.dot(Cm, tl.trans(Bm), input_precision=DOT_PREC)  # (Q, Q) [l, s]
    dyx = tl.dot(dy, tl.trans(x), input_precision=DOT_PREC)  # (Q, Q) [l, s] = dy_l . x_s
    M = dyx * decay * dt[None, :]
    w_end = tl.where(valid, tl.exp(tl.where(valid, alast - acs, 0.0)), 0.0)  # (Q,)

    # dC: intra-chunk + read-out of the entering state.
    dC_off = tl.dot(dy, hp, input_precision=DOT_PREC) * tl.exp(acs)[:, None]  # (Q, N)
    dC = tl.dot(M, Bm, input_precision=DOT_PREC) + dC_off
    # dB: intra-chunk + this chunk's contribution to the state it passes on.
    dB_st = tl.dot(x, dS, input_precision=DOT_PREC) * (w_end * dt)[:, None]  # (Q, N)
    dB = tl.dot(tl.trans(M), Cm, input_precision=DOT_PREC) + dB_st
    # d(dt * x), then dx and the direct part of ddt.
    dxt = tl.dot(tl.trans(cb * decay), dy, input_precision=DOT_PREC)  # (Q, P)
    dxt += tl.dot(Bm, tl.trans(dS), input_precision=DOT_PREC) * w_end[:, None]
    dx = dxt * dt[:, None]
    if HAS_D:
        dx += tl.load(D_ptr + hi).to(_f32) * dy
        tl.store(dD_part_ptr + chunk_id, tl.sum(tl.sum(dy * x, axis=1), axis=0))
    ddt = tl.sum(dxt * x, axis=1)  # (Q,)

    # Gradient of the within-chunk cumulative log-decay acs (every exp above depends on it).
    T = cb * M  # [l, s]: term of y_l . dy_l coming from s, each scaled by exp(acs_l - acs_s)
    dacs = tl.sum(T, axis=1) - tl.sum(T, axis=0)
    dacs += tl.sum(dC_off * Cm, axis=1)  # exp(acs_l) in the state read-out
    W = tl.sum(dB_st * Bm, axis=1)  # exp(alast - acs_s) in the chunk's own state
    dacs -= W
    # alast also scales the entering state on its way to the next chunk.
    dalast = tl.sum(W, axis=0) + tl.exp(alast) * tl.sum(tl.sum(dS * hp, axis=1), axis=0)
    dacs += tl.where(offs_l == Q - 1, dalast, 0.0)
    # acs_l = sum_{k <= l} a_k, so da_k = sum_{l >= k} dacs_l.
    da = tl.sum(dacs, axis=0) - tl.cumsum(dacs, axis=0) + dacs
    ddt += tl.load(A_ptr + hi).to(_f32) * da
    tl.store(dA_part_ptr + chunk_id, tl.sum(tl.where(valid, dt * da, 0.0), axis=0))

    tl.store(dx_ptr + x_offs, dx.to(dx_ptr.dtype.element_ty), mask=mask_xp)
    tl.store(ddt_ptr + row * H + hi, ddt, mask=valid)
    bh_offs = (row[:, None] * H + hi) * N + offs_n[None, :]
    tl.store(dBh_ptr + bh_offs, dB, mask=mask_bn)
    tl.store(dCh_ptr + bh_offs, dC, mask=mask_bn)


# The chunk-scan kernels hold several (chunk, chunk) fp32 tiles at once; eight warps give
# them twice the registers of the default four.
SCAN_WARPS = 8


def _block(n: int) -> int:
    return max(16, triton.next_power_of_2(n))


def _dot_precision(dtype: torch.dtype) -> str:
    return "ieee" if dtype == torch.float32 else "tf32"


def _forward(x, dt, A, B, C, D, initial_state, chunk):
    batch, seqlen, nheads, headdim = x.shape
    ngroups, dstate = B.shape[2], B.shape[3]
    nchunks = triton.cdiv(seqlen, chunk)
    f32 = dict(device=x.device, dtype=torch.float32)
    dims = (seqlen, nheads, ngroups, nchunks, headdim, dstate, nheads // ngroups)
    blocks = dict(Q=chunk, BLOCK_Q=_block(chunk), BLOCK_P=_block(headdim), BLOCK_N=_block(dstate))
    prec = _dot_precision(x.dtype)
    grid = (batch * nheads, nchunks)
    pn = headdim * dstate
    pn_block = min(1024, triton.next_power_of_2(pn))
    grid_pn = (batch * nheads, triton.cdiv(pn, pn_block))

    acs = torch.empty(batch, nheads, nchunks, chunk, **f32)
    _chunk_cumsum_fwd[grid](dt, A, acs, seqlen, nheads, nchunks, Q=chunk, BLOCK_Q=_block(chunk))
    chunk_states = torch.empty(batch, nheads, nchunks, headdim, dstate, **f32)
    _chunk_state_fwd[grid](x, dt, B, acs, chunk_states, *dims, **blocks, DOT_PREC=prec)
    prev = torch.empty_like(chunk_states)
    final = torch.empty(batch, nheads, headdim, dstate, **f32)
    init = initial_state if initial_state is not None else final  # unread when HAS_INIT=False
    _state_passing_fwd[grid_pn](
        chunk_states,
        acs,
        init,
        prev,
        final,
        nchunks,
        pn,
        Q=chunk,
        HAS_INIT=initial_state is not None,
        BLOCK=pn_block,
    )
    y = torch.empty_like(x)
    _chunk_scan_fwd[grid](
        x,
        dt,
        B,
        C,
        D if D is not None else A,
        acs,
        prev,
        y,
        *dims,
        **blocks,
        HAS_D=D is not None,
        DOT_PREC=prec,
        num_warps=SCAN_WARPS,
    )
    return y, final, acs, prev


def _backward(x, dt, A, B, C, D, acs, prev, dy, dfinal, chunk):
    batch, seqlen, nheads, headdim = x.shape
    ngroups, dstate = B.shape[2], B.shape[3]
    nchunks = acs.shape[2]
    f32 = dict(device=x.device, dtype=torch.float32)
    dims = (seqlen, nheads, ngroups, nchunks, headdim, dstate, nheads // ngroups)
    blocks = dict(Q=chunk, BLOCK_Q=_block(chunk), BLOCK_P=_block(headdim), BLOCK_N=_block(dstate))
    prec = _dot_precision(x.dtype)
    grid = (batch * nheads, nchunks)
    pn = headdim * dstate
    pn_block = min(1024, triton.next_power_of_2(pn))
    grid_pn = (batch * nheads, triton.cdiv(pn, pn_block))

    dloc = torch.empty_like(prev)
    _chunk_dstate_bwd[grid](dy, C, acs, dloc, *dims, **blocks, DOT_PREC=prec)
    dstates = torch.empty_like(prev)
    dinit = torch.empty(batch, nheads, headdim, dstate, **f32)
    _state_passing_bwd[grid_pn](
        dloc,
        acs,
        dfinal if dfinal is not None else dinit,
        dstates,
        dinit,
        nchunks,
        pn,
        Q=chunk,
        HAS_DFINAL=dfinal is not None,
        BLOCK=pn_block,
    )
    dx = torch.empty_like(x)
    ddt = torch.empty(batch, seqlen, nheads, **f32)
    dBh = torch.empty(batch, seqlen, nheads, dstate, **f32)
    dCh = torch.empty_like(dBh)
    dA_part = torch.empty(batch, nheads, nchunks, **f32)
    dD_part = torch.zeros(batch, nheads, nchunks, **f32)
    _chunk_scan_bwd[grid](
        x,
        dt,
        A,
        B,
        C,
        D if D is not None else A,
        acs,
        prev,
        dstates,
        dy,
        dx,
        ddt,
        dBh,
        dCh,
        dA_part,
        dD_part,
        *dims,
        **blocks,
        HAS_D=D is not None,
        DOT_PREC=prec,
        num_warps=SCAN_WARPS,
    )
    r = nheads // ngroups
    dB = dBh.view(batch, seqlen, ngroups, r, dstate).sum(3)
    dC = dCh.view(batch, seqlen, ngroups, r, dstate).sum(3)
    return dx, ddt, dA_part.sum((0, 2)), dB, dC, dD_part.sum((0, 2)), dinit


class _SSDScanTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dt, A, B, C, D, initial_state, chunk):
        x, dt, A, B, C = (t.contiguous() for t in (x, dt, A, B, C))
        D = None if D is None else D.contiguous()
        init = None if initial_state is None else initial_state.contiguous()
        y, final, acs, prev = _forward(x, dt, A, B, C, D, init, chunk)
        ctx.save_for_backward(x, dt, A, B, C, D, acs, prev)
        ctx.chunk = chunk
        ctx.has_init = initial_state is not None
        ctx.init_dtype = None if initial_state is None else initial_state.dtype
        return y, final

    @staticmethod
    def backward(ctx, dy, dfinal):
        x, dt, A, B, C, D, acs, prev = ctx.saved_tensors
        dy = torch.zeros_like(x) if dy is None else dy.contiguous()
        dfinal = None if dfinal is None else dfinal.contiguous()
        dx, ddt, dA, dB, dC, dD, dinit = _backward(
            x, dt, A, B, C, D, acs, prev, dy, dfinal, ctx.chunk
        )
        return (
            dx,
            ddt.to(dt.dtype),
            dA.to(A.dtype),
            dB.to(B.dtype),
            dC.to(C.dtype),
            None if D is None else dD.to(D.dtype),
            dinit.to(ctx.init_dtype) if ctx.has_init else None,
            None,
        )


def ssd_scan_triton(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    initial_state: Tensor | None,
    chunk_size: int,
) -> tuple[Tensor, Tensor]:
    """The fused Triton scan (shapes as ``kernels.ssd.ssd_scan``); y in x.dtype, state fp32."""
    return _SSDScanTriton.apply(x, dt, A, B, C, D, initial_state, chunk_size)
