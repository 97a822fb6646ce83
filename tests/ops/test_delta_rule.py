"""The chunked delta rule against the sequential reference: values and gradients, fp64 and fp32."""

from __future__ import annotations

import pytest
import torch

from statetrack.ops import delta_rule, delta_rule_step

from .delta_rule_inputs import make_inputs, rel

GRAD_NAMES = ("q", "k", "v", "beta", "log_decay", "initial_state")


def run_with_grads(inputs, seed=1, **kw):
    """Forward + backward of a random linear functional of (o, final state); returns (o, final, {name: grad})."""
    o, s = delta_rule(**inputs, output_final_state=True, **kw)
    g = torch.Generator().manual_seed(seed)
    wo = torch.randn(o.shape, generator=g, dtype=torch.float64).to(o.dtype)
    ws = torch.randn(s.shape, generator=g, dtype=torch.float64).to(s.dtype)
    params = [inputs[n] for n in GRAD_NAMES if inputs.get(n) is not None]
    grads = torch.autograd.grad((o * wo).sum() + (s * ws).sum(), params)
    names = [n for n in GRAD_NAMES if inputs.get(n) is not None]
    return o.detach(), s.detach(), dict(zip(names, grads, strict=True))


def compare(inputs64, inputs_test, tol, **kw):
    ref_o, ref_s, ref_g = run_with_grads(inputs64, backend="naive")
    o, s, grads = run_with_grads(inputs_test, backend="torch", **kw)
    assert rel(o, ref_o) < tol, ("o", rel(o, ref_o))
    assert rel(s, ref_s) < tol, ("final_state", rel(s, ref_s))
    for name, g in grads.items():
        assert rel(g, ref_g[name]) < tol, (name, rel(g, ref_g[name]))


@pytest.mark.parametrize("T", [1, 63, 64, 65])
@pytest.mark.parametrize("n_h", [1, 2, 3])
@pytest.mark.parametrize("beta_range", [(0.0, 2.0), (1.9, 2.0)])
@pytest.mark.parametrize("keys", ["random", "rank1"])
@pytest.mark.parametrize("gate", [False, True])
def test_chunk_matches_naive_fp64(T, n_h, beta_range, keys, gate):
    x = make_inputs(T=T, n_h=n_h, beta_range=beta_range, keys=keys, gate=gate, requires_grad=True)
    compare(x, x, 1e-10, chunk_size=16)


@pytest.mark.parametrize(
    "n_h,beta_range,keys,gate",
    [
        (1, (0.0, 2.0), "random", False),
        (1, (1.9, 2.0), "rank1", True),
        (2, (1.9, 2.0), "random", True),
        (3, (0.0, 2.0), "rank1", False),
    ],
)
def test_chunk_matches_naive_fp64_long(n_h, beta_range, keys, gate):
    x = make_inputs(T=1000, n_h=n_h, beta_range=beta_range, keys=keys, gate=gate, requires_grad=True)
    compare(x, x, 1e-10)


@pytest.mark.parametrize("T", [1, 65, 1000])
@pytest.mark.parametrize("beta_range", [(0.0, 2.0), (1.9, 2.0)])
@pytest.mark.parametrize("keys", ["random", "rank1"])
def test_chunk_fp32_matches_naive_fp64(T, beta_range, keys):
    kw = dict(T=T, n_h=2, beta_range=beta_range, keys=keys, gate=True, K=16, V=16)
    x64 = make_inputs(**kw, requires_grad=True)
    x32 = make_inputs(**kw, dtype=torch.float32, requires_grad=True)
    compare(x64, x32, 1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_inputs_keep_fp32_state(dtype):
    x = make_inputs(T=130, dtype=dtype, beta_range=(1.9, 2.0), gate=True)
    o, s = delta_rule(**x, output_final_state=True, backend="torch")
    assert o.dtype == dtype and s.dtype == torch.float32
    ref_o, ref_s = delta_rule(
        **{k: v if v is None else v.double() for k, v in x.items()}, output_final_state=True, backend="naive"
    )
    assert rel(s, ref_s) < 1e-5  # the state sees only the (exactly representable) rounded inputs
    assert rel(o, ref_o) < 1e-2  # o is rounded to the input dtype on the way out


def test_gradcheck_chunk():
    x = make_inputs(B=1, T=7, H=1, K=3, V=2, n_h=2, gate=True, requires_grad=True)
    names = [n for n in GRAD_NAMES if x[n] is not None]

    def f(*args):
        o, s = delta_rule(**dict(zip(names, args, strict=True)), output_final_state=True, backend="torch", chunk_size=3)
        return o, s

    assert torch.autograd.gradcheck(f, [x[n] for n in names])


@pytest.mark.parametrize("n_h,gate", [(1, False), (2, True)])
def test_prefill_then_step_equals_full_forward(n_h, gate):
    x = make_inputs(T=80, n_h=n_h, gate=gate)
    full, full_s = delta_rule(**x, output_final_state=True, backend="naive")
    split = 70
    head = {k: (v if v is None or k == "initial_state" else v[:, :split]) for k, v in x.items()}
    o, state = delta_rule(**head, output_final_state=True, backend="torch", chunk_size=16)
    outs = [o]
    for t in range(split, 80):
        o_t, state = delta_rule_step(
            x["q"][:, t],
            x["k"][:, t],
            x["v"][:, t],
            x["beta"][:, t],
            state,
            log_decay=None if x["log_decay"] is None else x["log_decay"][:, t],
        )
        outs.append(o_t[:, None])
    assert rel(torch.cat(outs, 1), full) < 1e-12
    assert rel(state, full_s) < 1e-12


@pytest.mark.parametrize("backend", ["naive", "torch"])
def test_varlen_equals_per_sequence(backend):
    lens = [5, 0, 70, 1, 33]
    cu = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()])
    seqs = [make_inputs(B=1, T=t, n_h=2, gate=True, seed=i, requires_grad=True) for i, t in enumerate(lens)]
    packed = {
        n: torch.cat([s[n] for s in seqs], 0 if n == "initial_state" else 1).detach().requires_grad_()
        for n in GRAD_NAMES
    }
    chunk = {"chunk_size": 16} if backend == "torch" else {}  # naive has no chunks
    o, s = delta_rule(**packed, cu_seqlens=cu, output_final_state=True, backend=backend, **chunk)
    assert o.shape[1] == sum(lens) and s.shape[0] == len(lens)
    (o.sum() + s.square().sum()).backward()
    for i, x in enumerate(seqs):
        oi, si = delta_rule(**x, output_final_state=True, backend="naive")
        (oi.sum() + si.square().sum()).backward()
        a, b = cu[i].item(), cu[i + 1].item()
        assert torch.allclose(o[:, a:b], oi, rtol=1e-10, atol=1e-12)
        assert torch.allclose(s[i], si[0], rtol=1e-10, atol=1e-12)
        for n in GRAD_NAMES:
            got = packed[n].grad[i : i + 1] if n == "initial_state" else packed[n].grad[:, a:b]
            want = torch.zeros_like(got) if x[n].grad is None else x[n].grad  # an empty sequence gets no grad
            assert torch.allclose(got, want, rtol=1e-10, atol=1e-12), n


def test_chunk_size_does_not_change_the_result():
    x = make_inputs(T=100, n_h=2, gate=True)
    outs = [delta_rule(**x, backend="torch", chunk_size=c)[0] for c in (1, 7, 64, 128)]
    for o in outs[1:]:
        assert rel(o, outs[0]) < 1e-12


def test_reflections_flip_state_exactly():
    # beta = 2 with a unit key is a reflection: applying the same one twice is the identity (eigenvalue -1).
    x = make_inputs(B=1, T=2, H=1, K=4, V=3, h0=True)
    x["k"] = x["k"][:, :1].expand(1, 2, 1, 4).clone()
    x["v"] = torch.zeros_like(x["v"])
    x["beta"] = torch.full_like(x["beta"], 2.0)
    for backend in ("naive", "torch"):
        _, s = delta_rule(**x, output_final_state=True, backend=backend)
        assert torch.allclose(s, x["initial_state"], atol=1e-14)


def test_default_scale_and_output_dtype():
    x = make_inputs(T=10, h0=False)
    o, s = delta_rule(**x)
    assert s is None and o.dtype == torch.float64
    o2, _ = delta_rule(**x, scale=1.0)
    assert rel(o, o2 * x["q"].shape[-1] ** -0.5) < 1e-14


@pytest.mark.parametrize("backend", ["naive", "torch"])
def test_under_autocast_keeps_fp32_and_matches(backend):
    # autocast must not push the state algebra into bf16, and the backward must run
    x = make_inputs(T=70, n_h=2, gate=True, dtype=torch.float32, requires_grad=True)
    ref, _, ref_g = run_with_grads(x, backend=backend)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        o, s = delta_rule(**x, output_final_state=True, backend=backend)
        loss = (o.to(torch.bfloat16) * 1.0).float().sum() + s.sum()
    assert o.dtype == torch.float32 and rel(o.detach(), ref) < 1e-6
    grads = torch.autograd.grad(loss, [x["q"], x["k"]])
    assert all(torch.isfinite(g).all() for g in grads)


def test_compiled_callers_run_the_chunk_path_eagerly():
    # a torch.compile'd caller (dynamic shapes, two lengths) gets the eager values; the op itself runs eagerly
    x = make_inputs(T=9, n_h=2, gate=True, dtype=torch.float32)

    def f(q, k, v, beta, log_decay, initial_state):
        o, s = delta_rule(q.sin(), k, v, beta, log_decay=log_decay, initial_state=initial_state,
                          output_final_state=True, backend="torch")  # fmt: skip
        return o.cos(), s

    compiled = torch.compile(f, dynamic=True)
    for T in (9, 5):
        xt = {n: (t if n == "initial_state" else t[:, :T]) for n, t in x.items()}
        got, want = compiled(**xt), f(**xt)
        assert rel(got[0], want[0]) < 1e-6 and rel(got[1], want[1]) < 1e-6
