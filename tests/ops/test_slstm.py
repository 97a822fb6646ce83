"""ops.slstm: the fused Triton sLSTM against the plain loop (fp64), values and gradients; the api's checks.

The kernel tests run in Triton's interpreter in a subprocess on CPU (CI), or compiled with
``STATETRACK_TEST_DEVICE=cuda`` (benchmarks/gpu_tests.sh) at larger shapes.
"""

from __future__ import annotations

import pytest
import torch

from statetrack.ops.slstm import slstm_cell, slstm_scan, zero_state

from .interpreter import DEVICE, GPU, RUNNABLE, rerun_in_interpreter

F64 = torch.float64
kernel_test = pytest.mark.skipif(not RUNNABLE, reason="covered by the interpreter subprocess (or set up a GPU)")
# (B, T, H, K): B and K off the kernel's 16-row / 16-column tiles; on the GPU the Table 3 shapes
GPU_CASES = [(1100, 40, 4, 32), (300, 257, 1, 64), (17, 9, 2, 20)]
CASES = GPU_CASES if GPU else [(3, 1, 1, 8), (20, 9, 3, 20), (17, 5, 1, 32)]


def inputs(B, T, H, K, seed=0, dtype=torch.float32, device="cpu"):
    """wx with the layer's open forget gates (bias 3-6) and r ~ N(0, 1/K), as the sLSTM layer initialises them."""
    g = torch.Generator().manual_seed(seed)
    wx = torch.randn(B, T, 4, H, K, generator=g, dtype=F64)
    wx[:, :, 1] += torch.linspace(3.0, 6.0, H * K, dtype=F64).view(H, K)
    r = torch.randn(H, K, 4, K, generator=g, dtype=F64) / K**0.5
    return wx.to(device, dtype), r.to(device, dtype)


def rel(x, ref):
    x, ref = x.detach().cpu().double(), ref.detach().cpu().double()
    return ((x - ref).norm() / ref.norm().clamp_min(1e-300)).item()


@pytest.mark.skipif(RUNNABLE, reason="already inside the interpreter (or on a GPU)")
def test_kernels_in_interpreter():
    pytest.importorskip("triton")
    rerun_in_interpreter(__file__)


@kernel_test
@pytest.mark.parametrize("B,T,H,K", CASES)
def test_triton_matches_loop(B, T, H, K):
    """h and the gradients of wx and r, fp32 kernel vs the fp64 loop on the same inputs; B and K not multiples of
    the kernel's 16-row / 16-column tiles where the case says so."""
    wx, r = inputs(B, T, H, K, device=DEVICE)
    w = torch.randn(B, T, H, K, generator=torch.Generator().manual_seed(1), dtype=F64)
    out = {}
    for name, (x, rr, backend) in {"triton": (wx, r, "triton"), "ref": (wx.double(), r.double(), "naive")}.items():
        x, rr = x.clone().requires_grad_(), rr.clone().requires_grad_()
        h, st = slstm_scan(x, rr, backend=backend)
        assert st is None
        (h * w.to(h)).sum().backward()
        out[name] = (h, x.grad, rr.grad)
    tol = 2e-5 if GPU else 1e-5  # the GPU's exp is approximate (a few 1e-7 per call), compounded over T
    for a, b, what in zip(out["triton"], out["ref"], ("h", "dwx", "dr"), strict=True):
        assert a.dtype == torch.float32
        assert rel(a, b) < tol, (what, rel(a, b))


@kernel_test
def test_triton_without_grad_and_auto():
    wx, r = inputs(5, 4, 2, 16, device=DEVICE)
    h, _ = slstm_scan(wx, r, backend="triton")
    ref, _ = slstm_scan(wx.double(), r.double(), backend="naive")
    assert rel(h, ref) < 1e-5
    if GPU:  # auto picks the kernel for stateless fp32 CUDA inputs
        assert torch.equal(slstm_scan(wx, r)[0], h)


def test_loop_continues_from_state_and_matches_steps():
    """The plain loop split in two (final state handed over) == one pass == the step function T times."""
    wx, r = inputs(3, 7, 2, 5, dtype=F64)
    full, st_full = slstm_scan(wx, r, output_final_state=True, backend="naive")
    a, st = slstm_scan(wx[:, :3], r, output_final_state=True)
    b, st2 = slstm_scan(wx[:, 3:], r, state=st, output_final_state=True)
    assert torch.allclose(torch.cat([a, b], 1), full, rtol=1e-12, atol=1e-12)
    st = zero_state(3, 2, 5, "cpu", F64)
    for t in range(7):
        st = slstm_cell(wx[:, t], r, st)
        assert torch.allclose(st[0], full[:, t], rtol=1e-12, atol=1e-12)
    for x, y in zip(st, st_full, strict=True):
        assert torch.allclose(x, y, rtol=1e-12, atol=1e-12)
    for x, y in zip(st2, st_full, strict=True):
        assert torch.allclose(x, y, rtol=1e-12, atol=1e-12)


def test_bad_input_names_the_argument():
    wx, r = inputs(2, 3, 2, 4)
    with pytest.raises(ValueError, match="wx must have shape"):
        slstm_scan(wx[:, :, :3], r)
    with pytest.raises(ValueError, match="r must have shape"):
        slstm_scan(wx, r[:, :3])
    with pytest.raises(TypeError, match="r must have wx's dtype"):
        slstm_scan(wx, r.double())
    with pytest.raises(TypeError, match="wx must be a floating-point"):
        slstm_scan(wx.long(), r)
    with pytest.raises(ValueError, match=r"state\['c'\]"):
        st = zero_state(2, 2, 4, "cpu", torch.float32)
        slstm_scan(wx, r, state=(st[0], st[1][:1], st[2], st[3]))
    with pytest.raises(ValueError, match="backend='triton' runs without"):
        slstm_scan(wx, r, output_final_state=True, backend="triton")
    with pytest.raises(ValueError, match="backend must be one of"):
        slstm_scan(wx, r, backend="cuda")
