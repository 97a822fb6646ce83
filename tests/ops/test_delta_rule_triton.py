"""The Triton delta-rule kernels against the naive fp64 reference: values and gradients.

Two ways to run:
* CPU (CI): Triton's interpreter. It must be switched on before triton is imported, for the whole process, so
  ``test_kernels_in_interpreter`` runs this file again in a fresh subprocess with ``TRITON_INTERPRET=1`` (nothing
  leaks into other test modules or xdist workers). Tiny shapes: T <= 70, D = 16.
* GPU: ``STATETRACK_TEST_DEVICE=cuda pytest tests/ops/test_delta_rule_triton.py`` (benchmarks/gpu_tests.sh) runs the
  same tests compiled, at larger shapes (T up to 600, head dims 32-80).
The kernel tests skip in a normal CPU process (the subprocess test covers them) and when triton is not installed.
"""

from __future__ import annotations

import importlib

import pytest
import torch

from statetrack.ops import delta_rule
from statetrack.ops.delta_rule.inputs import normalize
from statetrack.ops.delta_rule.naive import delta_rule_naive
from statetrack.ops.delta_rule.triton import delta_rule_recurrent_triton, delta_rule_triton

from .delta_rule_inputs import make_inputs, rel
from .interpreter import DEVICE, GPU, RUNNABLE, rerun_in_interpreter

pytest.importorskip("triton")

kernel_test = pytest.mark.skipif(not RUNNABLE, reason="covered by the interpreter subprocess (or set up a GPU)")

if GPU:
    LENGTHS, DIMS, TOL = (1, 100, 600), (32, 64), 2e-4
else:
    LENGTHS, DIMS, TOL = (1, 20, 70), (16,), 1e-4
# precision="bf16" (docs/kernels.md, "The bf16 precision"): o and the gradients within its goals, 5e-3 and 8e-3,
# repeated keys included (interpreter, T = 70: o to 3.5e-3, the interpreter truncating bf16 stores; gradients to
# 4.8e-3; T = 512 and 2048, K = V = 64: 2.4e-3 and 4.2e-3); the final state about fp32-accurate (its recursion and
# the inverse in split passes: 2e-5 at T = 70 with random keys, 7.5e-4 with repeated ones, to 1.2e-3 at T = 512;
# one-pass bf16 products there would give 3e-3 to 1e-2)
BF16_O_TOL, BF16_TOL = 5e-3, 8e-3
BF16_STATE_TOL, BF16_REPEATED_STATE_TOL = (5e-4, 3e-3) if GPU else (2e-4, 1.5e-3)


@pytest.mark.skipif(RUNNABLE, reason="already inside the interpreter (or on a GPU)")
def test_kernels_in_interpreter():
    rerun_in_interpreter(__file__)


def _prepare(x, dtype, device):
    """fp64 make_inputs dict -> normalised (q, k, v, beta, g, h0) leaves in ``dtype`` on ``device``."""
    q, k, v, b, g, h0 = (x[n] for n in ("q", "k", "v", "beta", "log_decay", "initial_state"))
    k, v, b, _ = normalize(q, k, v, b, g, h0, None)
    sdt = torch.float64 if dtype == torch.float64 else torch.float32
    out = [None if t is None else t.detach().to(device, dtype).requires_grad_() for t in (q, k, v, b, g)]
    out.append(None if h0 is None else h0.detach().to(device, sdt).requires_grad_())
    return out


def _grads(o, s, leaves, seed=1):
    g = torch.Generator().manual_seed(seed)
    wo = torch.randn(o.shape, generator=g, dtype=torch.float64).to(o.device)
    ws = torch.randn(s.shape, generator=g, dtype=torch.float64).to(s.device)
    loss = (o.double() * wo).sum() + (s.double() * ws).sum()
    live = [t for t in leaves if t is not None]
    return torch.autograd.grad(loss, live)


def _errors(x, dtype=torch.float32, **kw):
    """Relative errors of o, the final state and every gradient of the chunk kernels against the fp64 loop."""
    ref = _prepare(x, torch.float64, "cpu")
    o_r, s_r = delta_rule_naive(*ref[:5], 0.3, ref[5], torch.float64)
    g_r = _grads(o_r, s_r, ref)
    tri = _prepare(x, dtype, DEVICE)
    o, s = delta_rule_triton(*tri[:5], 0.3, tri[5], **kw)
    assert o.dtype == dtype and s.dtype == torch.float32
    errs = {"o": rel(o.cpu(), o_r), "final_state": rel(s.cpu(), s_r)}
    names = [n for n, t in zip(("q", "k", "v", "beta", "log_decay", "h0"), tri, strict=True) if t is not None]
    for n, a, b in zip(names, _grads(o, s, tri), g_r, strict=True):
        errs["d" + n] = rel(a.cpu(), b)
    return errs


def _check(x, tol, dtype=torch.float32, **kw):
    errs = _errors(x, dtype, **kw)
    bad = {n: e for n, e in errs.items() if not e < tol}
    assert not bad, (bad, errs)


@kernel_test
@pytest.mark.parametrize("T", LENGTHS)
@pytest.mark.parametrize("gate", [False, True])
def test_chunk_matches_naive(T, gate):
    D = DIMS[-1]
    _check(make_inputs(B=2, T=T, H=2, K=D, V=D, beta_range=(0.0, 2.0), gate=gate), TOL)


@kernel_test
@pytest.mark.parametrize(
    "n_h,keys,gate,chunk_size",
    [
        (1, "rank1", True, 64),
        (2, "random", True, 32),
        (2, "rank1", False, 16),
        (3, "random", True, 10),
    ],
)
def test_chunk_beta_near_two(n_h, keys, gate, chunk_size):
    T = LENGTHS[-1] if n_h == 1 else LENGTHS[-1] // 2 + 3
    D = DIMS[0]
    x = make_inputs(B=1, T=T, H=2, K=D, V=D, n_h=n_h, beta_range=(1.9, 2.0), keys=keys, gate=gate)
    _check(x, TOL, chunk_size=chunk_size)


@kernel_test
@pytest.mark.parametrize(
    "T,n_h,chunk_size",
    [
        (5, 1, 64),  # one chunk, mostly padding
        (16, 2, 16),  # exactly one chunk (32 sub-steps)
        (17, 2, 16),  # one token into the second chunk
        (31, 2, 32),  # one token short of a chunk
        (65, 1, 16),  # several chunks, one token over
        (63, 3, 21),  # 21 tokens per chunk (63 of 64 rows), 3 chunks
        (47, 3, 5),  # 5 tokens per chunk (15 of 16 rows), 10 chunks
    ],
)
def test_chunk_boundaries_with_gate_and_householders(T, n_h, chunk_size):
    """Chunk edges: T below, at and one off multiples of the chunk, in tokens and in sub-steps; gated."""
    x = make_inputs(B=2, T=T, H=1, K=DIMS[0], V=DIMS[0], n_h=n_h, beta_range=(0.0, 2.0), gate=True, seed=T)
    _check(x, TOL, chunk_size=chunk_size)


@kernel_test
def test_chunk_beta_exactly_zero_and_two():
    """beta in {0, 2} exactly (identity steps and pure reflections), with repeated keys."""
    x = make_inputs(B=1, T=LENGTHS[-1], H=2, K=DIMS[0], V=DIMS[0], n_h=2, keys="rank1", gate=True)
    g = torch.Generator().manual_seed(3)
    x["beta"] = 2.0 * (torch.rand(x["beta"].shape, generator=g) < 0.5).double()
    _check(x, TOL, chunk_size=16)


@kernel_test
@pytest.mark.parametrize(
    "K,V", [(80, 24), (130, 20)] if not GPU else [(128, 128), (256, 64), (200, 96), (16, 16), (64, 16), (16, 64)]
)
def test_chunk_key_blocks(K, V):
    """Key dims beyond one 64-row block: the state passes hold the state as 2-4 row blocks; and, on a GPU, the
    smallest head dims (V = 16 needs the gradient kernel's V block wider than V: 16-wide ones miscompile)."""
    x = make_inputs(B=1, T=LENGTHS[1] + 7, H=1, K=K, V=V, n_h=2, beta_range=(0.0, 2.0), gate=True)
    _check(x, TOL)


@kernel_test
def test_chunk_small_chunks_ragged_dims_and_v_blocks():
    """16 tokens a chunk (no block merge in the inverse), K and V not powers of two, V split over several
    programs."""
    K, V = (12, 24) if not GPU else (48, 80)
    x = make_inputs(B=1, T=LENGTHS[-1] - 3, H=1, K=K, V=V, beta_range=(0.0, 2.0), gate=True)
    _check(x, TOL, chunk_size=16, config={"block_v": 16})


@kernel_test
def test_chunk_block_settings_from_triton_config():
    """Block settings other than the defaults (what a benchmark times through triton_config) compute the same."""
    x = make_inputs(B=1, T=LENGTHS[-1], H=2, K=DIMS[0], V=DIMS[0], n_h=2, beta_range=(0.0, 2.0), gate=True)
    _check(x, TOL, config={"BS": 32, "BK_grad": 32, "BV_grad": 64, "BV_prep": 16, "BV_out": 16, "warps_grad": 4})


@kernel_test
def test_chunk_without_initial_state():
    x = make_inputs(B=1, T=LENGTHS[1], H=2, K=DIMS[0], V=DIMS[0], h0=False, gate=True)
    _check(x, TOL)


@kernel_test
@pytest.mark.parametrize("used", ["o", "final_state"])
def test_chunk_gradient_of_one_output(used):
    """A loss on o alone (no final-state gradient reaches the kernels) or on the final state alone (no do)."""
    x = make_inputs(B=1, T=LENGTHS[1], H=2, K=DIMS[0], V=DIMS[0], n_h=2, gate=True)
    grads = []
    for leaves in (_prepare(x, torch.float64, "cpu"), _prepare(x, torch.float32, DEVICE)):
        if leaves[0].dtype == torch.float64:
            o, s = delta_rule_naive(*leaves[:5], 0.3, leaves[5], torch.float64)
        else:
            o, s = delta_rule_triton(*leaves[:5], 0.3, leaves[5])
        y = o if used == "o" else s
        w = torch.randn(y.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64).to(y.device)
        live = [t for t in leaves if t is not None]
        g = torch.autograd.grad((y.double() * w).sum(), live, allow_unused=True)
        grads.append([torch.zeros_like(t) if d is None else d for t, d in zip(live, g, strict=True)])
    for a, b in zip(grads[1], grads[0], strict=True):
        assert (a.cpu() - b).norm() <= TOL * max(b.norm(), 1e-300) or (a == 0).all() and (b == 0).all()


@kernel_test
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_chunk_low_precision_inputs(dtype):
    """Against the fp64 reference fed the same rounded inputs: only o's final rounding and the fp32 math differ."""
    x = make_inputs(B=1, T=LENGTHS[-1], H=2, K=DIMS[0], V=DIMS[0], beta_range=(1.9, 2.0), gate=True)
    x = {n: None if t is None else (t.to(dtype).double() if n != "initial_state" else t) for n, t in x.items()}
    ref = _prepare(x, torch.float64, "cpu")
    o_r, s_r = delta_rule_naive(*ref[:5], 0.3, ref[5], torch.float64)
    tri = _prepare(x, dtype, DEVICE)
    o, s = delta_rule_triton(*tri[:5], 0.3, tri[5])
    assert o.dtype == dtype and s.dtype == torch.float32
    assert rel(s.cpu(), s_r) < TOL
    assert rel(o.cpu(), o_r) < 1e-2
    for t, g in zip(tri[:4], _grads(o, s, tri[:4] + [None, None]), strict=True):
        assert g.dtype == t.dtype and torch.isfinite(g.float()).all()


@kernel_test
@pytest.mark.parametrize("precision", ["tf32", "ieee"])
def test_chunk_other_precisions(precision):
    """One tf32 pass per fp32 product (faster, tf32-accurate on a GPU) and exact fp32 FMA (as exact as the default;
    the interpreter computes every precision in fp32)."""
    x = make_inputs(B=1, T=LENGTHS[-1], H=2, K=DIMS[0], V=DIMS[0], beta_range=(0.0, 2.0), gate=True)
    _check(x, 3e-2 if GPU and precision == "tf32" else TOL, precision=precision)


@kernel_test
@pytest.mark.parametrize(
    "dtype,T,n_h,beta_range,keys,gate,chunk_size",
    [
        (torch.float32, LENGTHS[-1], 1, (0.0, 2.0), "random", False, None),  # 70 = 64 + 6 tokens
        (torch.bfloat16, LENGTHS[-1], 1, (1.9, 2.0), "random", True, None),
        (torch.float32, LENGTHS[-1] // 2 + 3, 2, (1.9, 2.0), "random", True, 16),
        # repeated keys: T at its worst conditioned; one-pass products of it put 1e-2 to 3e-2 into dbeta, o, dv
        (torch.float32, LENGTHS[-1] // 2 + 3, 2, (1.9, 2.0), "rank1", False, 16),
        (torch.bfloat16, LENGTHS[-1], 1, (1.9, 2.0), "rank1", False, None),
        (torch.bfloat16, LENGTHS[-1] // 2 + 3, 2, (1.9, 2.0), "random", True, None),  # DeltaProduct: 32 x 2 rows
        (torch.bfloat16, LENGTHS[-1] // 2 + 3, 2, (1.9, 2.0), "rank1", False, None),
    ],
)
def test_chunk_bf16_precision(dtype, T, n_h, beta_range, keys, gate, chunk_size):
    """precision="bf16": bf16 tensor-core products (emulated by the interpreter) against the fp64 loop on the same
    (rounded) inputs; ragged lengths, beta over [0, 2] and near 2, gates, two Householders, repeated keys.
    On a GPU it takes 64-row chunks only (chunk.BF16_ROWS: other widths miscompile on sm_90) and refuses others."""
    rows = n_h * (chunk_size or 64 // n_h)
    if DEVICE == "cuda" and dtype == torch.float32:  # chunk.BF16_FP32_ON_GPU
        with pytest.raises(ValueError, match="precision='bf16' on GPUs takes bf16 or fp16 inputs"):
            delta_rule_triton(*_prepare(make_inputs(B=1, T=4, H=1, K=16, V=16, n_h=n_h), dtype, DEVICE)[:5], 0.3,
                              None, precision="bf16", chunk_size=chunk_size)  # fmt: skip
        return
    if DEVICE == "cuda" and not 32 < rows <= 64:
        with pytest.raises(ValueError, match="precision='bf16' on GPUs takes chunks of 64 rows"):
            delta_rule_triton(*_prepare(make_inputs(B=1, T=4, H=1, K=16, V=16, n_h=n_h), dtype, DEVICE)[:5], 0.3,
                              None, precision="bf16", chunk_size=chunk_size)  # fmt: skip
        return
    x = make_inputs(B=2 if n_h == 1 else 1, T=T, H=2, K=DIMS[0], V=DIMS[0], n_h=n_h, beta_range=beta_range,
                    keys=keys, gate=gate, seed=T)  # fmt: skip
    x = {n: None if t is None else (t.to(dtype).double() if n != "initial_state" else t) for n, t in x.items()}
    errs = _errors(x, dtype, precision="bf16", chunk_size=chunk_size)
    tol = {"o": BF16_O_TOL, "final_state": BF16_REPEATED_STATE_TOL if keys == "rank1" else BF16_STATE_TOL}
    bad = {n: e for n, e in errs.items() if not e < tol.get(n, BF16_TOL)}
    assert not bad, (bad, errs)
    if dtype == torch.float32:  # the one-pass products do round (tf32x3 is at 1e-6 here)
        assert errs["o"] > 1e-4, errs


def test_api_passes_precision_to_the_chunked_kernels(monkeypatch):
    """delta_rule(precision=...) reaches the chunked Triton kernels; a bad one is refused on every backend."""
    from statetrack.ops.delta_rule import api

    seen = []
    monkeypatch.setattr(api, "_available", lambda device, dtype: {"naive": True, "torch": True, "triton": True})
    monkeypatch.setattr(api, "prefers_recurrent", lambda *a: False)
    monkeypatch.setattr(api, "delta_rule_triton", lambda *a, **kw: seen.append(kw) or (a[0], None))
    x = make_inputs(B=1, T=5, H=1, K=4, V=4, h0=False)
    delta_rule(**x, backend="triton", precision="tf32")
    delta_rule(**x, backend="triton", precision="bf16")
    assert [kw["precision"] for kw in seen] == ["tf32", "bf16"]
    with pytest.raises(ValueError, match="precision must be one of"):
        delta_rule(**x, backend="torch", precision="bf16x3")
    for bad in ("fp8", "bf16_emulated"):  # the kernels' name for bf16 under the interpreter is no public one
        with pytest.raises(ValueError, match=f"precision must be one of .*'bf16'.*got '{bad}'"):
            delta_rule(**x, backend="triton", algorithm="chunk", precision=bad)


def test_config_refuses_what_miscompiles_on_sm90(monkeypatch):
    """bf16x3/bf16x6 dots and 16-wide V blocks in the gradient kernel read shared memory out of bounds on an H100
    with triton 3.6 (compute-sanitizer): refused with the setting's name."""
    from statetrack.ops.delta_rule.triton.chunk import make_config

    cpu = torch.device("cpu")
    with pytest.raises(ValueError, match="precision must be one of"):
        make_config(1, 64, 64, 4, cpu, precision="bf16x3")
    assert make_config(1, 64, 64, 4, cpu, precision="bf16").precision == "bf16"
    bf16 = make_config(1, 32, 128, 4, cpu, precision="bf16")  # the miscompile's workaround: 64-wide blocks
    assert (bf16.BV_prep, bf16.BV_out, bf16.BV_grad, bf16.BK_grad, bf16.warps_grad) == (64, 64, 64, 64, 4)
    gpu = torch.device("cuda")  # refused before any GPU is touched
    with pytest.raises(ValueError, match=r"precision='bf16' on GPUs takes chunks of 64 rows.*chunk_size=16"):
        make_config(1, 64, 64, 4, gpu, precision="bf16", chunk_size=16)
    with pytest.raises(ValueError, match=r"precision='bf16' on GPUs fixes \['BV_out'\] to \[64\]"):
        make_config(1, 64, 64, 4, gpu, precision="bf16", tuning={"BV_out": 32})
    monkeypatch.setattr(importlib.import_module(make_config.__module__), "sm_count", lambda dev: 132)  # no GPU needed
    w8 = make_config(1, 64, 64, 4, gpu, precision="bf16", tuning={"warps_grad": 8})  # right at 8 warps (repro R15)
    assert (w8.warps_grad, w8.BV_grad, w8.BK_grad) == (8, 64, 64)
    with pytest.raises(ValueError, match="BV_grad must be >= 32"):
        make_config(1, 64, 64, 4, cpu, tuning={"BV_grad": 16})
    assert make_config(1, 16, 16, 4, cpu).BV_grad == 32  # V = 16: one masked 32-wide block
    assert make_config(1, 128, 128, 4, cpu, tuning={"block_v": 16}).BV_grad == 32


@kernel_test
@pytest.mark.parametrize("precision", ["auto", "bf16"])
def test_api_backend_triton_varlen(precision):
    """delta_rule(backend="triton") through the padding path of cu_seqlens, values and gradients."""
    x = make_inputs(B=1, T=LENGTHS[-1], H=2, K=DIMS[0], V=DIMS[0], n_h=2, gate=True, h0=False, requires_grad=True)
    # q, k, v in bf16 where precision="bf16" runs on a GPU (chunk.BF16_FP32_ON_GPU; beta and the gate fp32, as the
    # layers give them), the reference on the same rounded values
    half = ("q", "k", "v") if precision == "bf16" and DEVICE == "cuda" else ()
    x = {n: t.detach().to(torch.bfloat16).double().requires_grad_() if n in half else t for n, t in x.items()}
    cu = torch.tensor([0, 5, 5, LENGTHS[-1] // 2, LENGTHS[-1]])
    ref_o, ref_s = delta_rule(**x, cu_seqlens=cu, output_final_state=True, backend="naive")
    ref_g = torch.autograd.grad(ref_o.sum() + ref_s.sum(), [x["q"], x["k"], x["beta"]])
    dtypes = {n: torch.bfloat16 if n in half else torch.float32 for n in x}
    y = {n: None if t is None else t.detach().to(DEVICE, dtypes[n]).requires_grad_() for n, t in x.items()}
    kw = {} if precision == "auto" else {"algorithm": "chunk", "precision": precision}
    o, s = delta_rule(**y, cu_seqlens=cu.to(DEVICE), output_final_state=True, backend="triton", **kw)
    g = torch.autograd.grad(o.sum() + s.sum(), [y["q"], y["k"], y["beta"]])
    tol, o_tol, state_tol = (TOL, TOL, TOL) if precision == "auto" else (BF16_TOL, BF16_O_TOL, BF16_STATE_TOL)
    assert rel(o.cpu(), ref_o) < o_tol and rel(s.cpu(), ref_s) < state_tol
    for a, b in zip(g, ref_g, strict=True):
        assert rel(a.cpu(), b) < tol


@kernel_test
def test_auto_backend_is_torch_on_cpu_and_fp64_never_triton():
    x = make_inputs(B=1, T=3, H=1, K=4, V=4)
    with pytest.raises(ValueError, match="triton"):
        delta_rule(**x, backend="triton")  # fp64
    if not GPU:
        from statetrack.ops.delta_rule.api import _available

        assert _available(torch.device("cpu"), torch.float32)["triton"]  # under the interpreter only
        o, _ = delta_rule(**{n: None if t is None else t.float() for n, t in x.items()})  # "auto": torch
        assert o.dtype == torch.float32


@kernel_test
@pytest.mark.parametrize("n_h,gate", [(1, False), (2, True)])
def test_recurrent_matches_naive_and_decodes_step_by_step(n_h, gate):
    T, D = LENGTHS[1], DIMS[0]
    x = make_inputs(B=2, T=T, H=2, K=D, V=D, n_h=n_h, beta_range=(1.9, 2.0), gate=gate)
    ref = _prepare(x, torch.float64, "cpu")
    o_r, s_r = delta_rule_naive(*ref[:5], 0.3, ref[5], torch.float64)
    tri = [None if t is None else t.detach() for t in _prepare(x, torch.float32, DEVICE)]
    o, s = delta_rule_recurrent_triton(*tri[:5], 0.3, tri[5])
    assert rel(o.cpu(), o_r) < TOL and rel(s.cpu(), s_r) < TOL
    state, outs = tri[5], []
    for t in range(T):
        step = [None if a is None else a[:, t : t + 1] for a in tri[:5]]
        o_t, state = delta_rule_recurrent_triton(*step, 0.3, state)
        outs.append(o_t)
    assert rel(torch.cat(outs, 1).cpu(), o_r) < TOL and rel(state.cpu(), s_r) < TOL
