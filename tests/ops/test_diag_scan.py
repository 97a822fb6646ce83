"""ops.diag_scan: every path against the fp64 sequential oracle, steps, gradcheck, and bad input."""

from __future__ import annotations

import functools

import pytest
import torch

from statetrack.ops import diag_scan, diag_scan_step, value_checks
from statetrack.ops.diag_scan.scan import default_chunk_size, diag_scan_chunk

F64, F32 = torch.float64, torch.float32
TS = (1, 63, 64, 65, 1000)
KINDS = ("uniform", "near_minus_one", "near_one", "exact")


def rel(x: torch.Tensor, ref: torch.Tensor) -> float:
    return ((x.double() - ref.double()).norm() / ref.double().norm().clamp_min(1e-300)).item()


def make_a(kind: str, shape, gen: torch.Generator) -> torch.Tensor:
    u = torch.rand(shape, generator=gen, dtype=F64)
    if kind == "uniform":
        a = 2 * u - 1
    elif kind == "near_minus_one":
        a = -1 + 1e-3 * u
    elif kind == "near_one":
        a = 1 - 1e-3 * u
    else:  # "exact": only -1, 0, 1 and a few uniform values
        a = torch.tensor([-1.0, 0.0, 1.0, 0.5], dtype=F64)[torch.randint(0, 4, shape, generator=gen)]
        a = torch.where(a == 0.5, 2 * u - 1, a)
    # exact zeros and +-1 in every kind (resets and sign flips mid-sequence)
    flat = a.view(-1)
    idx = torch.randperm(flat.numel(), generator=gen)[: max(1, flat.numel() // 50)]
    flat[idx] = torch.tensor([0.0, 1.0, -1.0], dtype=F64).repeat(idx.numel())[: idx.numel()]
    return a


@functools.cache
def case(T: int, kind: str, tail: tuple = (3,)):
    """Inputs (fp64) and the fp64 naive reference: h, final, grads of (a, b, initial_state)."""
    gen = torch.Generator().manual_seed(1000 * T + KINDS.index(kind))
    B = 2
    a = make_a(kind, (B, T, *tail), gen)
    b = torch.randn(B, T, *tail, generator=gen, dtype=F64)
    h0 = torch.randn(B, *tail, generator=gen, dtype=F64)
    g = torch.randn(B, T, *tail, generator=gen, dtype=F64)
    gf = torch.randn(B, *tail, generator=gen, dtype=F64)
    ins = [x.clone().requires_grad_() for x in (a, b, h0)]
    h, final = diag_scan(*ins[:2], initial_state=ins[2], output_final_state=True, backend="naive")
    grads = torch.autograd.grad((h * g).sum() + (final * gf).sum(), ins)
    return (a, b, h0, g, gf), (h.detach(), final.detach(), *grads)


def chunks(backend: str, chunk_size: int) -> dict:
    """chunk_size for the torch backend (the only one it applies to; the others refuse it)."""
    return dict(chunk_size=chunk_size) if backend == "torch" else {}


def run(inputs, dtype, backend, chunk_size=64):
    a, b, h0, g, gf = inputs
    ins = [x.to(dtype).requires_grad_() for x in (a, b)]
    ins.append(h0.to(dtype).requires_grad_())  # fp32 state for fp32 inputs, fp64 for fp64
    h, final = diag_scan(
        *ins[:2], initial_state=ins[2], output_final_state=True, backend=backend, **chunks(backend, chunk_size)
    )
    grads = torch.autograd.grad((h * g.to(dtype)).sum() + (final * gf.to(dtype)).sum(), ins)
    return (h.detach(), final.detach(), *grads)


NAMES = ("h", "final", "da", "db", "d_initial_state")


@pytest.mark.parametrize("chunk_size", [8, 64])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("T", TS)
def test_torch_matches_naive(T, kind, chunk_size):
    inputs, ref = case(T, kind)
    for dtype, tol in ((F64, 1e-10), (F32, 1e-5)):
        out = run(inputs, dtype, "torch", chunk_size)
        for name, x, r in zip(NAMES, out, ref, strict=True):
            assert x.dtype == dtype
            assert rel(x, r) < tol, (name, dtype, rel(x, r))


@pytest.mark.parametrize("T", TS)
def test_naive_fp32_matches_fp64(T):
    inputs, ref = case(T, "uniform")
    for name, x, r in zip(NAMES, run(inputs, F32, "naive"), ref, strict=True):
        assert rel(x, r) < 1e-5, name


def test_auto_is_torch_on_cpu_and_defaults():
    inputs, ref = case(65, "uniform")
    a, b = inputs[0], inputs[1]
    h, final = diag_scan(a, b)
    assert final is None
    h_t, _ = diag_scan(a, b, backend="torch")
    assert torch.equal(h, h_t)
    # no initial state == zero initial state
    h_z, _ = diag_scan(a, b, initial_state=torch.zeros_like(inputs[2]), backend="naive")
    assert rel(h, h_z) < 1e-12


def test_trailing_dims_and_no_trailing_dims():
    gen = torch.Generator().manual_seed(0)
    a = make_a("uniform", (2, 200, 3, 2, 2), gen)
    b = torch.randn(2, 200, 3, 2, 2, generator=gen, dtype=F64)
    h, f = diag_scan(a, b, output_final_state=True, chunk_size=8)
    h2, f2 = diag_scan(a.flatten(2), b.flatten(2), output_final_state=True, chunk_size=8)
    assert h.shape == a.shape and f.shape == (2, 3, 2, 2)
    assert torch.equal(h.flatten(2), h2) and torch.equal(f.flatten(1), f2)
    h1, f1 = diag_scan(a[..., 0, 0, 0], b[..., 0, 0, 0], output_final_state=True, chunk_size=8)  # [B, T]
    assert h1.shape == (2, 200) and f1.shape == (2,)
    assert rel(h1, h[..., 0, 0, 0]) < 1e-14


def test_sign_flips_are_exact_in_fp32():
    # a in {-1, +1}, no input: h_t = +-1 exactly (a parity automaton); any log-space form would round here
    gen = torch.Generator().manual_seed(1)
    a = torch.randint(0, 2, (3, 1000, 5), generator=gen).float() * 2 - 1
    h0 = torch.ones(3, 5)
    h, f = diag_scan(a, torch.zeros_like(a), initial_state=h0, output_final_state=True, chunk_size=16)
    assert torch.equal(h, torch.cumprod(a, dim=1))
    assert torch.equal(f, h[:, -1])
    # a zero is a reset: nothing before it survives
    a[:, 500] = 0
    h, _ = diag_scan(a, torch.zeros_like(a), initial_state=h0, chunk_size=16)
    assert torch.count_nonzero(h[:, 500:]) == 0


def test_empty_sequence():
    a = torch.zeros(2, 0, 4)
    h0 = torch.randn(2, 4)
    for backend in ("naive", "torch"):
        h, f = diag_scan(a, a, initial_state=h0, output_final_state=True, backend=backend)
        assert h.shape == (2, 0, 4) and torch.equal(f, h0)


def test_noncontiguous_inputs_and_sum_gradient():
    gen = torch.Generator().manual_seed(2)
    a = make_a("uniform", (4, 3, 300), gen).transpose(1, 2).requires_grad_()  # [B, T, D] view, not contiguous
    b = torch.randn(4, 300, 3, generator=gen, dtype=F64).requires_grad_()
    outs = []
    for backend in ("naive", "torch"):
        h, f = diag_scan(a, b, output_final_state=True, backend=backend, **chunks(backend, 16))
        outs.append((h, *torch.autograd.grad(h.sum() + f.sum(), (a, b))))  # expanded (stride-0) gradients
    for x, r in zip(outs[1], outs[0], strict=True):
        assert rel(x, r) < 1e-12


def test_large_buffers():
    # 16 MB outputs are allocated through NumPy (huge pages); values and gradients must not notice
    gen = torch.Generator().manual_seed(4)
    a = (2 * torch.rand(1, 4096, 1024, generator=gen) - 1).requires_grad_()
    b = torch.randn(1, 4096, 1024, generator=gen).requires_grad_()
    g = torch.randn(1, 4096, 1024, generator=gen)
    outs = []
    for backend in ("naive", "torch"):
        h, f = diag_scan(a, b, output_final_state=True, backend=backend)
        outs.append((h, f, *torch.autograd.grad((h * g).sum() + f.sum(), (a, b))))
    for x, r in zip(outs[1], outs[0], strict=True):
        assert rel(x, r) < 1e-5


def test_low_precision_and_mixed_dtypes():
    inputs, ref = case(1000, "uniform")
    a, b, h0 = inputs[:3]
    h, f = diag_scan(a.bfloat16(), b.bfloat16(), initial_state=h0.float(), output_final_state=True)
    assert h.dtype == torch.bfloat16 and f.dtype == F32
    assert rel(h, ref[0]) < 2e-2 and rel(f, ref[1]) < 2e-2
    h, f = diag_scan(a.float(), b, initial_state=h0, output_final_state=True)  # promoted to fp64
    assert h.dtype == F64 and f.dtype == F64
    assert rel(h, ref[0]) < 1e-7


@pytest.mark.parametrize("backend", ["naive", "torch"])
def test_steps_continue_the_full_forward(backend):
    inputs, _ = case(1000, "uniform")
    a, b, h0 = inputs[0][:, :130], inputs[1][:, :130], inputs[2]
    h_full, f_full = diag_scan(a, b, initial_state=h0, output_final_state=True, backend=backend, **chunks(backend, 8))
    _, state = diag_scan(
        a[:, :100], b[:, :100], initial_state=h0, output_final_state=True, backend=backend, **chunks(backend, 8)
    )
    for t in range(100, 130):
        h_t, state = diag_scan_step(a[:, t], b[:, t], state)
        assert rel(h_t, h_full[:, t]) < 1e-13
    assert rel(state, f_full) < 1e-13
    # a step from nothing is a step from zeros
    h1, s1 = diag_scan_step(a[:, 0].float(), b[:, 0].float())
    assert torch.equal(h1, b[:, 0].float()) and s1.dtype == F32


def test_gradcheck():
    gen = torch.Generator().manual_seed(3)
    with value_checks(False):  # finite differences step a = +-1 just outside [-1, 1]
        for T, c in ((9, 2), (5, 2), (1, 2), (20, 3)):
            a = make_a("exact", (2, T, 2), gen).requires_grad_()
            b = torch.randn(2, T, 2, generator=gen, dtype=F64, requires_grad=True)
            h0 = torch.randn(2, 2, generator=gen, dtype=F64, requires_grad=True)
            fn = lambda a, b, h0, c=c: diag_scan(  # noqa: E731
                a, b, initial_state=h0, output_final_state=True, backend="torch", chunk_size=c
            )
            assert torch.autograd.gradcheck(fn, (a, b, h0))
            # without an initial state, and with only some inputs requiring grad
            b_, a_ = b.detach(), a.detach()
            assert torch.autograd.gradcheck(lambda a, b_=b_, c=c: diag_scan_chunk(a, b_, None, c)[0], (a,))
            assert torch.autograd.gradcheck(lambda b, a_=a_, c=c: diag_scan_chunk(a_, b, None, c)[1], (b,))


# ------------------------------------------------------------------------------------------------ bad input


def _ok():
    return torch.rand(2, 5, 3) * 2 - 1, torch.randn(2, 5, 3)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(a=torch.ones(2, 5, 3, dtype=torch.int64)), TypeError, "a must be a floating-point"),
        (dict(b=torch.ones(2, 5, 3, dtype=torch.int32)), TypeError, "b must be a floating-point"),
        (dict(b=[1.0, 2.0]), TypeError, "b must be a torch.Tensor"),
        (dict(a=torch.rand(5), b=torch.rand(5)), ValueError, r"a must have shape \[B, T, \.\.\.\]"),
        (dict(b=torch.randn(2, 5, 4)), ValueError, "b must have the shape of a"),
        (dict(b=torch.randn(2, 6, 3)), ValueError, "b must have the shape of a"),
        (dict(a=torch.full((2, 5, 3), 1.01)), ValueError, r"a must lie in \[-1.0, 1.0\]"),
        (dict(a=torch.full((2, 5, 3), -1.5)), ValueError, r"a must lie in \[-1.0, 1.0\]"),
        (dict(a=torch.full((2, 5, 3), float("nan"))), ValueError, "a must lie in"),
        (dict(initial_state=torch.zeros(2, 4)), ValueError, "initial_state must have shape"),
        (dict(initial_state=torch.zeros(3, 3)), ValueError, "initial_state must have shape"),
        (dict(initial_state=torch.zeros(2, 3, dtype=F64)), TypeError, "initial_state must have dtype"),
        (dict(initial_state=torch.zeros(2, 3, dtype=torch.int64)), TypeError, "initial_state must be a floating"),
        (dict(b=torch.randn(2, 5, 3, device="meta")), ValueError, "b is on meta"),
        (dict(initial_state=torch.zeros(2, 3, device="meta")), ValueError, "initial_state is on meta"),
        (dict(backend="triton"), ValueError, "backend 'triton' is not available"),
        (dict(backend="cuda"), ValueError, "backend must be one of"),
        (dict(chunk_size=0), ValueError, "chunk_size must be a positive int"),
        (dict(chunk_size=8, backend="naive"), ValueError, "chunk_size=8 applies to backend='torch' only"),
        (dict(triton_config=dict(block_t=8)), ValueError, "triton_config=.* applies to backend='triton' only"),
    ],
)
def test_bad_input(kwargs, exc, match):
    a, b = _ok()
    args = dict(a=a, b=b)
    args.update({k: v for k, v in kwargs.items() if k in ("a", "b")})
    rest = {k: v for k, v in kwargs.items() if k not in ("a", "b")}
    with pytest.raises(exc, match=match):
        diag_scan(args["a"], args["b"], **rest)


def test_one_nan_or_inf_is_caught():
    for bad in (float("nan"), float("inf"), -float("inf")):
        a, b = _ok()
        a[1, 3, 2] = bad
        with pytest.raises(ValueError, match="a must lie in"):
            diag_scan(a, b)


def test_default_chunk_size():
    cpu = torch.device("cpu")
    assert default_chunk_size(2048, 8 * 1024, cpu) == 2048  # many lanes: the plain loop moves the least data
    assert default_chunk_size(2048, 128, cpu) == 8  # 256 chunks of 8 steps, 32768 elements per op
    assert default_chunk_size(1000, 6, cpu) == 8
    assert default_chunk_size(2048, 8 * 1024, torch.device("meta")) == 64
    inputs, ref = case(1000, "uniform")
    out = run(inputs, F64, "torch", chunk_size=None)
    for name, x, r in zip(NAMES, out, ref, strict=True):
        assert rel(x, r) < 1e-12, name


def test_value_checks_can_be_switched_off():
    a, b = _ok()
    a[0, 0, 0] = 1.5
    with pytest.raises(ValueError, match="a must lie in"):
        diag_scan(a, b)
    with value_checks(False):
        h, _ = diag_scan(a, b)
    assert torch.isfinite(h).all()


@pytest.mark.parametrize(
    "a, b, state, exc, match",
    [
        (torch.rand(2, 3), torch.rand(2, 4), None, ValueError, "b must have the shape of a"),
        (torch.rand(2, 3), torch.rand(2, 3), torch.zeros(2, 4), ValueError, "state must have shape"),
        (torch.rand(2, 3), torch.rand(2, 3), torch.zeros(2, 3, dtype=F64), TypeError, "state must have dtype"),
        (torch.full((2, 3), 2.0), torch.rand(2, 3), None, ValueError, "a must lie in"),
        (torch.rand(2, 3), torch.ones(2, 3, dtype=torch.int64), None, TypeError, "b must be a floating"),
        (torch.tensor(0.5), torch.tensor(0.5), None, ValueError, r"a must have shape \[B, \.\.\.\]"),
    ],
)
def test_step_bad_input(a, b, state, exc, match):
    with pytest.raises(exc, match=match):
        diag_scan_step(a, b, state)
