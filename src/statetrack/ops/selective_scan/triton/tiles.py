"""Launchers of the selective scan's ``tiles`` kernels (``tiles_kernels.py``): time in tiles of BT steps.

One program owns BDm channels of one sequence with their [BDm, N] fp32 state in registers, and walks time in tiles
of BT steps: the decays and writes of a tile, [BT, BDm, N], are formed in registers from u, delta, B (never stored),
scanned along time, read out against C, and only y [BT, BDm] goes back to memory.

Memory. The forward keeps nothing per step: with gradients on it writes the fp32 state every CK steps
(ck [Bt, cdiv(T, CK), Dm, N]; CK = 64 by default, i.e. N / 16 bytes per element of u). The backward walks those
checkpoints from the last; from each it recomputes the states entering the chunk's tiles (into a per-program scratch
slot of CK / BT states, which stays in L2), then walks the tiles backwards: the exp of each tile is therefore taken
twice in the backward. dB and dC sum over channels: each program writes its channel block's share (fp32
[cdiv(Dm, BDm), Bt, T, N], alive during the backward only) and torch sums them, so results are deterministic.
"""

from __future__ import annotations

import torch

from ..._triton import cdiv, kernels_for, loop_bound
from .buffers import fwd_buffers, grad_buffers
from .config import SelectiveConfig

_MODULE = f"{__package__}.tiles_kernels"  # the @triton.jit code, imported on first use


def tiles_fwd(u, delta, A, B, C, D, z, h0, min_eigenvalue: float, cfg: SelectiveConfig, store_ck: bool):
    """-> (y [Bt, T, Dm] in u's dtype, final state [Bt, Dm, N] fp32, ck [Bt, cdiv(T, CK), Dm, N] fp32 or None)."""
    Bt, T, Dm = u.shape
    N = A.shape[1]
    NT = cdiv(T, cfg.BT_fwd)
    NCK = cdiv(T, cfg.CK)
    y, ht, ck = fwd_buffers(u, N, NCK, store_ck)
    kernels_for(u.device, _MODULE).sel_fwd_kernel[(cdiv(Dm, cfg.BD_fwd) * Bt,)](
        u, delta, A, B, C, u if D is None else D, u if z is None else z, ht if h0 is None else h0, y, ht, ck,
        float(min_eigenvalue), T, Dm, N, NT, NCK,
        BT=cfg.BT_fwd, BDm=cfg.BD_fwd, BN=cfg.BN, R=cfg.CK // cfg.BT_fwd, NT_I=loop_bound(NT),
        STAGES=cfg.stages_fwd, USE_D=D is not None, USE_Z=z is not None, USE_H0=h0 is not None, STORE_CK=store_ck,
        num_warps=cfg.warps_fwd,
    )  # fmt: skip
    return y, ht, (ck if store_ck else None)


def tiles_bwd(u, delta, A, B, C, D, z, ck, dy, dht, min_eigenvalue: float, cfg: SelectiveConfig):
    """All gradients: (du, ddelta, dA, dB, dC, dD or None, dz or None, dh0 fp32), dA, dB, dC and dD as the
    kernel's shares (``scan.sum_shares`` adds them up)."""
    Bt, T, Dm = u.shape
    N = A.shape[1]
    NCK = ck.shape[1]
    NDB = cdiv(Dm, cfg.BD_bwd)
    R = cfg.CK // cfg.BT_bwd
    du, ddelta, dz, dA, dB, dC, dD, dh0 = grad_buffers(u, delta, z, D, N, NDB)
    scr = torch.empty(Bt * NDB * R * cfg.BD_bwd * cfg.BN, dtype=torch.float32, device=u.device)
    kernels_for(u.device, _MODULE).sel_bwd_kernel[(NDB * Bt,)](
        u, delta, A, B, C, u if D is None else D, u if z is None else z, ck, dy, dh0 if dht is None else dht, scr,
        du, ddelta, dA, dB, dC, dh0 if dD is None else dD, du if dz is None else dz, dh0,
        float(min_eigenvalue), T, Dm, N, NCK, Bt,
        BT=cfg.BT_bwd, BDm=cfg.BD_bwd, BN=cfg.BN, R=R, NCK_I=loop_bound(NCK), STAGES=cfg.stages_bwd,
        USE_D=D is not None, USE_Z=z is not None, USE_DHT=dht is not None, num_warps=cfg.warps_bwd,
    )  # fmt: skip
    return du, ddelta, dA, dB, dC, dD, dz, dh0
