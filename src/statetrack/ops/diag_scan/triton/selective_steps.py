"""Launchers of the selective scan's ``steps`` kernels (``steps_kernels.py``): one step at a time per program.

The ``tiles`` kernels (``selective.py``) parallelize along time inside a tile and pay for it in cross-warp sums and
layout conversions; these parallelize only across sequences and channels, so they win where those are many (Mamba
training on short sequences: Table 3 runs 1,024 sequences of 40 steps at once) and lose where a few long sequences
leave most of the GPU idle. ``selective.selective_config`` picks between them by the number of work items per
multiprocessor.

Memory: the forward keeps the fp32 state entering every CK-th step (ck [Bt, cdiv(T, CK), Dm, N]); the backward
recomputes each chunk's states from it into a per-program scratch of [CK, BDm, BN] fp32 (the grid is persistent, so
that is programs x CK x BDm x BN, a few MiB, not one slot per work item).
"""

from __future__ import annotations

import torch

from ..._triton import cdiv, kernels_for, loop_bound

_MODULE = f"{__package__}.steps_kernels"


def _grid(cfg, n_work: int) -> tuple[int, int]:
    """(programs, items per program): at most ``cfg.programs`` programs, as few as take the same rounds."""
    items = cdiv(n_work, max(1, cfg.programs))
    return cdiv(n_work, items), items


def steps_fwd(u, delta, A, B, C, D, z, h0, lo: float, cfg, store_ck: bool):
    """-> (y [Bt, T, Dm] in u's dtype, final state [Bt, Dm, N] fp32, ck [Bt, cdiv(T, CK), Dm, N] fp32 or None)."""
    Bt, T, Dm = u.shape
    N = A.shape[1]
    NCK = cdiv(T, cfg.CK_steps)
    n_work = Bt * cdiv(Dm, cfg.BD_steps)
    grid, items = _grid(cfg, n_work)
    y = torch.empty_like(u)
    ht = torch.empty(Bt, Dm, N, dtype=torch.float32, device=u.device)
    ck = torch.empty(Bt, NCK, Dm, N, dtype=torch.float32, device=u.device) if store_ck else ht
    kernels_for(u.device, _MODULE).sel_steps_fwd_kernel[(grid,)](
        u, delta, A, B, C, u if D is None else D, u if z is None else z, ht if h0 is None else h0, y, ht, ck,
        float(lo), T, Dm, N, NCK, n_work, items,
        BDm=cfg.BD_steps, BN=cfg.BN, CK=cfg.CK_steps, ITEMS_I=loop_bound(items), T_I=loop_bound(T),
        PREFETCH=cfg.prefetch_steps, UNROLL=cfg.unroll_steps, USE_D=D is not None, USE_Z=z is not None,
        USE_H0=h0 is not None, STORE_CK=store_ck, num_warps=cfg.warps_steps,
    )  # fmt: skip
    return y, ht, (ck if store_ck else None)


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


def steps_bwd(u, delta, A, B, C, D, z, ck, dy, dht, lo: float, cfg):
    """All gradients: (du, ddelta, dA, dB, dC, dD or None, dz or None, dh0 fp32), as ``selective._bwd``."""
    Bt, T, Dm = u.shape
    N = A.shape[1]
    NDB = cdiv(Dm, cfg.BD_steps)
    n_work = Bt * NDB
    grid, items = _grid(cfg, n_work)
    du, ddelta, dz, dA, dB, dC, dD, dh0 = grad_buffers(u, delta, z, D, N, NDB)
    scr = torch.empty(grid * cfg.CK_steps * cfg.BD_steps * cfg.BN, dtype=torch.float32, device=u.device)
    kernels_for(u.device, _MODULE).sel_steps_bwd_kernel[(grid,)](
        u, delta, A, B, C, u if D is None else D, u if z is None else z, ck, dy, dh0 if dht is None else dht, scr,
        du, ddelta, dA, dB, dC, dh0 if dD is None else dD, du if dz is None else dz, dh0,
        float(lo), T, Dm, N, ck.shape[1], Bt, n_work, items,
        BDm=cfg.BD_steps, BN=cfg.BN, CK=cfg.CK_steps, ITEMS_I=loop_bound(items), NCK_I=loop_bound(ck.shape[1]),
        PREFETCH=cfg.prefetch_steps, UNROLL=cfg.unroll_steps, USE_D=D is not None, USE_Z=z is not None,
        USE_DHT=dht is not None, num_warps=cfg.warps_steps,
    )  # fmt: skip
    return du, ddelta, dA, dB, dC, dD, dz, dh0
