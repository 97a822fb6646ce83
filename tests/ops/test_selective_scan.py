"""ops.selective_scan: the chunked path against the fp64 sequential oracle, steps, gradcheck, and bad input."""

from __future__ import annotations

import functools

import pytest
import torch

from statetrack.ops import diag_scan, selective_scan, selective_scan_step, value_checks

F64, F32 = torch.float64, torch.float32
TS = (1, 63, 64, 65, 1000)
MS = (-1.0, -0.5, 0.0)
NAMES = ("y", "final", "du", "ddelta", "dA", "dB", "dC", "dD", "dz", "d_initial_state")


def rel(x: torch.Tensor, ref: torch.Tensor) -> float:
    return ((x.double() - ref.double()).norm() / ref.double().norm().clamp_min(1e-300)).item()


def make_inputs(Bt, T, Dm, N, gen):
    """u, delta, A, B, C, D, z, h0 in fp64. delta spans five decades, so exp(delta A) covers (0, 1]: decays
    cluster at both ends of [min_eigenvalue, 1]; some delta are exactly 0 (a = 1 exactly)."""
    r = lambda *s: torch.randn(*s, generator=gen, dtype=F64)  # noqa: E731
    delta = torch.exp(torch.empty(Bt, T, Dm, dtype=F64).uniform_(-8, 3, generator=gen))
    delta.view(-1)[::17] = 0.0
    A = -torch.exp(r(Dm, N))
    return r(Bt, T, Dm), delta, A, r(Bt, T, N), r(Bt, T, N), r(Dm), r(Bt, T, Dm), r(Bt, Dm, N)


def chunks(backend: str, chunk_size: int) -> dict:
    """chunk_size for the torch backend (the only one it applies to; the others refuse it)."""
    return dict(chunk_size=chunk_size) if backend == "torch" else {}


def forward(ins, m, backend, chunk_size=64):
    u, delta, A, B, C, D, z, h0 = ins
    return selective_scan(
        u, delta, A, B, C, D=D, z=z, min_eigenvalue=m, initial_state=h0,
        output_final_state=True, backend=backend, **chunks(backend, chunk_size),
    )  # fmt: skip


def run(inputs, g, gf, m, dtype, backend, chunk_size=64):
    ins = [x.to(dtype).requires_grad_() for x in inputs]
    y, final = forward(ins, m, backend, chunk_size)
    grads = torch.autograd.grad((y * g.to(dtype)).sum() + (final * gf.to(dtype)).sum(), ins)
    return (y.detach(), final.detach(), *grads)


@functools.cache
def case(T: int, m: float):
    gen = torch.Generator().manual_seed(7 * T + int(10 * m))
    Bt, Dm, N = 2, 3, 4
    inputs = make_inputs(Bt, T, Dm, N, gen)
    g = torch.randn(Bt, T, Dm, generator=gen, dtype=F64)
    gf = torch.randn(Bt, Dm, N, generator=gen, dtype=F64)
    return inputs, g, gf, run(inputs, g, gf, m, F64, "naive")


@pytest.mark.parametrize("chunk_size", [8, 64])
@pytest.mark.parametrize("m", MS)
@pytest.mark.parametrize("T", TS)
def test_torch_matches_naive(T, m, chunk_size):
    inputs, g, gf, ref = case(T, m)
    for dtype, tol in ((F64, 1e-10), (F32, 1e-5)):
        out = run(inputs, g, gf, m, dtype, "torch", chunk_size)
        for name, x, r in zip(NAMES, out, ref, strict=True):
            assert x.dtype == dtype
            assert rel(x, r) < tol, (name, dtype, rel(x, r))


@pytest.mark.parametrize("chunk_size", [8, 4096])  # chunks of 8 steps; one chunk, the plain loop
@pytest.mark.parametrize("T", [65, 1000])
def test_time_blocks_give_the_same_result(T, chunk_size, monkeypatch):
    """Long inputs are scanned in blocks of whole chunks (bounded memory): values and gradients as one pass."""
    from statetrack.ops.selective_scan import chunk

    inputs, g, gf, ref = case(T, -1.0)
    whole = run(inputs, g, gf, -1.0, F64, "torch", chunk_size)
    monkeypatch.setattr(chunk, "BLOCK_ELEMENTS", 2 * 3 * 4 * 24)  # blocks of 3 chunks of 8 (or of 24 steps)
    blocked = run(inputs, g, gf, -1.0, F64, "torch", chunk_size)
    for name, x, w, r in zip(NAMES, blocked, whole, ref, strict=True):
        assert torch.allclose(x, w, rtol=1e-12, atol=1e-12), name
        assert rel(x, r) < 1e-10, name


def test_is_the_diag_scan_with_the_papers_decay():
    # min_eigenvalue = -1 is the paper's [-1, 1] Mamba: a = 2 exp(delta A) - 1, input term not doubled
    gen = torch.Generator().manual_seed(0)
    u, delta, A, B, C, D, z, h0 = make_inputs(2, 50, 3, 4, gen)
    y, f = selective_scan(u, delta, A, B, C, D=D, initial_state=h0, output_final_state=True, backend="naive")
    a = 2 * torch.exp(delta[..., None] * A) - 1
    h, f2 = diag_scan(a, (delta * u)[..., None] * B[:, :, None], initial_state=h0, output_final_state=True)
    assert rel(y, torch.einsum("btdn,btn->btd", h, C) + D * u) < 1e-13
    assert rel(f, f2) < 1e-13
    assert a.min() < -0.99 and a.max() == 1.0  # both ends of [-1, 1] are exercised


def test_optional_D_z_initial_state():
    inputs, *_ = case(65, -1.0)
    u, delta, A, B, C = inputs[:5]
    for D, z in ((None, None), (inputs[5], None), (None, inputs[6])):
        ys = [selective_scan(u, delta, A, B, C, D=D, z=z, backend=bk, **chunks(bk, 8))[0] for bk in ("naive", "torch")]
        assert rel(ys[1], ys[0]) < 1e-12
    y, f = selective_scan(u, delta, A, B, C)
    assert f is None and y.shape == u.shape


def test_low_precision_inputs():
    inputs, g, gf, ref = case(1000, -1.0)
    ins = [x.bfloat16() for x in inputs[:7]] + [inputs[7].float()]
    y, f = forward(ins, -1.0, "torch")
    assert y.dtype == torch.bfloat16 and f.dtype == F32
    assert rel(y, ref[0]) < 5e-2 and rel(f, ref[1]) < 5e-2


@pytest.mark.parametrize("m", MS)
@pytest.mark.parametrize("backend", ["naive", "torch"])
def test_steps_continue_the_full_forward(backend, m):
    inputs, *_ = case(1000, m)
    u, delta, A, B, C, D, z, h0 = inputs
    T, T0 = 90, 70
    y_full, f_full = selective_scan(
        u[:, :T], delta[:, :T], A, B[:, :T], C[:, :T], D=D, z=z[:, :T], min_eigenvalue=m, initial_state=h0,
        output_final_state=True, backend=backend, **chunks(backend, 8),
    )  # fmt: skip
    _, state = selective_scan(
        u[:, :T0], delta[:, :T0], A, B[:, :T0], C[:, :T0], D=D, z=z[:, :T0], min_eigenvalue=m, initial_state=h0,
        output_final_state=True, backend=backend, **chunks(backend, 8),
    )  # fmt: skip
    for t in range(T0, T):
        y_t, state = selective_scan_step(
            u[:, t], delta[:, t], A, B[:, t], C[:, t], state, D=D, z=z[:, t], min_eigenvalue=m
        )
        assert rel(y_t, y_full[:, t]) < 1e-13
    assert rel(state, f_full) < 1e-13
    y0, s0 = selective_scan_step(u[:, 0].float(), delta[:, 0].float(), A.float(), B[:, 0].float(), C[:, 0].float())
    assert y0.shape == (2, 3) and s0.shape == (2, 3, 4) and s0.dtype == F32


@pytest.mark.parametrize("m", MS)
def test_gradcheck(m):
    gen = torch.Generator().manual_seed(5)
    ins = [x.requires_grad_() for x in make_inputs(1, 9, 2, 2, gen)]
    with value_checks(False):  # finite differences may step delta = 0 below zero
        fn = lambda *x: forward(x, m, "torch", chunk_size=2)  # noqa: E731
        assert torch.autograd.gradcheck(fn, tuple(ins))


# ------------------------------------------------------------------------------------------------ bad input


def _ok():
    gen = torch.Generator().manual_seed(0)
    u, delta, A, B, C, D, z, h0 = (x.float() for x in make_inputs(2, 5, 3, 4, gen))
    return dict(u=u, delta=delta, A=A, B=B, C=C, D=D, z=z, initial_state=h0)


I64 = torch.int64


@pytest.mark.parametrize(
    "change, exc, match",
    [
        (dict(u=torch.randn(2, 5)), ValueError, r"u must have shape \[Bt, T, Dm\]"),
        (dict(u=torch.ones(2, 5, 3, dtype=I64)), TypeError, "u must be a floating-point"),
        (dict(delta=torch.rand(2, 5, 4)), ValueError, "delta must have shape"),
        (dict(delta=torch.rand(2, 6, 3)), ValueError, "delta must have shape"),
        (dict(A=-torch.rand(4, 4)), ValueError, r"A must have shape \[Dm, N\]"),
        (dict(A=-torch.rand(3)), ValueError, r"A must have shape \[Dm, N\]"),
        (dict(A=torch.ones(3, 4, dtype=I64)), TypeError, "A must be a floating-point"),
        (dict(B=torch.randn(2, 5, 5)), ValueError, "B must have shape"),
        (dict(B=torch.randn(1, 5, 4)), ValueError, "B must have shape"),
        (dict(C=torch.randn(2, 5, 3)), ValueError, "C must have shape"),
        (dict(C=torch.ones(2, 5, 4, dtype=I64)), TypeError, "C must be a floating-point"),
        (dict(D=torch.randn(4)), ValueError, r"D must have shape \[Dm\]"),
        (dict(z=torch.randn(2, 5, 4)), ValueError, "z must have shape"),
        (dict(z=torch.ones(2, 5, 3, dtype=I64)), TypeError, "z must be a floating-point"),
        (dict(initial_state=torch.zeros(2, 3, 5)), ValueError, "initial_state must have shape"),
        (dict(initial_state=torch.zeros(2, 3, 4, dtype=F64)), TypeError, "initial_state must have dtype"),
        (dict(A=torch.rand(3, 4)), ValueError, r"A must lie in \[-inf, 0.0\]"),
        (dict(delta=-torch.rand(2, 5, 3)), ValueError, r"delta must lie in \[0.0, inf\]"),
        (dict(delta=torch.full((2, 5, 3), float("inf"))), ValueError, "delta must lie in"),
        (dict(min_eigenvalue=-1.5), ValueError, r"min_eigenvalue must lie in \[-1, 0\]"),
        (dict(min_eigenvalue=0.5), ValueError, r"min_eigenvalue must lie in \[-1, 0\]"),
        (dict(min_eigenvalue="-1"), TypeError, "min_eigenvalue must be a real number"),
        (dict(min_eigenvalue=True), TypeError, "min_eigenvalue must be a real number"),
        (dict(C=torch.randn(2, 5, 4, device="meta")), ValueError, "C is on meta"),
        (dict(D=torch.randn(3, device="meta")), ValueError, "D is on meta"),
        (dict(backend="triton"), ValueError, "backend 'triton' is not available"),
        (dict(chunk_size=-1), ValueError, "chunk_size must be a positive int"),
        (dict(chunk_size=8, backend="naive"), ValueError, "chunk_size=8 applies to backend='torch' only"),
        (dict(algorithm="steps"), ValueError, "algorithm='steps' applies to backend='triton' only"),
        (dict(triton_config=dict(block_t=4)), ValueError, "triton_config=.* applies to backend='triton' only"),
        (dict(triton_config=dict(tile=4)), ValueError, r"triton_config has unknown keys \['tile'\]"),
        (dict(min_eigenvalue=float("nan")), ValueError, r"min_eigenvalue must lie in \[-1, 0\]"),
    ],
)
def test_bad_input(change, exc, match):
    args = _ok()
    args.update(change)
    pos = [args.pop(k) for k in ("u", "delta", "A", "B", "C")]
    with pytest.raises(exc, match=match):
        selective_scan(*pos, **args)


def test_value_checks_can_be_switched_off():
    args = _ok()
    args["A"] = args["A"].abs() * 1e-3  # positive A: a slightly above 1, unstable but computable
    pos = [args.pop(k) for k in ("u", "delta", "A", "B", "C")]
    with pytest.raises(ValueError, match="A must lie in"):
        selective_scan(*pos, **args)
    with value_checks(False):
        y, _ = selective_scan(*pos, **args)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize(
    "change, exc, match",
    [
        (dict(u=torch.randn(2, 5, 3)), ValueError, r"u must have shape \[Bt, Dm\]"),
        (dict(B=torch.randn(2, 5)), ValueError, r"B must have shape \[Bt, N\]"),
        (dict(state=torch.zeros(2, 3)), ValueError, "state must have shape"),
        (dict(state=torch.zeros(2, 3, 4, dtype=F64)), TypeError, "state must have dtype"),
        (dict(min_eigenvalue=-2.0), ValueError, "min_eigenvalue must lie in"),
    ],
)
def test_step_bad_input(change, exc, match):
    args = _ok()
    args = dict(
        u=args["u"][:, 0], delta=args["delta"][:, 0], A=args["A"], B=args["B"][:, 0], C=args["C"][:, 0],
        state=args["initial_state"],
    )  # fmt: skip
    args.update(change)
    pos = [args.pop(k) for k in ("u", "delta", "A", "B", "C", "state")]
    with pytest.raises(exc, match=match):
        selective_scan_step(*pos, **args)
