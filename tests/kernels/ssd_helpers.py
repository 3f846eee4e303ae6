"""Shared helpers for the SSD parity tests: inputs, one forward+backward, tolerances.

Imported by tests/kernels/test_ssd*.py (pytest puts this folder on sys.path, as it does for
tests/conftest.py's ls_server) and by the Triton interpreter worker they start.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kernels.ssd import ssd_scan

# Tolerances are relative to the largest magnitude of the reference tensor (at least 1).
# fp32: chunked and sequential sums round differently, a few ulps times the chunk's terms.
# bf16: inputs/outputs/gradients are stored in bf16 (relative step 2**-8 = 3.9e-3) and the
# Triton kernels' matmuls run in TF32 (2**-11) for 16-bit inputs; 2e-2 leaves room for both.
TOLERANCE = {torch.float64: 1e-10, torch.float32: 2e-5, torch.bfloat16: 2e-2}


def make_inputs(
    seqlen,
    ngroups,
    with_state,
    dtype,
    *,
    batch=2,
    nheads=4,
    headdim=12,
    dstate=8,
    with_D=True,
    seed=0,
    device="cpu",
):
    """Random SSD inputs in the ranges a trained model sees (dt > 0, A < 0), requiring grad."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    inputs = {
        "x": randn(batch, seqlen, nheads, headdim),
        "dt": F.softplus(randn(batch, seqlen, nheads) - 1.0),
        "A": -torch.exp(randn(nheads) * 0.5),
        "B": randn(batch, seqlen, ngroups, dstate) / dstate**0.5,
        "C": randn(batch, seqlen, ngroups, dstate) / dstate**0.5,
        "D": randn(nheads) if with_D else None,
        "initial_state": randn(batch, nheads, headdim, dstate) if with_state else None,
    }
    return {
        k: None if v is None else v.to(device=device, dtype=dtype).requires_grad_(True)
        for k, v in inputs.items()
    }


def detached(inputs):
    return {k: None if v is None else v.detach() for k, v in inputs.items()}


def as_float64(inputs):
    """The same values in fp64 (a ground truth for the reference on long sequences)."""
    return {
        k: None if v is None else v.detach().double().requires_grad_(True)
        for k, v in inputs.items()
    }


def run(inputs, loss="both", **kwargs):
    """Forward + backward with fixed random cotangents; returns (y, state, grads by name).

    loss: "both" (y and the final state feed the loss), "y" or "state" (only one does, so
    the implementation sees a missing gradient for the other output).
    """
    y, state = ssd_scan(**inputs, **kwargs)
    g = torch.Generator().manual_seed(1)
    dy = torch.randn(y.shape, generator=g).to(device=y.device, dtype=y.dtype)
    dstate = torch.randn(state.shape, generator=g).to(device=state.device, dtype=state.dtype)
    terms = {"y": (y * dy).float().sum(), "state": (state * dstate).float().sum()}
    total = terms["y"] + terms["state"] if loss == "both" else terms[loss]
    names = [k for k, v in inputs.items() if v is not None]
    grads = torch.autograd.grad(total, [inputs[k] for k in names], allow_unused=True)
    grads = [
        torch.zeros_like(inputs[k]) if gr is None else gr
        for k, gr in zip(names, grads, strict=True)
    ]
    return y, state, dict(zip(names, grads, strict=True))


def max_error(actual, expected):
    """(max abs error, the tolerance scale: max(1, max |expected|))."""
    expected = expected.double()
    err = (actual.double() - expected).abs().max().item()
    return err, max(1.0, expected.abs().max().item())


def assert_close(actual, expected, dtype, what, tolerance=None):
    err, scale = max_error(actual, expected)
    tol = (TOLERANCE[dtype] if tolerance is None else tolerance) * scale
    assert err <= tol, f"{what}: max abs error {err:.3g} > {tol:.3g}"
