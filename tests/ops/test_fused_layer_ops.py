"""The fused layer ops (short conv + SiLU, q/k L2 norm, gated RMSNorm): the Triton kernels against the torch
references, values and gradients, in fp64 (the kernels compute in fp64 for fp64 tensors), plus bf16 against the
fp64 reference and what the backward keeps (no fp32 copy of a bf16 activation). The SwiGLU activation (liger-kernel's
fused kernel, which computes in fp32): in fp32 against the torch reference, bf16 (GPU) against fp64.

Two ways to run, as tests/ops/test_delta_rule_triton.py: in CI Triton's interpreter (``test_kernels_in_interpreter``
re-runs this file in a subprocess with ``TRITON_INTERPRET=1``; small shapes), on a GPU with
``STATETRACK_TEST_DEVICE=cuda`` (benchmarks/gpu_tests.sh; larger shapes, also fp32).
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from statetrack.ops import l2_normalize, rms_norm_gated, short_conv, swiglu
from statetrack.ops.fused_norms import fused_backend

from .interpreter import DEVICE, GPU, INTERPRET, RUNNABLE, rerun_in_interpreter
from .kernel_checks import F64, rel

pytest.importorskip("triton")

kernel_test = pytest.mark.skipif(not RUNNABLE, reason="covered by the interpreter subprocess (or set up a GPU)")

if GPU:
    LENGTHS, CHANNELS, HEAD_DIMS = (1, 3, 65, 1000), (24, 200, 3072), (20, 64, 100, 128, 256)
    DTYPES = (F64, torch.float32)
else:
    LENGTHS, CHANNELS, HEAD_DIMS, DTYPES = (1, 3, 65), (24, 200), (12, 33, 64), (F64,)
# fp64: the kernels against the references, both in fp64; fp32 (GPU only): reassociation only
TOL = {F64: 1e-12, torch.float32: 2e-6}


@pytest.mark.skipif(RUNNABLE, reason="already inside the interpreter (or on a GPU)")
def test_kernels_in_interpreter():
    rerun_in_interpreter(__file__)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _leaf(t, dtype):
    return None if t is None else t.detach().to(DEVICE, dtype).requires_grad_()


def _compare(fn, inputs, dtype, tol, seed=0):
    """fn(*inputs, backend) -> tensor or tuple; triton against torch in ``dtype``: every output and gradient."""
    outs, grads = {}, {}
    for backend in ("torch", "triton"):
        xs = [_leaf(t, dtype) for t in inputs]
        out = fn(*xs, backend=backend)
        out = out if isinstance(out, tuple) else (out,)
        g = _gen(seed)
        loss = sum((o.double() * torch.randn(o.shape, generator=g, dtype=F64).to(o.device)).sum() for o in out)
        live = [x for x in xs if x is not None]
        outs[backend], grads[backend] = out, torch.autograd.grad(loss, live)
    errs = {f"out{i}": rel(a, b) for i, (a, b) in enumerate(zip(outs["triton"], outs["torch"], strict=True))}
    for i, (a, b) in enumerate(zip(grads["triton"], grads["torch"], strict=True)):
        errs[f"grad{i}"] = rel(a, b)
    bad = {n: e for n, e in errs.items() if not e < tol}
    assert not bad, (bad, errs)
    for a, b in zip(outs["triton"], outs["torch"], strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
    return errs


# ------------------------------------------------------------------------------------------------- short conv
def _conv_inputs(B, T, C, W, bias=True, cache=False, seed=0):
    g = _gen(seed)
    x = torch.randn(B, T, C, generator=g, dtype=F64)
    w = torch.randn(C, W, generator=g, dtype=F64) / W**0.5
    b = torch.randn(C, generator=g, dtype=F64) if bias else None
    c = torch.randn(B, C, W - 1, generator=g, dtype=F64) if cache else None
    return x, w, b, c


def _conv(activation=True, cu_seqlens=None):
    def fn(x, w, b, c, backend):
        cu = None if cu_seqlens is None else cu_seqlens.to(DEVICE)
        return short_conv(x, w, b, c, activation=activation, cu_seqlens=cu, backend=backend)

    return fn


# (T, C): one step, a few, and past several backward tiles (32 steps); channels past one block (64, 128)
CONV_SHAPES = [(T, C) for T in LENGTHS for C in CHANNELS] if GPU else [(1, 24), (3, 72), (140, 24)]


@kernel_test
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("T,C", CONV_SHAPES)
def test_short_conv_matches_reference(T, C, dtype):
    _compare(_conv(), _conv_inputs(2, T, C, 4, seed=T + C), dtype, TOL[dtype])


@kernel_test
@pytest.mark.parametrize(
    "W,bias,cache,activation",
    [(4, True, True, True), (4, False, True, False), (2, True, False, True), (3, False, True, True),
     (1, True, False, True), (5, True, True, True)],
)  # fmt: skip
@pytest.mark.parametrize("T", [2, 37])
def test_short_conv_widths_bias_cache(W, bias, cache, activation, T):
    """Cache from the previous segment (T shorter than W - 1 too: the new cache mixes cache and x)."""
    _compare(_conv(activation), _conv_inputs(3, T, 20, W, bias, cache, seed=W * 7 + T), F64, TOL[F64])


@kernel_test
@pytest.mark.parametrize("W,cache", [(4, True), (4, False), (2, True), (5, True), (1, False)])
@pytest.mark.parametrize("T", [1, 2, 37])
def test_short_conv_without_grad_writes_the_new_cache_in_the_kernel(W, cache, T):
    """Under no_grad (decoding) the forward kernel writes the new cache itself: y and the cache as the reference
    gives them, for one token (a decoding step), fewer tokens than W - 1 (cache and x mixed) and more; a bf16 x
    with an fp32 cache gives the cache in x's dtype."""
    x, w, b, c = _conv_inputs(2, T, 20, W, True, cache, seed=W * 5 + T)
    with torch.no_grad():
        ref = short_conv(x.double(), w.double(), b.double(), None if c is None else c.double(), backend="torch")
        got = short_conv(*(None if t is None else t.double().to(DEVICE) for t in (x, w, b, c)), backend="triton")
        for r, g in zip(ref, got, strict=True):
            torch.testing.assert_close(g.cpu(), r, rtol=1e-12, atol=1e-12)
        _, c16 = short_conv(x.bfloat16().to(DEVICE), w.float().to(DEVICE), b.float().to(DEVICE),
                            None if c is None else c.float().to(DEVICE), backend="triton")  # fmt: skip
    assert c16.dtype == torch.bfloat16 and c16.is_contiguous()
    # copies, rounded once to bf16 (one ulp: Triton's interpreter truncates where the GPU rounds)
    torch.testing.assert_close(c16.cpu().double(), ref[1].bfloat16().double(), rtol=2**-7, atol=0)


@kernel_test
@pytest.mark.parametrize("lens", [[6, 1, 70, 3], [1, 0, 2, 40, 1], [65]])
def test_short_conv_packed_documents(lens):
    """cu_seqlens (ragged, an empty document too): the kernels against the masked reference, and the packed row
    equal to the documents run one by one (no window crosses a document start)."""
    T = sum(lens)
    cu = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()], dtype=torch.int32)
    x, w, b, _ = _conv_inputs(1, T, 24, 4, seed=len(lens))
    _compare(_conv(cu_seqlens=cu), (x, w, b, None), F64, TOL[F64])
    xs = [_leaf(t, F64) for t in (x, w, b)]
    y, cache = short_conv(*xs, cu_seqlens=cu.to(DEVICE), backend="triton")
    for i, (s, e) in enumerate(zip(cu[:-1].tolist(), cu[1:].tolist(), strict=True)):
        yd, cd = short_conv(xs[0][:, s:e], xs[1], xs[2], backend="triton")
        torch.testing.assert_close(y[:, s:e], yd, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(cache[i : i + 1], cd, rtol=1e-12, atol=1e-12)


@kernel_test
def test_short_conv_bf16_close_to_fp64():
    """bf16 x (and dy) with fp32 weights: y one bf16 rounding from the fp64 reference; dx two (the backward's dp
    buffer is bf16 for bf16 dy, then dx is stored in x's dtype), without and with a cache (whose gradient keeps dp
    in fp32); dw, db summed in fp32 before dp is rounded."""
    x, w, b, c = _conv_inputs(2, 70, 48, 4, cache=True, seed=3)
    for cache in (None, c):
        refs = [_leaf(t, F64) for t in (x, w, b, cache)]
        ref = short_conv(*refs, backend="torch")[0]
        xs = [_leaf(x, torch.bfloat16), _leaf(w, torch.float32), _leaf(b, torch.float32), _leaf(cache, torch.float32)]
        y = short_conv(*xs, backend="triton")[0]
        assert y.dtype == torch.bfloat16
        assert rel(y, ref) < 5e-3  # one bf16 rounding (fp32 arithmetic inside)
        dy = torch.randn(y.shape, generator=_gen(4), dtype=F64).bfloat16()
        live = [t for t in xs if t is not None]
        grads = torch.autograd.grad(y, live, dy.to(DEVICE))
        ref_grads = torch.autograd.grad(ref, [t for t in refs if t is not None], dy.double().to(ref.device))
        assert [g.dtype for g in grads] == [torch.bfloat16] + [torch.float32] * (len(live) - 1)
        errs = [rel(g, r) for g, r in zip(grads, ref_grads, strict=True)]
        # dx: dp and dx each rounded to bf16 (the interpreter truncates: up to 2^-8 each); the others fp32 sums
        assert errs[0] < 1e-2 and max(errs[1:]) < 2e-3, errs


# ------------------------------------------------------------------------------------------------------- norms
def _strided_heads(B, T, H, K, seed):
    """q's columns of a fused [B, T, 3 H K] projection, viewed [B, T, H, K] (strides T 3HK, 3HK, K, 1)."""
    g = _gen(seed)
    return torch.randn(B, T, 3 * H * K, generator=g, dtype=F64)[..., H * K : 2 * H * K].view(B, T, H, K)


@kernel_test
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("K", HEAD_DIMS)
@pytest.mark.parametrize("eps", [None, 1e-6])
def test_l2_normalize_matches_reference(K, eps, dtype):
    T = LENGTHS[-1]
    x = _strided_heads(2, T, 3, K, seed=K)
    x[1, -1, 2] *= 1e-3
    _compare(lambda x, backend: l2_normalize(x, eps, backend=backend), (x,), dtype, TOL[dtype])


@kernel_test
def test_l2_normalize_zero_row():
    """F.normalize's floor: a zero row gives y = 0 and dx = dy / 1e-12 (the floor reaches the kernel as an fp32
    scalar, hence 1e-7 rather than fp64's 1e-12)."""
    x = _strided_heads(2, 5, 3, 12, seed=0)
    x[0, 0, 1] = 0.0
    x[0, 1, 1] = 1e-14
    _compare(lambda x, backend: l2_normalize(x, backend=backend), (x,), F64, 1e-7)


@kernel_test
def test_l2_normalize_strided_and_deltaproduct_layout():
    """k of DeltaProduct: [B, T, n_h, H, K] from the fused projection (no copy), rows of a 2-D tensor too."""
    g = _gen(5)
    big = torch.randn(2, 9, 4 * 2 * 3 * 12, generator=g, dtype=F64)
    k = big[..., 2 * 3 * 12 : 4 * 3 * 12].view(2, 9, 2, 3, 12)
    _compare(lambda x, backend: l2_normalize(x, backend=backend), (k,), F64, TOL[F64])
    _compare(lambda x, backend: l2_normalize(x.t(), 1e-6, backend=backend), (torch.randn(7, 5, dtype=F64),), F64,
             TOL[F64])  # fmt: skip


@kernel_test
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("D", HEAD_DIMS)
@pytest.mark.parametrize("gated", [True, False])
def test_rms_norm_gated_matches_reference(D, gated, dtype):
    g = _gen(D)
    T = LENGTHS[-1]
    x = torch.randn(2, T, 3, D, generator=g, dtype=F64) * 3
    w = 1 + 0.5 * torch.randn(D, generator=g, dtype=F64)
    gate = 4 * torch.randn(2, T, 3, D, generator=g, dtype=F64) if gated else None
    _compare(lambda x, w, gate, backend: rms_norm_gated(x, w, gate, 1e-5, backend=backend), (x, w, gate), dtype,
             TOL[dtype])  # fmt: skip


@kernel_test
@pytest.mark.parametrize("gated", [True, False])
def test_rms_norm_gated_out_dtype(gated):
    """``out_dtype``: the result in that dtype, as the default result converted (both paths); gradients in the
    inputs' dtypes, as the default path's (the cotangent arrives in out_dtype)."""
    g = _gen(7)
    x, w = torch.randn(2, 9, 16, generator=g, dtype=F64), torch.randn(16, generator=g, dtype=F64)
    gate = torch.randn(2, 9, 16, generator=g, dtype=F64) if gated else None
    xs = [None if t is None else _leaf(t, F64) for t in (x, w, gate)]
    for backend in ("torch", "triton"):
        ref = rms_norm_gated(*xs, backend=backend)
        y = rms_norm_gated(*xs, backend=backend, out_dtype=torch.float32)
        assert y.dtype == torch.float32 and torch.equal(y, ref.float())
        got = torch.autograd.grad(y.sum(), [t for t in xs if t is not None])
        want = torch.autograd.grad(ref.sum(), [t for t in xs if t is not None])
        for a, b in zip(got, want, strict=True):
            assert a.dtype == b.dtype and rel(a, b) < 1e-12


@kernel_test
def test_rms_norm_gated_bf16_close_to_fp64():
    g = _gen(1)
    x, gate = torch.randn(4, 30, 2, 64, generator=g, dtype=F64), torch.randn(4, 30, 2, 64, generator=g, dtype=F64)
    w = 1 + 0.1 * torch.randn(64, generator=g, dtype=F64)
    ref = rms_norm_gated(x, w, gate, backend="torch")
    y = rms_norm_gated(_leaf(x, torch.bfloat16), _leaf(w, torch.float32), _leaf(gate, torch.bfloat16),
                       backend="triton")  # fmt: skip
    assert y.dtype == torch.bfloat16 and rel(y, ref) < 5e-3


# ------------------------------------------------------------------------------------------------------- SwiGLU
@kernel_test
@pytest.mark.parametrize("shape", [(2, 7, 48), (3, 1000)] + ([(4, 2048, 2 * 2816)] if GPU else []))
def test_swiglu_matches_reference(shape):
    pytest.importorskip("liger_kernel")
    x = 3 * torch.randn(shape, generator=_gen(2), dtype=F64)
    _compare(lambda x, backend: swiglu(x, backend=backend), (x,), torch.float32, 2e-6)


@kernel_test
@pytest.mark.skipif(INTERPRET, reason="the interpreter keeps bf16 as raw bits that liger's kernel cannot read")
def test_swiglu_bf16_close_to_fp64():
    pytest.importorskip("liger_kernel")
    x = 3 * torch.randn(5, 33, 2 * 200, generator=_gen(3), dtype=F64)
    y = swiglu(_leaf(x, torch.bfloat16), backend="triton")
    assert y.dtype == torch.bfloat16 and rel(y, swiglu(x, backend="torch")) < 5e-3


# ------------------------------------------------------------------------------------- what the backward keeps
def _saved(fn):
    """The tensors autograd saves while ``fn()`` runs: [(dtype, numel)]."""
    seen = []

    def pack(t):
        seen.append((t.dtype, t.numel()))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return seen


@kernel_test
def test_backward_keeps_no_fp32_copy_of_bf16_activations():
    B, T, H, K = 2, 33, 4, 16
    n = B * T * H * K
    bf = torch.bfloat16
    x = torch.randn(B, T, 3 * H * K, device=DEVICE, dtype=bf, requires_grad=True)
    w = torch.randn(3 * H * K, 4, device=DEVICE, requires_grad=True)
    b = torch.zeros(3 * H * K, device=DEVICE, requires_grad=True)
    o = torch.randn(B, T, H, K, device=DEVICE, dtype=bf, requires_grad=True)
    gate = torch.randn(B, T, H, K, device=DEVICE, dtype=bf, requires_grad=True)
    wn = torch.ones(K, device=DEVICE, requires_grad=True)
    cases = {
        "conv": lambda: short_conv(x, w, b, backend="triton"),
        "l2": lambda: l2_normalize(x[..., : H * K].view(B, T, H, K), backend="triton"),
        "rms": lambda: rms_norm_gated(o, wn, gate, backend="triton"),
        "swiglu": lambda: swiglu(x[..., : 2 * H * K], backend="triton"),  # only gate_up: silu is recomputed
    }
    if importlib.util.find_spec("liger_kernel") is None:
        del cases["swiglu"]
    for name, fn in cases.items():
        saved = _saved(fn)
        big32 = [(dt, k) for dt, k in saved if dt != bf and k >= n]  # weights and one factor per row are smaller
        assert saved and not big32, (name, big32)


# ------------------------------------------------------------------------------------ compiled, not interpreted
def _conv_types(p: str, a: str) -> dict[str, str]:
    """Argument types of the short conv's kernels: activations ``p`` (e.g. "*bf16"), weights and sums ``a``."""
    return dict(x_ptr=p, w_ptr=a, b_ptr=a, c_ptr=a, pos_ptr="*i32", y_ptr=p, nc_ptr=p, dy_ptr=p, dx_ptr=p, dp_ptr=p,
                dw_ptr=a, db_ptr=a, T="i32", C="i32")  # fmt: skip


def _frontend_variants():
    """(kernel, argument types, constexprs) covering every constexpr branch, bf16 and fp64."""
    from statetrack.ops import _fused_norm_kernels as nk
    from statetrack.ops import _short_conv_kernels as sk

    out = []
    for dt, f64 in (("bf16", False), ("fp64", True)):
        p, a = f"*{dt}", "*fp64" if f64 else "*fp32"
        conv = _conv_types(p, a)
        for bias, cache, varlen, silu in (
            (True, True, False, True),
            (False, False, True, True),
            (True, False, False, False),
        ):
            flags = dict(W=4, HAS_BIAS=bias, HAS_CACHE=cache, VARLEN=varlen, SILU=silu, F64=f64)
            for in_place in (False, True) if cache and not varlen else (False,):
                out.append((sk.short_conv_fwd_kernel, conv,
                            dict(BT=16, BC=128, NEW_CACHE=not varlen, IN_PLACE=in_place, **flags)))  # fmt: skip
            out.append((sk.short_conv_dpre_kernel, conv, dict(WP=4, BT=32, BC=64, NEED_DW=True, NEED_DB=bias,
                                                              **flags)))  # fmt: skip
            out.append((sk.short_conv_dx_kernel, conv, dict(W=4, BT=16, BC=128, VARLEN=varlen, F64=f64)))
        rows = dict(x_ptr=p, y_ptr=p, g_ptr=p, w_ptr=a, r_ptr=a, dy_ptr=p, dx_ptr=p, dg_ptr=p, dw_ptr=a, n_rows="i32",
                    M1="i32", s0="i64", s1="i32", D="i32")  # fmt: skip
        for flag in (True, False):
            out.append((nk.l2norm_fwd_kernel, rows, dict(EPS=1e-6, BR=16, BD=128, CLAMP=flag, F64=f64)))
            out.append((nk.l2norm_bwd_kernel, rows, dict(EPS=1e-6, BR=16, BD=128, CLAMP=flag, F64=f64)))
            out.append((nk.rmsnorm_fwd_kernel, rows, dict(EPS=1e-6, BR=16, BD=128, HAS_GATE=flag, F64=f64)))
            out.append((nk.rmsnorm_bwd_kernel, rows, dict(BR=16, BD=128, HAS_GATE=flag, NEED_DW=True, F64=f64)))
    return out


@pytest.mark.skipif(INTERPRET, reason="the interpreter runs Python, not Triton's compiler")
def test_kernels_pass_tritons_compiler_frontend():
    """Every kernel variant through Triton's code generator (AST -> TTIR for sm_90), with no GPU: what only the
    compiler refuses (a constexpr re-assigned in a static_range body, a dynamic ``if`` on a block) fails here in CI,
    not first on the GPU. The full compile to cubin (ptxas) is what benchmarks/gpu_tests.sh adds."""
    try:
        from triton._C.libtriton import ir
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource
        from triton.compiler.compiler import make_backend
    except ImportError as e:  # pragma: no cover - another Triton layout
        pytest.skip(f"Triton's compiler internals moved: {e}")
    target = GPUTarget("cuda", 90, 32)
    backend = make_backend(target)
    options = backend.parse_options({"num_warps": 4})
    for fn, types, consts in _frontend_variants():
        sig = {n: "constexpr" if n in consts else types[n] for n in fn.arg_names}
        context = ir.context()
        ir.load_dialects(context)
        backend.load_dialects(context)
        src = ASTSource(fn, sig, constexprs=consts)
        mod = src.make_ir(target, options, backend.get_codegen_implementation(options), backend.get_module_map(),
                          context)  # fmt: skip
        assert fn.__name__ in str(mod), (fn.__name__, consts)


@pytest.mark.skipif(INTERPRET, reason="the interpreter runs Python, not Triton's compiler")
def test_short_conv_kernels_compile_for_sm90_without_spills():
    """The short conv's kernels at the blocks they launch with (bf16 x, fp32 weights, W = 4; with and without packed
    documents) through Triton's whole sm_90 pipeline and its bundled ptxas, on the CPU: no register spills (the
    tiles' docstrings' claim; a spill costs a round trip to local memory per element)."""
    import re
    import subprocess

    try:
        from triton.backends.compiler import GPUTarget
        from triton.backends.nvidia.compiler import get_ptxas
        from triton.compiler import ASTSource

        ptxas = get_ptxas(90).path
    except (ImportError, RuntimeError, AttributeError) as e:  # pragma: no cover - another Triton layout
        pytest.skip(f"Triton's compiler internals moved: {e}")
    import triton

    from statetrack.ops import _short_conv_kernels as sk
    from statetrack.ops.short_conv import _bwd_tiles, _tiles

    (BT, BC), (BTb, BCb) = _tiles(3072, 4), _bwd_tiles(3072, 4)
    types = _conv_types("*bf16", "*fp32")
    for varlen in (False, True):
        flags = dict(W=4, HAS_BIAS=False, HAS_CACHE=False, VARLEN=varlen, SILU=True, F64=False)
        for fn, consts in [
            (sk.short_conv_fwd_kernel, dict(BT=BT, BC=BC, NEW_CACHE=False, IN_PLACE=False, **flags)),
            (sk.short_conv_dpre_kernel, dict(WP=4, BT=BTb, BC=BCb, NEED_DW=True, NEED_DB=False, **flags)),
            (sk.short_conv_dx_kernel, dict(W=4, BT=BT, BC=BC, VARLEN=varlen, F64=False)),
        ]:
            sig = {n: "constexpr" if n in consts else types[n] for n in fn.arg_names}
            src = ASTSource(fn, sig, constexprs=consts)
            ptx = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4}).asm["ptx"]
            out = subprocess.run([ptxas, "-v", "--gpu-name=sm_90a", "-", "-o", "/dev/null"], input=ptx, text=True,
                                 capture_output=True, check=True).stderr  # fmt: skip
            spills = [int(n) for n in re.findall(r"(\d+) bytes spill stores", out)]
            assert spills and max(spills) == 0, (fn.__name__, varlen, out)


# --------------------------------------------------------------------------------------------- choice and checks
@pytest.mark.skipif(RUNNABLE, reason="the CPU process's rule (the interpreter subprocess may take triton)")
def test_auto_is_torch_on_the_cpu_and_triton_refuses_without_interpreter():
    x = torch.randn(2, 3, 4)
    assert fused_backend("auto", x) == "torch"
    with pytest.raises(ValueError, match="TRITON_INTERPRET"):
        l2_normalize(x, backend="triton")
    with pytest.raises(ValueError, match="backend must be one of"):
        rms_norm_gated(x, torch.ones(4), backend="cuda")


def test_bad_arguments_name_the_argument():
    x = torch.randn(1, 5, 6)
    with pytest.raises(ValueError, match="weight must have shape"):
        short_conv(x, torch.randn(5, 4))
    with pytest.raises(ValueError, match="cache must have shape"):
        short_conv(x, torch.randn(6, 4), cache=torch.randn(1, 6, 2))
    with pytest.raises(ValueError, match="cu_seqlens must start at 0"):
        short_conv(x, torch.randn(6, 4), cu_seqlens=torch.tensor([0, 3], dtype=torch.int32))
    with pytest.raises(ValueError, match="gate must have x's shape"):
        rms_norm_gated(x, torch.ones(6), torch.randn(1, 5, 5))
    with pytest.raises(ValueError, match="out_dtype must be a floating"):
        rms_norm_gated(x, torch.ones(6), out_dtype=torch.int32)
    with pytest.raises(ValueError, match="eps must be None or"):
        l2_normalize(x, -1.0)
    with pytest.raises(TypeError, match="x must be a floating-point"):
        l2_normalize(torch.ones(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="gate_up's last dim must be even"):
        swiglu(torch.randn(2, 5))
    with pytest.raises(ValueError, match="backend='triton'"):
        swiglu(torch.randn(2, 4, dtype=torch.float64), backend="triton")


@kernel_test
@pytest.mark.parametrize("W,T", [(4, 1), (4, 3), (2, 1), (5, 16), (5, 17)])
def test_short_conv_writes_the_cache_in_place_when_asked(W, T):
    """Inside update_states_in_place, without gradients, the kernel overwrites the cache it was given (when the
    steps fit one tile) with what the out-of-place call returns, y unchanged; longer inputs get a new cache."""
    from statetrack.ops import update_states_in_place

    x, w, b, c = (t.to(DEVICE) for t in _conv_inputs(3, T, 200, W, True, True, seed=W + T))
    with torch.no_grad():
        y_ref, c_ref = short_conv(x, w, b, c.clone(), backend="triton")
        cache = c.clone()
        with update_states_in_place():
            y, new = short_conv(x, w, b, cache, backend="triton")
    torch.testing.assert_close(y, y_ref, rtol=0, atol=0)
    torch.testing.assert_close(new, c_ref, rtol=0, atol=0)
    assert (new is cache) == (T <= 16), "one tile of 16 steps reads the cache before it writes"
