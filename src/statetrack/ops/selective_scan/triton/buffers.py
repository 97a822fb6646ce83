"""Output buffers of the selective-scan kernels, the same for both algorithms (``tiles.py``, ``steps.py``)."""

from __future__ import annotations

import torch


def fwd_buffers(u: torch.Tensor, N: int, NCK: int, store_ck: bool):
    """y like u, the final state ht [Bt, Dm, N] fp32 and the checkpoints ck [Bt, NCK, Dm, N] fp32 (ht itself as a
    stand-in pointer when none are stored)."""
    Bt, _, Dm = u.shape
    y = torch.empty_like(u)
    ht = torch.empty(Bt, Dm, N, dtype=torch.float32, device=u.device)
    ck = torch.empty(Bt, NCK, Dm, N, dtype=torch.float32, device=u.device) if store_ck else ht
    return y, ht, ck


def grad_buffers(u, delta, z, D, N: int, NDB: int):
    """Outputs of a selective backward kernel: du, ddelta, dz (or None) like their inputs; fp32 shares dA
    [Bt, Dm, N], dB and dC [NDB, Bt, T, N], dD [Bt, Dm] (or None), and dh0 [Bt, Dm, N]."""
    Bt, T, Dm = u.shape
    f32 = dict(dtype=torch.float32, device=u.device)
    du, ddelta = torch.empty_like(u), torch.empty_like(delta)
    dz = torch.empty_like(z) if z is not None else None
    dA, dh0 = (torch.empty(Bt, Dm, N, **f32) for _ in range(2))
    dB, dC = (torch.empty(NDB, Bt, T, N, **f32) for _ in range(2))
    dD = torch.empty(Bt, Dm, **f32) if D is not None else None
    return du, ddelta, dz, dA, dB, dC, dD, dh0
