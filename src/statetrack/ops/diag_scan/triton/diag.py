"""Signed diagonal scan on Triton: one forward launch, one backward launch.

Forward, per (sequence, block of BD channels), tiles of BT steps walked in order: an associative scan over the
tile's affine maps (a_t, b_t) (in two levels: in segments of R steps held in registers, then over the segments),
then the state entering the tile is applied; h is written in the output dtype, the
state is fp32 throughout. With gradients on, the forward also writes the fp32 state entering every tile
(ck [B, NT, D], NT = cdiv(T, BT): 4 / (BT * itemsize) of the input's bytes).

Backward, tiles walked from the last: G_t = dL/dh_t in full is an affine scan backwards in time seeded with the
final-state gradient; the states h_{t-1} are recomputed in fp32 from the tile's checkpoint (not read back from h,
which may be bf16, and no fp32 copy of h is kept alive). It reads a, b, dL/dh and writes da, db: the compulsory
traffic, as the forward's a, b in and h out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..._triton import cdiv, kernels_for, loop_bound, pow2, require_kernel_dtypes, sm_count

_MODULE = f"{__package__}.kernels"  # the @triton.jit code, imported on first use
# the tuning keywords of diag_scan_triton (``diag_scan(triton_config=...)``)
DIAG_KEYS = ("block_t", "block_d", "segment", "warps_fwd", "warps_bwd", "stages_fwd", "stages_bwd")


@dataclass(frozen=True)
class DiagConfig:
    """Tiles of BT = S * R steps (S segments of R steps, see ``kernels.diag_fwd_kernel``) x BD channels; warps and
    software-pipeline stages of the forward and backward launches."""

    R: int = 4
    S: int = 16
    BD: int = 64
    warps_fwd: int = 4
    warps_bwd: int = 4
    stages_fwd: int = 3
    stages_bwd: int = 2

    @property
    def BT(self) -> int:
        return self.R * self.S


def diag_config(
    B: int,
    D: int,
    *,
    n_sm: int | None = None,
    block_t: int | None = None,
    block_d: int | None = None,
    segment: int | None = None,
    **kw,
) -> DiagConfig:
    """Default tile 64 steps (16 segments of 4) x 64 channels. One BT serves both directions (the backward restarts
    from the forward's per-tile states). On sm_90 (offline compile, 4 warps, bf16) this needs 168 registers per
    thread forward and 227 backward, no spills, and 48 / 80 KiB of shared memory for the pipelined loads (3 / 2
    stages); about 26 / 82 instructions per element. Rows of 64 bf16 channels are 128-byte lines. Fewer channels,
    or fewer programs than ``n_sm`` multiprocessors (a short batch), narrow the tile down to 16 channels so that
    every multiprocessor has work."""
    BT = pow2(block_t) if block_t else 64
    R = min(pow2(segment) if segment else 4, BT)
    if block_d:
        BD = pow2(block_d)
    else:
        BD = min(64, max(16, pow2(D)))
        while n_sm and BD > 16 and B * cdiv(D, BD) < n_sm:
            BD //= 2
    return DiagConfig(R=R, S=BT // R, BD=BD, **kw)


def _fwd(a, b, h0, cfg: DiagConfig, store_ck: bool, out_dtype: torch.dtype):
    B, T, D = a.shape
    NT = cdiv(T, cfg.BT)
    dev = a.device
    h = torch.empty(B, T, D, dtype=out_dtype, device=dev)
    ht = torch.empty(B, D, dtype=torch.float32, device=dev)
    ck = torch.empty(B, NT, D, dtype=torch.float32, device=dev) if store_ck else ht
    kernels_for(dev, _MODULE).diag_fwd_kernel[(cdiv(D, cfg.BD) * B,)](
        a, b, ht if h0 is None else h0, h, ht, ck, T, D, NT,
        R=cfg.R, S=cfg.S, BD=cfg.BD, NT_I=loop_bound(NT), STAGES=cfg.stages_fwd, USE_H0=h0 is not None,
        STORE_CK=store_ck, num_warps=cfg.warps_fwd,
    )  # fmt: skip
    return h, ht, (ck if store_ck else None)


def _bwd(a, b, ck, g, gt, cfg: DiagConfig, need_da: bool, need_db: bool, b_dtype: torch.dtype):
    B, T, D = a.shape
    NT = cdiv(T, cfg.BT)
    dev = a.device
    da = torch.empty_like(a) if need_da else None
    db = torch.empty(B, T, D, dtype=b_dtype, device=dev) if need_db else None
    dh0 = torch.empty(B, D, dtype=torch.float32, device=dev)
    kernels_for(dev, _MODULE).diag_bwd_kernel[(cdiv(D, cfg.BD) * B,)](
        a, a if b is None else b, dh0 if ck is None else ck, g, dh0 if gt is None else gt,
        dh0 if da is None else da, dh0 if db is None else db, dh0, T, D, NT,
        R=cfg.R, S=cfg.S, BD=cfg.BD, NT_I=loop_bound(NT), STAGES=cfg.stages_bwd, USE_GT=gt is not None,
        NEED_DA=need_da, NEED_DB=need_db, num_warps=cfg.warps_bwd,
    )  # fmt: skip
    return da, db, dh0


class DiagScanTritonFn(torch.autograd.Function):
    """(a, b, h0 or None, out dtype, config) -> (h [B, T, D] in out dtype, final state [B, D] fp32)."""

    @staticmethod
    def forward(ctx, a, b, h0, out_dtype, cfg):
        need_da = ctx.needs_input_grad[0]
        h, ht, ck = _fwd(a, b, h0, cfg, store_ck=need_da, out_dtype=out_dtype)
        # b and the checkpoints only serve da
        ctx.save_for_backward(a, b if need_da else None, ck)
        ctx.cfg, ctx.b_dtype = cfg, b.dtype
        return h, ht

    @staticmethod
    def backward(ctx, g, gt):
        a, b, ck = ctx.saved_tensors
        need_da, need_db, need_h0 = ctx.needs_input_grad[:3]
        g = torch.zeros_like(a, dtype=torch.float32) if g is None else g.contiguous()
        gt = None if gt is None else gt.contiguous()
        da, db, dh0 = _bwd(a, b, ck, g, gt, ctx.cfg, need_da, need_db, ctx.b_dtype)
        return da, db, (dh0 if need_h0 else None), None, None


# Dynamo cannot trace a Triton launch inside an autograd.Function: keep it eager inside compiled graphs.
@torch.compiler.disable
def diag_scan_triton(
    a: torch.Tensor,
    b: torch.Tensor,
    initial_state: torch.Tensor | None = None,
    *,
    block_t: int | None = None,
    block_d: int | None = None,
    segment: int | None = None,
    **config,
) -> tuple[torch.Tensor, torch.Tensor]:
    """h_t = a_t * h_{t-1} + b_t on Triton, fp32 accumulation.

    a, b: [B, T, D] bf16 / fp16 / fp32 (may differ; h takes the promoted dtype); initial_state: [B, D] fp32 or None.
    Returns (h [B, T, D] in the promoted dtype, final state [B, D] fp32), differentiable in a, b and
    initial_state. CUDA tensors run compiled kernels, CPU tensors only under TRITON_INTERPRET=1 (slow: for tests).
    ``block_t`` / ``block_d`` / ``segment`` set the tile (steps, channels, steps per segment); ``config`` the other
    :class:`DiagConfig` fields (warps_fwd, warps_bwd, stages_fwd, stages_bwd).
    Inputs are assumed validated by ``api.diag_scan`` (shapes, ranges); dtypes are checked here."""
    require_kernel_dtypes(a=a, b=b)
    if initial_state is not None and initial_state.dtype != torch.float32:
        raise TypeError(f"initial_state must be fp32 for the triton backend, got {initial_state.dtype}")
    if a.dim() != 3 or b.shape != a.shape:
        raise ValueError(f"a and b must have one shape [B, T, D], got {list(a.shape)} and {list(b.shape)}")
    out_dtype = torch.promote_types(a.dtype, b.dtype)
    B, T, D = a.shape
    if T == 0 or B * D == 0:
        h = a.new_zeros(a.shape, dtype=out_dtype)
        ht = initial_state if initial_state is not None else a.new_zeros(B, D, dtype=torch.float32)
        return h, ht
    cfg = diag_config(B, D, n_sm=sm_count(a.device), block_t=block_t, block_d=block_d, segment=segment, **config)
    h0 = None if initial_state is None else initial_state.contiguous()
    return DiagScanTritonFn.apply(a.contiguous(), b.contiguous(), h0, out_dtype, cfg)
