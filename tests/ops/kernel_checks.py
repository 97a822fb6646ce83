"""What the kernel test files share: a relative error, seeded generators, cotangents, fresh leaves, and the
check that every output and gradient is within a tolerance of the fp64 oracle's."""

from __future__ import annotations

import torch

from .interpreter import DEVICE

F64, F32 = torch.float64, torch.float32


def rel(x: torch.Tensor, ref: torch.Tensor) -> float:
    x, ref = x.detach().cpu().double(), ref.detach().cpu().double()
    return ((x - ref).norm() / ref.norm().clamp_min(1e-300)).item()


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def weights(shapes, seed):
    """Random fp64 cotangents, one per output shape (a loss sum(w * out) exercises every gradient path)."""
    g = gen(seed)
    return [torch.randn(s, generator=g, dtype=F64) for s in shapes]


def grads(outs, ws, leaves):
    loss = sum((o.double() * w.to(o.device)).sum() for o, w in zip(outs, ws, strict=True))
    return torch.autograd.grad(loss, [t for t in leaves if t is not None])


def leaves(xs, dtype, device=DEVICE, state_idx=()):
    """fp64 tensors -> fresh leaves in ``dtype`` (fp32 for the states at ``state_idx``) on ``device``."""
    out = []
    for i, x in enumerate(xs):
        if x is None:
            out.append(None)
            continue
        dt = F32 if i in state_idx and dtype != F64 else dtype
        out.append(x.detach().to(device, dt).requires_grad_())
    return out


def assert_close(names, got, ref, tol):
    errs = {n: rel(g, r) for n, g, r in zip(names, got, ref, strict=True)}
    bad = {n: e for n, e in errs.items() if not e < tol}
    assert not bad, (bad, errs)
