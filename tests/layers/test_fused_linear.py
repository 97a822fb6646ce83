"""One matmul for several projections: the same values as the projections one by one, gradients through it, and a
cached weight (without gradients) that follows every change of the weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from statetrack.layers import get_mixer_class
from statetrack.layers.fused_linear import _CACHE, fused_project, project


def _linears(sizes=(5, 3, 1), d=7, dtype=torch.float64):
    torch.manual_seed(0)
    owner = nn.Module()
    owner.lins = nn.ModuleList(nn.Linear(d, n, bias=False, dtype=dtype) for n in sizes)
    return owner


def test_one_matmul_equals_the_projections_and_follows_weight_changes():
    owner = _linears()
    x = torch.randn(2, 4, 7, dtype=torch.float64)
    with torch.no_grad():
        got = project(owner, x, owner.lins)
        assert [g.shape[-1] for g in got] == [5, 3, 1]
        for g, lin in zip(got, owner.lins, strict=True):
            torch.testing.assert_close(g, lin(x), rtol=1e-14, atol=1e-14)
        (cached,) = [w for _, w in _CACHE[owner].values()]
        owner.lins[1].weight.mul_(-2.0)  # in place: the version counter moves
        again = project(owner, x, owner.lins)
        assert [w for _, w in _CACHE[owner].values()][0] is not cached
        torch.testing.assert_close(again[1], owner.lins[1](x), rtol=1e-14, atol=1e-14)
        owner.float()  # new storage and dtype
        torch.testing.assert_close(project(owner, x.float(), owner.lins)[0], owner.lins[0](x.float()))
        assert [w.dtype for _, w in _CACHE[owner].values()] == [torch.float32]
        # another set of the same owner's linears has its own cached weight; cache=False keeps none
        torch.testing.assert_close(fused_project(owner, x.float(), owner.lins[1:], cache=False)[..., :3],
                                   owner.lins[1](x.float()))  # fmt: skip
        assert len(_CACHE[owner]) == 1
        two = fused_project(owner, x.float(), owner.lins[:2])
        assert len(_CACHE[owner]) == 2 and two.shape[-1] == 8
        torch.testing.assert_close(two[..., 5:], owner.lins[1](x.float()))


def test_fused_with_gradients_concatenates_on_each_call():
    owner = _linears()
    x = torch.randn(3, 7, dtype=torch.float64, requires_grad=True)
    y = fused_project(owner, x, owner.lins)
    assert owner not in _CACHE
    ref = torch.cat([lin(x) for lin in owner.lins], -1)
    torch.testing.assert_close(y, ref, rtol=1e-14, atol=1e-14)
    g = torch.randn_like(y)
    got = torch.autograd.grad(y, [x, *(lin.weight for lin in owner.lins)], g)
    want = torch.autograd.grad(ref, [x, *(lin.weight for lin in owner.lins)], g)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-14, atol=1e-14)


def test_with_gradients_the_projections_run_one_by_one():
    owner = _linears()
    x = torch.randn(3, 7, dtype=torch.float64)
    out = project(owner, x, owner.lins)
    assert owner not in _CACHE  # no weight copy kept while training
    sum(o.sum() for o in out).backward()
    assert all(lin.weight.grad is not None for lin in owner.lins)


def test_bias_is_refused():
    owner = nn.Module()
    owner.lins = nn.ModuleList([nn.Linear(4, 2), nn.Linear(4, 3, bias=False)])
    with pytest.raises(ValueError, match="bias-free"):
        project(owner, torch.randn(1, 4), owner.lins)


@pytest.mark.parametrize("mixer, settings", [
    ("deltanet", {"n_heads": 2}), ("gated_deltanet", {"n_heads": 2, "use_output_gate": True}),
    ("deltaproduct", {"n_heads": 2, "num_householder": 2, "use_gate": True}),
])  # fmt: skip
def test_decoding_step_without_gradients_equals_the_step_with(mixer, settings):
    torch.manual_seed(1)
    m = get_mixer_class(mixer)(16, **settings).double()
    x = torch.randn(3, 16, dtype=torch.float64)
    state = {k: torch.randn_like(v) for k, v in m.init_state(3, dtype=torch.float64).items()}
    y, new = m.step(x, state)
    with torch.no_grad():
        y0, new0 = m.step(x, state)
    assert m in _CACHE
    torch.testing.assert_close(y0, y.detach(), rtol=1e-12, atol=1e-12)
    for k in new:
        torch.testing.assert_close(new0[k], new[k].detach(), rtol=1e-12, atol=1e-12)
