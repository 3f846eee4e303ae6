"""Parity tests for the Triton SSD kernels (kernels/ssd_triton.py) against the reference.

CPU: the Triton interpreter. ``TRITON_INTERPRET=1`` only takes effect for kernels decorated
after it is set, and other tests import the kernels in this process, so the toy cases run in
one subprocess (this file run as a script, with the variable set before anything imports
Triton) that reports each case's errors as JSON; one test per case asserts on them.

GPU (``pytest -m gpu``): realistic sizes on CUDA against the reference run in fp64 on the same
values, for the Triton and the chunked PyTorch paths, fp32 and bf16 inputs.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from ssd_helpers import (
    TOLERANCE,
    as_float64,
    assert_close,
    detached,
    make_inputs,
    max_error,
    run,
)

from kernels import ssd
from kernels.ssd import ssd_scan

HAS_TRITON = importlib.util.find_spec("triton") is not None
HAS_CUDA = torch.cuda.is_available()
REPO = Path(__file__).resolve().parents[2]

# id -> (make_inputs arguments, chunk_size, loss). Tiny, but each breaks something: length 1,
# odd lengths, a partial last chunk, non-power-of-two headdim/dstate below the 16-wide tiles,
# groups (1, 2, one head per group), no D, no initial state, one output unused, bf16.
INTERPRET_CASES = {
    "len1": (dict(seqlen=1, ngroups=1, with_state=False), 16, "both"),
    "odd37-groups2-state": (dict(seqlen=37, ngroups=2, with_state=True), 16, "both"),
    "odd70-p5-n3-chunk32": (
        dict(seqlen=70, ngroups=1, with_state=True, nheads=2, headdim=5, dstate=3),
        32,
        "both",
    ),
    "len64-group-per-head": (
        dict(seqlen=64, ngroups=4, with_state=True, headdim=16, dstate=16),
        16,
        "both",
    ),
    "noD-y-only": (dict(seqlen=23, ngroups=2, with_state=True, with_D=False), 16, "y"),
    "state-only": (dict(seqlen=19, ngroups=1, with_state=True), 16, "state"),
    "default-chunk100": (dict(seqlen=100, ngroups=1, with_state=False, batch=1), None, "both"),
    "bf16-odd37": (dict(seqlen=37, ngroups=2, with_state=True, dtype="bfloat16"), 16, "both"),
}


def _case_errors(spec, chunk_size, loss):
    """Run one case through triton and ref; returns {what: [error, scale, dtype name]}."""
    spec = dict(spec)
    dtype = getattr(torch, spec.pop("dtype", "float32"))
    inp = make_inputs(dtype=dtype, **spec)
    y, s, g = run(inp, loss=loss, impl="triton", chunk_size=chunk_size)
    y_ref, s_ref, g_ref = run(inp, loss=loss, impl="ref")
    if y.dtype != dtype or s.dtype != torch.float32 or y.shape != y_ref.shape:
        raise AssertionError(f"dtypes/shapes: y {y.dtype} {tuple(y.shape)}, state {s.dtype}")
    out = {"y": max_error(y, y_ref), "final_state": max_error(s, s_ref)}
    for name in g_ref:
        if g[name].dtype != inp[name].dtype:
            raise AssertionError(f"grad {name} dtype {g[name].dtype} != {inp[name].dtype}")
        out[f"grad {name}"] = max_error(g[name], g_ref[name])
    return {k: [err, scale, str(dtype)] for k, (err, scale) in out.items()}


def _worker():
    """Subprocess entry: every interpreter case, as JSON on stdout."""
    assert os.environ.get("TRITON_INTERPRET") == "1"
    results = {}
    for case_id, (spec, chunk_size, loss) in INTERPRET_CASES.items():
        start = time.perf_counter()
        results[case_id] = {
            "errors": _case_errors(spec, chunk_size, loss),
            "seconds": time.perf_counter() - start,
        }
    print(json.dumps(results))


@pytest.fixture(scope="module")
def interpreted():
    """Errors per case from one interpreter subprocess (about 15 s on 2 cores)."""
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, __file__],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"interpreter worker failed:\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
@pytest.mark.parametrize("case_id", list(INTERPRET_CASES))
def test_triton_interpreted_matches_reference(interpreted, case_id):
    errors = interpreted[case_id]["errors"]
    expected = {"y", "final_state", "grad x", "grad dt", "grad A", "grad B", "grad C"}
    assert expected <= errors.keys()
    for what, (err, scale, dtype) in errors.items():
        tol = TOLERANCE[getattr(torch, dtype.removeprefix("torch."))] * scale
        assert err <= tol, f"{case_id} {what}: max abs error {err:.3g} > {tol:.3g}"


# --- Compilation for a real GPU, without one -------------------------------------------------
# The interpreter checks the arithmetic but never lowers the kernels; this compiles each one to
# a cubin for sm_90 (H100/H200) with the ptxas that ships in the triton wheel, so shapes that
# tl.dot refuses, layout or shared-memory failures show up on a CPU-only machine.

_PTR_16BIT = {"x_ptr", "y_ptr", "dx_ptr", "dy_ptr", "B_ptr", "C_ptr", "dt_ptr"}


def _arg_type(name, constants, pointee):
    """Triton signature type of a kernel argument: constexpr, pointer or int32."""
    if name in constants:
        return "constexpr"
    if name.endswith("_ptr"):
        return pointee if name in _PTR_16BIT else "*fp32"
    return "i32"


def _compile_all(headdim, dstate, dtype):
    import inspect

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from kernels import ssd_triton as K

    prec = K._dot_precision(dtype)
    blocks = dict(
        Q=64, BLOCK_Q=64, BLOCK_P=K._block(headdim), BLOCK_N=K._block(dstate)
    )  # as _forward/_backward launch them for chunk 64
    kernels = [
        (K._chunk_cumsum_fwd, dict(Q=64, BLOCK_Q=64), 4),
        (K._chunk_state_fwd, dict(**blocks, DOT_PREC=prec), 4),
        (K._state_passing_fwd, dict(Q=64, HAS_INIT=True, BLOCK=1024), 4),
        (K._chunk_scan_fwd, dict(**blocks, HAS_D=True, DOT_PREC=prec), K.SCAN_WARPS),
        (K._chunk_dstate_bwd, dict(**blocks, DOT_PREC=prec), 4),
        (K._state_passing_bwd, dict(Q=64, HAS_DFINAL=True, BLOCK=1024), 4),
        (K._chunk_scan_bwd, dict(**blocks, HAS_D=True, DOT_PREC=prec), K.SCAN_WARPS),
    ]
    pointee = "*bf16" if dtype == torch.bfloat16 else "*fp32"
    compiled = {}
    for kernel, constants, warps in kernels:
        names = list(inspect.signature(kernel.fn).parameters)
        signature = {n: _arg_type(n, constants, pointee) for n in names}
        constexprs = {(names.index(k),): v for k, v in constants.items()}
        src = ASTSource(fn=kernel, signature=signature, constexprs=constexprs)
        binary = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": warps})
        compiled[kernel.fn.__name__] = len(binary.asm["cubin"])
    return compiled


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
@pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") == "1", reason="kernels are interpreted in this process"
)
@pytest.mark.parametrize(
    ("headdim", "dstate", "dtype"), [(32, 32, torch.float32), (40, 24, torch.bfloat16)]
)
def test_kernels_compile_for_sm90(headdim, dstate, dtype, tmp_path, monkeypatch):
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))
    compiled = _compile_all(headdim, dstate, dtype)
    assert len(compiled) == 7 and all(size > 0 for size in compiled.values()), compiled


# --- GPU ------------------------------------------------------------------------------------

requires_gpu = pytest.mark.skipif(
    not (HAS_CUDA and HAS_TRITON), reason="needs a CUDA device and triton"
)

# Against an fp64 reference on the same values. fp32: the kernels' IEEE fp32 matmuls and
# the chunked order of summation leave ~1e-6 relative error; sums over 2048 steps and over
# the batch (dA, dD) grow it, so 1e-4 of the largest magnitude. bf16: outputs and gradients
# are rounded to bf16 (3.9e-3 relative) after TF32 matmuls; 2e-2 as on the CPU.
GPU_TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 2e-2}

GPU_CASES = {
    "b4-L512-h8-p32-n32": dict(batch=4, seqlen=512, ngroups=1, nheads=8, headdim=32, dstate=32),
    "b2-L2048-h8-p64-n64-g2": dict(
        batch=2, seqlen=2048, ngroups=2, nheads=8, headdim=64, dstate=64
    ),
    "b2-L1001-h6-p40-n24-g3": dict(
        batch=2, seqlen=1001, ngroups=3, nheads=6, headdim=40, dstate=24
    ),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("case_id", list(GPU_CASES))
@pytest.mark.parametrize("impl", ["triton", "torch"])
@pytest.mark.gpu
@requires_gpu
def test_gpu_matches_fp64_reference(impl, case_id, dtype):
    inp = make_inputs(with_state=True, dtype=dtype, device="cuda", **GPU_CASES[case_id])
    y, s, g = run(inp, impl=impl)
    y_ref, s_ref, g_ref = run(as_float64(inp), impl="ref")
    tol = GPU_TOLERANCE[dtype]
    assert y.dtype == dtype and s.dtype == torch.float32
    assert_close(y, y_ref, dtype, f"{impl} y", tol)
    assert_close(s, s_ref, dtype, f"{impl} final_state", tol)
    for name in g_ref:
        assert g[name].dtype == dtype
        assert_close(g[name], g_ref[name], dtype, f"{impl} grad {name}", tol)


@pytest.mark.gpu
@requires_gpu
def test_auto_picks_triton_on_cuda_and_logs_once(caplog, monkeypatch):
    monkeypatch.setattr(ssd, "_auto_logged", False)
    inp = detached(make_inputs(100, 1, True, torch.float32, device="cuda"))
    with caplog.at_level(logging.INFO, logger="kernels"):
        y_auto, s_auto = ssd_scan(**inp, impl="auto")
        ssd_scan(**inp, impl="auto")
    y_triton, s_triton = ssd_scan(**inp, impl="triton")
    assert torch.equal(y_auto, y_triton) and torch.equal(s_auto, s_triton)
    messages = [r.getMessage() for r in caplog.records if r.name == "kernels"]
    assert len(messages) == 1 and "'triton'" in messages[0]


if __name__ == "__main__":
    _worker()
