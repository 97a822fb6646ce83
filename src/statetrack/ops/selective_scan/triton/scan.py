"""Mamba-1's selective scan with signed decays, fused on Triton (forward and backward): the autograd Function.

    a_t = m + (1 - m) exp(delta_t A),  h_t = a_t h_{t-1} + (delta_t u_t) B_t,  y_t = (C_t . h_t + D u_t) silu(z_t)

per channel d and state index n (m = min_eigenvalue). Two kernel algorithms, "tiles" (``tiles.py``) and "steps"
(``steps.py``), chosen by ``config.selective_config`` (the rule: ``config.auto_algorithm``).
"""

from __future__ import annotations

import torch

from ..._triton import require_kernel_dtypes, sm_count
from .config import SelectiveConfig, fit_checkpoint, selective_config
from .steps import steps_bwd, steps_fwd
from .tiles import tiles_bwd, tiles_fwd

_FWD = {"tiles": tiles_fwd, "steps": steps_fwd}
_BWD = {"tiles": tiles_bwd, "steps": steps_bwd}


def sum_shares(grads, A, B, C, D):
    """The kernels' per-item shares of dA [Bt, Dm, N], dB, dC [NDB, Bt, T, N], dD [Bt, Dm], summed (deterministic)."""
    du, ddelta, dA, dB, dC, dD, dz, dh0 = grads
    dD = None if dD is None else dD.sum(0).to(D.dtype)
    return du, ddelta, dA.sum(0).to(A.dtype), dB.sum(0).to(B.dtype), dC.sum(0).to(C.dtype), dD, dz, dh0


class SelectiveScanTritonFn(torch.autograd.Function):
    """(u, delta, A, B, C, D, z, h0, min_eigenvalue, config) -> (y [Bt, T, Dm] in u's dtype, final state
    [Bt, Dm, N] fp32)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, h0, min_eigenvalue, cfg: SelectiveConfig):
        need = any(ctx.needs_input_grad[:8])
        if need:
            cfg = fit_checkpoint(cfg, u.shape[1])
        y, ht, ck = _FWD[cfg.algorithm](u, delta, A, B, C, D, z, h0, min_eigenvalue, cfg, store_ck=need)
        ctx.save_for_backward(u, delta, A, B, C, D, z, ck)
        ctx.min_eigenvalue, ctx.cfg = min_eigenvalue, cfg
        return y, ht

    @staticmethod
    def backward(ctx, dy, dht):
        u, delta, A, B, C, D, z, ck = ctx.saved_tensors
        dy = torch.zeros_like(u) if dy is None else dy.contiguous()
        dht = None if dht is None else dht.contiguous()
        grads = _BWD[ctx.cfg.algorithm](u, delta, A, B, C, D, z, ck, dy, dht, ctx.min_eigenvalue, ctx.cfg)
        grads = sum_shares(grads, A, B, C, D)
        return (*(g if need else None for g, need in zip(grads, ctx.needs_input_grad[:8], strict=True)), None, None)


@torch.compiler.disable  # Dynamo cannot trace a Triton launch inside an autograd.Function: eager in compiled graphs
def selective_scan_triton(
    u, delta, A, B, C, D=None, z=None, min_eigenvalue: float = -1.0, initial_state=None, **config
):
    """Selective scan on Triton, fp32 state and accumulation.

    u, delta, z: [Bt, T, Dm]; A: [Dm, N]; B, C: [Bt, T, N]; D: [Dm] or None; z or None; initial_state [Bt, Dm, N]
    fp32 or None; every tensor bf16, fp16 or fp32 (dtypes may differ). Returns (y [Bt, T, Dm] in u's dtype, final
    state [Bt, Dm, N] fp32), differentiable in every tensor input. ``config``: :func:`selective_config` keywords
    (algorithm and the keys of either algorithm; keys of the algorithm not chosen go unused here: the public
    ``selective_scan`` refuses them). Inputs are assumed validated by ``selective_scan`` (shapes, ranges); dtypes
    are checked here."""
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
