"""The Triton diag_scan kernels against the naive fp64 oracle: values, final state, gradients.

Two ways to run:
* CPU (CI): Triton's interpreter. It must be switched on before triton is imported, for the whole process, so
  ``test_kernels_in_interpreter`` runs this file again in a fresh subprocess with ``TRITON_INTERPRET=1`` (nothing
  leaks into other test modules or xdist workers). Tiny shapes and tiles (the interpreter scans element by element):
  T <= 37 with 8-step tiles (2 segments of 4), so every case has several tiles and a ragged last one.
* GPU: ``STATETRACK_TEST_DEVICE=cuda pytest tests/ops/test_diag_scan_triton.py`` (benchmarks/gpu_tests.sh) runs the
  same tests compiled, with the default tiles, at larger shapes (T up to 4100, 200 channels).
The kernel tests skip in a normal CPU process (the subprocess test covers them) and when triton is not installed.
"""

from __future__ import annotations

import pytest
import torch

from statetrack.ops import diag_scan, diag_scan_step
from statetrack.ops.backends import available_backends
from statetrack.ops.diag_scan.naive import diag_scan_naive

pytest.importorskip("triton")

from statetrack.ops.diag_scan.triton import diag_scan_triton  # noqa: E402

from .interpreter import DEVICE, GPU, RUNNABLE, rerun_in_interpreter  # noqa: E402
from .kernel_checks import F32, F64, assert_close, gen, grads, leaves, rel, weights  # noqa: E402

kernel_test = pytest.mark.skipif(not RUNNABLE, reason="covered by the interpreter subprocess (or set up a GPU)")

if GPU:
    LENGTHS, WIDTH, DIAG_KW = (1, 100, 1000, 4100), 200, {}  # the default tiles
else:
    LENGTHS, WIDTH, DIAG_KW = (1, 37), 6, dict(block_t=8, block_d=8)
TOL = 1e-5


@pytest.mark.skipif(RUNNABLE, reason="already inside the interpreter (or on a GPU)")
def test_kernels_in_interpreter():
    rerun_in_interpreter(__file__)


# ------------------------------------------------------------------------------------------------------ diag_scan


def make_a(kind: str, shape, seed: int) -> torch.Tensor:
    """Decays in [-1, 1]: uniform, clustered at -1 or at +1, or mostly exact -1 / 0 / +1; exact zeros and +-1 are
    sprinkled into every kind (resets and sign flips mid-sequence)."""
    g = gen(seed)
    u = torch.rand(shape, generator=g, dtype=F64)
    a = {"uniform": 2 * u - 1, "near_minus_one": -1 + 1e-3 * u, "near_one": 1 - 1e-3 * u}.get(kind)
    if a is None:
        a = torch.tensor([-1.0, 0.0, 1.0, 0.5], dtype=F64)[torch.randint(0, 4, shape, generator=g)]
        a = torch.where(a == 0.5, 2 * u - 1, a)
    flat = a.view(-1)
    idx = torch.randperm(flat.numel(), generator=g)[: max(1, flat.numel() // 50)]
    flat[idx] = torch.tensor([0.0, 1.0, -1.0], dtype=F64).repeat(idx.numel())[: idx.numel()]
    return a


def diag_inputs(T, D=WIDTH, B=2, kind="uniform", seed=0):
    g = gen(seed + 1)
    a = make_a(kind, (B, T, D), seed)
    return a, torch.randn(B, T, D, generator=g, dtype=F64), torch.randn(B, D, generator=g, dtype=F64)


def diag_check(a, b, h0, dtype=F32, tol=TOL, with_final=True, **kw):
    """Triton vs the fp64 oracle on the same (possibly rounded) inputs: h, final state, da, db, dh0."""
    ref_in = leaves((a, b, h0), F64, "cpu")
    h_r, f_r = diag_scan_naive(*ref_in, F64)
    ws = weights([h_r.shape, f_r.shape], 7)[: 2 if with_final else 1]
    g_r = grads([h_r, f_r][: len(ws)], ws, ref_in)
    x = leaves((a, b, h0), dtype, state_idx=(2,))
    h, f = diag_scan_triton(*x, **{**DIAG_KW, **kw})
    assert h.dtype == dtype and f.dtype == F32 and h.device.type == DEVICE
    names = ("h", "final", "da", "db", "dh0")[: 2 + len([t for t in x if t is not None])]
    assert_close(names, [h, f, *grads([h, f][: len(ws)], ws, x)], [h_r, f_r, *g_r], tol)


@kernel_test
@pytest.mark.parametrize("kind", ["uniform", "near_minus_one", "near_one", "exact"])
@pytest.mark.parametrize("T", LENGTHS)
def test_diag_matches_naive(T, kind):
    diag_check(*diag_inputs(T, kind=kind, seed=T))


@kernel_test
def test_diag_without_initial_state_or_final_gradient():
    a, b, _ = diag_inputs(LENGTHS[-1], seed=3)
    diag_check(a, b, None)
    diag_check(a, b, None, with_final=False)


@kernel_test
def test_diag_one_input_needs_grad():
    """da alone (b's checkpoints are still needed) and db alone (no checkpoints written)."""
    a, b, h0 = diag_inputs(LENGTHS[-1], seed=4)
    ref_in = leaves((a, b, h0), F64, "cpu")
    h_r, f_r = diag_scan_naive(*ref_in, F64)
    ws = weights([h_r.shape, f_r.shape], 1)
    g_r = grads([h_r, f_r], ws, ref_in)
    for i in (0, 1):
        x = [t.detach().to(DEVICE, F32) for t in (a, b, h0)]
        x[i].requires_grad_()
        h, f = diag_scan_triton(*x, **DIAG_KW)
        (g,) = grads([h, f], ws, [x[i]])
        assert rel(g, g_r[i]) < TOL, i


@kernel_test
def test_diag_block_sizes_and_ragged_channels():
    """One tile of one step, a tile wider than D, tiles not dividing T or D, one segment per tile (R = BT) and
    one step per segment (R = 1)."""
    a, b, h0 = diag_inputs(LENGTHS[-1] - 4, D=WIDTH + 3, seed=5)
    for bt, bd, r in ((1, 4, None), (64, 64, None), (16, 8, 2), (8, 8, 8), (8, 4, 1)):
        diag_check(a, b, h0, block_t=bt, block_d=bd, segment=r)


@kernel_test
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_diag_low_precision_inputs(dtype):
    """bf16/fp16 a, b against the fp64 oracle fed the same rounded inputs: fp32 inside, one rounding of h outside
    (to nearest on a GPU; toward zero in Triton's interpreter, about twice the error: 1e-2 covers both)."""
    a, b, h0 = diag_inputs(LENGTHS[-1], seed=6)
    a, b = (x.to(dtype).double() for x in (a, b))
    ref_in = leaves((a, b, h0), F64, "cpu")
    h_r, f_r = diag_scan_naive(*ref_in, F64)
    x = leaves((a, b, h0), dtype, state_idx=(2,))
    h, f = diag_scan_triton(*x, **DIAG_KW)
    assert h.dtype == dtype and f.dtype == F32
    assert rel(f, f_r) < TOL and rel(h, h_r) < 1e-2
    grads = torch.autograd.grad((h.float() ** 2).sum() + f.sum(), x)
    for t, g in zip(x, grads, strict=True):
        assert g.dtype == t.dtype and torch.isfinite(g.float()).all()
    # mixed: fp32 a with bf16 b promotes to fp32
    h, _ = diag_scan_triton(x[0].detach().float(), x[1].detach(), x[2].detach(), **DIAG_KW)
    assert h.dtype == F32 and rel(h, h_r) < TOL


@kernel_test
def test_diag_sign_flips_and_resets_are_exact():
    """a in {-1, +1} and b = 0 from h0 = 1: h_t = +-1 exactly (a parity automaton); a zero wipes the past."""
    g = gen(8)
    T = LENGTHS[-1]
    a = (torch.randint(0, 2, (2, T, WIDTH), generator=g) * 2 - 1).float().to(DEVICE)
    h0 = torch.ones(2, WIDTH, device=DEVICE)
    h, f = diag_scan_triton(a, torch.zeros_like(a), h0, **DIAG_KW)
    assert torch.equal(h, torch.cumprod(a, dim=1)) and torch.equal(f, h[:, -1])
    a[:, T // 2] = 0
    h, _ = diag_scan_triton(a, torch.zeros_like(a), h0, **DIAG_KW)
    assert torch.count_nonzero(h[:, T // 2 :]) == 0


@kernel_test
def test_diag_api_backend_triton():
    """diag_scan(backend="triton"): trailing dims, decoding on from its final state, T = 0, and the bad inputs the
    api rejects before any kernel runs (errors name the argument)."""
    a, b, h0 = diag_inputs(LENGTHS[-1], D=6, seed=9)
    shape = (2, a.shape[1], 3, 2)
    a4, b4 = (x.reshape(shape).to(DEVICE, F32) for x in (a, b))
    h0_ = h0.reshape(2, 3, 2).to(DEVICE, F32)
    h, f = diag_scan(a4, b4, initial_state=h0_, output_final_state=True, backend="triton")
    h_r, f_r = diag_scan(a4.cpu(), b4.cpu(), initial_state=h0_.cpu(), output_final_state=True, backend="naive")
    assert h.shape == shape and f.shape == (2, 3, 2)
    assert rel(h, h_r) < TOL and rel(f, f_r) < TOL
    h1, s1 = diag_scan_step(a4[:, -1], b4[:, -1], f)  # continues where the scan stopped
    assert rel(h1, a4[:, -1].cpu() * f_r + b4[:, -1].cpu()) < TOL and s1.dtype == F32
    h, f = diag_scan(a4[:, :0], b4[:, :0], initial_state=h0_, output_final_state=True, backend="triton")
    assert h.shape == (2, 0, 3, 2) and torch.equal(f, h0_)
    ok = dict(initial_state=h0_, backend="triton")
    with pytest.raises(ValueError, match=r"a must lie in \[-1.0, 1.0\]"):
        diag_scan(a4 * 1.5 + 0.6, b4, **ok)
    with pytest.raises(ValueError, match="b must have the shape of a"):
        diag_scan(a4, b4[:, :-1], **ok)
    with pytest.raises(ValueError, match="initial_state must have shape"):
        diag_scan(a4, b4, initial_state=h0_[:, :2], backend="triton")
    with pytest.raises(TypeError, match="initial_state must have dtype"):
        diag_scan(a4.bfloat16(), b4.bfloat16(), initial_state=h0_.double(), backend="triton")
    with pytest.raises(ValueError, match="backend 'triton' is not available"):
        diag_scan(a4.double(), b4.double(), backend="triton")  # fp64 stays on torch
    with pytest.raises(TypeError, match="bf16, fp16 or fp32 b"):
        diag_scan_triton(a4[..., 0, 0], b4[..., 0, 0].double())
    with pytest.raises(TypeError, match="initial_state must be fp32"):
        diag_scan_triton(a4[..., 0, 0], b4[..., 0, 0], h0_[:, 0, 0].half())
    with pytest.raises(ValueError, match=r"one shape \[B, T, D\]"):
        diag_scan_triton(a4, b4)


@kernel_test
def test_auto_backend_is_triton_on_cuda_only():
    """ "auto" takes the kernels on CUDA (not for fp64) and the torch path on CPU, even under the interpreter."""
    dev = torch.device(DEVICE)
    assert available_backends(dev, F32)["triton"] and available_backends(dev, torch.bfloat16)["triton"]
    assert not available_backends(dev, F64)["triton"]
    a, b, _ = (x.to(DEVICE, F32) for x in diag_inputs(5, D=2))
    h_auto, _ = diag_scan(a, b)
    expected = "triton" if GPU else "torch"
    assert torch.equal(h_auto, diag_scan(a, b, backend=expected)[0])
    h64, _ = diag_scan(a.double(), b.double())  # fp64: torch, on any device
    assert torch.equal(h64, diag_scan(a.double(), b.double(), backend="torch")[0])


@kernel_test
def test_api_triton_config_reaches_the_kernels_and_refuses_other_paths():
    """diag_scan(triton_config=...) takes diag_scan_triton's keywords; unknown keys, and tuning arguments of a
    path that does not run, raise naming the argument."""
    a, b, h0 = (x.to(DEVICE, F32) for x in diag_inputs(LENGTHS[-1], seed=12))
    kw = dict(block_t=16, block_d=8, segment=2)
    h, f = diag_scan(a, b, initial_state=h0, output_final_state=True, backend="triton", triton_config=kw)
    h_k, f_k = diag_scan_triton(a, b, h0, **kw)
    assert torch.equal(h, h_k) and torch.equal(f, f_k)
    with pytest.raises(ValueError, match=r"triton_config has unknown keys \['block_n'\]"):
        diag_scan(a, b, backend="triton", triton_config=dict(block_n=8))
    with pytest.raises(ValueError, match="triton_config=.* applies to backend='triton' only"):
        diag_scan(a, b, backend="torch", triton_config=kw)
    with pytest.raises(ValueError, match="chunk_size=8 applies to backend='torch' only"):
        diag_scan(a, b, backend="triton", chunk_size=8)
