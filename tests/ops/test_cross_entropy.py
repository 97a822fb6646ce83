"""linear_cross_entropy against F.cross_entropy on the full logits (fp64 oracle), its memory bound, its errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from statetrack.ops.cross_entropy import linear_cross_entropy

N, D, V = 23, 5, 11
EVERY_THIRD = slice(None, None, 3)


def _inputs(dtype=torch.float64, n=N, d=D, v=V, ignored=EVERY_THIRD, seed=0, layout="contiguous"):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, d, generator=g, dtype=dtype)
    if layout == "transposed":
        hidden = torch.randn(d, n, generator=g, dtype=dtype).T
    elif layout == "strided":
        hidden = torch.randn(n, 2 * d, generator=g, dtype=dtype)[:, ::2]
    weight = torch.randn(v, d, generator=g, dtype=dtype)
    bias = torch.randn(v, generator=g, dtype=dtype)
    labels = torch.randint(0, v, (n,), generator=g)
    labels[ignored] = -100
    return hidden.requires_grad_(), weight.requires_grad_(), bias.requires_grad_(), labels


def _loss_and_grads(fn, hidden, weight, bias, labels, reduction, **kw):
    hidden, weight, bias = (t.detach().clone().requires_grad_() for t in (hidden, weight, bias))
    loss = fn(hidden, weight, labels, bias=bias, reduction=reduction, **kw)
    go = torch.linspace(-1.0, 2.0, loss.numel(), dtype=loss.dtype).reshape(loss.shape)  # per-row weights for "none"
    return (loss, *torch.autograd.grad(loss, (hidden, weight, bias), go))


def _reference(hidden, weight, labels, *, bias, reduction, ignore_index=-100):
    return F.cross_entropy(hidden @ weight.T + bias, labels, ignore_index=ignore_index, reduction=reduction)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("chunk_size", [1, 7, N, 50, None])
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "strided"])
def test_matches_full_logits_in_fp64(reduction, chunk_size, layout):
    args = _inputs(layout=layout)
    ours = _loss_and_grads(linear_cross_entropy, *args, reduction, chunk_size=chunk_size, backend="torch")
    ref = _loss_and_grads(_reference, *args, reduction)
    for name, a, b in zip(("loss", "hidden", "weight", "bias"), ours, ref, strict=True):
        assert a.dtype == b.dtype == torch.float64, name
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, msg=name)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_no_ignored_labels_and_other_ignore_index(reduction):
    hidden, weight, bias, labels = _inputs(ignored=slice(0, 0))
    labels[[2, 5]] = 3  # ignore_index=3 is a real class: its rows drop out
    ours = _loss_and_grads(linear_cross_entropy, hidden, weight, bias, labels, reduction, ignore_index=3, chunk_size=4)
    ref = _loss_and_grads(_reference, hidden, weight, bias, labels, reduction, ignore_index=3)
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_all_ignored_gives_zero_not_nan(reduction):
    hidden, weight, bias, labels = _inputs(ignored=slice(None))
    loss, *grads = _loss_and_grads(linear_cross_entropy, hidden, weight, bias, labels, reduction, chunk_size=7)
    assert loss.shape == (() if reduction != "none" else (N,))
    for t in (loss, *grads):
        assert torch.equal(t, torch.zeros_like(t))


def test_without_bias_frozen_weight_and_repeated_backward():
    hidden, weight, _, labels = _inputs()
    weight = weight.detach()
    loss = linear_cross_entropy(hidden, weight, labels, chunk_size=5)
    (g1,) = torch.autograd.grad(loss, hidden, retain_graph=True)
    (g2,) = torch.autograd.grad(loss * 1.0, hidden)  # saved gradients are not scaled in place by the first call
    (ref,) = torch.autograd.grad(F.cross_entropy(hidden @ weight.T, labels), hidden)
    torch.testing.assert_close(g1, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g2, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_bf16_inputs_close_to_fp32(reduction):
    hidden, weight, bias, labels = _inputs(torch.bfloat16, n=40, d=16, v=64)
    ours = _loss_and_grads(linear_cross_entropy, hidden, weight, bias, labels, reduction, chunk_size=8)
    ref = _loss_and_grads(_reference, *(t.float() for t in (hidden, weight, bias)), labels, reduction)
    assert ours[0].dtype == torch.float32  # the loss is accumulated in fp32
    assert [g.dtype for g in ours[1:]] == [torch.bfloat16] * 3
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a.float(), b, rtol=2e-2, atol=2e-2 * b.abs().max().item())


def test_cpu_autocast_bf16_keeps_fp32_grads():
    hidden, weight, bias, labels = _inputs(torch.float32, n=40, d=16, v=64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = _loss_and_grads(linear_cross_entropy, hidden, weight, bias, labels, "mean", chunk_size=8)
    ref = _loss_and_grads(_reference, hidden, weight, bias, labels, "mean")
    assert [t.dtype for t in ours] == [torch.float32] * 4
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-2 * b.abs().max().item())
        assert not torch.equal(a, b)  # the GEMMs really ran in bf16


def _largest_allocation_and_save(fn):
    """(largest single CPU allocation, largest saved-for-backward tensor) in elements of fp32, over fwd + bwd."""
    saved = []
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
            loss = fn()
        loss.backward(torch.ones_like(loss))
    return max(e.cpu_memory_usage for e in prof.events()) // 4, max(saved, default=0)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_never_holds_logits_of_all_rows(reduction):
    n, d, v = 512, 4, 256  # n * v dwarfs every other tensor (n * d, v * d)
    hidden, weight, bias, labels = _inputs(torch.float32, n=n, d=d, v=v)
    ours = _largest_allocation_and_save(
        lambda: linear_cross_entropy(hidden, weight, labels, bias=bias, reduction=reduction, chunk_size=16)
    )
    assert ours[0] <= 16 * v and ours[1] <= n * d, ours
    full = _largest_allocation_and_save(lambda: _reference(hidden, weight, labels, bias=bias, reduction=reduction))
    assert full[0] >= n * v and full[1] >= n * v, full  # the check sees the full logits where they exist


@pytest.mark.parametrize(
    ("change", "error", "name"),
    [
        (lambda a: {**a, "hidden": a["hidden"][0]}, ValueError, "hidden"),
        (lambda a: {**a, "hidden": a["hidden"].long()}, TypeError, "hidden"),
        (lambda a: {**a, "weight": a["weight"][:, :2]}, ValueError, "weight"),
        (lambda a: {**a, "bias": a["bias"][:3]}, ValueError, "bias"),
        (lambda a: {**a, "labels": a["labels"].int()}, TypeError, "labels"),
        (lambda a: {**a, "labels": a["labels"][:4]}, ValueError, "labels"),
        (lambda a: {**a, "labels": torch.full((N,), V)}, ValueError, "labels"),
        (lambda a: {**a, "labels": torch.full((N,), -1)}, ValueError, "labels"),
        (lambda a: {**a, "ignore_index": -100.0}, TypeError, "ignore_index"),
        (lambda a: {**a, "reduction": "avg"}, ValueError, "reduction"),
        (lambda a: {**a, "chunk_size": 0}, ValueError, "chunk_size"),
        (lambda a: {**a, "backend": "triton"}, ValueError, "backend"),
        (lambda a: {**a, "backend": "liger"}, ValueError, "backend"),  # CPU tensors: liger cannot run
    ],
)
def test_bad_arguments_name_themselves(change, error, name):
    hidden, weight, bias, labels = _inputs()
    args = change({"hidden": hidden, "weight": weight, "bias": bias, "labels": labels})
    with pytest.raises(error, match=name):
        linear_cross_entropy(args.pop("hidden"), args.pop("weight"), args.pop("labels"), **args)


def test_no_grad_evaluation_makes_no_gradients():
    hidden, weight, bias, labels = _inputs(torch.float32, n=512, d=64, v=16)
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        loss = linear_cross_entropy(hidden, weight, labels, bias=bias, chunk_size=16)
    assert max(e.cpu_memory_usage for e in prof.events()) < 512 * 64 * 4  # no grad_hidden [N, D] was allocated
    torch.testing.assert_close(loss, _reference(hidden, weight, labels, bias=bias, reduction="mean"))
