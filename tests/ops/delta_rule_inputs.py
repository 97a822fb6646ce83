"""Random inputs for delta-rule tests: beta over all of [0, 2] or clustered at 2, random or rank-1-plus-noise keys."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def make_inputs(
    B=2,
    T=65,
    H=2,
    K=8,
    V=6,
    n_h=1,
    beta_range=(0.0, 2.0),
    keys="random",
    gate=False,
    h0=True,
    dtype=torch.float64,
    seed=0,
    requires_grad=False,
):
    """Returns a dict of keyword arguments for ``delta_rule`` (q, k, v, beta, log_decay, initial_state)."""
    g = torch.Generator().manual_seed(seed)
    kshape = (B, T, H, K) if n_h == 1 else (B, T, n_h, H, K)
    raw = torch.randn(kshape, generator=g, dtype=torch.float64)
    if keys == "rank1":
        # one shared direction plus a little noise: repeated keys make (I + A) as ill-conditioned as it gets
        u = torch.randn(K, generator=g, dtype=torch.float64)
        raw = u + 0.05 * raw
    lo, hi = beta_range
    out = {
        "q": torch.randn(B, T, H, K, generator=g, dtype=torch.float64),
        "k": F.normalize(raw, dim=-1),
        "v": torch.randn(*kshape[:-1], V, generator=g, dtype=torch.float64),
        "beta": lo + (hi - lo) * torch.rand(kshape[:-1], generator=g, dtype=torch.float64),
        "log_decay": F.logsigmoid(2 + torch.randn(B, T, H, generator=g, dtype=torch.float64)) if gate else None,
        "initial_state": torch.randn(B, H, K, V, generator=g, dtype=torch.float64) if h0 else None,
    }
    for name, x in out.items():
        if x is not None:
            x = x.to(dtype if name != "initial_state" else (torch.float64 if dtype == torch.float64 else torch.float32))
            out[name] = x.requires_grad_(requires_grad)
    return out


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Relative L2 error of a against reference b."""
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()
