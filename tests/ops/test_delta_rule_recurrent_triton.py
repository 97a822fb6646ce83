"""The fused recurrent Triton delta rule (forward and backward) against the naive fp64 reference.

Runs like test_delta_rule_triton.py: in CI, ``test_recurrent_kernels_in_interpreter`` re-runs this file in a fresh
subprocess with ``TRITON_INTERPRET=1`` (tiny shapes); with ``STATETRACK_TEST_DEVICE=cuda`` the same tests run
compiled on a GPU at larger shapes (benchmarks/gpu_tests.sh).
"""

from __future__ import annotations

import pytest
import torch

from statetrack.ops import delta_rule
from statetrack.ops.delta_rule.inputs import normalize
from statetrack.ops.delta_rule.naive import delta_rule_naive
from statetrack.ops.delta_rule.triton import delta_rule_recurrent_triton, prefers_recurrent
from statetrack.ops.delta_rule.triton.recurrent import gate_grad

from .delta_rule_inputs import make_inputs, rel
from .interpreter import DEVICE, GPU, RUNNABLE, rerun_in_interpreter

pytest.importorskip("triton")

kernel_test = pytest.mark.skipif(not RUNNABLE, reason="covered by the interpreter subprocess (or set up a GPU)")
T_SHORT, T_LONG, D = (9, 20, 16) if not GPU else (40, 300, 64)
TOL = 1e-5 if not GPU else 1e-4


@pytest.mark.skipif(RUNNABLE, reason="already inside the interpreter (or on a GPU)")
def test_recurrent_kernels_in_interpreter():
    rerun_in_interpreter(__file__)


def _leaves(x: dict, dtype, device, cu=None) -> list:
    """make_inputs dict -> normalised leaves (q, k, v, beta, log_decay, initial_state) in ``dtype``."""
    q, k, v, b, g, h0 = (x[n] for n in ("q", "k", "v", "beta", "log_decay", "initial_state"))
    k, v, b, _ = normalize(q, k, v, b, g, None, None)
    out = [None if t is None else t.detach().to(device, dtype).requires_grad_() for t in (q, k, v, b, g)]
    sdt = torch.float64 if dtype == torch.float64 else torch.float32
    return out + [None if h0 is None else h0.detach().to(device, sdt).requires_grad_()]


def _loss_grads(o, s, leaves):
    """Gradients of a random linear function of (o, final state) wrt the live leaves."""
    gen = torch.Generator().manual_seed(1)
    wo = torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o.device)
    ws = torch.randn(s.shape, generator=gen, dtype=torch.float64).to(s.device)
    loss = (o.double() * wo).sum() + (s.double() * ws).sum()
    return torch.autograd.grad(loss, [t for t in leaves if t is not None])


def _errors(x: dict, scale=0.3, **kw) -> dict[str, float]:
    ref = _leaves(x, torch.float64, "cpu")
    o_r, s_r = delta_rule_naive(*ref[:5], scale, ref[5], torch.float64)
    ours = _leaves(x, torch.float32, DEVICE)
    o, s = delta_rule_recurrent_triton(*ours[:5], scale, ours[5], **kw)
    assert o.dtype == torch.float32 and s.dtype == torch.float32
    errs = {"o": rel(o.cpu(), o_r), "final_state": rel(s.cpu(), s_r)}
    names = [n for n, t in zip(("q", "k", "v", "beta", "log_decay", "h0"), ours, strict=True) if t is not None]
    for n, a, b in zip(names, _loss_grads(o, s, ours), _loss_grads(o_r, s_r, ref), strict=True):
        errs["d" + n] = rel(a.cpu(), b)
    return errs


@kernel_test
@pytest.mark.parametrize(
    "T,n_h,gate,h0,beta,keys",
    [
        (1, 1, False, True, (0.0, 2.0), "random"),
        (T_SHORT, 1, True, True, (0.0, 2.0), "random"),
        (T_LONG, 1, False, False, (1.9, 2.0), "rank1"),
        (T_LONG, 1, True, True, (1.9, 2.0), "random"),
        (T_SHORT, 2, True, False, (0.0, 2.0), "rank1"),
        (T_SHORT, 3, False, True, (1.9, 2.0), "random"),
    ],
)
def test_recurrent_values_and_grads_match_naive(T, n_h, gate, h0, beta, keys):
    x = make_inputs(B=2, T=T, H=2, K=D, V=D, n_h=n_h, beta_range=beta, keys=keys, gate=gate, h0=h0)
    errs = _errors(x)
    assert all(e < TOL for e in errs.values()), errs


@kernel_test
def test_recurrent_ragged_dims_and_v_blocks():
    """K, V not powers of two; few programs, so V is split into blocks whose dq/dk/dbeta partials add up."""
    x = make_inputs(B=1, T=T_SHORT, H=1, K=12, V=40, n_h=2, gate=True)
    errs = _errors(x)
    assert all(e < TOL for e in errs.values()), errs


@kernel_test
def test_recurrent_block_settings_from_triton_config():
    """Other tokens per block, V-blocks and warps (what a benchmark times through triton_config) compute the same."""
    x = make_inputs(B=2, T=T_SHORT, H=2, K=D, V=D, n_h=2, gate=True)
    errs = _errors(x, config={"BT": 4, "BV": 16, "warps": 2})
    assert all(e < TOL for e in errs.values()), errs


@kernel_test
def test_recurrent_beta_exactly_zero_and_two():
    """The end points: beta = 0 (no write) and beta = 2 (reflection, eigenvalue -1 along a unit key)."""
    x = make_inputs(B=2, T=T_SHORT, H=2, K=D, V=D, gate=True)
    x["beta"] = torch.where(torch.rand(x["beta"].shape, generator=torch.Generator().manual_seed(3)) < 0.5, 0.0, 2.0)
    errs = _errors(x.copy())
    assert all(e < TOL for e in errs.values()), errs


@kernel_test
def test_recurrent_varlen_native_matches_per_sequence():
    """Packed sequences (one empty) with initial states, through delta_rule(backend="triton")."""
    lens = [5, 0, 7, T_SHORT]
    cu = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()])
    x = make_inputs(B=1, T=int(cu[-1]), H=2, K=D, V=D, n_h=2, gate=True, h0=False)
    x["initial_state"] = torch.randn(len(lens), 2, D, D, dtype=torch.float64)
    ref = {n: t.clone().requires_grad_() for n, t in x.items()}
    ours = {n: t.detach().to(DEVICE, torch.float32).requires_grad_() for n, t in x.items()}
    outs = []
    for args, dev in ((ref, "cpu"), (ours, DEVICE)):
        o, s = delta_rule(**args, cu_seqlens=cu.to(dev), output_final_state=True, backend="naive" if dev == "cpu"
                          and args is ref else "triton")  # fmt: skip
        w = torch.linspace(-1, 1, o.numel(), dtype=torch.float64).reshape(o.shape).to(o.device)
        loss = (o.double() * w).sum() + s.double().square().sum()
        outs.append((o, s, torch.autograd.grad(loss, list(args.values()))))
    (o_r, s_r, g_r), (o, s, g) = outs
    assert rel(o.cpu(), o_r) < TOL and rel(s.cpu(), s_r) < TOL
    for n, a, b in zip(x, g, g_r, strict=True):
        assert rel(a.cpu(), b) < TOL, n


@kernel_test
def test_recurrent_prefill_then_token_steps_equals_full():
    T = T_SHORT
    x = make_inputs(B=2, T=T, H=2, K=D, V=D, n_h=2, beta_range=(1.9, 2.0), gate=True)
    ref = _leaves(x, torch.float64, "cpu")
    o_r, s_r = delta_rule_naive(*ref[:5], 0.3, ref[5], torch.float64)
    ours = [None if t is None else t.detach() for t in _leaves(x, torch.float32, DEVICE)]
    cut = T // 2
    o1, state = delta_rule_recurrent_triton(*(a[:, :cut] for a in ours[:5]), 0.3, ours[5])
    outs = [o1]
    for t in range(cut, T):
        o_t, state = delta_rule_recurrent_triton(*(a[:, t : t + 1] for a in ours[:5]), 0.3, state)
        outs.append(o_t)
    assert rel(torch.cat(outs, 1).cpu(), o_r) < TOL and rel(state.cpu(), s_r) < TOL


@kernel_test
@pytest.mark.parametrize("use", ["o", "final_state"])
def test_recurrent_grads_from_one_output(use):
    """A loss on the outputs alone (the final state's gradient is then None, not zeros) or on the final state."""
    x = make_inputs(B=2, T=T_SHORT, H=2, K=D, V=D, n_h=2, gate=True)
    grads = []
    for leaves, fn in ((_leaves(x, torch.float64, "cpu"), "naive"), (_leaves(x, torch.float32, DEVICE), "triton")):
        if fn == "naive":
            o, s = delta_rule_naive(*leaves[:5], 0.3, leaves[5], torch.float64)
        else:
            o, s = delta_rule_recurrent_triton(*leaves[:5], 0.3, leaves[5])
        out = o if use == "o" else s
        w = torch.linspace(-1, 1, out.numel(), dtype=torch.float64).reshape(out.shape).to(out.device)
        g = torch.autograd.grad((out.double() * w).sum(), leaves, allow_unused=True)  # q: unused by the state
        grads.append([torch.zeros_like(t) if d is None else d for t, d in zip(leaves, g, strict=True)])
    for a, b in zip(grads[1], grads[0], strict=True):
        assert (a.cpu().double() - b).norm() <= TOL * max(b.norm(), 1.0)


@kernel_test
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_recurrent_low_precision_inputs(dtype):
    """bf16/fp16 inputs against the fp64 loop fed the same rounded inputs: the state stays fp32-exact, o differs by
    its final rounding, gradients come back finite in the inputs' dtype and close to the reference's."""
    x = make_inputs(B=2, T=T_SHORT, H=2, K=D, V=D, n_h=2, beta_range=(1.9, 2.0), gate=True)
    x = {n: t if n == "initial_state" else t.to(dtype).double() for n, t in x.items()}
    ref = _leaves(x, torch.float64, "cpu")
    o_r, s_r = delta_rule_naive(*ref[:5], 0.3, ref[5], torch.float64)
    ours = _leaves(x, dtype, DEVICE)
    o, s = delta_rule_recurrent_triton(*ours[:5], 0.3, ours[5])
    assert o.dtype == dtype and s.dtype == torch.float32
    assert rel(s.cpu(), s_r) < TOL and rel(o.cpu(), o_r) < 1e-2
    for t, g, r in zip(ours, _loss_grads(o, s, ours), _loss_grads(o_r, s_r, ref), strict=True):
        assert g.dtype == t.dtype and torch.isfinite(g.float()).all()
        assert rel(g.cpu(), r) < 2e-2


@kernel_test
def test_recurrent_keeps_nothing_for_inference():
    """Under no_grad no residual buffer is written or kept: the result carries no graph."""
    x = _leaves(make_inputs(B=1, T=4, H=1, K=D, V=D), torch.float32, DEVICE)
    with torch.no_grad():
        o, s = delta_rule_recurrent_triton(*x[:5], 0.3, x[5])
    assert o.grad_fn is None and s.grad_fn is None


def test_gate_grad_identity_matches_autograd():
    """d log_decay from the scaling identity (no kernel involved) equals autograd of the naive loop, padded and
    packed."""
    x = make_inputs(B=2, T=11, H=2, K=5, V=4, n_h=2, gate=True, requires_grad=True)
    k, v, b, _ = normalize(x["q"], x["k"], x["v"], x["beta"], x["log_decay"], None, None)
    o, s = delta_rule_naive(x["q"], k, v, b, x["log_decay"], 0.3, x["initial_state"], torch.float64)
    loss = (o * torch.randn_like(o)).sum() + (s * torch.randn_like(s)).sum()
    dq, dv, dg, dh0 = torch.autograd.grad(loss, [x["q"], x["v"], x["log_decay"], x["initial_state"]])
    dv = dv[:, :, None] if dv.dim() == 4 else dv
    w = (v * dv).sum((2, 4)) - (x["q"] * dq).sum(-1)
    h0dh0 = (x["initial_state"] * dh0).sum((2, 3))
    assert rel(gate_grad(w, h0dh0, None), dg) < 1e-12
    # the same two sequences packed into one row
    cu = torch.tensor([0, 11, 22])
    packed = gate_grad(w.reshape(1, 22, 2), h0dh0, cu)
    assert rel(packed, dg.reshape(1, 22, 2)) < 1e-12


def test_short_sequences_go_token_by_token():
    assert prefers_recurrent(40, 32) and prefers_recurrent(128 * 2, 64)
    assert not prefers_recurrent(4096, 64) and not prefers_recurrent(40, 512)
    # long sequences go token by token only when many (sequence, head) programs fill the GPU
    assert prefers_recurrent(512, 32, programs=2048) and not prefers_recurrent(512, 32, programs=64)
    assert not prefers_recurrent(4096, 32, programs=2048)


@kernel_test
@pytest.mark.parametrize("n_h,gated", [(1, False), (1, True), (2, False)])
def test_one_token_step_on_the_kernel_equals_the_torch_step(n_h, gated):
    """delta_rule_step(backend="triton") (the recurrent kernel at T = 1, what graphed decoding runs on a GPU) continues
    a state as the torch step does, token after token, bf16 and fp32 inputs."""
    from statetrack.ops import delta_rule_step

    B, H, K, V = 3, 2, D, D // 2 + 3
    gen = torch.Generator().manual_seed(n_h)
    rnd = lambda *s: torch.randn(*s, generator=gen).to(DEVICE)  # noqa: E731
    for dtype in (torch.float32, torch.bfloat16):
        s_t = s_k = rnd(B, H, K, V)
        for _ in range(5):
            q = rnd(B, H, K).to(dtype)
            k = torch.nn.functional.normalize(rnd(B, n_h, H, K), dim=-1).to(dtype)
            v, beta = rnd(B, n_h, H, V).to(dtype), (2 * torch.rand(B, n_h, H, generator=gen)).to(DEVICE, dtype)
            g = -torch.rand(B, H, generator=gen).to(DEVICE) if gated else None
            o_t, s_t = delta_rule_step(q, k, v, beta, s_t, log_decay=g, backend="torch")
            o_k, s_k = delta_rule_step(q, k, v, beta, s_k, log_decay=g, backend="triton")
            assert o_k.dtype == dtype and s_k.dtype == torch.float32
            assert rel(o_k.float().cpu(), o_t.float().cpu()) < (1e-5 if dtype == torch.float32 else 1e-2)
            assert rel(s_k.cpu(), s_t.cpu()) < 1e-5


@kernel_test
@pytest.mark.parametrize("gated", [False, True])
def test_one_token_step_writes_its_state_in_place_when_asked(gated):
    """Inside update_states_in_place (and without gradients) the kernel step returns the state it was given,
    overwritten with exactly what the out-of-place step returns; outside, or with gradients on, it leaves it alone."""
    from statetrack.ops import delta_rule_step, update_states_in_place

    B, H, K, V = 2, 3, D, D + 5
    gen = torch.Generator().manual_seed(7)
    rnd = lambda *s: torch.randn(*s, generator=gen).to(DEVICE)  # noqa: E731
    q, k, v = rnd(B, H, K), torch.nn.functional.normalize(rnd(B, H, K), dim=-1), rnd(B, H, V)
    beta, g = (2 * torch.rand(B, H, generator=gen)).to(DEVICE), (-torch.rand(B, H, generator=gen)).to(DEVICE)
    g = g if gated else None
    s0 = rnd(B, H, K, V)
    with torch.no_grad():
        o_ref, s_ref = delta_rule_step(q, k, v, beta, s0.clone(), log_decay=g, backend="triton")
        s = s0.clone()
        with update_states_in_place():
            o, s_new = delta_rule_step(q, k, v, beta, s, log_decay=g, backend="triton")
    assert s_new is s and torch.equal(s, s_ref) and torch.equal(o, o_ref)
    s = s0.clone()
    with update_states_in_place():
        _, s_new = delta_rule_step(q, k, v, beta.requires_grad_(), s, log_decay=g, backend="triton")
    assert s_new is not s and torch.equal(s, s0)
