"""Launchers of the selective scan's ``steps`` kernels (``steps_kernels.py``): one step at a time per program.

The ``tiles`` kernels (``tiles.py``) parallelize along time inside a tile and pay for it in cross-warp sums and
layout conversions; these parallelize only across sequences and channels, so they win where those are many (Mamba
training on short sequences: Table 3 runs 1,024 sequences of 40 steps at once) and lose where a few long sequences
leave most of the GPU idle. ``config.auto_algorithm`` picks between them by the number of work items per
multiprocessor.

Memory: the forward keeps the fp32 state entering every CK-th step (ck [Bt, cdiv(T, CK), Dm, N]); the backward
recomputes each chunk's states from it into a per-program scratch of [CK, BDm, BN] fp32 (the grid is persistent, so
that is programs x CK x BDm x BN, a few MiB, not one slot per work item).
"""

from __future__ import annotations

import torch

from ..._triton import cdiv, kernels_for, loop_bound
from .buffers import fwd_buffers, grad_buffers
from .config import SelectiveConfig

_MODULE = f"{__package__}.steps_kernels"


def _grid(cfg: SelectiveConfig, n_work: int) -> tuple[int, int]:
    """(programs, items per program): at most ``cfg.programs`` programs, as few as take the same rounds."""
    items = cdiv(n_work, max(1, cfg.programs))
    return cdiv(n_work, items), items


def steps_fwd(u, delta, A, B, C, D, z, h0, min_eigenvalue: float, cfg: SelectiveConfig, store_ck: bool):
    """-> (y [Bt, T, Dm] in u's dtype, final state [Bt, Dm, N] fp32, ck [Bt, cdiv(T, CK), Dm, N] fp32 or None)."""
    Bt, T, Dm = u.shape
    N = A.shape[1]
    NCK = cdiv(T, cfg.CK_steps)
    n_work = Bt * cdiv(Dm, cfg.BD_steps)
    grid, items = _grid(cfg, n_work)
    y, ht, ck = fwd_buffers(u, N, NCK, store_ck)
    kernels_for(u.device, _MODULE).sel_steps_fwd_kernel[(grid,)](
        u, delta, A, B, C, u if D is None else D, u if z is None else z, ht if h0 is None else h0, y, ht, ck,
        float(min_eigenvalue), T, Dm, N, NCK, n_work, items,
        BDm=cfg.BD_steps, BN=cfg.BN, CK=cfg.CK_steps, ITEMS_I=loop_bound(items), T_I=loop_bound(T),
        PREFETCH=cfg.prefetch_steps, UNROLL=cfg.unroll_steps, USE_D=D is not None, USE_Z=z is not None,
        USE_H0=h0 is not None, STORE_CK=store_ck, num_warps=cfg.warps_steps,
    )  # fmt: skip
    return y, ht, (ck if store_ck else None)


def steps_bwd(u, delta, A, B, C, D, z, ck, dy, dht, min_eigenvalue: float, cfg: SelectiveConfig):
    """All gradients: (du, ddelta, dA, dB, dC, dD or None, dz or None, dh0 fp32), as ``tiles.tiles_bwd``."""
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
        float(min_eigenvalue), T, Dm, N, ck.shape[1], Bt, n_work, items,
        BDm=cfg.BD_steps, BN=cfg.BN, CK=cfg.CK_steps, ITEMS_I=loop_bound(items), NCK_I=loop_bound(ck.shape[1]),
        PREFETCH=cfg.prefetch_steps, UNROLL=cfg.unroll_steps, USE_D=D is not None, USE_Z=z is not None,
        USE_DHT=dht is not None, num_warps=cfg.warps_steps,
    )  # fmt: skip
    return du, ddelta, dA, dB, dC, dD, dz, dh0
