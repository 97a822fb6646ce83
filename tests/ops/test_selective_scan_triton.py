"""The Triton selective_scan kernels (both algorithms) against the naive fp64 oracle: values, final state,
gradients; the algorithm rule and the api's tuning arguments.

Run as ``test_diag_scan_triton.py`` is: under Triton's interpreter in a subprocess on CPU (tiny shapes and tiles),
or compiled with ``STATETRACK_TEST_DEVICE=cuda`` (benchmarks/gpu_tests.sh) at larger shapes (T up to 1000, 70
channels, N up to 64) with the default tiles.
"""

from __future__ import annotations

import pytest
import torch

from statetrack.ops import selective_scan
from statetrack.ops.selective_scan.naive import selective_scan_naive

pytest.importorskip("triton")

from statetrack.ops.selective_scan.triton import fit_checkpoint, selective_config, selective_scan_triton  # noqa: E402

from .interpreter import DEVICE, GPU, RUNNABLE, rerun_in_interpreter  # noqa: E402
from .kernel_checks import F32, F64, assert_close, gen, grads, leaves, rel, weights  # noqa: E402

kernel_test = pytest.mark.skipif(not RUNNABLE, reason="covered by the interpreter subprocess (or set up a GPU)")

if GPU:
    LENGTHS, NS, SEL_KW = (1, 100, 1000), (16, 5, 64), {}  # the default tiles
    SEL_TOL = 2e-5  # the GPU's exp is ex2.approx (a few 1e-7 relative per call), compounded along T
else:
    LENGTHS, NS, SEL_TOL = (1, 37), (3,), 1e-5
    SEL_KW = dict(block_t=4, block_d=4, block_t_bwd=2, block_d_bwd=4, checkpoint=8, block_d_steps=4, checkpoint_steps=4)


@pytest.mark.skipif(RUNNABLE, reason="already inside the interpreter (or on a GPU)")
def test_kernels_in_interpreter():
    rerun_in_interpreter(__file__)


# ------------------------------------------------------------------------------------------------- selective_scan

SEL_NAMES = ("y", "final", "du", "ddelta", "dA", "dB", "dC", "dD", "dz", "dh0")


def selective_inputs(T, Dm=None, N=None, Bt=2, seed=0):
    """u, delta, A, B, C, D, z, h0 in fp64. delta spans five decades so that exp(delta A) covers (0, 1] (decays at
    both ends of [min_eigenvalue, 1]); some delta are exactly 0 (a = 1 exactly)."""
    Dm = Dm or (70 if GPU else 5)
    N = N or NS[0]
    g = gen(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=F64)  # noqa: E731
    delta = torch.exp(torch.empty(Bt, T, Dm, dtype=F64).uniform_(-8, 3, generator=g))
    delta.view(-1)[::17] = 0.0
    A = -torch.exp(r(Dm, N))
    return [r(Bt, T, Dm), delta, A, r(Bt, T, N), r(Bt, T, N), r(Dm), r(Bt, T, Dm), r(Bt, Dm, N)]


def selective_check(xs, m, dtype=F32, tol=SEL_TOL, **kw):
    """Triton vs the fp64 oracle: y, final state and the gradient of every tensor input that is not None."""
    ref_in = leaves(xs, F64, "cpu")
    y_r, f_r = selective_scan_naive(*ref_in[:7], m, ref_in[7], F64)
    ws = weights([y_r.shape, f_r.shape], 11)
    g_r = grads([y_r, f_r], ws, ref_in)
    x = leaves(xs, dtype, state_idx=(7,))
    y, f = selective_scan_triton(*x[:7], m, x[7], **{**SEL_KW, **kw})
    assert y.dtype == dtype and f.dtype == F32
    names = [n for n, t in zip(SEL_NAMES[2:], x, strict=True) if t is not None]
    assert_close(["y", "final", *names], [y, f, *grads([y, f], ws, x)], [y_r, f_r, *g_r], tol)


@kernel_test
@pytest.mark.parametrize("algorithm", ["tiles", "steps"])
@pytest.mark.parametrize("m", [-1.0, -0.5, 0.0])
@pytest.mark.parametrize("T", LENGTHS[:3] if GPU else (1, 21))
def test_selective_matches_naive(T, m, algorithm):
    selective_check(selective_inputs(T, seed=T), m, algorithm=algorithm)


@kernel_test
@pytest.mark.parametrize("prefetch,unroll", [(True, 1), (False, 1), (True, 2)])
@pytest.mark.parametrize("programs", [1, 3])
def test_selective_steps_persistent_grid(programs, prefetch, unroll):
    """The steps kernels' persistent grid: every program takes several work items, and with 3 programs for 8 items
    (Dm = 7 in channel blocks of 2, 2 sequences) the last round has an item past the end, which must store nothing;
    checkpoints every 3 steps (T = 10: chunks of 3, 3, 3, 1 after fitting: cdiv(10, 4) = 3); with the next step's
    inputs loaded ahead (the default) and without, and with the time loops unrolled by 2 (on a GPU: 3-step chunks,
    an odd count)."""
    kw = dict(algorithm="steps", block_d_steps=2, checkpoint_steps=3, programs_per_sm=programs, prefetch_steps=prefetch,
              unroll_steps=unroll)  # fmt: skip
    cfg = fit_checkpoint(selective_config(2, 7, 4, **kw), 10)
    assert (cfg.algorithm, cfg.programs, cfg.BD_steps, cfg.CK_steps) == ("steps", programs, 2, 3)
    selective_check(selective_inputs(10, Dm=7, seed=60 + programs), -1.0, **kw)


def test_selective_path_choice():
    """The steps kernels where there are many (sequence, channel block) items per multiprocessor (Table 3's Mamba:
    1,024 x 8 on 132), the tiles for a few long sequences (8 x 64); chunks of the steps algorithm fitted to T."""
    assert selective_config(1024, 256, 16, n_sm=132).algorithm == "steps"
    assert selective_config(8, 2048, 16, n_sm=132).algorithm == "tiles"
    assert selective_config(1024, 256, 16).algorithm == "tiles"  # the interpreter: tests name the algorithm
    assert selective_config(8, 2048, 16, n_sm=132, algorithm="steps").algorithm == "steps"
    assert fit_checkpoint(selective_config(1024, 256, 16, n_sm=132), 20).CK_steps == 7
    assert fit_checkpoint(selective_config(1024, 256, 16, n_sm=132), 40).CK_steps == 8
    with pytest.raises(ValueError, match="algorithm must be"):
        selective_config(8, 2048, 16, algorithm="scan")


@kernel_test
@pytest.mark.parametrize("T", [1, 10])
def test_selective_short_sequence_gets_a_fitted_checkpoint(T):
    """T below the checkpoint interval: one chunk of just enough tiles (CK = 12 steps at T = 10: 3 forward tiles
    of 4, 6 backward tiles of 2, not a power of two), same values and gradients."""
    kw = {**SEL_KW, "block_t": 4, "block_t_bwd": 2, "checkpoint": 64}
    cfg = fit_checkpoint(selective_config(2, 5, 4, **kw), T)
    assert cfg.CK == max(4, -(-T // 4) * 4) and cfg.CK % cfg.BT_fwd == 0 and cfg.CK % cfg.BT_bwd == 0
    selective_check(selective_inputs(T, seed=40 + T), -1.0, **kw)


@kernel_test
@pytest.mark.parametrize("N", NS)
@pytest.mark.parametrize("algorithm", ["tiles", "steps"])
def test_selective_state_sizes(N, algorithm):
    selective_check(selective_inputs(LENGTHS[1] if GPU else 9, N=N, seed=N), -1.0, algorithm=algorithm)


@kernel_test
@pytest.mark.parametrize("algorithm", ["tiles", "steps"])
@pytest.mark.parametrize("drop", [(5, 6, 7), (5,), (6,), (7,)])
def test_selective_optional_D_z_initial_state(drop, algorithm):
    """Without D, z and initial state (the original Mamba call), and without each alone."""
    xs = selective_inputs(LENGTHS[1] if GPU else 9, seed=20 + len(drop))
    for i in drop:
        xs[i] = None
    selective_check(xs, -1.0, algorithm=algorithm)


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
@pytest.mark.parametrize("algorithm", ["tiles", "steps"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_selective_low_precision_inputs(dtype, algorithm):
    xs = selective_inputs(LENGTHS[1] if GPU else 9, seed=40)
    xs = [x.to(dtype).double() if i < 7 else x for i, x in enumerate(xs)]
    ref_in = leaves(xs, F64, "cpu")
    y_r, f_r = selective_scan_naive(*ref_in[:7], -1.0, ref_in[7], F64)
    x = leaves(xs, dtype, state_idx=(7,))
    y, f = selective_scan_triton(*x[:7], -1.0, x[7], **SEL_KW, algorithm=algorithm)
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


@kernel_test
def test_auto_backend_is_triton_on_cuda_only():
    """ "auto" takes the kernels on CUDA and the torch path on CPU, even under the interpreter."""
    xs = [x.to(DEVICE, F32) for x in selective_inputs(5, Dm=3, N=2)]
    y_auto, _ = selective_scan(*xs[:5], D=xs[5], z=xs[6])
    expected = "triton" if GPU else "torch"
    assert torch.equal(y_auto, selective_scan(*xs[:5], D=xs[5], z=xs[6], backend=expected)[0])


@kernel_test
@pytest.mark.parametrize("algorithm", ["tiles", "steps"])
def test_api_algorithm_and_triton_config_reach_the_kernels(algorithm):
    """selective_scan(algorithm=..., triton_config=...) runs the kernels selective_scan_triton runs with the same
    keywords."""
    u, delta, A, B, C, D, z, h0 = (x.to(DEVICE, F32) for x in selective_inputs(9, Dm=5, seed=70))
    keys = ("block_d_steps", "checkpoint_steps") if algorithm == "steps" else ("block_t", "block_d", "checkpoint")
    kw = {k: SEL_KW.get(k, 4) for k in keys}
    y, f = selective_scan(u, delta, A, B, C, D=D, z=z, initial_state=h0, output_final_state=True, backend="triton",
                          algorithm=algorithm, triton_config=kw)  # fmt: skip
    y_k, f_k = selective_scan_triton(u, delta, A, B, C, D, z, -1.0, h0, algorithm=algorithm, **kw)
    assert torch.equal(y, y_k) and torch.equal(f, f_k)


def test_api_refuses_arguments_that_cannot_apply():
    """Every tuning argument applies to one path; on another it raises, naming the argument (no silent no-op)."""
    u, delta, A, B, C = (x.float() for x in selective_inputs(5, Dm=3, N=2)[:5])
    with pytest.raises(ValueError, match="algorithm='steps' applies to backend='triton' only"):
        selective_scan(u, delta, A, B, C, backend="torch", algorithm="steps")
    with pytest.raises(ValueError, match="chunk_size=8 applies to backend='torch' only"):
        selective_scan(u, delta, A, B, C, backend="naive", chunk_size=8)
    with pytest.raises(ValueError, match="triton_config=.* applies to backend='triton' only"):
        selective_scan(u, delta, A, B, C, backend="torch", triton_config=dict(block_t=4))
    with pytest.raises(ValueError, match=r"triton_config has unknown keys \['algorithm'\]"):
        selective_scan(u, delta, A, B, C, backend="torch", triton_config=dict(algorithm="steps"))
    with pytest.raises(TypeError, match="triton_config must be a dict"):
        selective_scan(u, delta, A, B, C, triton_config=[("block_t", 4)])


@kernel_test
def test_api_refuses_triton_config_keys_of_the_other_algorithm():
    u, delta, A, B, C = (x.to(DEVICE, F32) for x in selective_inputs(5, Dm=3, N=2)[:5])
    with pytest.raises(ValueError, match=r"\['block_d_steps'\] do not apply to the 'tiles' algorithm \(named\)"):
        selective_scan(u, delta, A, B, C, backend="triton", algorithm="tiles", triton_config=dict(block_d_steps=4))
    with pytest.raises(ValueError, match=r"\['block_t'\] do not apply to the 'steps' algorithm"):
        selective_scan(u, delta, A, B, C, backend="triton", algorithm="steps", triton_config=dict(block_t=4))
    with pytest.raises(ValueError, match="algorithm must be one of"):
        selective_scan(u, delta, A, B, C, backend="triton", algorithm="chunk")
