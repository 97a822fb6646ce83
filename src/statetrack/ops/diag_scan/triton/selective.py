"""Mamba-1's selective scan with signed decays, fused on Triton (forward and backward).

    a_t = lo + (1 - lo) exp(delta_t A),  h_t = a_t h_{t-1} + (delta_t u_t) B_t,  y_t = (C_t . h_t + D u_t) silu(z_t)

per channel d and state index n (lo = min_eigenvalue). Two kernel paths (``SelectiveConfig.path``): this module's
"tiles", below, and the "steps" of ``selective_steps.py`` (one step at a time, for many short sequences), chosen by
:func:`selective_config`. Tiles: one program owns BDm channels of one sequence with their [BDm, N] fp32 state in
registers, and walks time in tiles of BT steps: the decays and writes of a tile, [BT, BDm, N],
are formed in registers from u, delta, B (never stored), scanned along time, read out against C, and only y
[BT, BDm] goes back to memory.

Memory. The forward keeps nothing per step: with gradients on it writes the fp32 state every CK steps
(ck [Bt, cdiv(T, CK), Dm, N]; CK = 64 by default, i.e. N / 16 bytes per element of u). The backward walks those
checkpoints from the last; from each it recomputes the states entering the chunk's tiles (into a per-program scratch
slot of CK / BT states, which stays in L2), then walks the tiles backwards: the exp of each tile is therefore taken
twice in the backward. dB and dC sum over channels: each program writes its channel block's share (fp32
[cdiv(Dm, BDm), Bt, T, N], alive during the backward only) and torch sums them, so results are deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ..._triton import cdiv, kernels_for, loop_bound, pow2, require_kernel_dtypes, sm_count
from .selective_steps import grad_buffers, steps_bwd, steps_fwd

_MODULE = f"{__package__}.kernels"  # the @triton.jit code, imported on first use


# the steps path where there are at least this many work items (sequence x channel block) per multiprocessor
STEPS_MIN_ITEMS_PER_SM = 16


@dataclass(frozen=True)
class SelectiveConfig:
    """``path``: "tiles" (this module's kernels) or "steps" (``selective_steps``). Tiles: BT steps x BDm channels x
    BN >= N states of the forward and backward, the checkpoint interval CK (a multiple of both BT), warps and
    pipeline stages. Steps: BD_steps channels per work item, a checkpoint every CK_steps steps, warps per program,
    the persistent grid's program count, whether the next step's inputs are loaded ahead and the time loops' unroll
    factor (Triton's ``loop_unroll_factor``: neighbouring steps' reductions may overlap; 1 = none)."""

    BN: int
    BT_fwd: int
    BD_fwd: int
    BT_bwd: int
    BD_bwd: int
    CK: int
    warps_fwd: int = 4
    warps_bwd: int = 4
    stages_fwd: int = 2
    stages_bwd: int = 2
    path: str = "tiles"
    BD_steps: int = 32
    CK_steps: int = 8
    warps_steps: int = 1
    programs: int = 1024
    prefetch_steps: bool = True
    unroll_steps: int = 1


def selective_config(
    Bt: int,
    Dm: int,
    N: int,
    *,
    n_sm: int | None = None,
    block_t: int | None = None,
    block_d: int | None = None,
    block_t_bwd: int | None = None,
    block_d_bwd: int | None = None,
    checkpoint: int = 64,
    path: str | None = None,
    block_d_steps: int | None = None,
    checkpoint_steps: int = 8,
    warps_steps: int = 1,
    programs_per_sm: int = 16,
    prefetch_steps: bool = True,
    unroll_steps: int = 1,
    **kw,
) -> SelectiveConfig:
    """Tiles by register budget: about 4096 state elements per forward tile and 2048 per backward tile (the backward
    holds ~4x the forward's live [BT, BDm, N] tensors), 32 channels wide when N allows (so that u, delta, z rows are
    64-byte bf16 segments and the dB / dC shares number Dm / 32), narrower (down to 8) when there would be fewer
    programs than ``n_sm`` multiprocessors. On sm_90 (offline compile, 4 warps, N = 16) the forward needs ~126
    registers per thread, the backward ~245, neither spills.

    ``path=None`` takes the steps kernels where there are at least ``STEPS_MIN_ITEMS_PER_SM`` work items of
    ``block_d_steps`` channels per multiprocessor (on a GPU; the tiles under the interpreter, whose tests name the
    path); their persistent grid has ``programs_per_sm`` programs per multiprocessor (in all, under the interpreter)."""
    BN = max(2, pow2(N))
    if BN > 256:
        raise ValueError(f"the triton selective scan takes state sizes N up to 256, got N = {N}")

    def tile(elems: int, max_t: int, bt: int | None, bd: int | None) -> tuple[int, int]:
        if bd:
            BD = pow2(bd)
        else:
            BD = min(max(4, pow2(Dm)), 32, max(4, elems // (4 * BN)))
            while n_sm and BD > 8 and Bt * cdiv(Dm, BD) < n_sm:
                BD //= 2
        BT = pow2(bt) if bt else max(1, min(max_t, elems // (BD * BN)))
        return BT, BD

    # each thread holds whole columns of time (the scans are in-register), so BT is capped too
    BT_f, BD_f = tile(4096, 16, block_t, block_d)
    BT_b, BD_b = tile(2048, 8, block_t_bwd, block_d_bwd)
    CK = max(pow2(checkpoint), BT_f, BT_b)
    BD_s = pow2(block_d_steps) if block_d_steps else max(4, min(32, 512 // BN))  # ~16 state elements per thread
    if path is None:
        many = n_sm is not None and Bt * cdiv(Dm, BD_s) >= STEPS_MIN_ITEMS_PER_SM * n_sm
        path = "steps" if many else "tiles"
    if path not in ("tiles", "steps"):
        raise ValueError(f"path must be 'tiles', 'steps' or None, got {path!r}")
    steps = dict(BD_steps=BD_s, CK_steps=max(1, checkpoint_steps), warps_steps=warps_steps,
                 programs=max(1, programs_per_sm * (n_sm or 1)), prefetch_steps=prefetch_steps,
                 unroll_steps=max(1, unroll_steps))  # fmt: skip
    return SelectiveConfig(BN=BN, BT_fwd=BT_f, BD_fwd=BD_f, BT_bwd=BT_b, BD_bwd=BD_b, CK=CK, path=path, **steps, **kw)


def fit_checkpoint(cfg: SelectiveConfig, T: int) -> SelectiveConfig:
    """A sequence shorter than the checkpoint interval gets one chunk of just enough tiles: the backward walks
    every tile of a chunk, and at T = 40 (Table 3) the default CK = 64 would have it walk 16 tiles of 4 steps for
    10 that hold steps. Only with gradients (a training shape is fixed, so this costs one compile, not one per
    length); CK stays a multiple of both tiles. The steps path walks every step of its chunks too: T is cut into
    equal chunks of at most CK_steps (CK_steps = 8 and T = 20: 7 + 7 + 6 steps, not 8 + 8 + 4 and 4 of nothing)."""
    unit = max(cfg.BT_fwd, cfg.BT_bwd)  # powers of two: the larger is a multiple of the smaller
    ck_steps = cdiv(T, cdiv(T, cfg.CK_steps)) if T > 0 else cfg.CK_steps  # equal chunks: none mostly past T
    return replace(cfg, CK=min(cfg.CK, max(unit, cdiv(T, unit) * unit)), CK_steps=ck_steps)


def _fwd(u, delta, A, B, C, D, z, h0, lo: float, cfg: SelectiveConfig, store_ck: bool):
    Bt, T, Dm = u.shape
    N = A.shape[1]
    dev = u.device
    NT = cdiv(T, cfg.BT_fwd)
    NCK = cdiv(T, cfg.CK)
    y = torch.empty_like(u)
    ht = torch.empty(Bt, Dm, N, dtype=torch.float32, device=dev)
    ck = torch.empty(Bt, NCK, Dm, N, dtype=torch.float32, device=dev) if store_ck else ht
    kernels_for(dev, _MODULE).sel_fwd_kernel[(cdiv(Dm, cfg.BD_fwd) * Bt,)](
        u, delta, A, B, C, u if D is None else D, u if z is None else z, ht if h0 is None else h0, y, ht, ck,
        float(lo), T, Dm, N, NT, NCK,
        BT=cfg.BT_fwd, BDm=cfg.BD_fwd, BN=cfg.BN, R=cfg.CK // cfg.BT_fwd, NT_I=loop_bound(NT),
        STAGES=cfg.stages_fwd, USE_D=D is not None, USE_Z=z is not None, USE_H0=h0 is not None, STORE_CK=store_ck,
        num_warps=cfg.warps_fwd,
    )  # fmt: skip
    return y, ht, (ck if store_ck else None)


def _bwd(u, delta, A, B, C, D, z, ck, dy, dht, lo: float, cfg: SelectiveConfig):
    """All gradients: (du, ddelta, dA, dB, dC, dD or None, dz or None, dh0 fp32), dA, dB, dC and dD as the
    kernel's shares (:func:`_sum_shares` adds them up)."""
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
        float(lo), T, Dm, N, NCK, Bt,
        BT=cfg.BT_bwd, BDm=cfg.BD_bwd, BN=cfg.BN, R=R, NCK_I=loop_bound(NCK), STAGES=cfg.stages_bwd,
        USE_D=D is not None, USE_Z=z is not None, USE_DHT=dht is not None, num_warps=cfg.warps_bwd,
    )  # fmt: skip
    return du, ddelta, dA, dB, dC, dD, dz, dh0


def _sum_shares(grads, A, B, C, D):
    """The kernels' per-item shares of dA [Bt, Dm, N], dB, dC [NDB, Bt, T, N], dD [Bt, Dm], summed (deterministic)."""
    du, ddelta, dA, dB, dC, dD, dz, dh0 = grads
    dD = None if dD is None else dD.sum(0).to(D.dtype)
    return du, ddelta, dA.sum(0).to(A.dtype), dB.sum(0).to(B.dtype), dC.sum(0).to(C.dtype), dD, dz, dh0


class SelectiveScanTritonFn(torch.autograd.Function):
    """(u, delta, A, B, C, D, z, h0, lo, config) -> (y [Bt, T, Dm] in u's dtype, final state [Bt, Dm, N] fp32)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, h0, lo, cfg):
        need = any(ctx.needs_input_grad[:8])
        if need:
            cfg = fit_checkpoint(cfg, u.shape[1])
        fwd = steps_fwd if cfg.path == "steps" else _fwd
        y, ht, ck = fwd(u, delta, A, B, C, D, z, h0, lo, cfg, store_ck=need)
        ctx.save_for_backward(u, delta, A, B, C, D, z, ck)
        ctx.lo, ctx.cfg = lo, cfg
        return y, ht

    @staticmethod
    def backward(ctx, dy, dht):
        u, delta, A, B, C, D, z, ck = ctx.saved_tensors
        dy = torch.zeros_like(u) if dy is None else dy.contiguous()
        dht = None if dht is None else dht.contiguous()
        bwd = steps_bwd if ctx.cfg.path == "steps" else _bwd
        grads = _sum_shares(bwd(u, delta, A, B, C, D, z, ck, dy, dht, ctx.lo, ctx.cfg), A, B, C, D)
        return (*(g if need else None for g, need in zip(grads, ctx.needs_input_grad[:8], strict=True)), None, None)


@torch.compiler.disable
def selective_scan_triton(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    min_eigenvalue: float = -1.0,
    initial_state: torch.Tensor | None = None,
    **config,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Selective scan on Triton, fp32 state and accumulation.

    u, delta, z: [Bt, T, Dm]; A: [Dm, N]; B, C: [Bt, T, N]; D: [Dm] or None; z or None; initial_state [Bt, Dm, N]
    fp32 or None; every tensor bf16, fp16 or fp32 (dtypes may differ). Returns (y [Bt, T, Dm] in u's dtype, final
    state [Bt, Dm, N] fp32), differentiable in every tensor input. ``config``: :func:`selective_config` keywords
    (path, block_t, block_d, block_t_bwd, block_d_bwd, checkpoint, warps_*, stages_*, block_d_steps,
    checkpoint_steps, warps_steps, programs_per_sm, prefetch_steps, unroll_steps). Inputs are assumed validated by
    ``api.selective_scan`` (shapes, ranges); dtypes are checked here."""
    require_kernel_dtypes(u=u, delta=delta, A=A, B=B, C=C, D=D, z=z)
    if initial_state is not None and initial_state.dtype != torch.float32:
        raise TypeError(f"initial_state must be fp32 for the triton backend, got {initial_state.dtype}")
    Bt, T, Dm = u.shape
    N = A.shape[1]
    if T == 0 or Bt * Dm * N == 0:
        y = torch.zeros_like(u)
        ht = initial_state if initial_state is not None else u.new_zeros(Bt, Dm, N, dtype=torch.float32)
        return y, ht
    cfg = selective_config(Bt, Dm, N, n_sm=sm_count(u.device), **config)
    ins = (None if x is None else x.contiguous() for x in (u, delta, A, B, C, D, z, initial_state))
    return SelectiveScanTritonFn.apply(*ins, float(min_eigenvalue), cfg)
