"""Parity tests for kernels/ssd.py: every implementation against the sequential reference.

Checks y, the final state and the gradient of every input, with one tolerance table per
dtype, on shapes chosen to break kernels (length 1, lengths not a multiple of the chunk,
non-power-of-two headdim, grouped B/C, with and without an initial state).
"""

import logging
import sys

import pytest
import torch
from ssd_helpers import assert_close, detached, make_inputs, run

from kernels import ssd
from kernels.ssd import ssd_scan, ssd_step

NHEADS, HEADDIM, DSTATE = 4, 12, 8


@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("ngroups", [1, 2])
@pytest.mark.parametrize("chunk_size", [16, 32, 64])
@pytest.mark.parametrize("seqlen", [1, 7, 64, 100, 130])
def test_chunked_matches_reference_fp32(seqlen, chunk_size, ngroups, with_state):
    inputs = make_inputs(seqlen, ngroups, with_state, torch.float32)
    y_ref, s_ref, g_ref = run(inputs, impl="ref")
    y, s, g = run(inputs, impl="torch", chunk_size=chunk_size)
    assert y.dtype == torch.float32 and y.shape == inputs["x"].shape
    assert s.dtype == torch.float32 and s.shape == (2, NHEADS, HEADDIM, DSTATE)
    assert_close(y, y_ref, torch.float32, "y")
    assert_close(s, s_ref, torch.float32, "final_state")
    assert g.keys() == g_ref.keys()
    for name in g_ref:
        assert_close(g[name], g_ref[name], torch.float32, f"grad {name}")


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
@pytest.mark.parametrize(("seqlen", "chunk_size"), [(1, 16), (37, 16), (130, 64)])
def test_chunked_matches_reference_other_dtypes(dtype, seqlen, chunk_size):
    inputs = make_inputs(seqlen, 2, True, dtype)
    y_ref, s_ref, g_ref = run(inputs, impl="ref")
    y, s, g = run(inputs, impl="torch", chunk_size=chunk_size)
    assert y.dtype == dtype
    assert s.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert_close(y, y_ref, dtype, "y")
    assert_close(s, s_ref, dtype, "final_state")
    for name in g_ref:
        assert g[name].dtype == dtype
        assert_close(g[name], g_ref[name], dtype, f"grad {name}")


@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize(("seqlen", "chunk_size"), [(1, None), (45, 16), (77, None)])
def test_chunked_matches_reference_odd_widths(seqlen, chunk_size, with_state):
    """headdim 7 and dstate 5: no power of two anywhere; 3 groups of 2 heads."""
    inputs = make_inputs(seqlen, 3, with_state, torch.float32, nheads=6, headdim=7, dstate=5)
    y_ref, s_ref, g_ref = run(inputs, impl="ref")
    y, s, g = run(inputs, impl="torch", chunk_size=chunk_size)
    assert_close(y, y_ref, torch.float32, "y")
    assert_close(s, s_ref, torch.float32, "final_state")
    for name in g_ref:
        assert_close(g[name], g_ref[name], torch.float32, f"grad {name}")


def test_reference_matches_naive_formula():
    """ref against the recurrence written out with scalar-indexed loops (spec of the spec)."""
    inp = make_inputs(5, 2, True, torch.float64)
    y, s = ssd_scan(**inp, impl="ref")
    x, dt, A, B, C, D = (inp[k].detach() for k in ("x", "dt", "A", "B", "C", "D"))
    h = inp["initial_state"].detach().clone()
    for t in range(x.shape[1]):
        for head in range(NHEADS):
            grp = head // (NHEADS // 2)
            a = torch.exp(dt[:, t, head] * A[head])[:, None, None]
            upd = dt[:, t, head, None, None] * x[:, t, head, :, None] * B[:, t, grp, None, :]
            h[:, head] = a * h[:, head] + upd
            y_t = (h[:, head] * C[:, t, grp, None, :]).sum(-1) + D[head] * x[:, t, head]
            torch.testing.assert_close(y[:, t, head], y_t)
    torch.testing.assert_close(s, h)


@pytest.mark.parametrize("ngroups", [1, 2])
def test_step_iterated_equals_scan(ngroups):
    inp = detached(make_inputs(9, ngroups, True, torch.float32))
    y_scan, s_scan = ssd_scan(**inp, impl="torch", chunk_size=4)
    state = inp["initial_state"]
    for t in range(9):
        y_t, state = ssd_step(
            state,
            inp["x"][:, t],
            inp["dt"][:, t],
            inp["A"],
            inp["B"][:, t],
            inp["C"][:, t],
            inp["D"],
        )
        assert_close(y_t, y_scan[:, t], torch.float32, f"y[{t}]")
    assert_close(state, s_scan, torch.float32, "state")


@pytest.mark.parametrize("impl", ["ref", "torch"])
def test_two_halves_with_state_passing_equal_one_scan(impl):
    inp = detached(make_inputs(70, 2, True, torch.float32))
    y_full, s_full = ssd_scan(**inp, impl=impl, chunk_size=16)
    cut = 29

    def part(sl, state):
        seq = {k: inp[k][:, sl] for k in ("x", "dt", "B", "C")}
        return ssd_scan(
            **seq, A=inp["A"], D=inp["D"], initial_state=state, impl=impl, chunk_size=16
        )

    y1, s1 = part(slice(0, cut), inp["initial_state"])
    y2, s2 = part(slice(cut, None), s1)
    assert_close(torch.cat([y1, y2], dim=1), y_full, torch.float32, "y")
    assert_close(s2, s_full, torch.float32, "state")


def test_triton_on_cpu_without_interpreter_raises(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    inp = make_inputs(4, 1, False, torch.float32)
    with pytest.raises(RuntimeError, match="impl='triton' needs CUDA tensors"):
        ssd_scan(**inp, impl="triton")


def test_triton_refuses_float64(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    inp = make_inputs(4, 1, False, torch.float64)
    with pytest.raises(RuntimeError, match="not float64"):
        ssd_scan(**inp, impl="triton")


def test_triton_missing_package_raises(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setitem(sys.modules, "triton", None)  # import now fails
    inp = make_inputs(4, 1, False, torch.float32)
    with pytest.raises(RuntimeError, match="needs the triton package"):
        ssd_scan(**inp, impl="triton")


@pytest.mark.parametrize("seqlen", [1, 100, 300, 5000])
def test_default_chunk_size_is_the_measured_one(seqlen):
    chunk = ssd.torch_chunk_size(seqlen)
    assert chunk >= 1
    inp = detached(make_inputs(seqlen, 1, True, torch.float32, batch=1))
    y_default, s_default = ssd_scan(**inp, impl="torch")
    y_chunk, s_chunk = ssd_scan(**inp, impl="torch", chunk_size=chunk)
    assert torch.equal(y_default, y_chunk) and torch.equal(s_default, s_chunk)


def test_unknown_impl_raises():
    inp = make_inputs(4, 1, False, torch.float32)
    with pytest.raises(ValueError, match="unknown ssd_scan impl"):
        ssd_scan(**inp, impl="cuda")


def test_bad_shapes_raise():
    inp = make_inputs(4, 1, False, torch.float32)
    inp["A"] = inp["A"][:2]
    with pytest.raises(ValueError, match="A must be"):
        ssd_scan(**inp)


def test_auto_uses_torch_on_cpu_and_logs_once(caplog, monkeypatch):
    monkeypatch.setattr(ssd, "_auto_logged", False)
    inp = detached(make_inputs(10, 1, False, torch.float32))
    with caplog.at_level(logging.INFO, logger="kernels"):
        y_auto, _ = ssd_scan(**inp, impl="auto", chunk_size=4)
        ssd_scan(**inp, impl="auto", chunk_size=4)
    y_torch, _ = ssd_scan(**inp, impl="torch", chunk_size=4)
    assert torch.equal(y_auto, y_torch)
    messages = [r.getMessage() for r in caplog.records if r.name == "kernels"]
    assert len(messages) == 1 and "'torch'" in messages[0]


@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize(
    ("seqlen", "chunk_size", "ngroups", "widths"),
    [
        (1, None, 1, {}),
        (7, 16, 2, {}),
        (100, 32, 1, {}),
        (130, 64, 2, {}),
        (77, 16, 3, {"nheads": 6, "headdim": 7, "dstate": 5}),
    ],
)
def test_chunked_without_autograd_matches_reference(
    seqlen, chunk_size, ngroups, widths, with_state
):
    """The no-grad path (in-place temporaries) gives ref's y and state, leaves inputs alone."""
    inp = detached(make_inputs(seqlen, ngroups, with_state, torch.float32, **widths))
    before = {k: None if v is None else v.clone() for k, v in inp.items()}
    y_ref, s_ref = ssd_scan(**inp, impl="ref")
    with torch.no_grad():
        y, s = ssd_scan(**inp, impl="torch", chunk_size=chunk_size)
    with torch.inference_mode():
        y_inf, s_inf = ssd_scan(**inp, impl="torch", chunk_size=chunk_size)
    assert_close(y, y_ref, torch.float32, "y")
    assert_close(s, s_ref, torch.float32, "final_state")
    assert torch.equal(y, y_inf) and torch.equal(s, s_inf)
    for k, v in inp.items():
        assert v is None or torch.equal(v, before[k]), f"{k} was modified in place"


def test_chunked_without_autograd_equals_autograd_path():
    """Same inputs through the in-place (no grad) and the autograd form: same numbers."""
    inp = make_inputs(90, 2, True, torch.float32)
    y_grad, s_grad = ssd_scan(**inp, impl="torch", chunk_size=32)
    with torch.no_grad():
        y, s = ssd_scan(**inp, impl="torch", chunk_size=32)
    assert y_grad.requires_grad and not y.requires_grad
    torch.testing.assert_close(y, y_grad.detach(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(s, s_grad.detach(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("loss", ["y", "state"])
def test_chunked_gradients_when_one_output_is_unused(loss):
    """The hand-written state-passing backward gets None for the unused output's gradient."""
    inputs = make_inputs(70, 2, True, torch.float32)
    _, _, g_ref = run(inputs, loss=loss, impl="ref")
    _, _, g = run(inputs, loss=loss, impl="torch", chunk_size=16)
    for name in g_ref:
        assert_close(g[name], g_ref[name], torch.float32, f"grad {name} (loss on {loss})")


def test_pass_states_gradcheck():
    """_PassStates (inter-chunk recurrence, hand-written backward) against finite differences."""
    g = torch.Generator().manual_seed(3)
    b, grp, c, n, r, p = 2, 2, 5, 3, 2, 4
    x = torch.randn(b, grp, c, n, r, p, generator=g, dtype=torch.float64, requires_grad=True)
    decay = torch.rand(b, grp, c, 1, r, 1, generator=g, dtype=torch.float64, requires_grad=True)
    s0 = torch.randn(b, grp, n, r, p, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(ssd._PassStates.apply, (x, decay, s0))


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_chunked_without_autograd_other_dtypes(dtype):
    inp = detached(make_inputs(37, 2, True, dtype))
    y_ref, s_ref = ssd_scan(**inp, impl="ref")
    with torch.no_grad():
        y, s = ssd_scan(**inp, impl="torch", chunk_size=16)
    assert y.dtype == dtype and s.dtype == s_ref.dtype
    assert_close(y, y_ref, dtype, "y")
    assert_close(s, s_ref, dtype, "final_state")
