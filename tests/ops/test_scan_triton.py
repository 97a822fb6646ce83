"""The Triton diag_scan and selective_scan kernels against the naive fp64 oracle: values, final state, gradients.

Two ways to run:
* CPU (CI): Triton's interpreter. It must be switched on before triton is imported, for the whole process, so
  ``test_kernels_in_interpreter`` runs this file again in a fresh subprocess with ``TRITON_INTERPRET=1`` (nothing
  leaks into other test modules or xdist workers). Tiny shapes and tiles (the interpreter scans element by element):
  T <= 37 with 8-step tiles (diag: 2 segments of 4), so every case has several tiles and a ragged last one.
* GPU: ``STATETRACK_TEST_DEVICE=cuda pytest tests/ops/test_scan_triton.py`` (benchmarks/gpu_tests.sh) runs the same
  tests compiled, with the default tiles, at larger shapes (T up to 4100, 200 channels, N up to 64).
The kernel tests skip in a normal CPU process (the subprocess test covers them) and when triton is not installed.
"""

from __future__ import annotations

import pytest
import torch

from statetrack.ops import diag_scan, diag_scan_step, selective_scan
from statetrack.ops.diag_scan.naive import diag_scan_naive, selective_scan_naive

pytest.importorskip("triton")

from statetrack.ops.diag_scan.triton import diag_scan_triton, selective_scan_triton  # noqa: E402

from .interpreter import DEVICE, GPU, RUNNABLE, rerun_in_interpreter  # noqa: E402

kernel_test = pytest.mark.skipif(not RUNNABLE, reason="covered by the interpreter subprocess (or set up a GPU)")

F64, F32 = torch.float64, torch.float32
if GPU:
    LENGTHS, WIDTH, NS = (1, 100, 1000, 4100), 200, (16, 5, 64)
    DIAG_KW, SEL_KW = {}, {}  # the default tiles
    # the GPU's exp is ex2.approx (a few 1e-7 relative per call), compounded along T in the selective scan
    TOL, SEL_TOL = 1e-5, 2e-5
else:
    LENGTHS, WIDTH, NS = (1, 37), 6, (3,)
    DIAG_KW = dict(block_t=8, block_d=8)
    SEL_KW = dict(block_t=4, block_d=4, block_t_bwd=2, block_d_bwd=4, checkpoint=8, block_d_steps=4, checkpoint_steps=4)
    TOL, SEL_TOL = 1e-5, 1e-5


@pytest.mark.skipif(RUNNABLE, reason="already inside the interpreter (or on a GPU)")
def test_kernels_in_interpreter():
    rerun_in_interpreter(__file__)


def rel(x: torch.Tensor, ref: torch.Tensor) -> float:
    x, ref = x.detach().cpu().double(), ref.detach().cpu().double()
    return ((x - ref).norm() / ref.norm().clamp_min(1e-300)).item()


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _weights(shapes, seed):
    """Random fp64 cotangents, one per output shape (a loss sum(w * out) exercises every gradient path)."""
    g = _gen(seed)
    return [torch.randn(s, generator=g, dtype=F64) for s in shapes]


def _grads(outs, ws, leaves):
    loss = sum((o.double() * w.to(o.device)).sum() for o, w in zip(outs, ws, strict=True))
    return torch.autograd.grad(loss, [t for t in leaves if t is not None])


def _leaves(xs, dtype, device=DEVICE, state_idx=()):
    """fp64 tensors -> fresh leaves in ``dtype`` (fp32 for the states at ``state_idx``) on ``device``."""
    out = []
    for i, x in enumerate(xs):
        if x is None:
            out.append(None)
            continue
        dt = F32 if i in state_idx and dtype != F64 else dtype
        out.append(x.detach().to(device, dt).requires_grad_())
    return out


def _assert_close(names, got, ref, tol):
    errs = {n: rel(g, r) for n, g, r in zip(names, got, ref, strict=True)}
    bad = {n: e for n, e in errs.items() if not e < tol}
    assert not bad, (bad, errs)


# ------------------------------------------------------------------------------------------------------ diag_scan


def make_a(kind: str, shape, seed: int) -> torch.Tensor:
    """Decays in [-1, 1]: uniform, clustered at -1 or at +1, or mostly exact -1 / 0 / +1; exact zeros and +-1 are
    sprinkled into every kind (resets and sign flips mid-sequence)."""
    g = _gen(seed)
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
    g = _gen(seed + 1)
    a = make_a(kind, (B, T, D), seed)
    return a, torch.randn(B, T, D, generator=g, dtype=F64), torch.randn(B, D, generator=g, dtype=F64)


def diag_check(a, b, h0, dtype=F32, tol=TOL, with_final=True, **kw):
    """Triton vs the fp64 oracle on the same (possibly rounded) inputs: h, final state, da, db, dh0."""
    ref_in = _leaves((a, b, h0), F64, "cpu")
    h_r, f_r = diag_scan_naive(*ref_in, F64)
    ws = _weights([h_r.shape, f_r.shape], 7)[: 2 if with_final else 1]
    g_r = _grads([h_r, f_r][: len(ws)], ws, ref_in)
    x = _leaves((a, b, h0), dtype, state_idx=(2,))
    h, f = diag_scan_triton(*x, **{**DIAG_KW, **kw})
    assert h.dtype == dtype and f.dtype == F32 and h.device.type == DEVICE
    names = ("h", "final", "da", "db", "dh0")[: 2 + len([t for t in x if t is not None])]
    _assert_close(names, [h, f, *_grads([h, f][: len(ws)], ws, x)], [h_r, f_r, *g_r], tol)


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
    ref_in = _leaves((a, b, h0), F64, "cpu")
    h_r, f_r = diag_scan_naive(*ref_in, F64)
    ws = _weights([h_r.shape, f_r.shape], 1)
    g_r = _grads([h_r, f_r], ws, ref_in)
    for i in (0, 1):
        x = [t.detach().to(DEVICE, F32) for t in (a, b, h0)]
        x[i].requires_grad_()
        h, f = diag_scan_triton(*x, **DIAG_KW)
        (g,) = _grads([h, f], ws, [x[i]])
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
    ref_in = _leaves((a, b, h0), F64, "cpu")
    h_r, f_r = diag_scan_naive(*ref_in, F64)
    x = _leaves((a, b, h0), dtype, state_idx=(2,))
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
    g = _gen(8)
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
    from statetrack.ops.diag_scan.api import _available

    dev = torch.device(DEVICE)
    assert _available(dev, F32)["triton"] and _available(dev, torch.bfloat16)["triton"]
    assert not _available(dev, F64)["triton"]
    a, b, _ = (x.to(DEVICE, F32) for x in diag_inputs(5, D=2))
    xs = [x.to(DEVICE, F32) for x in selective_inputs(5, Dm=3, N=2)]
    h_auto, _ = diag_scan(a, b)
    y_auto, _ = selective_scan(*xs[:5], D=xs[5], z=xs[6])
    expected = "triton" if GPU else "torch"
    assert torch.equal(h_auto, diag_scan(a, b, backend=expected)[0])
    assert torch.equal(y_auto, selective_scan(*xs[:5], D=xs[5], z=xs[6], backend=expected)[0])
    h64, _ = diag_scan(a.double(), b.double())  # fp64: torch, on any device
    assert torch.equal(h64, diag_scan(a.double(), b.double(), backend="torch")[0])


# ------------------------------------------------------------------------------------------------- selective_scan

SEL_NAMES = ("y", "final", "du", "ddelta", "dA", "dB", "dC", "dD", "dz", "dh0")


def selective_inputs(T, Dm=None, N=None, Bt=2, seed=0):
    """u, delta, A, B, C, D, z, h0 in fp64. delta spans five decades so that exp(delta A) covers (0, 1] (decays at
    both ends of [min_eigenvalue, 1]); some delta are exactly 0 (a = 1 exactly)."""
    Dm = Dm or (70 if GPU else 5)
    N = N or NS[0]
    g = _gen(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=F64)  # noqa: E731
    delta = torch.exp(torch.empty(Bt, T, Dm, dtype=F64).uniform_(-8, 3, generator=g))
    delta.view(-1)[::17] = 0.0
    A = -torch.exp(r(Dm, N))
    return [r(Bt, T, Dm), delta, A, r(Bt, T, N), r(Bt, T, N), r(Dm), r(Bt, T, Dm), r(Bt, Dm, N)]


def selective_check(xs, m, dtype=F32, tol=SEL_TOL, **kw):
    """Triton vs the fp64 oracle: y, final state and the gradient of every tensor input that is not None."""
    ref_in = _leaves(xs, F64, "cpu")
    y_r, f_r = selective_scan_naive(*ref_in[:7], m, ref_in[7], F64)
    ws = _weights([y_r.shape, f_r.shape], 11)
    g_r = _grads([y_r, f_r], ws, ref_in)
    x = _leaves(xs, dtype, state_idx=(7,))
    y, f = selective_scan_triton(*x[:7], m, x[7], **{**SEL_KW, **kw})
    assert y.dtype == dtype and f.dtype == F32
    names = [n for n, t in zip(SEL_NAMES[2:], x, strict=True) if t is not None]
    _assert_close(["y", "final", *names], [y, f, *_grads([y, f], ws, x)], [y_r, f_r, *g_r], tol)


@kernel_test
@pytest.mark.parametrize("path", ["tiles", "steps"])
@pytest.mark.parametrize("m", [-1.0, -0.5, 0.0])
@pytest.mark.parametrize("T", LENGTHS[:3] if GPU else (1, 21))
def test_selective_matches_naive(T, m, path):
    selective_check(selective_inputs(T, seed=T), m, path=path)


@kernel_test
@pytest.mark.parametrize("prefetch,unroll", [(True, 1), (False, 1), (True, 2)])
@pytest.mark.parametrize("programs", [1, 3])
def test_selective_steps_persistent_grid(programs, prefetch, unroll):
    """The steps kernels' persistent grid: every program takes several work items, and with 3 programs for 8 items
    (Dm = 7 in channel blocks of 2, 2 sequences) the last round has an item past the end, which must store nothing;
    checkpoints every 3 steps (T = 10: chunks of 3, 3, 3, 1 after fitting: cdiv(10, 4) = 3); with the next step's
    inputs loaded ahead (the default) and without, and with the time loops unrolled by 2 (on a GPU: 3-step chunks,
    an odd count)."""
    from statetrack.ops.diag_scan.triton.selective import fit_checkpoint, selective_config

    kw = dict(path="steps", block_d_steps=2, checkpoint_steps=3, programs_per_sm=programs, prefetch_steps=prefetch,
              unroll_steps=unroll)  # fmt: skip
    cfg = fit_checkpoint(selective_config(2, 7, 4, **kw), 10)
    assert (cfg.path, cfg.programs, cfg.BD_steps, cfg.CK_steps) == ("steps", programs, 2, 3)
    selective_check(selective_inputs(10, Dm=7, seed=60 + programs), -1.0, **kw)


def test_selective_path_choice():
    """The steps kernels where there are many (sequence, channel block) items per multiprocessor (Table 3's Mamba:
    1,024 x 8 on 132), the tiles for a few long sequences (8 x 64); chunks of the steps path fitted to T."""
    from statetrack.ops.diag_scan.triton.selective import fit_checkpoint, selective_config

    assert selective_config(1024, 256, 16, n_sm=132).path == "steps"
    assert selective_config(8, 2048, 16, n_sm=132).path == "tiles"
    assert selective_config(1024, 256, 16).path == "tiles"  # the interpreter: tests name the path
    assert selective_config(8, 2048, 16, n_sm=132, path="steps").path == "steps"
    assert fit_checkpoint(selective_config(1024, 256, 16, n_sm=132), 20).CK_steps == 7
    assert fit_checkpoint(selective_config(1024, 256, 16, n_sm=132), 40).CK_steps == 8
    with pytest.raises(ValueError, match="path must be"):
        selective_config(8, 2048, 16, path="scan")


@kernel_test
@pytest.mark.parametrize("T", [1, 10])
def test_selective_short_sequence_gets_a_fitted_checkpoint(T):
    """T below the checkpoint interval: one chunk of just enough tiles (CK = 12 steps at T = 10: 3 forward tiles
    of 4, 6 backward tiles of 2, not a power of two), same values and gradients."""
    from statetrack.ops.diag_scan.triton.selective import fit_checkpoint, selective_config

    kw = {**SEL_KW, "block_t": 4, "block_t_bwd": 2, "checkpoint": 64}
    cfg = fit_checkpoint(selective_config(2, 5, 4, **kw), T)
    assert cfg.CK == max(4, -(-T // 4) * 4) and cfg.CK % cfg.BT_fwd == 0 and cfg.CK % cfg.BT_bwd == 0
    selective_check(selective_inputs(T, seed=40 + T), -1.0, **kw)


@kernel_test
@pytest.mark.parametrize("N", NS)
@pytest.mark.parametrize("path", ["tiles", "steps"])
def test_selective_state_sizes(N, path):
    selective_check(selective_inputs(LENGTHS[1] if GPU else 9, N=N, seed=N), -1.0, path=path)


@kernel_test
@pytest.mark.parametrize("path", ["tiles", "steps"])
@pytest.mark.parametrize("drop", [(5, 6, 7), (5,), (6,), (7,)])
def test_selective_optional_D_z_initial_state(drop, path):
    """Without D, z and initial state (the original Mamba call), and without each alone."""
    xs = selective_inputs(LENGTHS[1] if GPU else 9, seed=20 + len(drop))
    for i in drop:
        xs[i] = None
    selective_check(xs, -1.0, path=path)


@kernel_test
def test_selective_tiles_and_checkpoints():
    """Checkpoint every tile (R = 1) and every several tiles; channel blocks not dividing Dm; wide tiles."""
    xs = selective_inputs(LENGTHS[1] if GPU else 19, Dm=7 if not GPU else 70, seed=30)
    small = dict(block_d=4, block_d_bwd=4)
    cases = [dict(block_t=2, block_t_bwd=2, checkpoint=2, **small)]
    cases += [dict(block_t=8, block_t_bwd=2, checkpoint=8, **small)]
    if GPU:
        cases += [dict(block_t=1, block_d=64, block_t_bwd=1, block_d_bwd=8, checkpoint=16), dict(checkpoint=256)]
    for kw in cases:
        selective_check(xs, -1.0, **kw)


@kernel_test
@pytest.mark.parametrize("path", ["tiles", "steps"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_selective_low_precision_inputs(dtype, path):
    xs = selective_inputs(LENGTHS[1] if GPU else 9, seed=40)
    xs = [x.to(dtype).double() if i < 7 else x for i, x in enumerate(xs)]
    ref_in = _leaves(xs, F64, "cpu")
    y_r, f_r = selective_scan_naive(*ref_in[:7], -1.0, ref_in[7], F64)
    x = _leaves(xs, dtype, state_idx=(7,))
    y, f = selective_scan_triton(*x[:7], -1.0, x[7], **SEL_KW, path=path)
    assert y.dtype == dtype and f.dtype == F32
    assert rel(f, f_r) < SEL_TOL and rel(y, y_r) < 1e-2
    # a linear loss: y**2 made gradients beyond fp16's range (65504) at GPU sizes, which no kernel can round to
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(41), dtype=F64)
    grads = torch.autograd.grad((y.double() * w.to(y.device)).sum() + f.sum(), x)
    ref = torch.autograd.grad((y_r * w).sum() + f_r.sum(), ref_in)
    for t, g, r in zip(x, grads, ref, strict=True):
        assert g.dtype == t.dtype and torch.isfinite(g.float()).all()
        assert rel(g.double().cpu(), r) < 5e-2


@kernel_test
def test_selective_api_backend_triton():
    """selective_scan(backend="triton") against backend="naive", fp64 companions of fp32 u, and bad inputs."""
    xs = [x.to(DEVICE) for x in selective_inputs(LENGTHS[1] if GPU else 9, seed=50)]
    u, delta, A, B, C, D, z, h0 = xs
    f32 = [x.float() for x in xs]

    def run(args, backend, **kw):
        u, delta, A, B, C, D, z, h0 = args
        kw = dict(D=D, z=z, initial_state=h0, output_final_state=True, backend=backend) | kw
        return selective_scan(u, delta, A, B, C, **kw)

    y, f = run(f32, "triton")
    y_r, f_r = run([x.cpu() for x in xs], "naive")
    assert rel(y, y_r) < SEL_TOL and rel(f, f_r) < SEL_TOL
    y2, _ = run([f32[0], delta, A, B, C, D, z, f32[7]], "triton")  # fp64 delta .. z are cast to fp32
    assert y2.dtype == F32 and rel(y2, y_r) < SEL_TOL
    y0, f0 = run([x[:, :0] if x.dim() == 3 and i != 7 else x for i, x in enumerate(f32)], "triton")
    assert y0.shape == (u.shape[0], 0, u.shape[2]) and torch.equal(f0, f32[7])
    with pytest.raises(ValueError, match=r"delta must lie in \[0.0, inf\]"):
        run([f32[0], -f32[1], *f32[2:]], "triton")
    with pytest.raises(ValueError, match=r"A must lie in \[-inf, 0.0\]"):
        run([*f32[:2], -f32[2], *f32[3:]], "triton")
    with pytest.raises(ValueError, match=r"B must have shape"):
        run([*f32[:3], f32[3][..., :-1], *f32[4:]], "triton")
    with pytest.raises(ValueError, match=r"min_eigenvalue must lie in \[-1, 0\]"):
        run(f32, "triton", min_eigenvalue=-2.0)
    with pytest.raises(ValueError, match="backend 'triton' is not available"):
        run(xs, "triton")  # fp64 u stays on torch
    with pytest.raises(TypeError, match="bf16, fp16 or fp32 C"):
        selective_scan_triton(*f32[:4], C.double())
    with pytest.raises(ValueError, match="state sizes N up to 256"):
        selective_scan_triton(f32[0], f32[1], f32[2].new_zeros(f32[2].shape[0], 300), f32[3], f32[4])
