"""The DeltaNet family's layer with its fused ops (short conv + SiLU, q/k L2 norm, output norm on Triton) gives the
outputs, final states and gradients of the torch references, in fp64: full sequences, packed documents, a
forward continued from a state and decoding after a fused forward.

The delta rule itself runs its torch path in both (``backend="torch"``): only ``fused_ops`` differs. CI runs the
kernels in Triton's interpreter (this file re-runs itself in a subprocess with ``TRITON_INTERPRET=1``); on a GPU
``STATETRACK_TEST_DEVICE=cuda`` (benchmarks/gpu_tests.sh) runs them compiled, also under bf16 autocast.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from statetrack.layers import get_mixer_class

from ..ops.interpreter import DEVICE, GPU, RUNNABLE, rerun_in_interpreter
from ..ops.kernel_checks import rel

pytest.importorskip("triton")

kernel_test = pytest.mark.skipif(not RUNNABLE, reason="covered by the interpreter subprocess (or set up a GPU)")
F64 = torch.float64

# (mixer, d_model, settings): head dims 12 (not a power of two), 8 and 16; gates, n_h = 2, no conv bias, fla's eps
CASES = {
    "deltanet": ("deltanet", 24, dict(n_heads=2)),
    "deltanet_gate_eps": ("deltanet", 16, dict(n_heads=2, use_output_gate=True, qk_norm_eps=1e-6, conv_bias=False)),
    "gated_deltanet": ("gated_deltanet", 24, dict(n_heads=2, conv_size=3)),
    "deltaproduct": ("deltaproduct", 16, dict(n_heads=1, num_householder=2, use_gate=True, expand_v=0.5)),
}
T = 70 if GPU else 19


@pytest.mark.skipif(RUNNABLE, reason="already inside the interpreter (or on a GPU)")
def test_layers_in_interpreter():
    rerun_in_interpreter(__file__)


def _pair(case):
    """(fused, reference): one layer's weights twice, fp64 on DEVICE."""
    name, d, kw = CASES[case]
    torch.manual_seed(0)
    ref = get_mixer_class(name)(d, backend="torch", **kw).to(DEVICE, F64)
    fused = get_mixer_class(name)(d, backend="torch", **kw).to(DEVICE, F64)
    fused.load_state_dict(ref.state_dict())
    assert ref.fused_ops == "torch"
    fused.fused_ops = "triton"
    return fused, ref, d


def _run(m, x, state=None, cu=None, seed=1):
    """Outputs, final state and the gradients of a random loss in x, the state and every parameter."""
    x = x.detach().clone().requires_grad_()
    state = None if state is None else {k: v.detach().clone().requires_grad_() for k, v in state.items()}
    y, final = m(x, state, output_state=True, cu_seqlens=cu)
    g = torch.Generator().manual_seed(seed)
    loss = (y * torch.randn(y.shape, generator=g, dtype=F64).to(y.device)).sum()
    for k in sorted(final):
        loss = loss + (final[k] * torch.randn(final[k].shape, generator=g, dtype=F64).to(y.device)).sum()
    leaves = [x, *(state[k] for k in sorted(state or {})), *m.parameters()]
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    return y, final, grads


def _close(a, b, tol=1e-10):
    ya, fa, ga = a
    yb, fb, gb = b
    errs = {"y": rel(ya, yb), **{f"state {k}": rel(fa[k], fb[k]) for k in fb}}
    for i, (u, v) in enumerate(zip(ga, gb, strict=True)):
        assert (u is None) == (v is None)
        if u is not None:
            errs[f"grad {i}"] = rel(u, v)
    bad = {n: e for n, e in errs.items() if not e < tol}
    assert not bad, (bad, errs)


@kernel_test
@pytest.mark.parametrize("case", list(CASES))
def test_fused_layer_equals_reference(case):
    fused, ref, d = _pair(case)
    x = torch.randn(2, T, d, dtype=F64, generator=torch.Generator().manual_seed(2)).to(DEVICE)
    _close(_run(fused, x), _run(ref, x))
    # continued from a state (conv caches and S enter, with gradients)
    _, s0, _ = _run(ref, x[:, :5])
    _close(_run(fused, x[:, 5:], s0), _run(ref, x[:, 5:], s0))


@kernel_test
@pytest.mark.parametrize("case", ["deltanet", "deltaproduct"])
def test_fused_layer_packed_documents(case):
    fused, ref, d = _pair(case)
    lens = [5, 1, T, 3]
    cu = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()], dtype=torch.int32, device=DEVICE)
    x = torch.randn(1, sum(lens), d, dtype=F64, generator=torch.Generator().manual_seed(3)).to(DEVICE)
    _close(_run(fused, x, cu=cu), _run(ref, x, cu=cu))


@kernel_test
@pytest.mark.parametrize("case", list(CASES))
def test_decoding_continues_a_fused_forward(case):
    """The fused forward's state (its conv caches from the kernel path) drives the fused ``step`` (the conv, L2 norm
    and output norm kernels on one token) to the reference's full-sequence outputs."""
    fused, ref, d = _pair(case)
    x = torch.randn(2, 9, d, dtype=F64, generator=torch.Generator().manual_seed(4)).to(DEVICE)
    with torch.no_grad():
        y_full, _ = ref(x, output_state=True)
        _, state = fused(x[:, :6], output_state=True)
        ys = []
        for t in range(6, 9):
            yt, state = fused.step(x[:, t], state)
            ys.append(yt)
    torch.testing.assert_close(torch.stack(ys, 1), y_full[:, 6:], rtol=1e-10, atol=1e-12)


@pytest.mark.skipif(not GPU, reason="bf16 autocast on a GPU (benchmarks/gpu_tests.sh)")
@pytest.mark.parametrize("case", ["deltanet_gate_eps", "gated_deltanet"])
def test_fused_layer_under_bf16_autocast(case):
    """Default settings on CUDA take the fused path; under bf16 autocast it stays as close to the fp64 layer as the
    torch path does."""
    name, d, kw = CASES[case]
    torch.manual_seed(0)
    m = get_mixer_class(name)(d, **kw).to(DEVICE)
    assert m.fused_ops == "auto"
    x = torch.randn(2, 256, d, device=DEVICE)
    ref = m.double()(x.double())[0].float()
    m.float()
    errs = {}
    for ops in ("triton", "torch"):
        m.fused_ops = ops
        with torch.autocast("cuda", dtype=torch.bfloat16):
            errs[ops] = rel(m(x)[0], ref)
    assert errs["triton"] < 1.5 * errs["torch"] + 1e-3, errs


@kernel_test
@pytest.mark.skipif(importlib.util.find_spec("liger_kernel") is None, reason="needs liger-kernel (the SwiGLU kernel)")
def test_block_fused_ops_equal_torch_ops():
    """The block around the mixer: its two RMSNorms (Triton) and SwiGLU (liger-kernel's kernel, fp32 math, so the
    comparison is in fp32) against the torch ops, outputs and gradients of every parameter."""
    from statetrack.models.backbone import Block

    name, d, kw = CASES["deltanet"]
    torch.manual_seed(0)
    blocks = {}
    for ops in ("torch", "triton"):
        torch.manual_seed(0)
        b = Block(d, get_mixer_class(name)(d, backend="torch", **kw), 40).to(DEVICE)
        b.fused_ops = ops
        blocks[ops] = b
    x = torch.randn(2, T, d, generator=torch.Generator().manual_seed(5)).to(DEVICE)
    res = {}
    for ops, b in blocks.items():
        y = b(x)[0]
        res[ops] = (y, *torch.autograd.grad(y.square().sum(), list(b.parameters())))
    errs = [rel(a, r) for a, r in zip(res["triton"], res["torch"], strict=True)]
    assert max(errs) < 1e-5, errs


@kernel_test
def test_block_norm_writes_the_autocast_dtype(monkeypatch):
    """Under bf16 autocast the block's (Triton) norm writes bf16 itself: the projections read (and keep for the
    backward) that one copy, where each cast the fp32 normed x itself and its gradient back; the output is bitwise
    what the fp32 norm + autocast's casts gave (on a GPU), the gradients equal to bf16 rounding."""
    from torch.profiler import profile

    from statetrack.models import backbone

    name, d, kw = CASES["deltanet"]
    torch.manual_seed(0)
    b = backbone.Block(d, get_mixer_class(name)(d, backend="torch", **kw), 0).to(DEVICE)
    b.fused_ops = b.mixer.fused_ops = "triton"
    x = torch.randn(2, T, d, generator=torch.Generator().manual_seed(5)).to(DEVICE)

    def run():
        with profile(record_shapes=True) as prof:
            with torch.autocast(DEVICE, dtype=torch.bfloat16):
                y = b(x)[0]
            grads = torch.autograd.grad(y.float().square().sum(), list(b.parameters()))
        casts = sum(e.name == "aten::_to_copy" and e.input_shapes[:1] == [[2, T, d]] for e in prof.events())
        return y, grads, casts

    y, grads, casts = run()
    with monkeypatch.context() as m:
        m.setattr(backbone, "_autocast_dtype", lambda x: None)  # the norm in fp32, autocast casting
        y_ref, grads_ref, casts_ref = run()
    # left: at most the residual add of the bf16 mixer output to the fp32 stream, each way (2 on the CPU; CUDA's
    # mixed-dtype add casts inside its kernel: 1); gone: 2 per projection reading x
    assert casts <= 2 and casts_ref >= casts + 4, (casts_ref, casts)
    assert y.dtype == y_ref.dtype
    # one rounding of the fp32 norm to bf16 either way: bitwise on the GPU (the interpreter truncates, torch rounds)
    assert torch.equal(y, y_ref) if GPU else rel(y, y_ref) < 1e-2
    errs = [rel(g, r) for g, r in zip(grads, grads_ref, strict=True)]
    assert max(errs) < 5e-2, errs  # bf16 activations through the backward: 1-2% apart in the interpreter
